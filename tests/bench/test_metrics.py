"""The bench's metric execution goes through unmask.metrics.evaluate: every stored value equals
the metric called alone, curves stored are the metric's own, and shared results cut the images
the model scores."""

from __future__ import annotations

import pytest
import torch

from unmask.api import make_explainer
from unmask.bench import parse_plan
from unmask.bench.maps import relevance_map
from unmask.bench.metrics import build_metric, run_metrics
from unmask.metrics.localisation import ALPHAS, localisation_error
from unmask.testing import region_box, region_images, region_model

METRICS = [
    {"metric": "deletion", "params": {"max_steps": 8}},
    {"metric": "dc", "params": {"max_steps": 8}},
    {"metric": "insertion", "params": {"max_steps": 8}},
    {"metric": "ad"},
    {"metric": "iic"},
    {"metric": "pointing_game"},
    {"metric": "localisation_error"},
    {"metric": "cp_l1_pixel"},
    {"metric": "cp_l1"},
    {"metric": "cp_entropy"},
    {"metric": "retained_probability"},
    {"metric": "retained_probability", "params": {"scale": "max"}},
    {"metric": "hallucination_score", "params": {"detector": "canny"}},
]


def _alone(run, metric, model, x, e, saliency, boxes, x_hat):
    """The old loop's call of one metric (the reference)."""
    if run.kind == "faithfulness":
        return metric(model, x, saliency, e.target)
    if run.kind == "localisation":
        return metric(saliency, [boxes])
    if run.kind == "artifact":
        return metric(x, x_hat)
    return metric(
        model,
        x,
        x_hat,
        e.target,
        coefficients=[e.extras["coefficients"]]
        if isinstance(e.extras["coefficients"], torch.Tensor)
        else e.extras["coefficients"],
    )


def test_values_equal_each_metric_alone_and_shared_results_cut_model_calls():
    model, x = region_model(), region_images(1, 32)
    explainer = make_explainer(model, "pixelmask", steps=4, noise_bs=1)
    e = explainer.explain(x, [1])
    x_hat = e.extras["image"]
    relevance = relevance_map(x, x_hat)
    top, left, bottom, right = region_box(32, 32)
    boxes = torch.tensor([[left, top, right, bottom]], dtype=torch.float32)
    plan = parse_plan(
        {
            "model": {"name": "unmask.testing:region_model"},
            "data": {"path": "."},
            "methods": [{"method": "pixelmask"}],
            "metrics": METRICS,
        },
        allow_code=True,
    )
    built = [(r, build_metric(r, model, explainer.representation)) for r in plan.metrics]
    seen: list[int] = []
    model.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    out = run_metrics(model, x, e, built, relevance=relevance, boxes=boxes)
    shared_cost = sum(seen)
    assert list(out) == [r.label for r in plan.metrics]
    seen.clear()
    for run, metric in built:
        saliency = relevance if out[run.label]["map"] == "relevance" else e.saliency
        want = float(_alone(run, metric, model, x, e, saliency, boxes, x_hat)[0])
        got = out[run.label]
        assert "error" not in got, got
        assert got["value"] == pytest.approx(want, rel=1e-12, abs=1e-15), run.label
    alone_cost = sum(seen)
    # deletion's curve is stored as the metric's own; dc read the same curve
    curve = built[0][1].curve(model, x, relevance, e.target)
    assert out["deletion[max_steps=8]"]["data"]["scores"] == [float(v) for v in curve.scores[0]]
    assert out["dc[max_steps=8]"]["data"] == out["deletion[max_steps=8]"]["data"]
    errors = [float(localisation_error(relevance, [boxes], a)[0]) for a in ALPHAS]
    assert out["localisation_error"]["data"] == {"alphas": list(ALPHAS), "errors": errors}
    p = out["retained_probability"]["data"]
    assert p["p_hat"] / p["p"] == pytest.approx(out["retained_probability"]["value"])
    # one deletion curve for deletion + dc, one perturbed image for ad + iic, one scoring of x
    # and x̂ for the three CP scores
    assert shared_cost < alone_cost
    steps = len(curve.scores[0])
    assert alone_cost - shared_cost >= steps + 1 + 2 * 2


def test_a_failing_metric_is_a_failed_row_and_the_others_are_computed():
    model, x = region_model(), region_images(1, 32)
    e = make_explainer(model, "occlusion", patch_size=8, stride=4).explain(x, [1])
    plan = parse_plan(
        {
            "model": {"name": "unmask.testing:region_model"},
            "data": {"path": "."},
            "methods": [{"method": "occlusion"}],
            "metrics": [
                {"metric": "deletion", "params": {"max_steps": 8}},
                {"metric": "dc", "params": {"max_steps": 8}},
            ],
        },
        allow_code=True,
    )
    built = [(r, build_metric(r, model)) for r in plan.metrics]

    class Broken:
        kind = "faithfulness"

        def __call__(self, *args, **kwargs):
            raise RuntimeError("boom")

    built[1] = (built[1][0], Broken())
    out = run_metrics(model, x, e, built)
    assert out["dc[max_steps=8]"] == {"error": "RuntimeError: boom", "map": "saliency"}
    want = float(built[0][1](model, x, e.saliency, e.target)[0])
    assert out["deletion[max_steps=8]"]["value"] == pytest.approx(want, rel=1e-12)
