"""Dabkowski & Gal's saliency metric: known answers on the region model."""

from __future__ import annotations

import math

import pytest
import torch

from unmask.metrics.saliency_metric import (
    SaliencyMetric,
    crop_and_resize,
    saliency_metric,
    select_saliency_alpha,
)
from unmask.scoring import Scorer
from unmask.testing import region_box, region_mask


def test_crop_and_resize_samples_exactly_the_box():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    # same size box -> identity
    assert torch.allclose(crop_and_resize(x, torch.tensor([[0.0, 0, 8, 8]])), x, atol=1e-5)
    # a 4x4 box resized to 4x4 is the plain slice
    out = crop_and_resize(x, torch.tensor([[2.0, 1, 6, 5]]), (4, 4))
    assert torch.allclose(out, x[..., 1:5, 2:6], atol=1e-4)
    # a 2x2 box upsampled to 8x8 keeps its corner values and stays in their range
    up = crop_and_resize(x, torch.tensor([[3.0, 3, 5, 5]]))
    assert up.amin().item() == pytest.approx(27.0) and up.amax().item() == pytest.approx(36.0)


def test_crop_and_resize_equals_crop_then_interpolate():
    x = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[3.0, 2, 9, 7], [0, 0, 24, 20], [10, 5, 11, 6]])
    out = crop_and_resize(x, boxes)
    for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        ref = torch.nn.functional.interpolate(
            x[i : i + 1, :, y0:y1, x0:x1], size=(20, 24), mode="bilinear", align_corners=False
        )
        assert torch.allclose(out[i : i + 1], ref, atol=1e-5)


def test_value_matches_the_formula_by_hand(region_model, region_images):
    size = region_images.shape[-1]
    t, left, b, r = region_box(size, size)
    sal = region_mask(size, size).float().expand(2, 1, size, size)
    value = saliency_metric(region_model, region_images, sal, target=1, alpha=0.5)
    crop = torch.nn.functional.interpolate(
        region_images[..., t:b, left:r], size=(size, size), mode="bilinear", align_corners=False
    )
    p = Scorer(region_model)(crop, torch.ones(2, dtype=torch.long))
    area = (b - t) * (r - left) / size**2  # 0.0625 > 0.05
    expected = math.log(area) - torch.log(p)
    assert torch.allclose(value, expected, atol=1e-4)


def test_area_floor_applies_to_tiny_boxes(region_model, region_images):
    size = region_images.shape[-1]
    t, left, _, _ = region_box(size, size)
    sal = torch.zeros(2, 1, size, size)
    sal[..., t + 2, left + 2] = 1.0  # one red pixel: a 1/1024 box, floored at 0.05
    value = saliency_metric(region_model, region_images, sal, target=1)
    crop = region_images[..., t + 2 : t + 3, left + 2 : left + 3].expand(-1, -1, size, size)
    p = Scorer(region_model)(crop, torch.ones(2, dtype=torch.long))
    assert torch.allclose(value, math.log(0.05) - torch.log(p), atol=1e-4)


def test_map_on_the_box_beats_random_maps(region_model, region_images):
    size = region_images.shape[-1]
    good = region_mask(size, size).float().expand(2, 1, size, size)
    rand = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    metric = SaliencyMetric(alpha=0.5)
    assert metric.higher_is_better is False and metric.kind == "faithfulness"
    g, rnd = metric(region_model, region_images, good), metric(region_model, region_images, rand)
    assert (g < rnd - 1.0).all()  # log(1/16) - log(0.99) vs ~log(1) - log(p) of a whole-image crop


def test_select_alpha_prefers_the_box_over_the_halo(region_model, region_images):
    size = region_images.shape[-1]
    sal = torch.full((2, 1, size, size), 0.2)
    sal[region_mask(size, size).expand(2, 1, size, size)] = 1.0
    choice = select_saliency_alpha(region_model, region_images, sal, alphas=(0.0, 0.1, 0.5, 0.9))
    assert choice.alpha == 0.5  # smallest alpha that drops the 0.2 halo
    assert choice.errors[0] > choice.errors[2]


def test_coarse_maps_are_upsampled_to_the_image(region_model, region_images):
    coarse = torch.zeros(2, 1, 4, 4)
    coarse[..., 1, 1] = 1.0  # the 8x8 cell at rows/cols 8..15: the model's box at 32x32
    fine = torch.nn.functional.interpolate(
        coarse, size=(32, 32), mode="bilinear", align_corners=False
    )
    assert torch.equal(
        saliency_metric(region_model, region_images, coarse),
        saliency_metric(region_model, region_images, fine),
    )


def test_default_target_is_top1(region_model, region_images):
    sal = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    assert torch.equal(
        saliency_metric(region_model, region_images, sal),
        saliency_metric(region_model, region_images, sal, target=[1, 1]),
    )


def test_bad_inputs(region_model, region_images):
    with pytest.raises(ValueError, match="matching the images"):
        saliency_metric(region_model, region_images, torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="alpha"):
        SaliencyMetric(alpha=-0.1)
    with pytest.raises(TypeError, match="model"):
        saliency_metric(torch.nn.Linear(2, 2), region_images, torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="target"):
        saliency_metric(region_model, region_images, torch.rand(2, 1, 32, 32), target=5)
