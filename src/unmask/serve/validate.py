"""Checks of what a client asks for: method, metric and removal specs, with bounds.

Names and parameter names are checked against the registries (with the benchmark's own check,
:func:`unmask.bench.spec._check_params`); each value's type comes from the registered class's
signature (its annotation and default); every count-like parameter has a bound, and a method's
or metric's cost in model evaluations, where it is known, is held to :data:`MAX_EVALUATIONS`
(or the registered default's own cost, if larger), so that no request asks for 10⁹ samples.
String choices are the values the class's own constructor accepts (probed once, cached). Last,
the explainer is built (on the served model when given, else a small stand-in), so every check
the class itself makes runs before a job is queued.

Every error is one ValueError (or TypeError) naming the field and what is allowed.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

from ..registry import METHODS, METRICS, Entry

__all__ = [
    "method_spec",
    "method_form",
    "metric_spec",
    "metric_form",
    "removal_spec",
    "evaluations",
    "top_k",
    "MAX_EVALUATIONS",
    "MAX_TOP",
    "INT_BOUNDS",
]

#: The most model evaluations one request may cost (unless the registered default costs more).
MAX_EVALUATIONS = 100_000
#: The most top classes a prediction shows.
MAX_TOP = 50
#: Seeds are 64-bit (torch's generators).
MAX_SEED = 2**63 - 1
#: Bounds (low, high) of integer parameters by name; "size" in a bound is the image side.
INT_BOUNDS: dict[str, tuple[int, int | str]] = {
    "steps": (1, 10_000),
    "samples": (1, 100_000),
    "masks": (1, 100_000),
    "noise_bs": (1, 1024),
    "batch_size": (1, 512),
    "n_segments": (1, 2_000),
    "max_steps": (1, 100_000),
    "runs": (1, 100_000),
    "regions": (1, 100_000),
    "levels": (1, 64),
    "cells_per_iteration": (1, 100_000),
    "max_iterations": (1, 100_000),
    "jitter": (0, 64),
    "s": (1, "size"),
    "patch_size": (1, "size"),
    "stride": (1, "size"),
    "mask_size": (1, "size"),
    "step": (1, "size"),
    "patch": (1, "size"),
    "pixels_per_step": (1, "size2"),
    "subset_size": (1, "size2"),
    "smooth": (1, "size"),
    "win_size": (1, "size"),
    "pixels_per_cell": (1, "size"),
    "kernel_size": (1, "size"),
    "seed": (0, MAX_SEED),
}
#: Other integers.
_INT_DEFAULT = (0, 100_000)
#: Floats: finite and at most this in magnitude.
_FLOAT_MAX = 1e6
#: Parameters a client never sets: the model and execution plumbing, arrays, callables.
_HIDDEN = ("model", "progress", "workers", "segments", "args", "kwargs")
#: Parameters the page's form leaves out (still accepted by the specs).
_NOT_IN_FORM = ("batch_size", "base_params", "seed", "contrast")
#: Parameters whose values depend on the model (checked only when it is given).
_MODEL_DEPENDENT = ("layer", "contrast")
#: Candidate values of string parameters; a class's constructor keeps the ones it accepts.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "score": ("prob", "logit", "log_prob", "log_odds"),
    "variant": ("preserve", "delete", "dual"),
    "rule": (
        "seed",
        "rise",
        "riemann_left",
        "riemann_right",
        "riemann_middle",
        "riemann_trapezoid",
        "gausslegendre",
    ),
    "criterion": ("norm", "descent"),
    "saliency": ("mask", "order"),
    "kind": ("smoothgrad", "smoothgrad_sq", "vargrad"),
    "base": ("gradient", "input_x_gradient", "integrated_gradients"),
    "noise": ("uniform", "gaussian", "zeros"),
    "noise_source": ("gray", "color"),
    "objective": ("ssr", "sdr"),
    "mode": ("cascading", "independent"),
    "reduce": ("mean", "last"),
    "box": ("all", "largest"),
    "info": ("l1_pixel", "l1", "entropy"),
    "detector": ("shearlet", "sobel", "canny"),
    "similarity": ("ssim", "spearman", "spearman_abs", "hog_pearson"),
}
#: Removals a client may not ask for: they open a path.
_NO_REMOVALS = ("torchscript",)
_MAX_TEXT = 200
_LAYER = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


def _registries() -> None:
    from .. import (
        api,  # noqa: F401  (registers every method)
        metrics,  # noqa: F401  (registers every metric)
    )


# --- what a parameter is ------------------------------------------------------------------------


def _kind(name: str, param: inspect.Parameter, default: Any) -> str:
    """bool, int, float, pair (int or [h, w]), floats (float or list), list (numbers), str,
    removal, representation, layer, dict, hidden."""
    ann = str(param.annotation).replace("typing.", "")
    if name in _HIDDEN or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        return "hidden"
    if name in ("removal", "gradient_removal"):
        return "removal"
    if name == "representation":
        return "representation"
    if name == "layer":
        return "layer"
    if name == "contrast":
        return "classes"
    if "dict" in ann:
        return "dict"
    if ann == "bool" or isinstance(default, bool):
        return "bool"
    if "tuple[int, int]" in ann:
        return "pair"
    if ann.startswith("float | Sequence"):
        return "floats"
    if ann.startswith("Sequence") or isinstance(default, tuple | list):
        return "list"
    if ann.startswith("int") or (isinstance(default, int) and not isinstance(default, bool)):
        return "int"
    if ann.startswith("float") or isinstance(default, float):
        return "float"
    if ann.startswith("str") or isinstance(default, str):
        return "str"
    return "hidden"


def _default(entry: Entry, name: str, param: inspect.Parameter) -> Any:
    value = entry.defaults.get(name, param.default)
    if value is inspect.Parameter.empty:
        return None
    if callable(value) and not isinstance(value, type):
        try:
            value = value()  # a default removal factory
        except TypeError:
            return None
    from ..registry import to_json

    return to_json(value)


def _bound(name: str, size: int) -> tuple[int, int]:
    low, high = INT_BOUNDS.get(name, _INT_DEFAULT)
    if high == "size":
        high = size
    elif high == "size2":
        high = size * size
    return int(low), int(high)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: expected an integer in [{low}, {high:,}], got {_show(value)}")
    if not low <= value <= high:
        raise ValueError(f"{field}: expected an integer in [{low}, {high:,}], got {_show(value)}")
    return value


def _float(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field}: expected a number, got {_show(value)}")
    value = float(value)
    if not math.isfinite(value) or abs(value) > _FLOAT_MAX:
        raise ValueError(
            f"{field}: expected a finite number of magnitude at most {_FLOAT_MAX:g}, "
            f"got {_show(value)}"
        )
    return value


def _list(value: Any, field: str, item: Any, most: int = 100) -> list[Any]:
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= most:
        raise ValueError(f"{field}: expected a list of 1 to {most} numbers, got {_show(value)}")
    return [item(v, f"{field}[{i}]") for i, v in enumerate(value)]


def _check_value(
    entry: Entry, name: str, value: Any, field: str, size: int, is_metric: bool
) -> Any:
    params = entry.parameters()
    if name not in params:  # a factory taking **kwargs: only its named parameters are set here
        named = ", ".join(n for n in params if n not in _HIDDEN) or "none"
        raise ValueError(f"{field}: not a parameter of {entry.name!r}; expected one of: {named}")
    param = params[name]
    default = _default(entry, name, param)
    kind = _kind(name, param, default)
    if value is None:
        if default is None or "None" in str(param.annotation):
            return None
        raise ValueError(f"{field}: expected a value (default {_show(default)}), got null")
    if kind == "hidden":
        raise ValueError(f"{field}: cannot be set through this API")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{field}: expected true or false, got {_show(value)}")
        return value
    if kind == "int":
        return _int(value, field, *_bound(name, size))
    if kind == "pair":
        low, high = _bound(name, size)
        if isinstance(value, list | tuple):
            if len(value) != 2:
                raise ValueError(
                    f"{field}: expected an integer or [height, width], got {_show(value)}"
                )
            return [_int(v, f"{field}[{i}]", low, high) for i, v in enumerate(value)]
        return _int(value, field, low, high)
    if kind == "float":
        return _float(value, field)
    if kind == "floats":
        if isinstance(value, list | tuple):
            return _list(value, field, _float, most=16)
        return _float(value, field)
    if kind == "list":
        return _list(value, field, _float)
    if kind == "removal":
        return removal_spec(value, field)
    if kind == "representation":
        from ..representations import make_representation

        _representation(value, field)
        try:
            make_representation(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{field}: {str(exc).split(': ', 1)[-1]}") from None
        return value
    if kind == "layer":
        if not isinstance(value, str) or not _LAYER.fullmatch(value):
            raise ValueError(
                f"{field}: expected a layer name (see `unmask layers`), got {_show(value)}"
            )
        return value  # its existence is checked when the explainer is built on the model
    if kind == "classes":
        if isinstance(value, list | tuple):
            if not 1 <= len(value) <= 1000:
                raise ValueError(
                    f"{field}: expected a class or a list of 1 to 1000 classes, got {_show(value)}"
                )
            return [_int(v, f"{field}[{i}]", 0, 1_000_000) for i, v in enumerate(value)]
        return _int(value, field, 0, 1_000_000)
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise ValueError(f"{field}: expected an object of hyperparameters, got {_show(value)}")
        return dict(value)
    # a string: one of the values the class accepts
    choices = _choices(entry.name, is_metric, name)
    if not isinstance(value, str) or (choices and value not in choices):
        allowed = ", ".join(choices) if choices else "a string"
        raise ValueError(f"{field}: expected one of: {allowed}; got {_show(value)}")
    if not choices and len(value) > _MAX_TEXT:
        raise ValueError(f"{field}: expected at most {_MAX_TEXT} characters")
    return value


@functools.cache
def _stand_in() -> Any:
    from ..testing import conv_region_model

    return conv_region_model(3)


def _build(entry: Entry, is_metric: bool, params: dict[str, Any], model: Any = None) -> Any:
    from ..removal import make_removal

    built = {
        k: (make_removal(v) if k in ("removal", "gradient_removal") and isinstance(v, str) else v)
        for k, v in params.items()
    }
    if is_metric:
        return entry.build(**built)
    return entry.build(_stand_in() if model is None else model, **built)


@functools.cache
def _choices(entry_name: str, is_metric: bool, name: str) -> tuple[str, ...]:
    """The candidate strings of ``name`` that the class's constructor accepts."""
    entry = (METRICS if is_metric else METHODS).get(entry_name)
    default = _default(entry, name, entry.parameters()[name])
    candidates = _CANDIDATES.get(name, ())
    keep = []
    for value in candidates:
        try:
            _build(entry, is_metric, {name: value})
        except (ValueError, TypeError):
            continue
        except Exception:  # noqa: BLE001 -- a value the class cannot use
            continue
        keep.append(value)
    if isinstance(default, str) and default not in keep:
        keep.insert(0, default)
    return tuple(keep)


