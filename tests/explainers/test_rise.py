"""RISE: the saliency equals the paper's formula computed naively on the same masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unmask.explainers.rise import Rise, sample_rise_masks
from unmask.removal import Constant


def test_saliency_equals_naive_formula(region_model, region_images):
    x = region_images
    explainer = Rise(region_model, masks=64, s=5, p=0.4, seed=7, batch_size=5)
    e = explainer.explain(x, target=[1, 0])
    keep = explainer.sample((32, 32)).render()  # (N, 1, H, W): the same masks, replayed
    assert torch.equal(keep, e.extras["masks"].render())
    fill = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    for i, t in enumerate([1, 0]):
        sal = torch.zeros(32, 32, dtype=torch.float64)
        for n in range(keep.shape[0]):  # the naive loop of the paper's definition
            image = x[i : i + 1] * keep[n] + fill * (1 - keep[n])
            with torch.no_grad():
                score = torch.softmax(region_model(image), 1)[0, t]
            sal += float(score) * keep[n, 0].double()
        sal /= keep.shape[0] * 0.4
        torch.testing.assert_close(e.saliency[i, 0].double(), sal, atol=1e-6, rtol=1e-5)


def test_masks_follow_the_reference_construction():
    """grid s×s kept with prob p, bilinear upsampling to (s+1)·cell, crop at shift < cell."""
    gen = torch.Generator().manual_seed(0)
    rm = sample_rise_masks(300, (30, 26), s=6, p=0.3, generator=gen)
    assert rm.cell == (5, 5) and rm.grids.shape == (300, 6, 6)
    assert rm.shifts.min() >= 0 and rm.shifts[:, 0].max() < 5 and rm.shifts[:, 1].max() < 5
    assert abs(float(rm.grids.mean()) - 0.3) < 0.03
    keep = rm.render(10, 20)
    assert keep.shape == (10, 1, 30, 26) and keep.min() >= 0 and keep.max() <= 1
    # scikit-image's resize(order=1, mode="reflect") + crop is the RISE reference code
    from skimage.transform import resize

    for k in (10, 15, 19):
        g = rm.grids[k].numpy()
        up = resize(g, (35, 35), order=1, mode="reflect", anti_aliasing=False)
        dy, dx = rm.shifts[k].tolist()
        np.testing.assert_allclose(
            keep[k - 10, 0].numpy(), up[dy : dy + 30, dx : dx + 26], atol=1e-6
        )


def test_chunked_rendering_equals_full():
    rm = sample_rise_masks(50, (17, 17), s=3, generator=torch.Generator().manual_seed(1))
    full = rm.render()
    assert torch.equal(torch.cat([rm.render(0, 13), rm.render(13, 50)]), full)
    assert math.ceil(17 / 3) == rm.cell[0]


def test_removal_gets_the_complement(region_model, region_images):
    """unmask masks mark what is removed: the removal must receive 1 - keep."""
    e = Rise(region_model, Constant("black"), masks=8, s=4, seed=0).explain(
        region_images[:1], target=1
    )
    keep = e.extras["masks"].render()
    with torch.no_grad():
        p = torch.softmax(region_model(region_images[:1] * keep), 1)[:, 1]  # RISE's x ⊙ M
    torch.testing.assert_close(e.extras["mask_scores"][0], p)


def test_seed_and_defaults(region_model, region_images):
    kw = Rise.__init__.__kwdefaults__
    assert (kw["masks"], kw["s"], kw["p"], kw["score"]) == (4000, 7, 0.5, "prob")
    a = Rise(region_model, masks=40, s=4, seed=1).explain(region_images)
    b = Rise(region_model, masks=40, s=4, seed=2).explain(region_images)
    assert not torch.equal(a.saliency, b.saliency)
    with pytest.raises(ValueError, match="p"):
        Rise(region_model, p=0.0)
    with pytest.raises(ValueError, match="s"):
        Rise(region_model, s=64).explain(region_images)


def test_evaluations_counted(region_model, region_images):
    """Exactly B x N model evaluations when the targets are given (the benchmark reads these)."""
    explainer = Rise(region_model, masks=45, s=4, batch_size=8)
    explainer.explain(region_images, target=1)
    assert explainer.scorer.evaluations == 2 * 45
