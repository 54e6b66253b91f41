"""Randomisation and robustness metrics of the catalogue (kind "explainer"): known answers on the
region models, a naive loop, seeds."""

from __future__ import annotations

import math

import pytest
import torch

from unmask.api import make_explainer
from unmask.metrics import METRICS, evaluate
from unmask.metrics.randomisation import random_classes, random_logit
from unmask.metrics.robustness import (
    avg_sensitivity,
    local_lipschitz_estimate,
    max_sensitivity,
    perturbation_study,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
)
from unmask.testing import conv_region_model, region_images, region_mask, region_model

ROBUSTNESS = (
    max_sensitivity,
    avg_sensitivity,
    local_lipschitz_estimate,
    relative_input_stability,
    relative_output_stability,
)


def red(x, t):
    """A map that is the image's red channel: it moves exactly as the input does."""
    return x[:, :1]


def test_random_classes_avoid_the_target_and_are_seeded():
    t = torch.tensor([0, 1, 2] * 20)
    c = random_classes(t, 3, seed=5)
    assert bool((c != t).all()) and set(c.tolist()) == {0, 1, 2}
    assert torch.equal(c, random_classes(t, 3, seed=5))
    assert not torch.equal(c, random_classes(t, 3, seed=6))
    sets = torch.tensor([[True, True, False]] * 4)
    assert random_classes(sets, 3, seed=0).tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="^target: image 0's target holds every class"):
        random_classes(torch.ones(1, 3, dtype=torch.bool), 3, seed=0)


def test_random_logit_separates_class_aware_from_class_blind_maps():
    x = region_images(2, 32)
    # gradient magnitudes are the same for both classes of the region model: similarity 1
    blind = random_logit(region_model(), x, make_explainer(region_model(), method="gradient"))
    assert blind.tolist() == [1.0, 1.0]
    # Grad-CAM on the convolutional region model: class 1 looks at REGION, class 0 at REGION_B
    model = conv_region_model()
    aware = random_logit(model, x, make_explainer(model, method="gradcam"))
    assert bool((aware < 0.7).all()), aware
    assert METRICS.get("random_logit").build().higher_is_better is False


def test_random_logit_explains_the_drawn_class():
    seen = []

    def spy(x, t):
        seen.append(t.clone())
        return region_mask(32, 32).float().expand(len(x), 1, 32, 32) * (t.view(-1, 1, 1, 1) + 1)

    random_logit(region_model(classes=3), region_images(4, 32), spy, target=1, seed=3)
    assert seen[0].tolist() == [1, 1, 1, 1]
    assert torch.equal(seen[1], random_classes(torch.ones(4, dtype=torch.long), 3, seed=3))


def test_sensitivity_of_a_map_that_is_the_image_has_the_analytic_value():
    # x = 0.5 everywhere, r = 0.2 (no clipping): ||δ_red|| / ||x_red|| -> r / (0.5 √3)
    x = torch.full((1, 3, 32, 32), 0.5)
    avg = float(avg_sensitivity(region_model(), x, red, samples=200))
    assert avg == pytest.approx(0.2 / (0.5 * math.sqrt(3)), rel=0.01)
    assert float(max_sensitivity(region_model(), x, red)) > avg
    # local Lipschitz: ||δ_red|| / ||δ|| ≈ 1/√3 for Gaussian noise of every channel
    lip = float(local_lipschitz_estimate(region_model(), x, red))
    assert 1 / math.sqrt(3) < lip < 0.65


def test_a_constant_gradient_is_perfectly_robust():
    model, x = region_model(), region_images(2, 32)
    e = make_explainer(model, method="gradient")  # the region model is linear
    for f in ROBUSTNESS:
        assert f(model, x, e, samples=20).tolist() == [0.0, 0.0], f.__name__
    moving = make_explainer(model, method="input_x_gradient")
    for f in ROBUSTNESS:
        assert bool((f(model, x, moving, samples=20) > 0).all()), f.__name__


def test_perturbation_study_equals_a_naive_loop():
    model, x = region_model(), region_images(2, 16)
    e = make_explainer(model, method="input_x_gradient")
    r = perturbation_study(model, x, e, samples=5, seed=4, batch_size=2)
    gen = torch.Generator().manual_seed(4)
    deltas = (torch.rand(5, 3, 16, 16, generator=gen) * 2 - 1) * 0.2  # one chunk of draws
    e0 = e.explain(x).saliency.double()
    for i in range(2):
        for j in range(5):
            xp = (x[i : i + 1] + deltas[j : j + 1]).clamp(0, 1)
            ep = e.explain(xp, target=1).saliency.double()
            torch.testing.assert_close(r["map_change"][i, j], (ep - e0[i]).norm())
            torch.testing.assert_close(r["input_change"][i, j], (xp - x[i]).double().norm())
            torch.testing.assert_close(
                r["logit_change"][i, j],
                (model(xp) - model(x[i : i + 1])).double().norm(),
                atol=1e-5,
                rtol=1e-5,
            )
    mx = max_sensitivity(model, x, e, samples=5, seed=4, batch_size=2)
    torch.testing.assert_close(mx, (r["map_change"] / r["map_norm"]).amax(1))


def test_seeds_and_batch_size():
    model, x = region_model(), region_images(2, 16)
    e = make_explainer(model, method="input_x_gradient")
    a = avg_sensitivity(model, x, e, samples=10, seed=1, batch_size=3)
    assert torch.equal(a, avg_sensitivity(model, x, e, samples=10, seed=1, batch_size=3))
    assert not torch.equal(a, avg_sensitivity(model, x, e, samples=10, seed=2, batch_size=3))
    # the draws do not depend on the batch size
    torch.testing.assert_close(
        a, avg_sensitivity(model, x, e, samples=10, seed=1, batch_size=7), atol=1e-6, rtol=0
    )


