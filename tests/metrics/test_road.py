"""ROAD: the noisy linear imputation against a naive dense solver, and the MoRF / LeRF metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unmask.metrics.road import RoadCombined, RoadLeRF, RoadMoRF, road_curve
from unmask.removal import NoisyLinearImputation, make_removal
from unmask.testing import region_images, region_mask, region_model

WEIGHTS = {
    (dr, dq): (1 / 6 if dr == 0 or dq == 0 else 1 / 12)
    for dr in (-1, 0, 1)
    for dq in (-1, 0, 1)
    if (dr, dq) != (0, 0)
}


def dense_impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """One equation per removed pixel, written pixel by pixel, solved densely per channel."""
    c, h, w = image.shape
    pixels = [(r, q) for r in range(h) for q in range(w) if removed[r, q]]
    at = {p: i for i, p in enumerate(pixels)}
    out = image.copy()
    for ch in range(c):
        a = np.zeros((len(pixels), len(pixels)))
        b = np.zeros(len(pixels))
        for i, (r, q) in enumerate(pixels):
            for (dr, dq), wgt in WEIGHTS.items():
                nr, nq = r + dr, q + dq
                if not (0 <= nr < h and 0 <= nq < w):
                    continue
                a[i, i] += wgt
                if removed[nr, nq]:
                    a[i, at[(nr, nq)]] -= wgt
                else:
                    b[i] += wgt * image[ch, nr, nq]
        sol = np.linalg.solve(a, b)
        for i, (r, q) in enumerate(pixels):
            out[ch, r, q] = sol[i]
    return out


def test_imputation_matches_a_dense_solver_and_is_the_neighbour_mean():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 5, 6, generator=gen, dtype=torch.float64)
    mask = (torch.rand(1, 1, 5, 6, generator=gen) > 0.5).double()
    mask[..., 0, 0] = 1  # a corner: 3 neighbours, weights renormalised
    mask[..., 2, 5] = 1  # an edge
    out = NoisyLinearImputation(noise=0)(x, mask)
    removed = mask[0, 0].bool().numpy()
    ref = dense_impute(x[0].numpy(), removed)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-12, rtol=0)
    # every imputed pixel is the renormalised weighted mean of its neighbours in the output
    o = out[0].numpy()
    for r, q in zip(*np.nonzero(removed), strict=True):
        nb = [
            ((r + dr, q + dq), wgt)
            for (dr, dq), wgt in WEIGHTS.items()
            if 0 <= r + dr < 5 and 0 <= q + dq < 6
        ]
        mean = sum(wgt * o[:, a, b] for (a, b), wgt in nb) / sum(wgt for _, wgt in nb)
        np.testing.assert_allclose(o[:, r, q], mean, atol=1e-12)
    assert torch.equal(out[mask.expand_as(out) == 0], x[mask.expand_as(x) == 0])


def test_noise_is_seeded_and_only_on_imputed_pixels():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 3:7] = 1
    clean = NoisyLinearImputation(noise=0)(x, mask)
    a, b = NoisyLinearImputation(seed=3)(x, mask), NoisyLinearImputation(seed=3)(x, mask)
    assert torch.equal(a, b)
    diff = (a - clean)[mask.expand_as(a) > 0]
    assert 0.005 < float(diff.std()) < 0.02  # σ = 0.01
    assert torch.equal(a[mask.expand_as(a) == 0], x[mask.expand_as(x) == 0])
    assert not torch.equal(a, NoisyLinearImputation(seed=4)(x, mask))
    # a batch equals single calls, broadcasting one image over several masks too
    assert torch.equal(
        torch.cat([NoisyLinearImputation(seed=3)(x[i : i + 1], mask[i : i + 1]) for i in range(2)]),
        a,
    )
    assert torch.equal(NoisyLinearImputation(seed=3)(x[:1], mask), a[:1].expand(2, -1, -1, -1))


def test_everything_removed_and_nothing_removed():
    x = torch.rand(1, 3, 4, 4)
    r = NoisyLinearImputation(noise=0)
    assert torch.equal(r(x, torch.zeros(1, 1, 4, 4)), x)
    assert torch.equal(r(x, torch.ones(1, 1, 4, 4)), torch.full_like(x, 0.5))


def test_spec_round_trips_and_bad_arguments():
    assert make_removal("road").spec == "road"
    r = make_removal("road:noise=0.02,seed=3")
    assert isinstance(r, NoisyLinearImputation) and r.noise == 0.02 and r.seed == 3
    assert r.spec == "road:noise=0.02,seed=3" and make_removal(r.spec) == r
    assert not r.differentiable and not hasattr(r, "fill")
    with pytest.raises(ValueError, match="noise: expected a finite number >= 0"):
        NoisyLinearImputation(noise=-1)
    with pytest.raises(TypeError, match="seed"):
        NoisyLinearImputation(seed=1.5)


def test_road_prefers_the_map_on_the_box():
    model, x = region_model(), region_images(2, 32, seed=1)
    good = region_mask(32, 32).float().expand(2, 1, 32, 32)
    rand = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    for metric in (RoadMoRF(), RoadLeRF(), RoadCombined()):
        g, r = metric(model, x, good).mean(), metric(model, x, rand).mean()
        assert (g > r + 0.02) if metric.higher_is_better else (g < r - 0.02), (metric, g, r)


def test_road_curve_removes_the_given_share_in_order():
    model, x = region_model(), region_images(1, 20)
    good = region_mask(20, 20).float()  # the box: 25 of 400 pixels
    morf = road_curve(model, x, good, percentages=(5, 50))
    lerf = road_curve(model, x, good, order="lerf", percentages=(5, 50))
    # MoRF 5 % = 20 pixels all inside the box: the score falls; LeRF keeps the box intact
    assert float(morf.scores[0, 0]) < float(morf.base[0]) - 0.05
    torch.testing.assert_close(lerf.scores[0], lerf.base[0].expand(2), atol=1e-6, rtol=0)
    combined = RoadCombined(percentages=(5, 50))(model, x, good)
    torch.testing.assert_close(combined, (lerf.mean_change() - morf.mean_change()) / 2)


def test_road_arguments_are_checked():
    with pytest.raises(ValueError, match="percentages"):
        RoadMoRF(percentages=(10, 120))
    with pytest.raises(ValueError, match="order"):
        road_curve(region_model(), region_images(1, 8), torch.rand(1, 1, 8, 8), order="up")
