"""Selectivity, sensitivity-n, IROF and infidelity against naive loops written from the papers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _catalogue_case import SIZE, scores, setup  # tests/metrics/_catalogue_case.py

from unmask.metrics import METRICS
from unmask.metrics.faithfulness import selectivity
from unmask.testing import region_images, region_mask


def test_selectivity_equals_a_naive_loop():
    model, x, maps = setup()
    patch = 4
    got = selectivity(model, x, maps, 1, patch=patch)
    for i in range(2):
        sums = maps[i, 0].reshape(4, patch, 4, patch).sum(axis=(1, 3)).flatten()
        order = torch.sort(sums, descending=True, stable=True).indices
        img = x[i].clone()
        curve = [scores(model, img[None], 1, "prob")[0]]
        for k in range(16):  # every region, most relevant first, to black
            r, q = divmod(int(order[k]), 4)
            img[:, r * patch : (r + 1) * patch, q * patch : (q + 1) * patch] = 0.0
            curve.append(scores(model, img[None], 1, "prob")[0])
        area = np.trapezoid(curve, np.linspace(0, 1, len(curve)))
        assert float(got[i]) == pytest.approx(area, abs=1e-6)


def test_selectivity_uneven_regions_and_arguments():
    model, x, maps = setup()
    # 16 = 3 regions of 6, 6, 4 per side: the last row and column are smaller
    got = selectivity(model, x, maps, 1, patch=6)
    assert got.shape == (2,) and bool(torch.isfinite(got).all())
    with pytest.raises(ValueError, match="patch"):
        METRICS.get("selectivity").build(patch=0)
    assert not METRICS.get("selectivity").build().higher_is_better


def test_sensitivity_n_equals_a_naive_loop():
    from unmask.metrics.faithfulness import sensitivity_n, sensitivity_n_curve

    model, x, maps = setup()
    runs, fractions = 9, (0.05, 0.5)
    sizes, curve = sensitivity_n_curve(model, x, maps, 1, fractions=fractions, runs=runs, seed=3)
    assert sizes == [13, 128]
    gen = torch.Generator().manual_seed(3)
    perms = [torch.rand(runs, SIZE * SIZE, generator=gen).argsort(1) for _ in sizes]
    for i in range(2):
        base = scores(model, x[i : i + 1], 1)[0]
        for k, size in enumerate(sizes):
            sums, drops = [], []
            for r in range(runs):
                idx = perms[k][r, :size]
                img = x[i].clone().reshape(3, -1)
                img[:, idx] = 0.0  # black
                drops.append(base - scores(model, img.reshape(1, 3, SIZE, SIZE), 1)[0])
                sums.append(float(maps[i].flatten()[idx].sum()))
            assert float(curve[i, k]) == pytest.approx(np.corrcoef(sums, drops)[0, 1], abs=1e-6)
    mean = sensitivity_n(model, x, maps, 1, fractions=fractions, runs=runs, seed=3)
    torch.testing.assert_close(mean, curve.mean(1))
    again = sensitivity_n(model, x, maps, 1, fractions=fractions, runs=runs, seed=3)
    assert torch.equal(mean, again)
    assert not torch.equal(
        mean, sensitivity_n(model, x, maps, 1, fractions=fractions, runs=runs, seed=4)
    )


def test_sensitivity_n_arguments_are_checked():
    for bad, match in (
        ({"fractions": (0.0,)}, "fractions"),
        ({"fractions": ()}, "fractions"),
        ({"runs": 0}, "runs"),
        ({"seed": -1}, "seed"),
        ({"fractions": "0.1"}, "fractions"),
    ):
        with pytest.raises((ValueError, TypeError), match=match):
            METRICS.get("sensitivity_n").build(**bad)


def test_irof_equals_a_naive_loop():
    from skimage.segmentation import slic

    from unmask.metrics.irof import irof

    model, _, _ = setup()
    x = region_images(2, 32, seed=4)
    maps = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    maps += region_mask(32, 32).double()
    got = irof(model, x, maps, 1)
    for i in range(2):
        img = x[i].permute(1, 2, 0).double().numpy()
        labels = slic(img, n_segments=100, compactness=10, sigma=0, start_label=0, channel_axis=-1)
        _, labels = np.unique(labels, return_inverse=True)
        labels = labels.reshape(32, 32)
        a = maps[i, 0].numpy()
        means = np.array([a[labels == k].mean() for k in range(labels.max() + 1)])
        order = np.argsort(-means, kind="stable")
        colour = x[i].mean(dim=(1, 2))  # each image's mean colour
        cur = x[i].clone()
        base = scores(model, x[i : i + 1], 1, "prob")[0]
        curve = [1.0]
        for k in order:
            cur[:, torch.from_numpy(labels == k)] = colour[:, None]
            curve.append(scores(model, cur[None], 1, "prob")[0] / base)
        aoc = 1 - np.trapezoid(curve, np.linspace(0, 1, len(curve)))
        assert float(got[i]) == pytest.approx(aoc, abs=1e-6)


def test_irof_arguments_are_checked():
    for bad, match in (
        ({"n_segments": 0}, "n_segments"),
        ({"compactness": 0}, "compactness"),
        ({"sigma": -1}, "sigma"),
        ({"score": "odd"}, "score"),
    ):
        with pytest.raises(ValueError, match=match):
            METRICS.get("irof").build(**bad)
    assert METRICS.get("irof").build().higher_is_better


def _naive_infidelity(model, x, maps, target, feature_masks, fill, normalise):
    """Per image, per perturbation: I = x - x̃, Iᵀs over pixels and channels, the logit drop."""
    out = []
    for i in range(x.shape[0]):
        up = torch.nn.functional.interpolate(
            maps[i : i + 1].double(), size=x.shape[-2:], mode="nearest"
        )[0, 0]
        base = scores(model, x[i : i + 1], target)[0]
        dots, drops = [], []
        for m in feature_masks:
            mm = torch.nn.functional.interpolate(
                m[None].float(), size=x.shape[-2:], mode="nearest"
            )[0, 0]
            pert = x[i] * (1 - mm) + fill(x[i]) * mm
            diff = (x[i] - pert).double()
            dots.append(float(sum((diff[c] * up).sum() for c in range(3))))
            drops.append(base - scores(model, pert[None], target)[0])
        dots, drops = np.array(dots), np.array(drops)
        if normalise:
            dots = dots * (dots @ drops) / (dots @ dots)
        out.append(np.mean((dots - drops) ** 2))
    return np.array(out)


def test_infidelity_equals_a_naive_loop():
    from unmask.metrics.infidelity import infidelity, square_masks

    model, x, maps = setup()
    squares = square_masks(7, (SIZE, SIZE), 3, seed=2)
    # the squares are uniform among the positions inside the map, drawn rows then columns
    gen = torch.Generator().manual_seed(2)
    tops = torch.randint(0, 14, (7,), generator=gen)
    lefts = torch.randint(0, 14, (7,), generator=gen)
    for k in range(7):
        ref = torch.zeros(SIZE, SIZE)
        ref[tops[k] : tops[k] + 3, lefts[k] : lefts[k] + 3] = 1
        assert torch.equal(squares[k, 0], ref)
    for normalise in (True, False):
        got = infidelity(model, x, maps, 1, samples=7, patch=3, seed=2, normalise=normalise)
        ref = _naive_infidelity(model, x, maps, 1, squares, torch.zeros_like, normalise)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-9)


def test_infidelity_with_given_masks_a_coarse_map_and_a_mask_dependent_removal():
    from unmask.metrics.infidelity import infidelity

    model, x, _ = setup()
    coarse = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    masks = (torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(4)) < 0.4).float()

    def tinted(images, m):  # no fill(x): the engine calls it on every chunk
        return images * (1 - m) + 0.3 * m

    got = infidelity(
        model, x, coarse, 0, masks=masks, removal=tinted, normalise=False, batch_size=3
    )
    ref = _naive_infidelity(model, x, coarse, 0, masks, lambda im: torch.full_like(im, 0.3), False)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="masks: expected shape"):
        infidelity(model, x, coarse, masks=masks[..., :2])
    with pytest.raises(ValueError, match="patch: expected at most"):
        infidelity(model, x, coarse, patch=5)


def test_infidelity_is_zero_for_the_exact_attribution_of_a_linear_model():
    """With a black fill, I = x on the removed pixels and the region model's logit drop is
    ``4 / |box| · Σ_removed∩box (r - (g + b) / 2)``: the map ``4 / |box| · (r - (g + b) / 2) /
    (r + g + b)`` on the box (0 elsewhere) predicts every drop exactly."""
    from unmask.metrics.infidelity import infidelity

    model, x, _ = setup()
    box = region_mask(SIZE, SIZE).double()
    r, g, b = x.double().unbind(1)
    exact = (4 / box.sum() * box[:, 0] * (r - (g + b) / 2) / (r + g + b))[:, None]
    hits = dict(samples=40, patch=4, seed=1)
    assert float(infidelity(model, x, exact, 1, normalise=False, **hits).max()) < 1e-10
    half = infidelity(model, x, exact / 2, 1, normalise=False, **hits)
    assert float(half.min()) > 1e-4  # a wrong scale is infidelity unless normalised
    assert float(infidelity(model, x, exact / 2, 1, **hits).max()) < 1e-10
    assert float(infidelity(model, x, box.expand(2, 1, SIZE, SIZE), 1, **hits).min()) > 1e-6


def test_infidelity_arguments_are_checked():
    for bad, exc, match in (
        ({"samples": 0}, ValueError, "samples"),
        ({"patch": 0}, ValueError, "patch"),
        ({"seed": -1}, ValueError, "seed"),
        ({"normalise": "yes"}, TypeError, "normalise"),
        ({"score": "odd"}, ValueError, "score"),
    ):
        with pytest.raises(exc, match=match):
            METRICS.get("infidelity").build(**bad)
    assert not METRICS.get("infidelity").build().higher_is_better
