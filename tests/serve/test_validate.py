"""Checks of client requests: every registered method and metric, unknown names, bounds."""

from __future__ import annotations

import math

import pytest

import unmask.api  # noqa: F401  (registers every method)
import unmask.metrics  # noqa: F401  (registers every metric)
from unmask.registry import METHODS, METRICS
from unmask.serve.validate import (
    MAX_EVALUATIONS,
    method_form,
    method_spec,
    metric_form,
    metric_spec,
    removal_spec,
    top_k,
)

FIELD_KEYS = {"name", "type", "default", "min", "max", "choices", "nullable", "help"}


def _defaults(form: list[dict]) -> dict:
    return {f["name"]: f["default"] for f in form}


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_has_a_form_whose_defaults_validate(name: str) -> None:
    form = method_form(name)
    entry = METHODS.get(name)
    for field in form:
        assert set(field) == FIELD_KEYS
        assert field["name"] in entry.parameters()
        assert field["type"] in ("int", "float", "bool", "choice", "str", "list")
        assert field["name"] not in ("model", "progress", "seed", "batch_size")
        if field["type"] == "choice":
            assert field["choices"], field
            assert field["default"] in field["choices"] or field["nullable"]
        if field["type"] == "int" and field["default"] is not None:
            assert field["min"] <= field["default"] <= field["max"]
    spec = method_spec(name, _defaults(form))
    assert spec["method"] == entry.name
    assert method_spec(name, {}) == {"method": entry.name}


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_has_a_form_whose_defaults_validate(name: str) -> None:
    form = metric_form(name)
    spec = metric_spec(name, _defaults(form))
    assert spec["metric"] == METRICS.get(name).name


def test_forms_carry_choices_and_help_from_the_class() -> None:
    fields = {f["name"]: f for f in method_form("extremal")}
    assert fields["variant"]["choices"] == ["preserve", "delete", "dual"]
    assert fields["steps"]["default"] == 800 and fields["steps"]["type"] == "int"
    assert "iterations" in fields["steps"]["help"]
    assert "torchscript" not in fields["removal"]["choices"]
    assert "gray" in fields["removal"]["choices"]
    # a choice the class narrows: mask explainers score probabilities only
    assert {f["name"]: f for f in method_form("shearletx")}["score"]["choices"] == ["prob"]
    assert "log_odds" in {f["name"]: f for f in method_form("fido")}["score"]["choices"]
    assert "log_odds" not in {f["name"]: f for f in method_form("rise")}["score"]["choices"]
    assert "sp-g" in METHODS and method_form("sp-g")[0]["name"] == "removal"
    assert _defaults(method_form("sp-g"))["removal"] == "telea"


