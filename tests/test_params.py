"""The registry entry is the one declaration of a method or metric (unmask.params, Entry).

Every hyperparameter of every registered class is declared (a type; ints with bounds; strings
with their choices), every declared choice builds, every method declares a family, a cost and a
test setting, every metric that calls the model a cost, and each cost is the number of images
the model is actually given (counted with a hook). The public packages export every registered
class, and the README's table lists every method.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

import unmask.explainers as explainers
import unmask.metrics as metrics
from unmask.metrics.kinds import kind_of
from unmask.params import Bounds, Param, params_of, validate_params
from unmask.registry import METHODS, METRICS, PASSES, Entry, spec_of
from unmask.testing import conv_region_model, region_images, region_model, token_region_model

ENTRIES = [*METHODS, *METRICS]
IDS = [f"{e.registry_kind}:{e.name}" for e in ENTRIES]
#: Parameters only code can set: execution plumbing.
PLUMBING = ("model", "progress", "workers")
#: Methods whose cost is an upper bound (they stop early): the count may be smaller.
STOPS_EARLY = {"mp2", "mp2-g"}
#: Metrics whose cost is an upper bound: fewer steps or segments on some maps.
DATA_DEPENDENT = {"cauc", "cdrop", "irof"}
#: Metrics that rebuild a registered explainer on other models (counted elsewhere).
REBUILDS = {"input_invariance", "model_parameter_randomisation"}
CONV = {"gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam"}
CONV |= {"ablationcam", "mwp", "c-mwp", "gradient", "input_x_gradient"}
CONV |= {"integrated_gradients", "smoothgrad"}


#: Methods run on the token model (attention explainers).
TOKENS = {"rollout", "chefer"}


def _model(name: str):
    if name in TOKENS:
        return token_region_model()
    return conv_region_model() if name in CONV else region_model()


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_every_hyperparameter_is_declared(entry: Entry) -> None:
    for name, p in params_of(entry).items():
        where = f"{entry.registry_kind} {entry.name!r}: {name}"
        if p.kind == "hidden":
            # objects only code passes (arrays, callables) default to None; the rest is plumbing
            assert name in PLUMBING or p.default is None, f"{where} is not declared"
        if p.kind in ("int", "pair"):
            assert p.bounds is not None, f"{where} has no bounds (Count, Side, Annotated...)"
            if p.default is not None:
                low, high = p.range(224) or (0, 0)
                values = p.default if isinstance(p.default, list) else [p.default]
                assert all(low <= v <= high for v in values), where
        if p.kind == "choice":
            assert p.choices, where
            assert p.default in p.choices or p.default is None, where
        if p.kind == "float" and p.default is not None:
            assert math.isfinite(p.default), where


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_every_declared_choice_builds(entry: Entry) -> None:
    for name, p in params_of(entry).items():
        for value in p.choices:
            if entry.registry_kind == "method":
                entry.build(_model(entry.name), **{name: value})
            else:
                entry.build(**{name: value})


@pytest.mark.parametrize("entry", list(METHODS), ids=METHODS.names())
def test_every_method_declares_family_cost_and_test_setting(entry: Entry) -> None:
    assert entry.family, entry.name
    assert entry.cost_formula is not None, entry.name
    assert entry.test is not None, entry.name
    validate_params(entry, entry.test, 32)
    validate_params(entry, entry.cli, 224)


@pytest.mark.parametrize("entry", list(METRICS), ids=METRICS.names())
def test_every_metric_that_calls_the_model_declares_a_cost(entry: Entry) -> None:
    calls_model = "model" in kind_of(entry).needs()
    assert (entry.cost_formula is not None) == calls_model, entry.name
    assert isinstance(entry.higher_is_better, bool), entry.name
    assert entry.higher_is_better == entry.build().higher_is_better


class _Count:
    """Images given to a model's network while the block runs: all of them (``seen``), those
    with gradients enabled (``autograd``), and those given through ``model.infer`` with no other
    hook on the network (``scored``: the scoring path, where ONNX Runtime would run them)."""

    def __init__(self, model) -> None:
        self.model, self.seen, self.autograd, self.scored = model, 0, 0, 0

    def __enter__(self) -> _Count:
        self.hook = self.model.net.register_forward_pre_hook(self._add)
        self.model.infer = self._infer  # the instance's: Scorer calls model.infer
        return self

    def _add(self, module, args) -> None:
        self.seen += args[0].shape[0]
        self.autograd += args[0].shape[0] if torch.is_grad_enabled() else 0

    def _infer(self, x):
        hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in self.model.modules())
        if hooks == 1 and not torch.is_grad_enabled():  # only the counting hook
            self.scored += x.shape[0]
        return type(self.model).infer(self.model, x)

    def __exit__(self, *exc) -> None:
        self.hook.remove()
        del self.model.infer

    def check_passes(self, entry: Entry) -> None:
        """The images counted agree with the entry's declared ``passes``."""
        assert entry.passes in PASSES, f"{entry.name} declares passes={entry.passes!r}"
        if entry.passes == "autograd":
            assert self.autograd > 0, f"{entry.name}: no image was given with gradients"
            return
        assert self.autograd == 0, f"{entry.name}: {self.autograd} images with gradients"
        if self.seen == 0:  # no model call (a metric whose explainer does them)
            return
        # scoring: (nearly) every image on the scoring path; forward: (nearly) none
        on_path = self.scored / self.seen
        assert on_path > 0.5 if entry.passes == "scoring" else on_path < 0.5, (entry.name, on_path)


