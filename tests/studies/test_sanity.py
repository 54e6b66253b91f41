"""Cascading and independent randomisation (Adebayo et al. 2018): tests that can fail both ways."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import unmask
from unmask.studies.sanity import (
    cascading_randomisation,
    independent_randomisation,
    randomisation_order,
    randomise_layer,
)


def small_cnn(seed: int = 0) -> unmask.Classifier:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 32 * 32, 2),
    )
    return unmask.Classifier.wrap(
        net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=None, class_names=["a", "b"]
    )


def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


OCCLUSION = {"patch_size": 4, "stride": 4, "removal": "black", "batch_size": 64}


def test_order_is_reversed_registration_of_parameter_owners():
    assert randomisation_order(small_cnn()) == ["net.5", "net.2", "net.0"]


def test_model_dependent_explainer_changes_after_randomisation():
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = cascading_randomisation(model, images(), "occlusion", seed=0, keep_maps=True, **OCCLUSION)
    assert res.layers == ["net.5", "net.2", "net.0"]
    for name in ("ssim", "spearman_abs", "hog"):
        assert res.similarity[name].shape == (3, 2)
    # the head alone already changes the map; everything randomised leaves little in common
    assert (res.similarity["spearman_abs"][-1] < 0.6).all()
    assert (res.similarity["ssim"][-1] < 0.6).all()
    assert res.mean("spearman_abs")[-1] < 0.5
    # the stored maps are what the similarities were computed from
    assert torch.allclose(
        res.similarity["spearman_abs"][0],
        unmask.metrics.spearman(res.original, res.maps[0], absolute=True),
    )
    # the given model is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    rows = res.rows()
    assert [r["layer"] for r in rows] == res.layers and set(rows[0]) >= {
        "step",
        "ssim",
        "hog",
        "spearman_abs",
    }


def test_model_independent_explainer_stays_identical():
    def edges(x, target):  # ignores the model entirely
        g = x.mean(1, keepdim=True)
        return torch.nn.functional.pad((g[..., 1:, :] - g[..., :-1, :]).abs(), (0, 0, 0, 1))

    res = cascading_randomisation(small_cnn(), images(), lambda model: edges, seed=0)
    for name in ("ssim", "spearman_abs", "hog"):
        assert torch.allclose(res.similarity[name], torch.ones(3, 2), atol=1e-6)


def test_same_seed_same_result_other_seed_other_model():
    a = cascading_randomisation(
        small_cnn(), images(), "occlusion", seed=3, similarities=("spearman",), **OCCLUSION
    )
    b = cascading_randomisation(
        small_cnn(), images(), "occlusion", seed=3, similarities=("spearman",), **OCCLUSION
    )
    assert torch.equal(a.similarity["spearman"], b.similarity["spearman"])
    first, second = nn.Linear(8, 2), nn.Linear(8, 2)
    randomise_layer(first, 1)
    randomise_layer(second, 1)
    assert torch.equal(first.weight, second.weight)
    randomise_layer(second, 2)
    assert not torch.equal(first.weight, second.weight)


def test_layer_without_reset_parameters_is_redrawn_at_its_scale(region_model):
    net = region_model.net
    old = net.weight.detach().clone()
    randomise_layer(net, 0)
    assert not torch.equal(net.weight, old)
    rms_old, rms_new = old.pow(2).mean().sqrt(), net.weight.detach().pow(2).mean().sqrt()
    assert 0.2 < (rms_new / rms_old).item() < 5


def test_works_on_a_model_with_bare_parameters(region_model, region_images):
    res = cascading_randomisation(
        region_model,
        region_images,
        "occlusion",
        patch_size=8,
        stride=8,
        similarities=("ssim",),
        keep_maps=True,
    )
    assert res.layers == ["net"] and torch.equal(res.target, torch.ones(2, dtype=torch.long))
    assert not torch.allclose(res.maps[0], res.original)


def test_bad_arguments(region_model, region_images):
    with pytest.raises(ValueError, match="not a module"):
        cascading_randomisation(region_model, region_images, "occlusion", layers=["head"])
    with pytest.raises(ValueError, match="similarity"):
        cascading_randomisation(region_model, region_images, "occlusion", similarities=("mse",))
    with pytest.raises(TypeError, match="seed"):
        cascading_randomisation(region_model, region_images, "occlusion", seed=1.5)
    with pytest.raises(TypeError, match="Classifier"):
        cascading_randomisation(nn.Linear(2, 2), region_images, "occlusion")


def _recording_explainer(seen: list):
    """Occlusion that records, at every call, which layers differ from the intact model."""
    intact = {k: v.clone() for k, v in small_cnn().state_dict().items()}

    def make(model, **kw):  # a factory: called with each (randomised) model
        def explain(x, target):
            state = model.state_dict()
            seen.append(
                sorted(
                    {k.rsplit(".", 1)[0] for k in intact if not torch.equal(state[k], intact[k])}
                )
            )
            return unmask.explain(model, x, method="occlusion", target=target, **kw).saliency

        return explain

    return make


def test_independent_randomises_one_layer_at_a_time_cascading_accumulates():
    seen_ind, seen_cas = [], []
    ind = independent_randomisation(
        small_cnn(), images(), _recording_explainer(seen_ind), seed=0, keep_maps=True, **OCCLUSION
    )
    cas = cascading_randomisation(
        small_cnn(), images(), _recording_explainer(seen_cas), seed=0, keep_maps=True, **OCCLUSION
    )
    assert ind.mode == "independent" and cas.mode == "cascading"
    # the first call explains the intact model; then one layer (independent) or a growing set
    assert seen_ind == [[], ["net.5"], ["net.2"], ["net.0"]]
    assert seen_cas == [[], ["net.5"], ["net.2", "net.5"], ["net.0", "net.2", "net.5"]]
    # step 1 randomises the same layer with the same seed in both tests
    assert torch.equal(ind.maps[0], cas.maps[0])
    assert not torch.equal(ind.maps[2], cas.maps[2])


def test_independent_equals_a_naive_loop():
    import copy

    from unmask.metrics.similarity import spearman

    model, x = small_cnn(), images()
    res = independent_randomisation(
        model, x, "occlusion", seed=5, similarities=("spearman",), **OCCLUSION
    )
    target = model(x).argmax(1)
    original = unmask.explain(model, x, method="occlusion", target=target, **OCCLUSION).saliency
    for k, name in enumerate(["net.5", "net.2", "net.0"]):
        other = copy.deepcopy(model)
        randomise_layer(dict(other.named_modules())[name], 5 + k)
        m = unmask.explain(other, x, method="occlusion", target=target, **OCCLUSION).saliency
        torch.testing.assert_close(res.similarity["spearman"][k], spearman(original, m))


def test_independent_model_independent_explainer_stays_identical():
    def blur(x, target):
        return torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), 3, 1, 1)

    res = independent_randomisation(
        small_cnn(), images(), lambda model: blur, similarities=("ssim", "spearman")
    )
    for name in ("ssim", "spearman"):
        assert torch.allclose(res.similarity[name], torch.ones(3, 2), atol=1e-6)
