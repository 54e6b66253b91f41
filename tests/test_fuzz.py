"""Property tests (hypothesis) over the public boundary.

Images of any dtype, shape and range, targets of any form, and the hyperparameters of every
registered method and metric (drawn from the registry) go through the public functions. Each
call must end in one of two ways: a ValueError / TypeError whose one-line message names the
argument, or a finite result -- never another exception, never NaN out of finite input.

Seeded and bounded: ``derandomize=True`` (the same examples on every run) and a few examples
per case, so the suite stays fast. A hyperparameter's values come from its declaration when the
registry has one (:func:`unmask.params.params_of`: type, bounds, choices), else from the type of
its default (:func:`_values`).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import unmask
import unmask.explainers  # noqa: F401  (registers every method)
from unmask.images import load_image
from unmask.metrics import METRICS
from unmask.metrics.kinds import kind_of
from unmask.registry import METHODS, Entry
from unmask.testing import region_images, region_model

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Per registered method or metric: a few examples each (the registry has ~80 entries);
#: UNMASK_FUZZ_EXAMPLES=N runs N per entry (a longer hunt, e.g. before a release).
PER_ENTRY = settings(FUZZ, max_examples=int(os.environ.get("UNMASK_FUZZ_EXAMPLES", "3")))


def _load(relative: str, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_METHODS_SUITE = _load("explainers/test_contract.py", "_fuzz_methods")
_METRICS_SUITE = _load("metrics/test_contract_metrics.py", "_fuzz_metrics")
MODEL = region_model()
X = region_images(batch=2, size=32)


def _check(call: Any, names: tuple[str, ...]) -> Any:
    """``call()`` either returns (the result), or raises ValueError / TypeError whose one-line
    message starts with one of ``names`` (the argument); anything else fails the test."""
    try:
        return call()
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert "\n" not in message.strip(), message
        assert any(n in message.split(":", 1)[0] for n in names), (names, message)
        return None


def _finite(value: Any) -> None:
    """Every float in ``value`` (a tensor, a dict of them, an Explanation) is finite."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            assert bool(torch.isfinite(value).all()), value
    elif isinstance(value, dict):
        for v in value.values():
            _finite(v)
    elif hasattr(value, "saliency"):
        _finite(value.saliency)


# --------------------------------------------------------------------------- images


DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64]
    + [np.bool_, np.complex64]
)


@FUZZ
@given(
    arr=DTYPES.flatmap(
        lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    ),
    size=st.sampled_from([None, 1, 5, 16]),
    mode=st.sampled_from(["crop", "resize"]),
)
def test_load_image_any_array(arr, size, mode):
    x = _check(lambda: load_image(arr, size=size, mode=mode), ("image", "size", "mode"))
    if x is not None:
        assert x.ndim == 4 and x.shape[:2] == (1, 3) and x.dtype == torch.float32
        assert size is None or tuple(x.shape[-2:]) == (size, size)
        assert bool(torch.isfinite(x).all()) and 0 <= float(x.min()) <= float(x.max()) <= 1


TORCH_DTYPES = st.sampled_from(
    [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.uint8]
    + [torch.bool, torch.complex64]
)


@st.composite
def images(draw: Any) -> torch.Tensor:
    """Tensors of any dtype, of 0 to 5 dimensions, with values of any range (NaN, inf too)."""
    shape = draw(st.lists(st.integers(0, 40), min_size=0, max_size=5))
    dtype = draw(TORCH_DTYPES)
    lo, hi = draw(st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (-1e30, 1e30)]))
    x = torch.empty(shape).uniform_(0, 1, generator=torch.Generator().manual_seed(0))
    x = (lo + (hi - lo) * x).to(dtype) if x.numel() else x.to(dtype)
    special = draw(st.sampled_from([None, float("nan"), float("inf")]))
    if special is not None and x.numel() and x.is_floating_point():
        x.view(-1)[0] = special
    return x


@FUZZ
@given(x=images(), method=st.sampled_from(["gradient", "occlusion"]))
def test_explain_any_image(x, method):
    settings_ = {"patch_size": 8, "stride": 8} if method == "occlusion" else {}
    e = _check(lambda: unmask.explain(MODEL, x, method, 1, **settings_), ("x",))
    _finite(e)


@FUZZ
@given(x=images())
def test_metrics_any_image(x):
    from unmask.metrics import evaluate

    s = torch.rand(1, 1, 32, 32)
    out = _check(lambda: evaluate(MODEL, x, s, ["deletion", "iic"], target=1), ("x", "saliency"))
    _finite(out)


TARGETS = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.lists(st.integers(-2, 3), max_size=3),
    st.lists(st.lists(st.integers(-1, 2), max_size=3), max_size=3),
    st.frozensets(st.integers(-1, 3), max_size=3),
    st.builds(torch.tensor, st.lists(st.integers(-2, 3), max_size=3)),
    st.builds(torch.tensor, st.lists(st.booleans(), max_size=3)),
    st.builds(torch.tensor, st.lists(st.floats(0, 1), min_size=1, max_size=3)),
    st.builds(np.array, st.lists(st.integers(-2, 3), max_size=3)),
)