def test_alias_gives_the_registered_name() -> None:
    alias = next(a for e in METHODS for a in METHODS.aliases_of(e.name))
    assert method_spec(alias, {})["method"] != alias or alias in METHODS.names()


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("nope", {}, r"^method: unknown method 'nope'; expected one of: .*gradcam.*occlusion"),
        (3, {}, r"^method: expected a method name"),
        (
            "rise",
            {"foo": 1},
            r"^params\.foo: not a hyperparameter of method 'rise'; expected one "
            r"of: removal, masks, s, p, score",
        ),
        ("rise", [], r"^params: expected an object"),
        ("rise", {"progress": True}, r"^params\.progress: cannot be set"),
        ("rise", {"model": "x"}, r"^params\.model: cannot be set"),
        ("rise", {"seed": 3}, r"^params\.seed: give the seed as the request's own seed field"),
        ("lime", {"segments": [[0]]}, r"^params\.segments: cannot be set"),
        (
            "rise",
            {"score": "xx"},
            r"^params\.score: expected one of: prob, logit, log_prob; got 'xx'",
        ),
        ("shearletx", {"score": "logit"}, r"^params\.score: expected one of: prob; got 'logit'"),
        ("rise", {"masks": True}, r"^params\.masks: expected an integer"),
        ("rise", {"masks": "500"}, r"^params\.masks: expected an integer"),
        ("rise", {"masks": 2.5}, r"^params\.masks: expected an integer"),
        ("rise", {"masks": 0}, r"^params\.masks: expected an integer in \[1, "),
        ("rise", {"p": math.nan}, r"^params\.p: expected a finite number"),
        ("rise", {"p": math.inf}, r"^params\.p: expected a finite number"),
        ("rise", {"p": "half"}, r"^params\.p: expected a number"),
        ("rise", {"p": 1.5}, r"^params\.p: "),  # the class's own check: a probability
        ("gradcam", {"relu": 1}, r"^params\.relu: expected true or false"),
        ("gradcam", {"layer": "../../etc/passwd"}, r"^params\.layer: expected a layer name"),
        ("occlusion", {"patch_size": [4, 4, 4]}, r"^params\.patch_size: expected an integer or"),
        (
            "occlusion",
            {"patch_size": 225},
            r"^params\.patch_size: expected an integer in \[1, 224\]",
        ),
        ("occlusion", {"stride": -1}, r"^params\.stride: expected an integer in \[1, 224\]"),
        ("rise", {"removal": "nope"}, r"^params\.removal: unknown removal 'nope'; expected one of"),
        ("rise", {"removal": 7}, r"^params\.removal: expected a removal spec"),
        ("smoothgrad", {"base": "rise"}, r"^params\.base: expected one of: gradient, "),
        (
            "smoothgrad",
            {"base_params": {"foo": 1}},
            r"^params\.foo: not a hyperparameter of method "
            r"'gradient'",
        ),
        ("extremal", {"areas": [0.1] * 17}, r"^params\.areas: expected a list of 1 to 16"),
        ("extremal", {"areas": []}, r"^params\.areas: expected a list"),
    ],
)
def test_bad_method_requests(name: object, params: object, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        method_spec(name, params)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_layer_is_checked_on_the_served_model() -> None:
    from unmask.testing import conv_region_model

    model = conv_region_model(3)
    layer = next(
        n
        for n, m in model.net.named_modules()
        if n and hasattr(m, "weight") and getattr(m.weight, "ndim", 0) == 4
    )
    assert method_spec("gradcam", {"layer": layer}, model=model)["layer"] == layer
    with pytest.raises(ValueError, match="layer"):
        method_spec("gradcam", {"layer": "missing"}, model=model)
    assert method_spec("gradcam", {"layer": "missing"}) == {"method": "gradcam", "layer": "missing"}


@pytest.mark.parametrize(
    "name,params,field",
    [
        ("rise", {"masks": 10**9}, "params.masks"),
        ("lime", {"samples": 10**9}, "params.samples"),
        ("smoothgrad", {"samples": 10**9}, "params.samples"),
        ("integrated_gradients", {"steps": 10**9}, "params.steps"),
        ("extremal", {"steps": 10**9}, "params.steps"),
        ("fido", {"samples": 10**9}, "params.samples"),
        ("shearletx", {"noise_bs": 10**9}, "params.noise_bs"),
        ("mp2", {"max_iterations": 10**9}, "params.max_iterations"),
        ("rise", {"batch_size": 10**6}, "params.batch_size"),
    ],
)
def test_count_parameters_are_bounded(name: str, params: dict, field: str) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^{field}: expected an integer in \[\d+, [\d,]+\], "
        r"got 1000000",
    ):
        method_spec(name, params)


