"""Checks of what a client asks for: method, metric and removal specs, with bounds.

Names and values are checked against the registries' declarations
(:func:`unmask.params.validate_params`: each hyperparameter's type, bounds and choices as its
class declares them); removal and representation specs are held to small values and removals
that open a file are refused; a method's or metric's cost in model evaluations
(:meth:`unmask.registry.Entry.cost`) is held to :data:`MAX_EVALUATIONS` (or the registered
default's own cost, if larger), so that no request asks for 10⁹ samples. Last, the explainer
is built (on the served model when given, else a small stand-in), so every check the class
itself makes runs before a job is queued.

Every error is one ValueError (or TypeError) naming the field and what is allowed.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping
from typing import Any

from ..params import MAX_SEED, Param, check_float, check_int, params_of, show, validate_params
from ..registry import METHODS, METRICS, Entry, Registry

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
]

#: The most model evaluations one request may cost (unless the registered default costs more).
MAX_EVALUATIONS = 100_000
#: The most top classes a prediction shows.
MAX_TOP = 50
#: Parameters the page's form leaves out (still accepted by the specs).
_NOT_IN_FORM = ("batch_size", "base_params", "seed", "contrast")
#: Kinds of parameters whose values depend on the model (checked only when it is given).
_MODEL_DEPENDENT = ("layer", "classes")
#: Removals a client may not ask for: they open a path.
_NO_REMOVALS = ("torchscript",)
_MAX_TEXT = 200


def _registries() -> None:
    from .. import (
        api,  # noqa: F401  (registers every method)
        metrics,  # noqa: F401  (registers every metric)
    )


@functools.cache
def _stand_in() -> Any:
    from ..testing import conv_region_model

    return conv_region_model(3)


def _build(entry: Entry, is_metric: bool, params: dict[str, Any], model: Any = None) -> Any:
    from ..removal import make_removal

    declared = params_of(entry)
    built = {
        k: (make_removal(v) if declared[k].kind == "removal" and isinstance(v, str) else v)
        for k, v in params.items()
    }
    if is_metric:
        return entry.build(**built)
    return entry.build(_stand_in() if model is None else model, **built)


def _check_cost(entry: Entry, params: dict[str, Any], size: int, model: Any) -> None:
    """Refuse a request above :data:`MAX_EVALUATIONS` (or the default's cost, if larger)."""
    if entry.cost_formula is None or (entry.cost_needs_model and model is None):
        return
    cost = entry.cost(params, size, model)
    bound = max(MAX_EVALUATIONS, entry.cost({}, size, model))
    if cost > bound:
        given = ", ".join(f"{k}={show(v)}" for k, v in sorted(params.items())) or "the defaults"
        raise ValueError(
            f"params: {given} ask for {cost:,} model evaluations at {size}x{size}, above "
            f"the limit of {bound:,} for one request"
        )


def evaluations(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    size: int = 224,
    metric: bool = False,
    model: Any = None,
) -> int | None:
    """Model evaluations of a checked method (or metric) request at ``size`` × ``size``: the
    registry's declared cost (:meth:`unmask.registry.Entry.cost`); None where the entry
    declares none, or its cost needs the model and ``model`` is not given.

    Example:
        >>> evaluations("occlusion", {"patch_size": 32, "stride": 16})
        170
    """
    _registries()
    entry = (METRICS if metric else METHODS).get(name)
    if entry.cost_formula is None or (entry.cost_needs_model and model is None):
        return None
    return entry.cost(dict(params or {}), _check_size(size), model)


# --- the public checks --------------------------------------------------------------------------


def _check_size(size: Any) -> int:
    return check_int(size, "size", 1, 4096)


def _spec(
    registry: Registry, name: Any, params: Any, *, size: int, model: Any = None, is_metric: bool
) -> dict[str, Any]:
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
            f"{kind}: unknown {kind} {show(name)}; expected one of: {', '.join(registry.names())}"
        ) from None
    if params is None:
        params = {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ValueError(f"params: expected an object of hyperparameters, got {show(params)}")
    params = dict(params)
    if not is_metric and "seed" in params:
        raise ValueError("params.seed: give the seed as the request's own seed field")
    declared = params_of(entry)
    for k, v in params.items():  # before anything builds one: no file is opened
        p = declared.get(k)
        if p is not None and p.kind == "removal" and v is not None:
            params[k] = removal_spec(v, f"params.{k}")
        elif p is not None and p.kind == "representation" and isinstance(v, str):
            _representation(v, f"params.{k}")
    size = _check_size(size)
    out = validate_params(entry, params, size)
    if out.get("base_params") is not None:
        base = out.get("base", declared["base"].default)
        inner = method_spec(base, out["base_params"], size=size, model=model)
        inner.pop("method")
        out["base_params"] = inner
    _check_cost(entry, out, size, model)
    checked = {
        k: v for k, v in out.items() if not (declared[k].kind in _MODEL_DEPENDENT and model is None)
    }
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
            f"{', '.join(allowed)}; got {show(spec)}"
        )
    try:
        name, args, kwargs = parse_spec(spec)
    except ValueError as exc:
        raise ValueError(f"{field}: {str(exc).removeprefix('removal: ')}") from None
    if name not in allowed:
        raise ValueError(
            f"{field}: unknown removal {show(spec)}; expected one of: {', '.join(allowed)}"
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
                        f"{field}: {key} = {show(item)} in {spec!r} is outside [-{bound}, {bound}]"
                    )
            elif not isinstance(item, str) or len(item) > 40:
                raise ValueError(f"{field}: unexpected value {show(item)} in {spec!r}")


def _representation(value: Any, field: str) -> str:
    """A representation spec (``"wavelets:levels=3"``) with small values, before it is built."""
    from ..removal.specs import parse_spec

    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise ValueError(
            f"{field}: expected a representation spec such as shearlets, wavelets "
            f"or pixels, got {show(value)}"
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


#: The form's type of each declared kind (see :class:`unmask.params.Param`).
_FORM_TYPES = {
    "bool": "bool",
    "int": "int",
    "pair": "int",
    "float": "float",
    "floats": "float",
    "list": "list",
    "choice": "choice",
    "removal": "choice",
    "layer": "str",
    "representation": "str",
}


@functools.lru_cache(maxsize=256)
def _form(name: str, is_metric: bool, size: int) -> tuple[dict[str, Any], ...]:
    entry = (METRICS if is_metric else METHODS).get(name)
    return tuple(
        _field(p, size)
        for p in params_of(entry).values()
        if p.kind in _FORM_TYPES and p.name not in _NOT_IN_FORM
    )


def _field(p: Param, size: int) -> dict[str, Any]:
    from ..removal import removal_names

    field = p.to_json(size)
    kind = field.pop("kind")
    if kind == "removal":
        field["choices"] = [n for n in removal_names() if n not in _NO_REMOVALS]
    return {"type": _FORM_TYPES[kind], **field}


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
    max_top = check_int(max_top, "max_top", 1, MAX_TOP)
    if top is not None:
        return check_int(top, "top", 1, MAX_TOP), None, max_top
    if top_p is None:
        return None, 0.95, max_top
    p = check_float(top_p, "top_p")
    if not 0 < p <= 1:
        raise ValueError(f"top_p: expected a probability in (0, 1], got {show(top_p)}")
    return None, p, max_top
