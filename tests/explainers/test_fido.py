"""FIDO-CA: the concrete relaxation, the preservation (SSR) and deletion (SDR) games, seeding."""

from __future__ import annotations

import pytest
import torch

import unmask
from unmask.explainers.fido import FIDO, concrete_keep
from unmask.removal import Blur, Inpaint
from unmask.testing import region_mask

FAST = {"mask_size": 8, "steps": 40, "reg": 1e-2, "samples": 2}


def test_concrete_sample_is_a_relaxed_bernoulli():
    q = torch.tensor([0.1, 0.5, 0.9]).reshape(3, 1)
    u = torch.rand(1, 20000, generator=torch.Generator().manual_seed(0))
    z = concrete_keep(q, u, temperature=0.1)
    assert bool(((z >= 0) & (z <= 1)).all())
    # P(z > 1/2) = q exactly (the noise is logistic), and samples are nearly binary
    torch.testing.assert_close((z > 0.5).float().mean(1), q[:, 0], atol=0.015, rtol=0)
    assert float(((z > 0.05) & (z < 0.95)).float().mean()) < 0.2
    # u = 1/2 is the deterministic case: sigmoid(logit(q) / t)
    half = concrete_keep(q, torch.full((1, 1), 0.5), temperature=0.5)
    torch.testing.assert_close(half[:, 0], torch.sigmoid(torch.logit(q[:, 0]) / 0.5))


def test_paper_defaults(region_model):
    e = unmask.make_explainer(region_model, "fido-ca")
    assert isinstance(e, FIDO) and isinstance(e.removal, Inpaint) and e.removal.method == "telea"
    assert (e.lr, e.reg, e.mask_size, e.objective, e.score) == (
        0.05,
        1e-3,
        (56, 56),
        "ssr",
        "log_odds",
    )


def test_ssr_keeps_the_region_with_the_inpainter(region_model, region_images):
    e = FIDO(region_model, **FAST).explain(region_images, target=1)
    box = region_mask(32, 32)
    for i in range(2):
        s = e.saliency[i : i + 1]
        inside, outside = float(s[box].mean()), float(s[~box].mean())
        assert inside > 0.55 and outside < 0.2 and inside > 4 * outside, (inside, outside)
    # keeping only the region (the rest inpainted) preserves the class
    assert bool((e.extras["score"] > 0.8 * e.extras["base_score"]).all())
    torch.testing.assert_close(e.extras["removal_mask"], 1 - e.extras["keep_mask"])


def test_sdr_drops_the_region(region_model, region_images):
    e = FIDO(region_model, Blur(5.0), objective="sdr", **FAST).explain(region_images, target=1)
    box = region_mask(32, 32)
    for i in range(2):
        s = e.saliency[i : i + 1]  # drop probability
        inside, outside = float(s[box].mean()), float(s[~box].mean())
        assert inside > 0.7 and outside < 0.2 and inside > 3.5 * outside, (inside, outside)
    assert bool((e.extras["score"] < 0).all())  # log-odds of the red box below even


def test_seeded(region_model, region_images):
    kw = dict(FAST, steps=10)
    a = FIDO(region_model, Blur(5.0), seed=3, **kw).explain(region_images, 1)
    b = FIDO(region_model, Blur(5.0), seed=3, **kw).explain(region_images, 1)
    c = FIDO(region_model, Blur(5.0), seed=4, **kw).explain(region_images, 1)
    assert torch.equal(a.saliency, b.saliency)
    assert not torch.equal(a.saliency, c.saliency)


def test_log_odds_objective_gradient_flows_through_the_blend(region_model, region_images):
    """With a non-differentiable inpainter the parameters still move after one step."""
    e = FIDO(region_model, Inpaint("telea"), mask_size=4, steps=1, samples=2).explain(
        region_images, 1
    )
    assert float((e.extras["keep_mask"] - 0.5).abs().max()) > 1e-3


@pytest.mark.parametrize(
    "bad",
    [
        {"objective": "both"},
        {"samples": 0},
        {"temperature": 0.0},
        {"anneal": 2.0},
        {"reg": -1.0},
        {"score": "accuracy"},
    ],
)
def test_bad_hyperparameters(region_model, bad):
    with pytest.raises((ValueError, TypeError)):
        FIDO(region_model, **bad)
