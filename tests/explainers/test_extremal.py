"""Extremal perturbations: smooth masks against a naive loop, the area loss, the blur pyramid,
the area achieved and the preserve / delete games on the region model; TorchRay side by side."""

from __future__ import annotations

import math

import pytest
import torch

import unmask
from unmask.explainers.extremal import (
    BlurPyramid,
    ExtremalPerturbation,
    SmoothMask,
    area_loss,
    area_reference,
)
from unmask.models import Classifier
from unmask.removal import Constant, Inpaint, gaussian_blur
from unmask.testing import RegionModel, region_images, region_mask

# 32x32 images: no flip (the region model is not mirror-symmetric), a faster area schedule, and
# a blur pyramid scaled to the image (sigma 20 flattens a 32-pixel image at every level, which
# leaves the delete game without a gradient at its all-ones start).
FAST = {"step": 4, "sigma": 6, "steps": 80, "jitter": False, "area_weight": 3,
        "area_growth": 1.06, "lr": 0.1, "max_blur": 4.0}


def _naive_smooth_mask(p: torch.Tensor, size, step, sigma, temperature=20.0):
    """The paper's smooth-max convolution, pixel by pixel, straight from the definition."""
    h, w = size
    gh, gw = p.shape[-2:]
    radius = math.ceil(sigma / step) + 1
    out = torch.zeros(p.shape[0], 1, h, w)
    for v in range(h):
        for u in range(w):
            ci, cj = v // step, u // step
            vals = []
            for i in range(ci - radius, ci + radius + 1):
                for j in range(cj - radius, cj + radius + 1):
                    z = math.hypot(v - i * step, u - j * step) / sigma
                    k = math.exp(-2 * max(z - 0.5, 0.0) ** 2)
                    inside = 0 <= i < gh and 0 <= j < gw
                    vals.append(k * p[:, 0, i, j] if inside else torch.zeros(p.shape[0]))
            a = torch.stack(vals, 1)
            out[:, 0, v, u] = (a * torch.softmax(temperature * a, 1)).sum(1)
    return out.clamp(0, 1)


@pytest.mark.parametrize("size,step,sigma", [((12, 10), 3, 4.0), ((9, 9), 4, 2.5)])
def test_smooth_mask_matches_the_definition(size, step, sigma):
    gen = SmoothMask(size, step, sigma)
    p = torch.rand(2, 1, *gen.grid, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gen(p), _naive_smooth_mask(p, size, step, sigma), atol=1e-5, rtol=0)


def test_smooth_mask_is_smooth_and_differentiable():
    gen = SmoothMask((16, 16), 4, 4.0)
    p = torch.zeros(1, 1, 4, 4)
    p[..., 1, 1] = 1.0
    m = gen(p)
    assert float(m[0, 0, 4, 4]) == pytest.approx(1.0, abs=1e-5)  # at the cell centre
    assert float(m[0, 0, 15, 15]) < 0.05
    p = p.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: SmoothMask((9, 9), 3, 3.0)(q.float()).double(),
                                    (torch.rand(1, 1, 3, 3, dtype=torch.double, requires_grad=True),),
                                    eps=1e-3, atol=1e-2)


def test_area_reference_and_loss_hand_example():
    assert area_reference(0.25, 8).tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    ref = area_reference(0.5, 4)[None]
    m = torch.tensor([1.0, 0.0, 0.5, 0.0]).reshape(1, 1, 2, 2)
    # sorted m = (0, 0, 0.5, 1) against (0, 0, 1, 1): mean of (0, 0, 0.25, 0)
    assert float(area_loss(m, ref)) == pytest.approx(0.0625)
    perfect = torch.tensor([0.0, 1.0, 1.0, 0.0]).reshape(1, 1, 2, 2)
    assert float(area_loss(perfect, ref)) == 0.0


def test_blur_pyramid_levels():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    pyr = BlurPyramid(x, levels=3, max_blur=4.0)
    idx = torch.tensor([1, 0])
    ones = torch.ones(2, 1, 16, 16)
    torch.testing.assert_close(pyr(ones, idx), x[idx])  # keep = 1: the image itself
    torch.testing.assert_close(pyr(0 * ones, idx), gaussian_blur(x, 4.0)[idx])  # most blurred
    torch.testing.assert_close(pyr(0.5 * ones, idx), gaussian_blur(x, 2.0)[idx])  # level 1 of 3
    quarter = 0.5 * gaussian_blur(x, 4.0) + 0.5 * gaussian_blur(x, 2.0)
    torch.testing.assert_close(pyr(0.25 * ones, idx), quarter[idx])  # linear between levels


