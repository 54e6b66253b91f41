"""The metric contract, driven by kinds: every registered metric is run through its declared kind.

A metric of an undeclared kind fails here, and so does a declared kind this suite has no inputs
for. Per metric: the kind is recorded on the registry entry, ``higher_is_better`` is a bool,
the output is (B,) floating, a batch equals per-image calls, two calls agree, and bad maps /
missing inputs raise errors that name the argument.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import unmask.metrics  # noqa: F401  (registers every metric)
from unmask.api import make_explainer
from unmask.metrics.kinds import METRIC_KINDS, MetricKind, kind_of
from unmask.registry import METRICS, Entry
from unmask.testing import (
    conv_region_model,
    region_box,
    region_images,
    region_mask,
    region_model,
)

SIZE = 32
NAMES = [e.name for e in METRICS]


def smooth_maps(batch: int, seed: int, size: int = SIZE) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 1, size // 8, size // 8, generator=gen)
    return torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bilinear", align_corners=False
    )


def boxes(batch: int) -> torch.Tensor:
    t, left, b, r = region_box(SIZE, SIZE)
    out = torch.tensor([[left, t, r, b]], dtype=torch.float32).expand(batch, 4).clone()
    out[1:] += 4
    return out


def _base(batch: int):
    return region_model(), region_images(batch, SIZE, seed=3), smooth_maps(batch, 0)


# one input factory per declared kind: inputs by the kind's names
FACTORIES = {
    "faithfulness": lambda b: dict(zip(("model", "x", "saliency"), _base(b), strict=True)),
    "localisation": lambda b: {"saliency": smooth_maps(b, 0), "boxes": boxes(b)},
    "similarity": lambda b: {"saliency": smooth_maps(b, 0), "reference": smooth_maps(b, 1)},
    "explanation_image": lambda b: (lambda m, x, s: {"model": m, "x": x, "x_hat": x * s})(
        *_base(b)
    ),
    "artifact": lambda b: (lambda m, x, s: {"x": x, "x_hat": x * (s > 0.5)})(*_base(b)),
    "contrastive": lambda b: {
        **dict(zip(("model", "x", "saliency"), _base(b), strict=True)),
        "target": 1,
        "competitors": {0},
    },
    "map": lambda b: {"saliency": smooth_maps(b, 0)},
    # an explainer whose maps depend on the image and the class (input x gradient), on a model
    # with a feature layer (relative representation stability reads it)
    "explainer": lambda b: (
        lambda m: {
            "model": m,
            "x": region_images(b, SIZE, seed=3),
            "explainer": make_explainer(m, method="input_x_gradient"),
        }
    )(conv_region_model()),
}


def image(inputs: dict, i: int) -> dict:
    """The inputs of image i alone."""
    return {k: v[i : i + 1] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def test_every_declared_kind_has_inputs_here():
    assert set(METRIC_KINDS) <= set(FACTORIES), "a new kind needs an input factory in this suite"


def test_the_expected_kinds_and_metrics_are_registered():
    assert {
        "faithfulness",
        "localisation",
        "similarity",
        "explanation_image",
        "artifact",
        "contrastive",
        "map",
        "explainer",
    } <= set(METRIC_KINDS)
    assert {
        "deletion",
        "insertion",
        "dc",
        "ic",
        "iic",
        "ad",
        "add",
        "saliency_metric",
        "cauc",
        "cdrop",
        "cp_l1",
        "hallucination_score",
        "pointing_game",
        "ssim",
        "road_morf",
        "road_lerf",
        "road_combined",
        "sparseness",
        "complexity",
        "effective_complexity",
        "faithfulness_correlation",
        "faithfulness_estimate",
        "pixel_flipping",
        "region_perturbation",
        "monotonicity",
        "monotonicity_correlation",
        "random_logit",
        "max_sensitivity",
        "avg_sensitivity",
        "local_lipschitz_estimate",
        "relative_input_stability",
        "relative_output_stability",
        "completeness",
        "non_sensitivity",
        "model_parameter_randomisation",
        "input_invariance",
        "relative_representation_stability",
        "continuity",
        "selectivity",
        "sensitivity_n",
        "irof",
        "infidelity",
    } <= set(NAMES)


def test_an_undeclared_kind_fails():
    with pytest.raises(ValueError, match="kind: odd has kind 'mystery'"):
        kind_of(Entry("odd", object, kind="mystery"))
    with pytest.raises(ValueError, match="already declared"):
        from unmask.metrics.kinds import declare_kind

        declare_kind(MetricKind("faithfulness", ("model",)))


@pytest.mark.parametrize("name", NAMES)
def test_kind_recorded_and_direction_declared(name):
    entry = METRICS.get(name)
    kind = kind_of(entry)
    assert entry.kind == kind.name
    metric = entry.build()
    assert kind_of(metric) is kind
    assert isinstance(metric.higher_is_better, bool)
    assert entry.summary


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_single_calls(name):
    metric = METRICS.get(name).build()
    kind = kind_of(metric)
    inputs = FACTORIES[kind.name](3)
    batched = kind.call(metric, inputs)
    assert (
        isinstance(batched, torch.Tensor) and batched.shape == (3,) and batched.is_floating_point()
    )
    assert torch.equal(
        torch.nan_to_num(batched, 7.0), torch.nan_to_num(kind.call(metric, inputs), 7.0)
    )
    singles = torch.cat([kind.call(metric, image(inputs, i)) for i in range(3)])
    torch.testing.assert_close(
        batched, singles.to(batched.dtype), atol=1e-5, rtol=0, equal_nan=True
    )


@pytest.mark.parametrize("name", NAMES)
def test_missing_inputs_are_named(name):
    metric = METRICS.get(name).build()
    kind = kind_of(metric)
    inputs = FACTORIES[kind.name](2)
    for needed in kind.needs():
        with pytest.raises(ValueError, match=f"^{needed}: a {kind.name} metric needs it"):
            kind.call(metric, {**inputs, needed: None})


@pytest.mark.parametrize("name", [n for n in NAMES if kind_of(n).reads_maps])
def test_bad_maps_raise_clear_errors(name):
    metric = METRICS.get(name).build()
    kind = kind_of(metric)
    inputs = FACTORIES[kind.name](2)
    bad = [
        (torch.rand(2, 3, SIZE, SIZE), ValueError, r"^(saliency|a): expected shape \(B, 1, H, W\)"),
        (torch.full((2, 1, SIZE, SIZE), float("nan")), ValueError, "NaN"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ]
    if "x" in kind.inputs:  # the images fix B: a map count that differs is refused
        bad.append((smooth_maps(1, 0), ValueError, "matching the images"))
    else:  # no images: a 3-D array could be one RGB image, so it is refused
        bad.append((torch.rand(2, SIZE, SIZE), ValueError, r"\(B, 1, H, W\)"))
    for maps, exc, match in bad:
        with pytest.raises(exc, match=match):
            kind.call(metric, {**inputs, "saliency": maps})


@pytest.mark.parametrize(
    "name", [n for n in NAMES if "x" in kind_of(n).inputs and kind_of(n).reads_maps]
)
def test_numpy_and_3d_maps_equal_tensor_maps(name):
    metric = METRICS.get(name).build()
    kind = kind_of(metric)
    inputs = FACTORIES[kind.name](2)
    ref = kind.call(metric, inputs)
    for alt in (inputs["saliency"].numpy(), inputs["saliency"][:, 0]):
        torch.testing.assert_close(
            kind.call(metric, {**inputs, "saliency": alt}), ref, equal_nan=True
        )


@pytest.mark.parametrize(
    "name", [n for n in NAMES if kind_of(n).name in ("explanation_image", "artifact")]
)
def test_explanation_images_of_another_shape_are_refused(name):
    metric = METRICS.get(name).build()
    kind = kind_of(metric)
    inputs = FACTORIES[kind.name](2)
    with pytest.raises(ValueError, match="^x_hat: "):
        kind.call(metric, {**inputs, "x_hat": inputs["x_hat"][..., :16]})


def test_good_map_scores_better_than_random_under_every_localisation_metric():
    good = region_mask(SIZE, SIZE).float().expand(2, 1, SIZE, SIZE)
    rand = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    gt = boxes(1).expand(2, 4)
    for name in NAMES:
        if kind_of(name).name != "localisation":
            continue
        metric = METRICS.get(name).build(**({"tolerance": 0} if name == "pointing_game" else {}))
        g, r = metric(good, gt).mean(), metric(rand, gt).mean()
        assert (g > r) if metric.higher_is_better else (g < r), name


def test_good_map_scores_better_than_random_under_every_map_metric():
    good = region_mask(SIZE, SIZE).float().expand(2, 1, SIZE, SIZE)
    rand = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    for name in NAMES:
        if kind_of(name).name != "map":
            continue
        metric = METRICS.get(name).build()
        g, r = metric(good), metric(rand)
        assert bool(((g > r) if metric.higher_is_better else (g < r)).all()), name


#: the catalogue's faithfulness metrics (issue 18): each prefers the box map on the region model.
#: Not monotonicity: on an additive model (each pixel's effect has a fixed sign) every reveal
#: order gives the same answer, so it cannot separate maps there (tested against a naive loop
#: in test_catalogue_faithfulness.py instead).
CATALOGUE_FAITHFULNESS = (
    "road_morf",
    "road_lerf",
    "road_combined",
    "faithfulness_correlation",
    "faithfulness_estimate",
    "pixel_flipping",
    "region_perturbation",
    "monotonicity_correlation",
    "selectivity",
    "sensitivity_n",
    "irof",
    "infidelity",
)


@pytest.mark.parametrize("name", CATALOGUE_FAITHFULNESS)
def test_good_map_scores_better_than_random_under_catalogue_faithfulness(name):
    model, x = region_model(), region_images(2, SIZE, seed=1)
    good = region_mask(SIZE, SIZE).float().expand(2, 1, SIZE, SIZE)
    rand = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    metric = METRICS.get(name).build()
    g, r = metric(model, x, good).mean(), metric(model, x, rand).mean()
    assert (g > r) if metric.higher_is_better else (g < r), (name, g, r)


def test_no_metric_module_imports_explainers_or_the_api():
    root = Path(unmask.metrics.__file__).parent
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = f"{'.' * node.level}{node.module or ''}"
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for n in names:
                assert not any(
                    part in n.split(".") for part in ("explainers", "api", "studies", "cli")
                ), f"{path.name} imports {n}"
