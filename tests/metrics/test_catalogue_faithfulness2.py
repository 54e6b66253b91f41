"""Selectivity, sensitivity-n, IROF and infidelity against naive loops written from the papers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unmask.metrics import METRICS
from unmask.metrics.faithfulness import selectivity
from unmask.testing import region_images, region_mask, region_model

SIZE = 16


def setup():
    model, x = region_model(), region_images(2, SIZE, seed=2)
    gen = torch.Generator().manual_seed(5)
    maps = torch.rand(2, 1, SIZE, SIZE, generator=gen, dtype=torch.float64)
    maps += 2 * region_mask(SIZE, SIZE).double()  # partly right
    return model, x, maps


def scores(model, images, target, kind="logit"):
    with torch.no_grad():
        z = model(images).double()
    if kind == "prob":
        z = torch.softmax(z, dim=1)
    return z[:, target].numpy()


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
            img[:, r * patch:(r + 1) * patch, q * patch:(q + 1) * patch] = 0.0
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