def test_relative_stability_counts_only_class_preserving_perturbations():
    # an image on the decision boundary: perturbations flip the class about half the time
    model = region_model()
    x = torch.full((1, 3, 16, 16), 0.5)
    x[:, 0] = 0.75  # red - (g + b) / 2 = 0.25: logit 0
    r = perturbation_study(model, x, red, samples=40)
    kept = r["same_class"]
    assert 0 < int(kept.sum()) < 40
    ris = relative_input_stability(model, x, red, samples=40)
    ratio = r["relative_map_change"] / r["relative_input_change"]
    torch.testing.assert_close(ris, ratio[kept].max().view(1))


def test_errors_name_the_argument():
    model, x = region_model(), region_images(1, 16)
    with pytest.raises(TypeError, match="^explainer: expected an explainer"):
        max_sensitivity(model, x, 3)
    with pytest.raises(ValueError, match="^samples"):
        max_sensitivity(model, x, red, samples=0)
    with pytest.raises(ValueError, match="^radius"):
        avg_sensitivity(model, x, red, radius=-1)
    with pytest.raises(ValueError, match="^similarity"):
        random_logit(model, x, red, similarity="cosine")
    with pytest.raises(ValueError, match="^explainer output"):
        max_sensitivity(model, x, lambda x, t: torch.rand(len(x), 3, 16, 16), samples=2)


def test_evaluate_passes_the_explainer():
    model, x = region_model(), region_images(2, 16)
    e = make_explainer(model, method="gradient")
    out = evaluate(model, x, None, ["max_sensitivity", "random_logit"], explainer=e)
    assert out["max_sensitivity"].tolist() == [0.0, 0.0]
    assert out["random_logit"].tolist() == [1.0, 1.0]


def test_model_parameter_randomisation_equals_the_studies():
    from unmask.metrics.randomisation import model_parameter_randomisation
    from unmask.studies import cascading_randomisation, independent_randomisation

    model, x = conv_region_model(), region_images(2, 32)
    e = make_explainer(model, method="gradcam")
    for mode, study in (
        ("cascading", cascading_randomisation),
        ("independent", independent_randomisation),
    ):
        r = study(model, x, "gradcam", similarities=("ssim",), seed=3)
        curve = r.similarity["ssim"].double()  # (L, B)
        got = model_parameter_randomisation(model, x, e, mode=mode, seed=3)
        torch.testing.assert_close(got, torch.nanmean(curve, 0))
        last = model_parameter_randomisation(model, x, e, mode=mode, seed=3, reduce="last")
        torch.testing.assert_close(last, curve[-1])
    assert bool((got < 0.9).all())  # Grad-CAM depends on the weights


def test_model_parameter_randomisation_needs_a_registered_explainer():
    from unmask.metrics.randomisation import model_parameter_randomisation

    with pytest.raises(TypeError, match="^explainer: model_parameter_randomisation rebuilds"):
        model_parameter_randomisation(region_model(), region_images(1, 16), red)
    with pytest.raises(ValueError, match="^mode"):
        model_parameter_randomisation(region_model(), region_images(1, 16), red, mode="all")


def test_relative_representation_stability_reads_the_feature_layer():
    model, x = conv_region_model(), region_images(2, 32)
    e = make_explainer(model, method="input_x_gradient")
    r = perturbation_study(model, x, e, samples=3, seed=2, represent=True)
    features = dict(model.net.named_modules())["features"]
    seen = []
    handle = features.register_forward_hook(lambda m, i, o: seen.append(o.detach().flatten(1)))
    gen = torch.Generator().manual_seed(2)
    deltas = (torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1) * 0.2
    with torch.no_grad():
        model(x)
        model((x[:, None] + deltas[None]).clamp(0, 1).reshape(6, 3, 32, 32))
    handle.remove()
    l0, lp = seen[0].double(), seen[1].double().reshape(2, 3, -1)
    d = lp - l0[:, None]
    expected = torch.linalg.vector_norm(d / torch.where(l0 == 0, 1e-6, l0)[:, None], dim=2)
    torch.testing.assert_close(r["relative_representation_change"], expected)
    rrs = relative_representation_stability(model, x, e, samples=3, seed=2)
    ratio = r["relative_map_change"] / expected.clamp_min(1e-6)
    torch.testing.assert_close(rrs, torch.where(r["same_class"], ratio, -torch.inf).amax(1))
    with pytest.raises(ValueError, match="^layer: model 'region' names no default"):
        relative_representation_stability(region_model(), x, red, samples=2)


def test_continuity_equals_a_naive_loop_over_translations():
    from unmask.metrics.robustness import continuity

    model, x = conv_region_model(), region_images(2, 16, seed=4)
    e = make_explainer(model, method="input_x_gradient")
    got = continuity(model, x, e, steps=4, batch_size=3)
    e0 = e.explain(x).saliency.double()
    t = e.explain(x).target
    best = torch.full((2,), -1.0, dtype=torch.float64)
    for d in range(1, 5):
        moved = torch.zeros_like(x)
        moved[..., d:] = x[..., :-d]
        ed = e.explain(moved, target=t).saliency.double()
        q = (ed - e0).abs().flatten(1).sum(1) / (moved - x).double().flatten(1).norm(dim=1)
        best = torch.maximum(best, q)
    torch.testing.assert_close(got, best)
    assert continuity(model, x, lambda x, t: torch.ones(len(x), 1, 16, 16), steps=4).tolist() == [
        0.0,
        0.0,
    ]
    with pytest.raises(ValueError, match="^steps: expected fewer than the image width 16"):
        continuity(model, x, e, steps=16)
