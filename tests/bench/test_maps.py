"""The relevance map of explanation-image methods, tested on the region model (known answer):
with a bright distractor outside the model's box, ranking metrics reading the gray explanation
image x̂ credit the distractor; the kept-energy relevance map does not."""

from __future__ import annotations

import pytest
import torch

import unmask
from unmask.bench.maps import choose_map, relevance_map
from unmask.metrics import METRICS
from unmask.testing import region_box, region_images, region_model


def test_relevance_of_a_pixel_mask_is_its_square() -> None:
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.2
    m = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    r = relevance_map(x, m * x, eps=0.0)
    torch.testing.assert_close(r, m.pow(2))


def test_choose_map() -> None:
    assert choose_map("auto", "faithfulness", True) == "relevance"
    assert choose_map("auto", "localisation", False) == "saliency"
    assert choose_map("saliency", "faithfulness", True) == "saliency"
    assert choose_map("relevance", "faithfulness", False) == "saliency"
    assert choose_map("auto", "explanation_image", True) == "x_hat"


@pytest.fixture(scope="module")
def distracted():
    x = region_images(4, 32, seed=1)
    t, l, b, r = region_box(32, 32)  # noqa: E741
    x[:, :, 18:30, 16:30] = 1.0  # a white patch the model ignores
    x[:, :, t:b, l:r] *= 0.7  # a darker red box: the only thing the model sees
    gt = torch.zeros(4, 1, 32, 32)
    gt[..., t:b, l:r] = 1
    return region_model(), x, gt


@pytest.mark.parametrize(
    "method,params,margin",
    [
        ("waveletx", {"representation": "wavelets:levels=3"}, 0.2),
        ("shearletx", {"representation": "shearlets:scales=2,directions=[4,4]"}, 0.1),
        ("pixelmask", {}, 0.0),
    ],
)
def test_relevance_map_is_fair_on_the_known_answer_model(
    distracted, method, params, margin
) -> None:
    model, x, gt = distracted
    e = unmask.explain(model, x, method, target=1, steps=40, noise_bs=2, **params)
    rel = relevance_map(x, e.extras["image"])
    inside = METRICS.get("energy_pointing_game").build()
    deletion = METRICS.get("deletion").build(max_steps=16)
    # more of the map's mass on the box the model reads ...
    assert inside(rel, gt).mean() >= inside(e.saliency, gt).mean() + margin - 1e-6
    # ... and a deletion curve at least as steep (lower is better)
    assert (
        deletion(model, x, rel, e.target).mean()
        <= deletion(model, x, e.saliency, e.target).mean() + 1e-3
    )
