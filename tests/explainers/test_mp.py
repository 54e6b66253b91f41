"""Meaningful Perturbation: loss pieces on hand examples, seeding, region localisation."""

from __future__ import annotations

import pytest
import torch

import unmask
from unmask.explainers.mp import MeaningfulPerturbation, deletion_l1, mp_loss, translate, tv_norm
from unmask.removal import Blur, Constant, Inpaint
from unmask.testing import region_mask

FAST = {"mask_size": 8, "steps": 60, "jitter": 0, "l1": 1e-2}


def test_tv_norm_hand_examples():
    m = torch.tensor([[0.0, 1.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    # vertical differences: (0, -1) -> 1; horizontal: (1, 0) -> 1
    assert float(tv_norm(m, 3.0)) == pytest.approx(2.0)
    m = torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]).reshape(1, 1, 2, 3)
    # vertical |0|, |-0.5|, |0.5| ; horizontal |0.5|, |0|, |0|, |1|
    assert float(tv_norm(m, 3.0)) == pytest.approx(0.125 + 0.125 + 0.125 + 1.0)
    assert float(tv_norm(m, 2.0)) == pytest.approx(0.25 + 0.25 + 0.25 + 1.0)
    assert tv_norm(torch.ones(4, 1, 5, 5), 3.0).tolist() == [0.0] * 4


def test_deletion_l1_and_loss_hand_example():
    keep = torch.tensor([[1.0, 0.25], [0.5, 1.0]]).reshape(1, 1, 2, 2)
    assert float(deletion_l1(keep)) == pytest.approx(0.75 + 0.5)
    tv = float(tv_norm(keep, 3.0))
    # vertical: |0.5 - 1|^3 + |1 - 0.25|^3 ; horizontal: |0.25 - 1|^3 + |1 - 0.5|^3
    assert tv == pytest.approx(2 * 0.125 + 2 * 0.421875)
    loss = mp_loss(keep, torch.tensor([0.3]), l1=1e-4, tv=1e-2, beta=3.0)
    assert float(loss) == pytest.approx(1e-4 * 1.25 + 1e-2 * tv + 0.3)


def test_translate_shifts_and_replicates_the_border():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = translate(x, 1, 2)
    assert y[0, 0].tolist() == [[6, 7, 7, 7], [10, 11, 11, 11], [14, 15, 15, 15], [14, 15, 15, 15]]
    assert torch.equal(translate(x, 0, 0), x)


def test_paper_defaults():
    e = MeaningfulPerturbation(unmask.testing.region_model())
    spec = unmask.registry.spec_of(e)
    assert spec["mask_size"] == 28 and spec["steps"] == 300 and e.mask_size == (28, 28)
    assert (e.lr, e.l1, e.tv, e.beta, e.jitter) == (0.1, 1e-4, 1e-2, 3.0, 4)
    assert isinstance(e.removal, Blur) and e.removal.sigma == 10.0 and e.score == "prob"


def test_initial_mask_is_seeded_uniform(region_model, region_images):
    """With a vanishing learning rate the mask stays at its U(0, 1) initialisation."""
    e = MeaningfulPerturbation(region_model, mask_size=8, steps=1, lr=1e-12, seed=7).explain(
        region_images
    )
    init = torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(7))
    for i in range(2):  # the same initialisation for every image of the batch
        torch.testing.assert_close(e.extras["removal_mask"][i : i + 1], 1 - init, atol=1e-6, rtol=0)


def test_deletion_concentrates_on_the_region(region_model, region_images):
    e = MeaningfulPerturbation(region_model, **FAST).explain(region_images, target=1)
    box = region_mask(32, 32)
    for i in range(2):
        s = e.saliency[i : i + 1]
        inside, outside = float(s[box].mean()), float(s[~box].mean())
        # bilinear upsampling spreads the 4-pixel cells around the box by a few pixels
        assert inside > 0.9 and outside < 0.25 and inside > 5 * outside, (inside, outside)
    # removing the region kills the class, and the extras report it
    assert bool((e.extras["score"] < 0.5 * e.extras["base_score"]).all())
    # the raw mask is the removal mask (1 = removed): the saliency is its bilinear upsampling
    assert e.extras["removal_mask"].shape == (2, 1, 8, 8)
    up = torch.nn.functional.interpolate(e.extras["removal_mask"], size=(32, 32), mode="bilinear")
    torch.testing.assert_close(e.saliency, up)


def test_jitter_is_seeded_and_used(region_model, region_images):
    kw = dict(FAST, steps=15, jitter=3)
    a = MeaningfulPerturbation(region_model, seed=1, **kw).explain(region_images)
    b = MeaningfulPerturbation(region_model, seed=1, **kw).explain(region_images)
    assert torch.equal(a.saliency, b.saliency)
    c = MeaningfulPerturbation(region_model, seed=2, **kw).explain(region_images)
    assert not torch.equal(a.saliency, c.saliency)
    # same seed (same initial mask) without jitter: the jitter changed the optimisation
    d = MeaningfulPerturbation(region_model, seed=1, **dict(kw, jitter=0)).explain(region_images)
    assert not torch.allclose(a.saliency, d.saliency)


def test_other_differentiable_removals_work(region_model, region_images):
    e = MeaningfulPerturbation(region_model, Constant("black"), **FAST).explain(
        region_images, target=1
    )
    box = region_mask(32, 32)
    assert float(e.saliency[0:1][box].mean()) > 0.9


def test_non_differentiable_removal_is_rejected(region_model):
    with pytest.raises(ValueError, match=r"^removal: mp .*differentiable"):
        MeaningfulPerturbation(region_model, Inpaint("telea"))
    with pytest.raises(ValueError, match=r"^removal: "):
        unmask.make_explainer(region_model, "mp", removal="telea")


@pytest.mark.parametrize(
    "bad",
    [{"steps": 0}, {"lr": -1.0}, {"mask_size": (4,)}, {"jitter": -1}, {"l1": -1e-3}, {"beta": 0}],
)
def test_bad_hyperparameters(region_model, bad):
    with pytest.raises((ValueError, TypeError)):
        MeaningfulPerturbation(region_model, **bad)


@pytest.mark.slow
def test_real_model_deletion_kills_the_class(real_model):
    x = unmask.load_image(unmask.example_image("chelsea"))
    e = MeaningfulPerturbation(real_model, steps=100).explain(x)
    assert float(e.extras["score"][0]) < 0.2 * float(e.extras["base_score"][0])
    # the same amount of deletion, cells shuffled, hurts far less: the mask is placed, not just big
    grid = e.extras["removal_mask"].flatten()
    shuffled = grid[torch.randperm(grid.numel(), generator=torch.Generator().manual_seed(0))]
    masks = torch.nn.functional.interpolate(
        shuffled.reshape(1, 1, 28, 28), size=(224, 224), mode="bilinear"
    )
    p_shuffled = unmask.Scorer(real_model).perturbed(x, masks, e.target, Blur(10.0))
    assert float(p_shuffled[0]) > 2 * float(e.extras["score"][0])