@pytest.mark.parametrize(
    "name,params,what",
    [
        ("rise", {"masks": 100_000, "s": 7}, None),  # at the per-parameter bound: the cost is fine
        ("lime", {"samples": 100_000}, None),
        (
            "smoothgrad",
            {"samples": 5_000, "base": "integrated_gradients", "base_params": {"steps": 100}},
            "samples=5000",
        ),
        ("fido", {"steps": 10_000, "samples": 100}, "samples=100, steps=10000"),
        (
            "extremal",
            {"steps": 10_000, "areas": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "variant": "dual"},
            "steps=10000",
        ),
        ("shearletx", {"steps": 10_000, "noise_bs": 1000}, "noise_bs=1000, steps=10000"),
    ],
)
def test_costs_are_bounded(name: str, params: dict, what: str | None) -> None:
    if what is None:
        method_spec(name, params)
        return
    with pytest.raises(
        ValueError,
        match=rf"^params: .*{what}.* ask for [\d,]+ model evaluations "
        rf"at 224x224, above the limit of {MAX_EVALUATIONS:,}",
    ):
        method_spec(name, params)


def test_occlusion_cost_counts_patch_positions() -> None:
    # 224 px, patch 1, stride 1: 50,176 positions (within the bound); at 448 px: 200,704, and
    # the unoccluded image
    assert method_spec("occlusion", {"patch_size": 1, "stride": 1}) is not None
    with pytest.raises(
        ValueError, match="patch_size=1, stride=1 ask for 200,705 model evaluations at 448x448"
    ):
        method_spec("occlusion", {"patch_size": 1, "stride": 1}, size=448)
    assert METHODS.get("occlusion").cost({"patch_size": 4, "stride": 2}, 32) == 15**2 + 1


def test_default_cost_above_the_bound_is_still_allowed() -> None:
    # cartoonx's registered default: 2000 steps x 64 noise draws = 128,000 evaluations
    assert METHODS.get("cartoonx").cost({}, 224) == 128_000 > MAX_EVALUATIONS
    method_spec("cartoonx", {})
    with pytest.raises(ValueError, match="above the limit of 128,000"):
        method_spec("cartoonx", {"noise_bs": 65})


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("nope", {}, r"^metric: unknown metric 'nope'; expected one of: .*deletion"),
        ("deletion", {"max_steps": 10**9}, r"^params\.max_steps: expected an integer"),
        ("deletion", {"rule": "other"}, r"^params\.rule: expected one of: seed, rise"),
        ("deletion", {"foo": 1}, r"^params\.foo: not a hyperparameter of metric 'deletion'"),
        ("deletion", {"removal": "torchscript:/etc/passwd"}, r"^params\.removal: unknown removal"),
        ("faithfulness_correlation", {"runs": 10**9}, r"^params\.runs: expected an integer"),
        (
            "monotonicity_correlation",
            {"max_steps": 5000, "samples": 100},
            r"^params: max_steps=5000, samples=100 ask for 501,801",
        ),
        (
            "road_morf",
            {"percentages": [10, math.inf]},
            r"^params\.percentages\[1\]: expected a finite",
        ),
        ("sparseness", {"foo": 1}, r"^params\.foo: not a hyperparameter of metric 'sparseness'"),
        (
            "deletion",
            {"pixels_per_step": 10**9},
            r"^params\.pixels_per_step: expected an integer in "
            r"\[1, 50,176\]",
        ),
    ],
)
def test_bad_metric_requests(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metric_spec(name, params)


def test_removal_specs() -> None:
    assert removal_spec("blur:sigma=5") == "blur:5"
    assert removal_spec("gray") == "gray"
    assert removal_spec("noise:seed=3") == "noise:seed=3"
    for bad, match in [
        ("nope", "unknown removal 'nope'"),
        ("", "expected a removal spec"),
        (None, "expected a removal spec"),
        ("x" * 500, "expected a removal spec"),
        ("torchscript:/etc/passwd", "unknown removal"),
        ("torchscript:path=../../x.pt", "unknown removal"),
        ("blur:1e9", r"value = 1000000000.0 .* is outside"),
        ("blur:sigma=NaN", "outside"),
        ("blur:-3", "removal: "),
        ("constant:[0.1,0.2,1e300]", "outside"),
        ("telea:radius=100000", "outside"),
    ]:
        with pytest.raises(ValueError, match=match):
            removal_spec(bad)  # type: ignore[arg-type]


def test_removal_spec_never_opens_a_client_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    import torch

    opened: list[object] = []
    real_open = builtins.open
    monkeypatch.setattr(
        builtins, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k)
    )
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: opened.append(a))
    for spec in ("torchscript:/etc/passwd", "torchscript:path=/etc/passwd"):
        with pytest.raises(ValueError):
            removal_spec(spec)
        with pytest.raises(ValueError):
            method_spec("rise", {"removal": spec})
    assert not [o for o in opened if "passwd" in str(o)]


