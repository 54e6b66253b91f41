"""The robustness study: mean pairwise similarity of an explainer's maps over settings or seeds."""

from __future__ import annotations

import pytest
import torch

from unmask.metrics.similarity import spearman
from unmask.studies import robustness


def test_robustness_over_settings_and_seeds(region_model, region_images):
    res = robustness(
        region_model,
        region_images,
        "occlusion",
        settings=[
            {"patch_size": 4, "stride": 4},
            {"patch_size": 8, "stride": 4},
            {"patch_size": 12, "stride": 4},
        ],
        similarity=["ssim", "spearman"],
    )
    assert res.pairs == [(0, 1), (0, 2), (1, 2)]
    assert res.pairwise["ssim"].shape == (3, 2) and res.scores["ssim"].shape == (2,)
    assert torch.allclose(res.scores["ssim"], res.pairwise["ssim"].mean(0))
    # the mean over pairs equals the direct similarity of the stored maps
    assert torch.allclose(res.pairwise["spearman"][1], spearman(res.maps[0], res.maps[2]))
    assert 0 < res.mean("ssim") < 1
    # a deterministic method run twice with the same settings is perfectly robust
    same = robustness(
        region_model, region_images, "occlusion", settings=[{"patch_size": 4, "stride": 4}] * 2
    )
    assert torch.allclose(same.scores["ssim"], torch.ones(2))


def test_robustness_with_seeds_uses_a_callable_explainer(region_model, region_images):
    def noisy(model, seed=0, scale=1.0):  # a factory: make(model, **hyperparameters)
        def explain(x, target):
            gen = torch.Generator().manual_seed(seed)
            base = x.mean(1, keepdim=True)
            return base + scale * torch.rand(base.shape, generator=gen)

        return explain

    quiet = robustness(
        region_model, region_images, noisy, seeds=[0, 1, 2], similarity="spearman", scale=0.01
    )
    loud = robustness(
        region_model, region_images, noisy, seeds=[0, 1, 2], similarity="spearman", scale=10.0
    )
    assert (quiet.scores["spearman"] > loud.scores["spearman"]).all()
    assert [r["seed"] for r in quiet.runs] == [0, 1, 2]


def test_robustness_bad_arguments(region_model, region_images):
    with pytest.raises(ValueError, match="exactly one"):
        robustness(region_model, region_images, "occlusion")
    with pytest.raises(ValueError, match="at least 2"):
        robustness(region_model, region_images, "occlusion", settings=[{}])
    with pytest.raises(ValueError, match="deterministic"):
        robustness(region_model, region_images, "occlusion", seeds=[0, 1])
    with pytest.raises(ValueError, match="similarity"):
        robustness(region_model, region_images, "occlusion", settings=[{}, {}], similarity="mse")
