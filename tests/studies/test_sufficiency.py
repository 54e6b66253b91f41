"""Sufficiency (Dasgupta et al. 2022) over a batch: scipy's distances and a hand-counted batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from unmask.studies import map_distances, sufficiency
from unmask.testing import REGION_B, region_images, region_mask, region_model


def test_distances_equal_scipy_normalised_by_their_maximum():
    s = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = s.flatten(1).numpy()
    a = a / a.max(axis=1, keepdims=True)
    for name in ("seuclidean", "euclidean"):
        ref = cdist(a, a, name)
        np.testing.assert_allclose(map_distances(s, name).numpy(), ref / ref.max(), atol=1e-12)


def test_pixels_equal_in_every_map_are_left_out():
    s = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s[:, :, 0, :] = 0.0  # a row that is zero in every map: scipy's seuclidean gives NaN
    d = map_distances(s)
    a = s.flatten(1).numpy()
    a = a / a.max(axis=1, keepdims=True)
    ref = cdist(a[:, 6:], a[:, 6:], "seuclidean")
    np.testing.assert_allclose(d.numpy(), ref / ref.max(), atol=1e-12)


def _batch(noise=0.0):
    """Six images: 0-2 predicted 'red box' (class 1), 3-5 whose box is gray (class 0); maps of
    two types, the model's box (a) and another box (b), plus uniform noise."""
    x = region_images(6, 16, seed=0)
    box = region_mask(16, 16)[0, 0]
    x[3:, :, box] = 0.5
    gen = torch.Generator().manual_seed(2)
    a = region_mask(16, 16).double() + noise * torch.rand(6, 1, 16, 16, generator=gen)
    b = region_mask(16, 16, REGION_B).double() + noise * torch.rand(6, 1, 16, 16, generator=gen)
    return x, a, b


def test_maps_that_follow_the_prediction_are_sufficient_and_crossed_maps_are_not():
    model = region_model()
    x, a, b = _batch()
    assert region_model()(x).argmax(1).tolist() == [1, 1, 1, 0, 0, 0]
    good = torch.cat([a[:3], b[3:]])  # the map type follows the prediction
    crossed = torch.stack([(a if k % 2 == 0 else b)[k] for k in range(6)])
    assert sufficiency(model, x, good).tolist() == [1.0] * 6
    # image 0 (type a) is close to 2 (its class) and 4; image 1 (b) to 3 and 5 (neither)
    assert sufficiency(model, x, crossed).tolist() == pytest.approx([0.5, 0.0, 0.5, 0.5, 0.0, 0.5])
    # with noise on every pixel, the standardised distance weighs the noise-only pixels by the
    # inverse of their small variance: the plain Euclidean distance still separates the types
    x, a, b = _batch(noise=0.05)
    good = torch.cat([a[:3], b[3:]])
    crossed = torch.stack([(a if k % 2 == 0 else b)[k] for k in range(6)])
    assert sufficiency(model, x, good, distance="euclidean").tolist() == [1.0] * 6
    assert sufficiency(model, x, crossed, distance="euclidean").tolist() == pytest.approx(
        [0.5, 0.0, 0.5, 0.5, 0.0, 0.5]
    )


def test_no_close_map_gives_nan_and_arguments_are_checked():
    model = region_model()
    x, a, b = _batch(noise=0.05)  # no two maps equal
    out = sufficiency(model, x, torch.cat([a[:3], b[3:]]), threshold=0.0)
    assert all(math.isnan(v) for v in out.tolist())
    with pytest.raises(ValueError, match="threshold"):
        sufficiency(model, x, a, threshold=1.5)
    with pytest.raises(ValueError, match="distance"):
        sufficiency(model, x, a, distance="cosine")
    with pytest.raises(ValueError, match="saliency: expected one map per image"):
        sufficiency(model, x, a[:2])