def test_top_k() -> None:
    assert top_k(None, None, None) == (None, 0.95, 5)
    assert top_k(3, None, None) == (3, None, 5)
    assert top_k(None, 0.5, 10) == (None, 0.5, 10)
    assert top_k(None, 1, None) == (None, 1.0, 5)
    for args, match in [
        ((0, None, None), r"^top: expected an integer in \[1, 50\]"),
        ((10**9, None, None), r"^top: "),
        ((True, None, None), r"^top: "),
        (("3", None, None), r"^top: "),
        ((2, 0.5, None), "not both"),
        ((None, 0, None), r"^top_p: expected a probability in \(0, 1\]"),
        ((None, 1.5, None), r"^top_p: "),
        ((None, math.nan, None), r"^top_p: "),
        ((None, "x", None), r"^top_p: "),
        ((None, None, 0), r"^max_top: "),
        ((None, None, 10**9), r"^max_top: "),
    ]:
        with pytest.raises(ValueError, match=match):
            top_k(*args)


def test_values_come_back_as_json() -> None:
    import json

    spec = method_spec(
        "occlusion",
        {"patch_size": [8, 4], "stride": 4.0, "removal": "blur:sigma=5", "score": "logit"},
    )
    assert spec == {
        "method": "occlusion",
        "patch_size": [8, 4],
        "stride": 4,
        "removal": "blur:5",
        "score": "logit",
    }
    assert json.loads(json.dumps(spec)) == spec
    # the spec builds the explainer it describes
    from unmask.api import make_explainer
    from unmask.testing import conv_region_model

    params = {k: v for k, v in spec.items() if k != "method"}
    assert make_explainer(conv_region_model(3), spec["method"], **params).stride == (4, 4)


def test_classes_parameters_are_checked_on_the_model() -> None:
    from unmask.testing import conv_region_model

    model = conv_region_model(3)
    assert method_spec("c-mwp", {"contrast": [0, 2]}, model=model)["contrast"] == [0, 2]
    assert method_spec("c-mwp", {"contrast": 500})["contrast"] == 500  # no model: not checked
    with pytest.raises(ValueError, match=r"^params\.contrast: class 5 is outside \[0, 3\)"):
        method_spec("c-mwp", {"contrast": 5}, model=model)
    for bad in ("x", [], [0] * 1001, [-1]):
        with pytest.raises(ValueError, match=r"^params\.contrast"):
            method_spec("c-mwp", {"contrast": bad})


def test_form_bounds_follow_the_size_and_are_copies() -> None:
    small = {f["name"]: f for f in method_form("occlusion", size=32)}
    assert small["patch_size"]["max"] == 32 and small["stride"]["max"] == 32
    form = method_form("rise")
    form[0]["choices"].append("mine")
    form[0]["default"] = "changed"
    assert "mine" not in method_form("rise")[0]["choices"]
    assert method_form("rise")[0]["default"] is None


def test_representation_specs_are_bounded() -> None:
    assert (
        method_spec("waveletx", {"representation": "wavelets:levels=3"})["representation"]
        == "wavelets:levels=3"
    )
    for bad, match in [
        ("wavelets:levels=100000", "outside"),
        ("nope", "unknown representation"),
        (3, "expected a representation spec"),
        ("shearlets:directions=[" + ",".join(["8"] * 40) + "]", "more than 16"),
    ]:
        with pytest.raises(ValueError, match=rf"^params\.representation: .*{match}"):
            method_spec("shearletx", {"representation": bad})
