"""The quantus-catalogue faithfulness metrics against naive loops written from the papers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from _catalogue_case import SIZE, scores, setup  # tests/metrics/_catalogue_case.py

from unmask.metrics import METRICS
from unmask.metrics.deletion import Deletion, DeletionCorrelation
from unmask.metrics.faithfulness import (
    faithfulness_correlation,
    monotonicity,
    monotonicity_correlation,
    region_perturbation,
)
from unmask.numerics import spearman_rows
from unmask.removal import Constant, Noise


def test_faithfulness_correlation_equals_a_naive_loop():
    model, x, maps = setup()
    runs, size = 12, 40
    got = faithfulness_correlation(model, x, maps, target=1, subset_size=size, runs=runs, seed=7)
    # the same subsets: the seed's permutations, first `size` pixels of each
    perm = torch.rand(runs, SIZE * SIZE, generator=torch.Generator().manual_seed(7)).argsort(1)
    for i in range(2):
        base = scores(model, x[i : i + 1], 1)[0]
        drops, sums = [], []
        for r in range(runs):
            idx = perm[r, :size]
            img = x[i].clone().reshape(3, -1)
            img[:, idx] = 0.0  # black
            drops.append(base - scores(model, img.reshape(1, 3, SIZE, SIZE), 1)[0])
            sums.append(float(maps[i].flatten()[idx].sum()))
        assert float(got[i]) == pytest.approx(np.corrcoef(sums, drops)[0, 1], abs=1e-5)
    with pytest.raises(ValueError, match="subset_size: expected fewer"):
        faithfulness_correlation(model, x, maps, subset_size=SIZE * SIZE)


def test_faithfulness_estimate_is_the_non_cumulative_deletion_correlation():
    model, x, maps = setup()
    metric = METRICS.get("faithfulness_estimate").build(max_steps=64)  # 4 pixels per block
    assert isinstance(metric, DeletionCorrelation) and metric.higher_is_better
    got = metric(model, x, maps, 1)
    order = torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices
    for i in range(2):
        base = scores(model, x[i : i + 1], 1)[0]
        drops, atts = [], []
        for k in range(64):
            idx = order[i, 4 * k : 4 * k + 4]
            img = x[i].clone().reshape(3, -1)
            img[:, idx] = 0.0
            drops.append(base - scores(model, img.reshape(1, 3, SIZE, SIZE), 1)[0])
            atts.append(float(maps[i].flatten()[idx].sum()))
        assert float(got[i]) == pytest.approx(np.corrcoef(atts, drops)[0, 1], abs=1e-5)


def test_pixel_flipping_is_the_deletion_auc():
    model, x, maps = setup()
    metric = METRICS.get("pixel_flipping").build()
    assert isinstance(metric, Deletion) and not metric.higher_is_better
    torch.testing.assert_close(metric(model, x, maps), Deletion()(model, x, maps))


def test_region_perturbation_equals_a_naive_loop():
    model, x, maps = setup()
    patch, regions = 4, 6
    got = region_perturbation(model, x, maps, 1, patch=patch, regions=regions)
    fill = Noise("uniform").fill(x)
    for i in range(2):
        sums = maps[i, 0].reshape(4, patch, 4, patch).sum(axis=(1, 3)).flatten()
        order = torch.sort(sums, descending=True, stable=True).indices
        base = scores(model, x[i : i + 1], 1, "prob")[0]
        img, drops = x[i].clone(), [0.0]
        for k in range(regions):
            r, q = divmod(int(order[k]), 4)
            sl = (slice(None), slice(r * patch, (r + 1) * patch), slice(q * patch, (q + 1) * patch))
            img[sl] = fill[i][sl]
            drops.append(base - scores(model, img[None], 1, "prob")[0])
        assert float(got[i]) == pytest.approx(np.mean(drops), abs=1e-6)


def test_monotonicity_equals_a_naive_loop_and_reads_the_sign():
    model, x, maps = setup()
    for target in (0, 1):
        got = monotonicity(model, x, maps, target, max_steps=None)
        for i in range(2):
            order = torch.sort(-maps[i].abs().flatten(), descending=True, stable=True).indices
            img = torch.zeros(3, SIZE * SIZE, dtype=x.dtype)
            preds = []
            for idx in order:
                img[:, idx] = x[i].reshape(3, -1)[:, idx]
                preds.append(scores(model, img.reshape(1, 3, SIZE, SIZE), target, "prob")[0])
            assert float(got[i]) == float(np.all(np.diff(preds) >= 0))
        # revealing red box pixels raises class 1 and lowers class 0, whatever the order
        assert got.tolist() == ([0.0, 0.0] if target == 0 else [1.0, 1.0])


def test_monotonicity_correlation_equals_a_naive_loop():
    model, x, maps = setup()
    samples, blocks = 3, 16  # 16 pixels per block
    got = monotonicity_correlation(model, x, maps, 1, max_steps=blocks, samples=samples, seed=4)
    noise = torch.rand(
        samples, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    ).float()
    for i in range(2):
        a = maps[i].abs().flatten()
        order = torch.sort(-a, descending=True, stable=True).indices  # ascending |s|
        y = scores(model, x[i : i + 1], 1, "prob")[0]
        atts, var = [], []
        for k in range(blocks):
            idx = order[16 * k : 16 * k + 16]
            outs = []
            for d in range(samples):
                img = x[i].clone().reshape(3, -1)
                img[:, idx] = noise[d].reshape(3, -1)[:, idx]
                outs.append(scores(model, img.reshape(1, 3, SIZE, SIZE), 1, "prob")[0])
            var.append(np.mean((np.array(outs) - y) ** 2) / y**2)
            atts.append(float(a[idx].sum()))
        assert float(got[i]) == pytest.approx(scipy.stats.spearmanr(atts, var).statistic, abs=1e-6)


def test_spearman_rows_handles_ties_as_scipy():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (3, 20), generator=gen).double()
    b = torch.randint(0, 5, (3, 20), generator=gen).double()
    for i in range(3):
        ref = scipy.stats.spearmanr(a[i].numpy(), b[i].numpy()).statistic
        assert float(spearman_rows(a, b)[i]) == pytest.approx(ref, abs=1e-12)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="runs"):
        METRICS.get("faithfulness_correlation").build(runs=0)
    with pytest.raises(ValueError, match="patch"):
        METRICS.get("region_perturbation").build(patch=0)
    with pytest.raises(ValueError, match="samples"):
        METRICS.get("monotonicity_correlation").build(samples=0)
    assert Constant("black") == METRICS.get("faithfulness_correlation").build().removal