# --- costs --------------------------------------------------------------------------------------


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, list | tuple) else (int(value),) * 2


def _cost(entry: Entry, params: dict[str, Any], size: int) -> tuple[int, str] | None:
    """Model evaluations of one request, and what sets them, where the formula is known."""

    def get(name: str) -> Any:
        if name in params and params[name] is not None:
            return params[name]
        return (
            _default(entry, name, entry.parameters()[name]) if name in entry.parameters() else None
        )

    name = entry.factory.__name__
    if name == "Occlusion":
        (ph, pw), (sh, sw) = _pair(get("patch_size")), _pair(get("stride"))
        rows = max(0, (size - ph) // sh + 1)
        cols = max(0, (size - pw) // sw + 1)
        return rows * cols, "patch_size and stride (patch positions)"
    if name == "Rise":
        return int(get("masks")), "masks"
    if name == "Lime":
        return int(get("samples")), "samples"
    if name == "IntegratedGradients":
        return int(get("steps")), "steps"
    if name == "SmoothGrad":
        per = 1
        base = get("base")
        if base == "integrated_gradients":
            inner = (params.get("base_params") or {}).get("steps", 50)
            per = int(inner)
        return int(get("samples")) * per, "samples (x the base method's steps)"
    if name == "ExtremalPerturbation":
        areas = get("areas")
        n = len(areas) if isinstance(areas, list | tuple) else 1
        return int(get("steps")) * n * (2 if get("variant") == "dual" else 1), "steps x areas"
    if name == "FIDO":
        return int(get("steps")) * int(get("samples")), "steps x samples"
    if name == "MeaningfulPerturbation":
        return int(get("steps")), "steps"
    if "noise_bs" in entry.parameters() and "steps" in entry.parameters():
        return int(get("steps")) * int(get("noise_bs")), "steps x noise_bs"
    if "max_steps" in entry.parameters():
        steps = get("max_steps")
        if steps is None:
            per = get("pixels_per_step") or 1
            steps = math.ceil(size * size / int(per))
        reps = int(get("samples")) if "samples" in entry.parameters() else 1
        return int(steps) * reps, "max_steps" + (" x samples" if reps != 1 else "")
    for count in ("runs", "regions", "samples"):
        if count in entry.parameters():
            return int(get(count)), count
    return None


def _check_cost(entry: Entry, params: dict[str, Any], size: int) -> None:
    cost = _cost(entry, params, size)
    if cost is None:
        return
    default = _cost(entry, {}, size)
    bound = max(MAX_EVALUATIONS, default[0] if default else 0)
    if cost[0] > bound:
        raise ValueError(
            f"params: {cost[1]} ask for {cost[0]:,} model evaluations at {size}x{size}, above "
            f"the limit of {bound:,} for one request"
        )


def evaluations(
    name: str, params: Mapping[str, Any] | None = None, *, size: int = 224, metric: bool = False
) -> int | None:
    """Model evaluations of a checked method (or metric) request at ``size`` × ``size``, where
    the formula is known; None otherwise.

    Example:
        >>> evaluations("occlusion", {"patch_size": 32, "stride": 16})
        169
    """
    _registries()
    entry = (METRICS if metric else METHODS).get(name)
    cost = _cost(entry, dict(params or {}), _check_size(size))
    return None if cost is None else cost[0]


# --- the public checks --------------------------------------------------------------------------


def _check_size(size: Any) -> int:
    return _int(size, "size", 1, 4096)


def _spec(
    registry: Any, name: Any, params: Any, *, size: int, model: Any = None, is_metric: bool
) -> dict[str, Any]:
    from ..bench.spec import _check_params

    _registries()
    kind = registry.kind
    if not isinstance(name, str) or len(name) > _MAX_TEXT:
        raise ValueError(
            f"{kind}: expected a {kind} name; expected one of: {', '.join(registry.names())}"
        )
    try:
        entry = registry.get(name)
    except (ValueError, TypeError):
        raise ValueError(
            f"{kind}: unknown {kind} {_show(name)}; expected one of: {', '.join(registry.names())}"
        ) from None
    if params is None:
        params = {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ValueError(f"params: expected an object of hyperparameters, got {_show(params)}")
    params = dict(params)
    if not is_metric and "seed" in params:
        raise ValueError("params.seed: give the seed as the request's own seed field")
    for k in params:
        if k in _HIDDEN:
            raise ValueError(f"params.{k}: cannot be set through this API")
    for k in ("removal", "gradient_removal"):  # before anything builds one: no file is opened
        if k in params and params[k] is not None and entry.accepts(k):
            params[k] = removal_spec(params[k], f"params.{k}")
    if isinstance(params.get("representation"), str) and entry.accepts("representation"):
        _representation(params["representation"], "params.representation")
    _check_params(entry, params, "params", kind)  # unknown names, removal/representation specs
    size = _check_size(size)
    out: dict[str, Any] = {}
    for k, v in params.items():
        out[k] = _check_value(entry, k, v, f"params.{k}", size, is_metric)
    if "base_params" in out and out["base_params"] is not None:
        base = out.get("base", _default(entry, "base", entry.parameters()["base"]))
        inner = method_spec(base, out["base_params"], size=size, model=model)
        inner.pop("method")
        out["base_params"] = inner
    _check_cost(entry, out, size)
    checked = {k: v for k, v in out.items() if not (k in _MODEL_DEPENDENT and model is None)}
    try:
        _build(entry, is_metric, checked, model)
    except (ValueError, TypeError) as exc:
        text = " ".join(str(exc).split())
        field = text.split(":", 1)[0]
        raise ValueError(f"params.{text}" if field in out else text) from None
    return {kind: entry.name, **out}


def method_spec(
    name: str, params: dict[str, Any] | None = None, *, size: int = 224, model: Any = None
) -> dict[str, Any]:
    """A method request, checked: ``{"method": name, **params}``.

    Checks the name against ``METHODS`` (an unknown name lists the names), each parameter name
    against the method's hyperparameters, each value's type, the bound of every count-like
    parameter, and the method's cost in model evaluations at ``size`` × ``size`` where its
    formula is known (see :data:`MAX_EVALUATIONS`); floats must be finite, strings one of the
    values the method accepts. Then builds the explainer (on ``model`` when given: its layer
    names are checked too).

    Args:
        name: a registered method name or alias.
        params: its hyperparameters, as JSON values (a removal as a spec string).
        size: the image side the method will run at.
        model: the served model (optional).

    Returns:
        ``{"method": the registered name, **params}`` with checked values (numbers as JSON).

    Raises:
        ValueError: one line naming the field (``method``, ``params.steps``...) and what is
            allowed.

    Example:
        >>> method_spec("rise", {"masks": 500})
        {'method': 'rise', 'masks': 500}
        >>> method_spec("rise", {"masks": 10**9})
        Traceback (most recent call last):
        ...
        ValueError: params.masks: expected an integer in [1, 100,000], got 1000000000
    """
    return _spec(METHODS, name, params, size=size, model=model, is_metric=False)


def metric_spec(
    name: str, params: dict[str, Any] | None = None, *, size: int = 224
) -> dict[str, Any]:
    """A metric request, checked as :func:`method_spec` checks a method's:
    ``{"metric": name, **params}``.

    Example:
        >>> metric_spec("deletion", {"max_steps": 32})
        {'metric': 'deletion', 'max_steps': 32}
    """
    return _spec(METRICS, name, params, size=size, is_metric=True)


def removal_spec(spec: str, field: str = "removal") -> str:
    """A removal spec, checked and normalised (``"blur:5"``): a registered removal, every
    number finite and bounded; removals that open a file (``torchscript``) are refused.

    Example:
        >>> removal_spec("blur:sigma=5")
        'blur:5'
    """
    from ..removal import make_removal, removal_names
    from ..removal.specs import parse_spec

    allowed = [n for n in removal_names() if n not in _NO_REMOVALS]
    if not isinstance(spec, str) or not spec.strip() or len(spec) > _MAX_TEXT:
        raise ValueError(
            f"{field}: expected a removal spec such as gray or blur:5, one of: "
            f"{', '.join(allowed)}; got {_show(spec)}"
        )
    try:
        name, args, kwargs = parse_spec(spec)
    except ValueError as exc:
        raise ValueError(f"{field}: {str(exc).removeprefix('removal: ')}") from None
    if name not in allowed:
        raise ValueError(
            f"{field}: unknown removal {_show(spec)}; expected one of: {', '.join(allowed)}"
        )
    _spec_values(spec, field, args, kwargs, 1000)
    try:
        removal = make_removal(spec)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{field}: {str(exc).removeprefix('removal: ')}") from None
    return str(removal.spec)


def _spec_values(
    spec: str, field: str, args: list[Any], kwargs: dict[str, Any], limit: int
) -> None:
    """Every value of a parsed ``NAME:VALUE,KEY=VALUE`` spec: finite numbers of magnitude at
    most ``limit`` (seeds: 64-bit), lists of at most 16, short strings."""
    for key, v in [*(("value", a) for a in args), *kwargs.items()]:
        values = v if isinstance(v, list) else [v]
        if len(values) > 16:
            raise ValueError(f"{field}: {key} in {spec!r} has more than 16 values")
        for item in values:
            if isinstance(item, bool):
                continue
            if isinstance(item, int | float):
                bound = MAX_SEED if key == "seed" else limit
                if not math.isfinite(float(item)) or abs(item) > bound:
                    raise ValueError(
                        f"{field}: {key} = {_show(item)} in {spec!r} is outside [-{bound}, {bound}]"
                    )
            elif not isinstance(item, str) or len(item) > 40:
                raise ValueError(f"{field}: unexpected value {_show(item)} in {spec!r}")


def _representation(value: Any, field: str) -> str:
    """A representation spec (``"wavelets:levels=3"``) with small values, before it is built."""
    from ..removal.specs import parse_spec

    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise ValueError(
            f"{field}: expected a representation spec such as shearlets, wavelets "
            f"or pixels, got {_show(value)}"
        )
    try:
        name, args, kwargs = parse_spec(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {str(exc).removeprefix('removal: ')}") from None
    _spec_values(value, field, args, kwargs, 64)
    return value


def method_form(name: str, *, size: int = 224) -> list[dict[str, Any]]:
    """The method's hyperparameters for the page's form.

    One dict per parameter a client may set: ``{name, type, default, min, max, choices,
    nullable, help}`` with ``type`` one of ``int``, ``float``, ``bool``, ``choice``, ``str``,
    ``list``; ``help`` is the first line of the parameter's description in the class docstring.
    The defaults validate with :func:`method_spec`; ``size`` (the image side) sets the bounds of
    sizes (patch, stride, mask).

    Example:
        >>> [f["name"] for f in method_form("rise")]
        ['removal', 'masks', 's', 'p', 'score', 'tolerance', 'check_every', 'patience']
    """
    _registries()
    return copy.deepcopy(list(_form(METHODS.get(name).name, False, _check_size(size))))


def metric_form(name: str, *, size: int = 224) -> list[dict[str, Any]]:
    """:func:`method_form` for a metric."""
    _registries()
    return copy.deepcopy(list(_form(METRICS.get(name).name, True, _check_size(size))))


@functools.lru_cache(maxsize=256)
def _form(name: str, is_metric: bool, size: int) -> tuple[dict[str, Any], ...]:
    from ..removal import removal_names

    entry = (METRICS if is_metric else METHODS).get(name)
    doc = _arg_help(entry.factory)
    out = []
    for pname, param in entry.parameters().items():
        default = _default(entry, pname, param)
        kind = _kind(pname, param, default)
        if kind in ("hidden", "dict") or pname in _NOT_IN_FORM:
            continue
        field: dict[str, Any] = {
            "name": pname,
            "type": kind,
            "default": default,
            "min": None,
            "max": None,
            "choices": None,
            "nullable": default is None or "None" in str(param.annotation),
            "help": doc.get(pname, ""),
        }
        if kind in ("int", "pair"):
            field["type"] = "int"
            low, high = _bound(pname, size)
            field["min"], field["max"] = low, high
        elif kind == "floats":
            field["type"] = "float"
        elif kind == "removal":
            field["type"] = "choice"
            field["choices"] = [n for n in removal_names() if n not in _NO_REMOVALS]
        elif kind == "str":
            field["type"] = "choice"
            field["choices"] = list(_choices(entry.name, is_metric, pname))
        elif kind in ("layer", "representation"):
            field["type"] = "str"
        out.append(field)
    return tuple(out)


def _arg_help(factory: Any) -> dict[str, str]:
    """``{argument: first line of its description}`` from a Google-style docstring."""
    doc = inspect.getdoc(factory) or ""
    out: dict[str, str] = {}
    for line in doc.splitlines():
        found = re.match(r"\s{4}(\w+)(?: \([^)]*\))?: (.+)", line)
        if found and found.group(1) not in out:
            out[found.group(1)] = found.group(2).strip()
    return out


def top_k(top: object, top_p: object, max_top: object) -> tuple[int | None, float | None, int]:
    """A prediction's choice of top classes, checked: ``(top, top_p, max_top)``.

    ``top`` a count in [1, :data:`MAX_TOP`], or else ``top_p`` a cumulative probability in
    (0, 1] (default 0.95) capped at ``max_top`` classes (default 5, at most :data:`MAX_TOP`).

    Example:
        >>> top_k(None, None, None), top_k(3, None, None)
        ((None, 0.95, 5), (3, None, 5))
    """
    if top is not None and top_p is not None:
        raise ValueError("top_p: give top (a count) or top_p (a cumulative probability), not both")
    if max_top is None:
        max_top = 5
    max_top = _int(max_top, "max_top", 1, MAX_TOP)
    if top is not None:
        return _int(top, "top", 1, MAX_TOP), None, max_top
    if top_p is None:
        return None, 0.95, max_top
    p = _float(top_p, "top_p")
    if not 0 < p <= 1:
        raise ValueError(f"top_p: expected a probability in (0, 1], got {_show(top_p)}")
    return None, p, max_top