@pytest.mark.parametrize("entry", list(METHODS), ids=METHODS.names())
def test_method_cost_counts_the_model_calls(entry: Entry) -> None:
    import unmask

    model = _model(entry.name)
    with _Count(model) as count:
        unmask.explain(model, region_images(1, 32), method=entry.name, target=1, **entry.test)
    cost = entry.cost(entry.test, 32, model)
    if entry.name in STOPS_EARLY:
        assert 0 < count.seen <= cost
    else:
        assert count.seen == cost
    count.check_passes(entry)
    assert entry.scoring_cost(entry.test, 32, model) == (cost if entry.passes == "scoring" else 0)


@pytest.mark.parametrize(
    "entry",
    [e for e in METRICS if e.cost_formula is not None and e.name not in REBUILDS],
    ids=lambda e: e.name,
)
def test_metric_cost_counts_the_model_calls(entry: Entry) -> None:
    kind = kind_of(entry)
    model, x = conv_region_model(), region_images(1, 32, seed=3)  # a feature layer for RRS
    gen = torch.Generator().manual_seed(0)
    saliency = torch.nn.functional.interpolate(
        torch.rand(1, 1, 4, 4, generator=gen), size=(32, 32), mode="bilinear"
    )
    inputs = {
        "model": model,
        "x": x,
        "saliency": saliency,
        "x_hat": x * saliency,
        "target": 1,
        "competitors": {0},
        # maps without a model call: the metric's own calls are counted
        "explainer": lambda images, target: images.mean(1, keepdim=True),
    }
    with _Count(model) as count:
        kind.call(entry.build(), inputs)
    cost = entry.cost({}, 32)
    if entry.name in DATA_DEPENDENT:
        assert 0 < count.seen <= cost
    else:
        assert count.seen == cost
    count.check_passes(entry)


def test_cost_depends_on_the_parameters_and_the_image_size() -> None:
    occlusion = METHODS.get("occlusion")
    # (224 - 32) / 16 + 1 = 13 positions per axis, and the unoccluded image
    assert occlusion.cost(occlusion.cli, 224) == 13 * 13 + 1
    assert occlusion.cost({"patch_size": 8, "stride": [4, 8]}, 32) == 7 * 4 + 1
    assert METHODS.get("cartoonx").cost({}, 224) == 2000 * 64
    assert METHODS.get("smoothgrad").cost(
        {"samples": 3, "base": "integrated_gradients", "base_params": {"steps": 5}}, 32
    ) == (3 * 5)
    scorecam = METHODS.get("scorecam")
    assert scorecam.cost_needs_model
    with pytest.raises(ValueError, match="^model: the cost of method 'scorecam'"):
        scorecam.cost({}, 32)
    assert scorecam.cost({}, 32, conv_region_model()) == 2 + 2  # 2 channels at "features"
    with pytest.raises(ValueError, match="declares no cost"):
        METRICS.get("ssim").cost({}, 32)


