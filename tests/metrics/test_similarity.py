"""Map similarity (SSIM, HOG Pearson, Spearman) against direct library calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity

from unmask.metrics.similarity import (
    SSIM,
    HOGPearson,
    Spearman,
    hog_pearson,
    spearman,
    ssim,
)
from unmask.numerics import minmax_normalise
from unmask.registry import METRICS


def smooth_maps(batch: int, size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 1, size // 8, size // 8, generator=gen)
    return torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bilinear", align_corners=False
    )


def _norm(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


def test_ssim_equals_skimage_on_normalised_maps():
    a, b = smooth_maps(3, 48, 0), smooth_maps(3, 48, 1) * 5 - 2
    ours = ssim(a, b)
    for i in range(3):
        ref = structural_similarity(
            _norm(a[i, 0].double().numpy()),
            _norm(b[i, 0].double().numpy()),
            win_size=5,
            data_range=1.0,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)


def test_hog_pearson_equals_direct_calls():
    a, b = smooth_maps(2, 64, 2), smooth_maps(2, 64, 3)
    ours = hog_pearson(a, b)
    for i in range(2):
        fa = hog(
            _norm(a[i, 0].double().numpy()), pixels_per_cell=(16, 16)
        )  # 4 cells: default 3x3 blocks
        fb = hog(_norm(b[i, 0].double().numpy()), pixels_per_cell=(16, 16))
        assert ours[i].item() == pytest.approx(pearsonr(fa, fb)[0], abs=1e-6)


def test_hog_on_small_maps_uses_smaller_blocks():
    a, b = smooth_maps(1, 32, 4), smooth_maps(1, 32, 5)  # 2x2 cells of 16 px
    fa = hog(_norm(a[0, 0].double().numpy()), pixels_per_cell=(16, 16), cells_per_block=(2, 2))
    fb = hog(_norm(b[0, 0].double().numpy()), pixels_per_cell=(16, 16), cells_per_block=(2, 2))
    assert hog_pearson(a, b).item() == pytest.approx(pearsonr(fa, fb)[0], abs=1e-6)


def test_spearman_equals_scipy_with_ties_and_absolute_values():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-3, 4, (2, 1, 8, 8), generator=gen).float()  # many ties
    b = torch.randn(2, 1, 8, 8, generator=gen)
    for absolute in (False, True):
        ours = spearman(a, b, absolute=absolute)
        for i in range(2):
            p, q = a[i].flatten().numpy(), b[i].flatten().numpy()
            if absolute:
                p, q = np.abs(p), np.abs(q)
            assert ours[i].item() == pytest.approx(spearmanr(p, q)[0], abs=1e-6)


@pytest.mark.parametrize("name", ["ssim", "hog_pearson", "spearman", "spearman_abs"])
def test_self_similarity_is_one_and_unrelated_map_is_lower(name):
    metric = METRICS.get(name).build()
    a, b = smooth_maps(2, 64, 10), smooth_maps(2, 64, 11)
    same = metric(a, a)
    assert torch.allclose(same, torch.ones(2), atol=1e-6)
    assert (metric(a, b) < 0.9).all()
    assert metric.kind == "similarity" and metric.higher_is_better is True


def test_invariances():
    a = smooth_maps(1, 32, 0)
    assert ssim(a, 2 * a + 3).item() == pytest.approx(1.0)  # per-map min-max normalisation
    assert spearman(a, torch.exp(a)).item() == pytest.approx(1.0)  # ranks only
    assert spearman(a, -a).item() == pytest.approx(-1.0)
    assert torch.equal(minmax_normalise(torch.full((1, 1, 4, 4), 7.0)), torch.zeros(1, 1, 4, 4))


def test_constant_map_correlation_is_nan_not_made_up():
    a, c = smooth_maps(1, 32, 0), torch.ones(1, 1, 32, 32)
    assert math.isnan(spearman(a, c).item())
    assert math.isnan(hog_pearson(a, c).item())


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape of a"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 8))
    with pytest.raises(ValueError, match="win_size"):
        ssim(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="pixels_per_cell"):
        HOGPearson()(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError, match="absolute"):
        Spearman(absolute="yes")
    with pytest.raises(ValueError, match="odd"):
        SSIM(win_size=4)