@FUZZ
@given(target=TARGETS)
def test_explain_and_evaluate_any_target(target):
    e = _check(lambda: unmask.explain(MODEL, X, "gradient", target), ("target",))
    _finite(e)
    from unmask.metrics import evaluate

    out = _check(
        lambda: evaluate(MODEL, X, torch.rand(2, 1, 32, 32), ["deletion"], target=target),
        ("target",),
    )
    _finite(out)


# --------------------------------------------------------------------------- hyperparameters

#: Arguments that are not hyperparameters a caller sets by value here.
NOT_FUZZED = {"model", "progress", "self", "explainer", "net", "layer", "device"}


def _declared(entry: Entry) -> dict[str, Any]:
    """The entry's declared hyperparameters (:func:`unmask.params.params_of`), or {} when the
    registry has no declarations."""
    try:
        from unmask.params import params_of  # type: ignore[import-not-found]
    except ImportError:
        return {}
    return params_of(entry)


#: Removal and representation specs to try: good ones, bad values, unknown names.
REMOVAL_SPECS = ["gray", "blur:3", "noise", "telea", "constant:0.5", "blur:0", "constant:5", "?"]
REPRESENTATION_SPECS = ["pixels", "wavelets:levels=2", "wavelets:levels=99", "shearlets", "?"]


def _values(entry: Entry, name: str, default: Any) -> st.SearchStrategy[Any]:
    """Values to try for one hyperparameter: in and out of its declared bounds and choices,
    else by the type of its default; always a few of the wrong type."""
    declared = _declared(entry).get(name)
    wrong = st.sampled_from([None, "x", [1, 2], float("nan")])
    bounds = getattr(declared, "bounds", None)
    choices = getattr(declared, "choices", ())
    if choices:
        return st.one_of(st.sampled_from(list(choices)), st.text(max_size=4), wrong)
    if name.endswith("removal"):
        return st.one_of(st.sampled_from(REMOVAL_SPECS), wrong)
    if name == "representation":
        return st.one_of(st.sampled_from(REPRESENTATION_SPECS), wrong)
    if bounds is not None and isinstance(bounds.low, int | float):
        low = bounds.low
        high = bounds.high if isinstance(bounds.high, int | float) else 32
        near = st.integers(int(low) - 2, int(min(high, low + 40)))
        return st.one_of(near, st.sampled_from([int(high) + 1, 2**70]), wrong)
    if isinstance(default, bool):
        return st.one_of(st.booleans(), wrong)
    if isinstance(default, int):
        return st.one_of(st.integers(-3, 40), wrong)
    if isinstance(default, float):
        return st.one_of(
            st.floats(-1e3, 1e3), st.sampled_from([0.0, 1e-300, float("inf"), 1e300]), wrong
        )
    if isinstance(default, str):
        return st.one_of(st.text(max_size=6), st.just(default), wrong)
    return st.one_of(st.just(default), wrong)


def _fuzzable(entry: Entry) -> list[tuple[str, Any]]:
    out = []
    for name, p in entry.parameters().items():
        if name in NOT_FUZZED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = entry.defaults.get(name, p.default)
        if default is inspect.Parameter.empty:
            continue
        out.append((name, default))
    return out


def _setting(entry: Entry, suite_settings: dict[str, dict]) -> dict[str, Any]:
    test = getattr(entry, "test", None)  # the declared test setting, when the registry has one
    return dict(test if test is not None else suite_settings.get(entry.name, {}))


def _fuzz_one_parameter(entry: Entry, run_with: Any, finite: bool = True) -> None:
    """Draw one hyperparameter of ``entry`` and a value (:func:`_values`), run
    ``run_with({name: value})`` and check the outcome (:func:`_check`, :func:`_finite`)."""
    params = _fuzzable(entry)
    if not params:
        pytest.skip(f"{entry.name} has no hyperparameter to fuzz")

    @PER_ENTRY
    @given(data=st.data())
    def run(data: Any) -> None:
        key, default = data.draw(st.sampled_from(params), label="parameter")
        value = data.draw(_values(entry, key, default), label=key)
        out = _check(lambda: run_with({key: value}), (key,))
        if finite:
            _finite(out)

    run()


@pytest.mark.parametrize("name", METHODS.names())
def test_method_hyperparameters(name):
    entry = METHODS.get(name)
    model = _METHODS_SUITE._model(name)
    base = _setting(entry, _METHODS_SUITE.FAST)
    _fuzz_one_parameter(
        entry, lambda p: unmask.make_explainer(model, name, **{**base, **p}).explain(X[:1], 1)
    )


@pytest.mark.parametrize("name", [e.name for e in METRICS])
def test_metric_hyperparameters(name):
    entry = METRICS.get(name)
    kind = kind_of(entry)
    inputs = _METRICS_SUITE.FACTORIES[kind.name](1)
    base = _setting(entry, getattr(_METRICS_SUITE, "FAST", {}))
    _fuzz_one_parameter(
        entry,
        lambda p: kind.call(entry.build(**{**base, **p}), inputs),
        finite=name not in MAY_BE_NAN,
    )


#: Metrics documented to give NaN where their quantity is undefined (a correlation of a
#: constant series, as numpy.corrcoef): checked for "no exception" only.
MAY_BE_NAN = {
    "dc",  # deletion.py: NaN when either series is constant
    "ic",
    "hallucination_score",  # hallucination.py: NaN for an image without edges
    "relative_input_stability",  # robustness.py: NaN when no perturbation keeps the class
    "relative_output_stability",
    "relative_representation_stability",
}
