"""Hallucination score: zero for x̂ = x, positive when artificial edges are added."""

from __future__ import annotations

import math

import pytest
import torch

from unmask.metrics.hallucination import (
    HallucinationScore,
    canny_edges,
    hallucination_score,
    shearlet_edge_measure,
    shearlet_edges,
)
from unmask.registry import METRICS


def _image(size=64):
    """A smooth background with one bright square (four straight edges)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    x = (0.2 + 0.1 * xx).expand(1, 3, size, size).clone()
    x[..., 16:40, 16:40] = 0.8
    return x


@pytest.mark.parametrize("detector", ["shearlet", "canny"])
def test_zero_for_identical_images(detector):
    x = _image()
    assert float(hallucination_score(x, x, detector)) == 0.0


@pytest.mark.parametrize("detector", ["shearlet", "canny"])
def test_positive_with_artificial_edges(detector):
    x = _image()
    x_hat = x.clone()
    x_hat[..., 48:56, 8:60] = 1.0  # a bright bar where the image has no edge
    score = float(hallucination_score(x, x_hat, detector))
    assert score > 0.2


def test_dimmed_image_is_not_hallucination():
    """x̂ is divided by its maximum first: a uniformly dimmed copy has the same edges."""
    x = _image()
    assert float(hallucination_score(x, 0.5 * x)) == 0.0


def test_shearlet_edges_find_the_square_and_its_orientation_free():
    x = _image()[:, :1]
    edges = shearlet_edges(x)[0, 0]
    assert edges[16:40, 15:18].any() and edges[15:18, 16:40].any()  # vertical and horizontal sides
    assert not edges[26:30, 26:30].any()  # flat inside
    measure = shearlet_edge_measure(x * 255)
    assert 0 <= float(measure.min()) and float(measure.max()) <= 1


def test_canny_shape_and_no_edges_gives_nan():
    flat = torch.full((2, 3, 32, 32), 0.5)
    assert canny_edges(flat[:, :1]).shape == (2, 1, 32, 32)
    assert all(math.isnan(v) for v in hallucination_score(flat, flat).tolist())


def test_registered_metric():
    metric = METRICS.get("hallucination_score").build()
    assert metric.kind == "artifact" and metric.higher_is_better is False
    x = _image()
    assert metric(x, x).shape == (1,)
    custom = HallucinationScore(lambda g: g > 0.5)
    assert float(custom(x, x)) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="^detector: "):
        hallucination_score(_image(), _image(), "sobel")
    with pytest.raises(ValueError, match="^x_hat: "):
        hallucination_score(_image(), _image()[..., :32])
