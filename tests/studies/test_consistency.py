"""Consistency over a batch (Dasgupta et al. 2022): a hand-counted answer on the region model."""

from __future__ import annotations

import math

import pytest
import torch

from unmask.studies import consistency, discretise_top_n
from unmask.testing import region_box, region_images, region_model


def test_consistency_counts_peers_with_the_same_discretised_map():
    x = region_images(4, 16, seed=0)
    top, left, bottom, right = region_box(16, 16)
    x[2:, 0, top:bottom, left:right] = 0.1  # images 2, 3: no red box, class 0
    model = region_model()
    assert model(x).argmax(1).tolist() == [1, 1, 0, 0]
    s = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.1
    s[:3, 0, 2, 2], s[:3, 0, 5, 1] = 1.0, -0.9  # images 0-2 share their top-2 (and signs)
    s[3, 0, 2, 2], s[3, 0, 5, 1] = 1.0, 0.9  # image 3: the same pixels, another sign
    got = consistency(model, x, s, top_n=2)
    assert got[:3].tolist() == [0.5, 0.5, 0.0] and math.isnan(float(got[3]))
    assert discretise_top_n(s[:1], 2) == [((18, 1), (41, -1))]  # row-major indices


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="^top_n: expected at most the 4 map pixels"):
        discretise_top_n(torch.rand(1, 1, 2, 2), 5)