@pytest.mark.parametrize(
    "name,params,size,match",
    [
        ("rise", {"foo": 1}, None, r"^params\.foo: not a hyperparameter of method 'rise'; "),
        ("rise", {"progress": True}, None, r"^params\.progress: cannot be set"),
        ("rise", {"model": 1}, None, r"^params\.model: cannot be set"),
        ("lime", {"segments": [[0]]}, None, r"^params\.segments: cannot be set"),
        ("rise", {"masks": 0}, None, r"^params\.masks: expected an integer in \[1, 100,000\]"),
        ("rise", {"masks": "500"}, None, r"^params\.masks: expected an integer"),
        ("rise", {"masks": None}, None, r"^params\.masks: expected a value \(default 4000\)"),
        ("rise", {"p": math.nan}, None, r"^params\.p: expected a finite number"),
        ("rise", {"score": "log_odds"}, None, r"^params\.score: expected one of: prob, logit"),
        ("occlusion", {"stride": 33}, 32, r"^params\.stride: expected an integer in \[1, 32\]"),
        ("occlusion", {"stride": [2, 40]}, 32, r"^params\.stride\[1\]: expected an integer"),
        ("occlusion", {"removal": "fog"}, None, r"^params\.removal: unknown removal 'fog'"),
        ("gradcam", {"layer": "a b"}, None, r"^params\.layer: expected a layer name"),
        ("c-mwp", {"contrast": [1, -1]}, None, r"^params\.contrast\[1\]: expected an integer"),
        ("extremal", {"areas": []}, None, r"^params\.areas: expected a list of 1 to 16"),
        ("smoothgrad", {"base_params": {"steps": 1}}, None, r"^params\.steps: not a hyper"),
        (
            "smoothgrad",
            {"base": "integrated_gradients", "base_params": {"steps": 0}},
            None,
            r"^params\.steps: expected an integer in \[1, 10,000\]",
        ),
        ("shearletx", {"representation": "nope"}, None, r"^params\.representation: "),
    ],
)
def test_validate_params_refuses(name: str, params: dict, size: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        validate_params(METHODS.get(name), params, size)
    assert "\n" not in str(info.value)


def test_validate_params_accepts_and_normalises() -> None:
    rise = METHODS.get("rise")
    assert validate_params(rise, {"masks": 500.0, "p": 1, "tolerance": None}) == {
        "masks": 500,
        "p": 1.0,
        "tolerance": None,
    }
    assert validate_params(METHODS.get("occlusion"), {"patch_size": (4, 8)}, 32) == {
        "patch_size": [4, 8]
    }
    assert validate_params(METRICS.get("deletion"), {"max_steps": None}, where="m") == {
        "max_steps": None
    }
    # a side is bounded by the image side limit when the size is not known
    from unmask._limits import max_size

    assert validate_params(METHODS.get("occlusion"), {"stride": max_size()}) is not None
    with pytest.raises(ValueError, match=r"^m\.foo: not a hyperparameter of metric 'deletion'"):
        validate_params(METRICS.get("deletion"), {"foo": 1}, where="m")


def test_declarations_are_read_from_the_signature() -> None:
    p = params_of(METHODS.get("occlusion"))
    assert p["patch_size"] == Param(
        "patch_size", "pair", 29, Bounds(1, "side"), (), False, p["patch_size"].help
    )
    assert p["patch_size"].help == "patch side (int) or (height, width)."
    assert p["removal"].kind == "removal" and p["removal"].nullable
    assert params_of(METHODS.get("sp-g"))["removal"].default == "telea"
    assert not params_of(METHODS.get("sp-g"))["removal"].nullable  # None would not be telea
    assert p["progress"].kind == "hidden"
    assert params_of(METHODS.get("mp2"))["max_iterations"].nullable
    assert params_of(METHODS.get("waveletx"))["representation"].default == "wavelets"
    # help comes from the base class's docstring for a subclass without its own Args
    assert params_of(METHODS.get("cartoonx"))["l1"].help == "λ₁."


def test_variants_keep_the_first_entry_declarations() -> None:
    for variant, base in (("sp-g", "occlusion"), ("lime-g", "lime"), ("mp2-g", "mp2")):
        a, b = METHODS.get(variant), METHODS.get(base)
        assert (a.family, a.cost_formula, a.cli, a.test) == (
            b.family,
            b.cost_formula,
            b.cli,
            b.test,
        )
    assert METRICS.get("deletion_rise").cost({}, 32) == 32 * 32 // (8 * 32) + 1


# --- the public surface -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "package,registry", [(explainers, METHODS), (metrics, METRICS)], ids=["methods", "metrics"]
)
def test_every_registered_class_is_exported(package, registry) -> None:
    names = set(package.__all__)
    for entry in registry:
        cls = entry.factory
        assert cls.__name__ in names, f"{cls.__name__} ({entry.name}) is not in __all__"
        assert getattr(package, cls.__name__) is cls
    for name in package.__all__:
        assert hasattr(package, name), name