def test_achieves_the_requested_areas(region_model, region_images):
    e = ExtremalPerturbation(region_model, areas=[0.1, 0.2], **dict(FAST, steps=100)).explain(
        region_images, 1)
    assert e.extras["keep_masks"].shape == (2, 2, 32, 32)
    area = e.extras["area"]
    assert torch.allclose(area, torch.tensor([[0.1, 0.2]] * 2), atol=0.05), area
    # nearly binary: few pixels halfway (the smooth edge of a sigma-6 mask on 32 pixels is wide)
    mid = ((e.extras["keep_masks"] > 0.2) & (e.extras["keep_masks"] < 0.8)).float().mean()
    assert float(mid) < 0.2
    # the saliency is the sum of the masks
    torch.testing.assert_close(e.saliency, e.extras["keep_masks"].sum(1, keepdim=True))


def test_preserve_keeps_the_score_delete_drops_it(region_model, region_images):
    x = region_images
    base = region_model(x)[:, 1].detach()
    keep = ExtremalPerturbation(region_model, areas=0.15, variant="preserve", **FAST).explain(x, 1)
    drop = ExtremalPerturbation(region_model, areas=0.15, variant="delete", **FAST).explain(x, 1)
    box = region_mask(32, 32)
    for e in (keep, drop):  # both games find the box
        m = e.extras["keep_masks"][:, :1]
        assert float((m * box).sum() / m.sum()) > 0.35  # the box is 6% of the image
        assert float(m[box.expand_as(m)].mean()) > 0.8
    # preserving the region keeps the logit near the original; deleting it kills it
    assert bool((keep.extras["preserve_score"][:, 0] > 0.7 * base).all())
    assert bool((drop.extras["delete_score"][:, 0] < 0.3 * base).all())
    dual = ExtremalPerturbation(region_model, areas=0.15, variant="dual", **FAST).explain(x, 1)
    assert bool((dual.extras["preserve_score"] > dual.extras["delete_score"]).all())


def test_differentiable_removal_and_rejection(region_model, region_images):
    e = ExtremalPerturbation(region_model, Constant("black"), areas=0.15, **FAST).explain(region_images, 1)
    box = region_mask(32, 32)
    assert float(e.extras["keep_masks"][:, :1][box.expand(2, 1, 32, 32)].mean()) > 0.8
    with pytest.raises(ValueError, match=r"^removal: extremal .*differentiable"):
        ExtremalPerturbation(region_model, Inpaint("telea"))


def test_defaults_follow_torchray(region_model):
    e = unmask.make_explainer(region_model, "smoothmask")
    assert isinstance(e, ExtremalPerturbation)
    assert (e.steps, e.lr, e.momentum, e.step, e.sigma) == (800, 0.01, 0.9, 7, 21.0)
    assert (e.area_weight, e.area_growth, e.levels, e.max_blur) == (300.0, 1.0035, 8, 20.0)
    assert e.areas == (0.1,) and e.variant == "preserve" and e.score == "logit" and e.jitter


@pytest.mark.parametrize("bad", [{"areas": 0.0}, {"areas": [0.1, 1.5]}, {"areas": []},
                                 {"variant": "both"}, {"levels": 1}, {"step": 0}])
def test_bad_hyperparameters(region_model, bad):
    with pytest.raises((ValueError, TypeError)):
        ExtremalPerturbation(region_model, **bad)


@pytest.mark.slow
def test_agrees_with_torchray():
    """Same model, image, area, step and sigma: our mask overlaps TorchRay's (IoU of the > 0.5
    regions) and both cover the box. TorchRay measures the area on a mask with a margin, so its
    mask is larger inside the image; ours is closer to the requested area."""
    pytest.importorskip("torchray")
    from torchray.attribution.extremal_perturbation import extremal_perturbation

    torch.manual_seed(0)
    model = Classifier(RegionModel(gain=40.0), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=None,
                       class_names=["a", "b"])
    x = region_images(1, 64)
    box = region_mask(64, 64)[0, 0]
    for area in (0.1, 0.2):
        theirs, _ = extremal_perturbation(model, x, 1, areas=[area], step=4, sigma=8, max_iter=400,
                                          jitter=False)
        ours = unmask.explain(model, x, "extremal", target=1, areas=area, step=4, sigma=8,
                              steps=400, jitter=False)
        a, b = theirs[0, 0] > 0.5, ours.extras["keep_masks"][0, 0] > 0.5
        iou = float((a & b).sum() / (a | b).sum())
        assert iou > 0.6, iou
        assert abs(float(ours.extras["area"]) - area) <= abs(float(theirs.mean()) - area) + 0.01
        assert bool(a[box].float().mean() > 0.8) and bool(b[box].float().mean() > 0.8)
