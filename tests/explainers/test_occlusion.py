"""Occlusion / SP: agreement with captum's Occlusion, and the pixel-averaging convention."""

from __future__ import annotations

import pytest
import torch

import unmask
from unmask.explainers.occlusion import Occlusion
from unmask.removal import Blur, Constant

captum_attr = pytest.importorskip("captum.attr")


def _captum(model, x, target, patch, stride, fill, score):
    def forward(images):
        logits = model(images)
        return torch.softmax(logits, dim=1) if score == "prob" else logits

    occ = captum_attr.Occlusion(forward)
    out = occ.attribute(
        x,
        sliding_window_shapes=(3, *patch),
        strides=(3, *stride),
        baselines=fill,
        target=target,
        perturbations_per_eval=8,
    )
    return out


@pytest.mark.parametrize(
    ("patch", "stride", "removal", "score"),
    [
        ((8, 8), (4, 4), Constant("mean"), "prob"),
        ((7, 5), (3, 4), Constant("gray"), "logit"),  # (32 - 7) % 3 != 0 and (32 - 5) % 4 != 0
        ((6, 6), (5, 5), Blur(2.0), "prob"),  # uncovered last rows/cols; image-dependent fill
    ],
)
def test_agrees_with_captum(region_model, region_images, patch, stride, removal, score):
    x = region_images
    target = torch.tensor([1, 0])
    ours = Occlusion(
        region_model, removal, patch_size=patch, stride=stride, score=score, batch_size=7
    ).explain(x, target)
    theirs = _captum(region_model, x, target, patch, stride, removal.fill(x), score)
    assert theirs.shape == (2, 3, 32, 32)
    theirs = theirs[:, :1]
    covered = ~torch.isnan(theirs)  # captum leaves 0/0 where no window covers a pixel
    torch.testing.assert_close(
        ours.saliency[covered], theirs[covered].float(), atol=1e-6, rtol=1e-5
    )
    # our convention for uncovered pixels: 0 (captum divides 0 by 0 there)
    assert torch.all(ours.saliency[~covered] == 0)


def test_pixel_average_convention(region_model, region_images):
    """Each pixel gets the mean of A_k over the patches covering it; uncovered pixels get 0."""
    e = Occlusion(region_model, patch_size=8, stride=5).explain(region_images, target=1)
    grid = e.extras["grid"]  # positions 0, 5, 10, 15, 20 along each axis; pixels 28..31 uncovered
    assert grid.shape == (2, 5, 5)
    s = e.saliency[:, 0]
    torch.testing.assert_close(s[:, 0, 0], grid[:, 0, 0])  # one patch
    torch.testing.assert_close(s[:, 6, 7], grid[:, :2, :2].mean((1, 2)))  # rows 0,5 x cols 0,5
    torch.testing.assert_close(s[:, 12, 3], grid[:, 1:3, 0].mean(1))  # rows 5,10 x col 0
    assert torch.all(s[:, 28:, :] == 0) and torch.all(s[:, :, 28:] == 0)
    assert torch.all(s[:, 27, 27] == grid[:, 4, 4])


def test_grid_is_score_drop(region_model, region_images):
    """A_k = s_c(x) - s_c(x with patch k removed), checked by scoring one patch by hand."""
    model, x = region_model, region_images[:1]
    e = Occlusion(model, patch_size=8, stride=8).explain(x, target=1)
    removed = x.clone()
    removed[:, :, 8:16, 8:16] = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    p = torch.softmax(model(torch.cat([x, removed])), 1)[:, 1]
    torch.testing.assert_close(e.extras["grid"][0, 1, 1], p[0] - p[1])
    torch.testing.assert_close(e.extras["base_score"][0], p[0])


def test_sp_g_is_occlusion_with_inpainting(region_model):
    e = unmask.make_explainer(region_model, "sp-g", patch_size=8, stride=8)
    assert isinstance(e, Occlusion) and repr(e.removal) == "Inpaint('telea')"