def test_shearletx_family_are_classes() -> None:
    from unmask.explainers import CartoonX, MaskExplainer, PixelMask, ShearletX, WaveletX

    model = region_model()
    for cls, name in (
        (ShearletX, "shearletx"),
        (WaveletX, "waveletx"),
        (CartoonX, "cartoonx"),
        (PixelMask, "pixelmask"),
    ):
        built = METHODS.get(name).build(model)
        assert isinstance(built, cls) and isinstance(built, MaskExplainer)
        direct = cls(model)
        assert spec_of(direct) == spec_of(built)
        assert spec_of(direct)["method"] == name
    assert WaveletX(model).representation.spec.startswith("wavelets")
    assert CartoonX(model, steps=3).optimizer.steps == 3
    with pytest.raises(ValueError, match="^colour: not a hyperparameter of 'waveletx'"):
        WaveletX(model, colour=1)


# --- what is generated from / checked against the declarations --------------------------------


def test_readme_methods_table_lists_every_method() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("| method | what it computes |", 1)[1].split("\n\n", 1)[0]
    listed: set[str] = set()
    for line in table.splitlines()[2:]:
        first = line.strip("|").split("|")[0]
        names = re.findall(r"`([^`]+)`", first.split("(")[0])
        aliases = re.findall(r"\(`([^`]+)`\)", first)
        listed |= set(names)
        for alias in aliases:
            assert alias in METHODS.aliases_of(METHODS.get(alias).name), alias
    assert listed == set(METHODS.names())


def test_methods_json_is_the_declaration(capsys) -> None:
    from unmask.cli import main

    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(METHODS.names())
    occlusion = rows["occlusion"]
    assert occlusion["family"] == "perturbation"
    assert occlusion["cli_defaults"] == {"patch_size": 32, "stride": 16}
    assert occlusion["cost_224"] == 13 * 13 + 1
    stride = next(p for p in occlusion["params"] if p["name"] == "stride")
    assert (stride["kind"], stride["min"], stride["max"], stride["default"]) == ("pair", 1, 224, 3)
    assert rows["scorecam"]["cost_224"] is None  # depends on the model's layer


def test_cli_help_states_the_declared_defaults() -> None:
    import argparse

    from unmask.cli import explain

    parser = argparse.ArgumentParser()
    explain.add_arguments(parser)
    text = next(a.help for a in parser._actions if a.dest == "method") or ""
    cli = METHODS.get("occlusion").cli
    assert f"occlusion with patch {cli['patch_size']}, stride {cli['stride']}" in text


def test_docs_methods_page_is_generated_from_the_declarations(capsys) -> None:
    from unmask.cli import main

    page = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text("utf-8")
    table = page.split("<!-- generated: unmask methods --markdown -->\n", 1)[1]
    table = table.split("<!-- end generated -->", 1)[0]
    assert main(["methods", "--markdown"]) == 0
    assert table == capsys.readouterr().out, "regenerate docs/methods.md's table"
