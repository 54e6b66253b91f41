"""What a hyperparameter is, declared once: in the constructor's signature of a registered class.

A method or metric declares each hyperparameter with a type from this module (or a plain
``bool`` / ``float``), so its signature says the type, the default, the bounds and the
choices::

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        masks: Count = 4000,          # an int in [1, 100 000]
        s: Side = 7,                  # an int in [1, the image side]
        p: float = 0.5,               # a finite float
        score: Score = "prob",        # one of "prob", "logit", "log_prob"
        batch_size: BatchSize = 16,
        seed: Seed = 0,
        progress: bool = False,       # an execution parameter: never set through a spec
    ) -> None: ...

and its registry entry (:class:`unmask.registry.Entry`) the rest: the family or kind, the cost
in model evaluations, the CLI's defaults and a small test setting. :func:`params_of` reads the
declaration (:class:`Param` per hyperparameter); :func:`validate_params` checks a spec's values
against it, for the CLI, the bench spec and the explorer alike.

The vocabulary: ``Annotated[int, Bounds(low, high)]`` for integers (``high`` may be
:data:`SIDE`, the image side, or :data:`AREA`, its square), ``Literal[...]`` for string
choices, ``int | tuple[int, int]`` of bounded ints for a size or (height, width) pair,
``float | Sequence[float]`` for one or several numbers, ``Sequence[float]`` for a list, and the
marked types :data:`RemovalArg`, :data:`RepresentationArg`, :data:`LayerArg` and
:data:`ClassesArg`. Anything else (the model, arrays, callables) is not a hyperparameter a spec
can set.
"""

from __future__ import annotations

import inspect
import math
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

if TYPE_CHECKING:
    from .registry import Entry
    from .removal import Removal
    from .representations import Representation

__all__ = [
    "AREA",
    "SIDE",
    "MAX_SEED",
    "MAX_FLOAT",
    "Bounds",
    "Marked",
    "Count",
    "Steps",
    "Side",
    "Area",
    "Seed",
    "BatchSize",
    "Patience",
    "Score",
    "ScoreOrOdds",
    "RemovalArg",
    "RepresentationArg",
    "LayerArg",
    "ClassesArg",
    "MethodName",
    "Param",
    "params_of",
    "validate_params",
    "check_int",
    "check_float",
    "show",
]

#: The image side, as the upper bound of a size-like parameter (a patch, a stride, a grid).
SIDE = "side"
#: The image's pixel count (side²), as the upper bound of a pixel count.
AREA = "area"
#: Seeds are 64-bit (torch's generators).
MAX_SEED = 2**63 - 1
#: Floats: finite and at most this in magnitude (unless declared with their own bounds).
MAX_FLOAT = 1e6


@dataclass(frozen=True)
class Bounds:
    """The closed range ``[low, high]`` of an integer (or float) hyperparameter.

    ``high`` is a number, :data:`SIDE` (the image side) or :data:`AREA` (side²).
    """

    low: float
    high: float | str


@dataclass(frozen=True)
class Marked:
    """A hyperparameter whose values are specs of another registry (see the ``*Arg`` types)."""

    kind: Literal["removal", "representation", "layer", "classes", "method"]


#: A count (samples, masks, runs, regions): [1, 100 000].
Count = Annotated[int, Bounds(1, 100_000)]
#: Optimisation or integration steps: [1, 10 000].
Steps = Annotated[int, Bounds(1, 10_000)]
#: A length in pixels (patch, stride, grid, window): [1, the image side].
Side = Annotated[int, Bounds(1, SIDE)]
#: A number of pixels: [1, the image's pixel count].
Area = Annotated[int, Bounds(1, AREA)]
#: A random seed: [0, 2**63 - 1].
Seed = Annotated[int, Bounds(0, MAX_SEED)]
#: Images per model call: [1, 512].
BatchSize = Annotated[int, Bounds(1, 512)]
#: A non-negative count of checks (early stopping): [0, 100 000].
Patience = Annotated[int, Bounds(0, 100_000)]
#: The score a method reads from the model's output (see :mod:`unmask.scoring`).
Score = Literal["prob", "logit", "log_prob"]
#: :data:`Score` or the log-odds ``log p - log(1 - p)`` (mask optimisers).
ScoreOrOdds = Literal["prob", "logit", "log_prob", "log_odds"]
#: A removal strategy (:mod:`unmask.removal`): an object or a spec such as ``"blur:5"``; None
#: for the method's default.
RemovalArg = Annotated["Removal | str | None", Marked("removal")]
#: An image representation (:mod:`unmask.representations`): an object or a spec such as
#: ``"wavelets:levels=3"``.
RepresentationArg = Annotated["Representation | str", Marked("representation")]
#: A layer of the model (a path in ``model.net.named_modules()``); None for its feature layer.
LayerArg = Annotated["str | None", Marked("layer")]
#: The name of a registered explanation method (``unmask methods``).
MethodName = Annotated[str, Marked("method")]
#: A class index or a list of class indices (one per image allowed).
ClassesArg = Annotated["int | Sequence[int] | Sequence[Sequence[int]] | None", Marked("classes")]

_MAX_TEXT = 200
_MAX_CLASS = 1_000_000
_LAYER = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
#: Execution parameters a spec never sets (how a result is computed, or plumbing).
_HIDDEN = ("model", "progress", "workers")


@dataclass(frozen=True)
class Param:
    """One declared hyperparameter of a registered method or metric.

    Attributes:
        name: the constructor argument.
        kind: ``bool``, ``int``, ``float``, ``pair`` (an int or [height, width]), ``floats``
            (a float or a list), ``list`` (numbers), ``choice``, ``removal``,
            ``representation``, ``layer``, ``classes``, ``method`` (a method's name), ``dict``
            (a nested spec) or ``hidden`` (not settable through a spec: the model, arrays,
            callables, progress).
        default: the entry's default as a JSON value (None when there is none).
        bounds: ``Bounds`` of an int / pair / float, or None.
        choices: the allowed strings of a ``choice``.
        nullable: None is a valid value.
        help: the first line of the argument's description in the class docstring.
    """

    name: str
    kind: str
    default: Any = None
    bounds: Bounds | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    help: str = ""

    def to_json(self, image_size: int | None = None) -> dict[str, Any]:
        """``{name, kind, default, min, max, choices, nullable, help}`` with the bounds at
        ``image_size`` (see :meth:`range`).

        Example:
            >>> Param("masks", "int", 4000, Bounds(1, 100_000)).to_json()["max"]
            100000
        """
        low, high = self.range(image_size) or (None, None)
        return {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "min": low,
            "max": high,
            "choices": list(self.choices) or None,
            "nullable": self.nullable,
            "help": self.help,
        }

    def range(self, image_size: int | None = None) -> tuple[float, float] | None:
        """``(low, high)`` with :data:`SIDE` / :data:`AREA` resolved at ``image_size`` (the
        image side limit, ``UNMASK_MAX_SIZE``, when unknown); None when unbounded.

        Example:
            >>> Param("stride", "pair", bounds=Bounds(1, SIDE)).range(32)
            (1, 32)
        """
        if self.bounds is None:
            return None
        high = self.bounds.high
        if isinstance(high, str):
            if image_size is None:
                from ._limits import max_size

                image_size = max_size()
            high = image_size if high == SIDE else image_size * image_size
        return self.bounds.low, high


def _resolve(annotation: Any, module: str) -> Any:
    """The annotation object of a parameter (evaluated in its module when a string)."""
    if not isinstance(annotation, str):
        return annotation
    namespace = vars(sys.modules[module]) if module in sys.modules else {}
    try:
        return eval(annotation, dict(namespace))  # noqa: S307 -- a signature of our own code
    except Exception:  # noqa: BLE001 -- a name imported for type checking only: not declared
        return None


def _union_args(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _unannotate(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(tp) is Annotated:
        base, *meta = typing.get_args(tp)
        return base, tuple(meta)
    return tp, ()


def _is_int(tp: Any) -> bool:
    return _unannotate(tp)[0] is int


def _bounds_of(tp: Any) -> Bounds | None:
    return next((m for m in _unannotate(tp)[1] if isinstance(m, Bounds)), None)


def _declare(tp: Any) -> tuple[str, Bounds | None, tuple[str, ...], bool]:
    """``(kind, bounds, choices, nullable)`` of a resolved annotation."""
    base, meta = _unannotate(tp)
    marked = next((m for m in meta if isinstance(m, Marked)), None)
    if marked is not None:
        nullable = marked.kind in ("removal", "layer", "classes")
        return marked.kind, None, (), nullable
    args = _union_args(base)
    nullable = type(None) in args
    args = tuple(a for a in args if a is not type(None))
    if len(args) == 1:
        (one,) = args
        inner, inner_meta = _unannotate(one)
        if any(isinstance(m, Marked) for m in inner_meta):
            return _declare(one)[0], None, (), True
        bounds = next((m for m in meta + inner_meta if isinstance(m, Bounds)), None)
        if typing.get_origin(inner) in (typing.Union, types.UnionType):
            kind, bounds, choices, inner_null = _declare(inner)
            return kind, bounds, choices, nullable or inner_null
        if inner is bool:
            return "bool", None, (), nullable
        if inner is int:
            return "int", bounds, (), nullable
        if inner is float:
            return "float", bounds, (), nullable
        if typing.get_origin(inner) is Literal:
            return "choice", None, tuple(str(c) for c in typing.get_args(inner)), nullable
        if inner is dict or typing.get_origin(inner) in (dict, Mapping):
            return "dict", None, (), nullable
        if typing.get_origin(inner) in (Sequence, list, tuple) and all(
            a in (float, int, Ellipsis) for a in typing.get_args(inner)
        ):
            return "list", None, (), nullable
        return "hidden", None, (), nullable
    if len(args) == 2:
        scalar, other = args
        if _is_int(scalar) and typing.get_origin(other) is tuple:
            return "pair", _bounds_of(scalar), (), nullable
        if scalar is float and typing.get_origin(other) in (Sequence, list, tuple):
            return "floats", None, (), nullable
        literal = [a for a in args if typing.get_origin(a) is Literal]
        if literal:  # a choice or an object only code can pass
            return "choice", None, tuple(str(c) for c in typing.get_args(literal[0])), nullable
    return "hidden", None, (), nullable


def _json_default(entry: Entry, name: str, param: inspect.Parameter) -> Any:
    from .registry import to_json

    value = entry.defaults.get(name, param.default)
    if value is inspect.Parameter.empty:
        return None
    if callable(value) and not isinstance(value, type):
        try:
            value = value()  # a default removal factory
        except TypeError:
            return None
    return to_json(value)


def _arg_help(factory: Any) -> dict[str, str]:
    """``{argument: first line of its description}`` from a Google-style docstring."""
    classes = factory.__mro__ if inspect.isclass(factory) else (factory,)
    doc = "\n".join(inspect.getdoc(c) or "" for c in classes if c is not object)
    out: dict[str, str] = {}
    for line in doc.splitlines():
        found = re.match(r"\s{4}(\w+)(?: \([^)]*\))?: (.+)", line)
        if found and found.group(1) not in out:
            out[found.group(1)] = found.group(2).strip()
    return out


def params_of(entry: Entry) -> dict[str, Param]:
    """The declared hyperparameters of a registry entry, in signature order (the model and
    ``*args`` / ``**kwargs`` left out; execution plumbing such as ``progress`` as ``hidden``).

    Example:
        >>> import unmask.explainers
        >>> from unmask.registry import METHODS
        >>> p = params_of(METHODS.get("occlusion"))
        >>> p["stride"].kind, p["stride"].default, p["stride"].range(224)
        ('pair', 3, (1, 224))
        >>> p["score"].choices
        ('prob', 'logit', 'log_prob')
    """
    key = id(entry)
    if key not in _DECLARED:
        _DECLARED[key] = (entry, _read(entry))
    return dict(_DECLARED[key][1])


#: id(entry) -> (entry, its parameters): entries are frozen but hold dicts (not hashable).
_DECLARED: dict[int, tuple[Entry, tuple[tuple[str, Param], ...]]] = {}


def _read(entry: Entry) -> tuple[tuple[str, Param], ...]:
    factory = entry.factory
    target = factory.__init__ if inspect.isclass(factory) else factory
    target = inspect.unwrap(target)
    module = getattr(target, "__module__", "")
    helps = _arg_help(factory)
    out = []
    for name, param in inspect.signature(target).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = _json_default(entry, name, param)
        if name in _HIDDEN:
            out.append((name, Param(name, "hidden", default)))
            continue
        kind, bounds, choices, nullable = _declare(_resolve(param.annotation, module))
        out.append(
            (
                name,
                Param(
                    name,
                    kind,
                    default,
                    bounds,
                    choices,
                    # None stands for the class's default: not for an entry's other default
                    default is None or (nullable and entry.defaults.get(name) is None),
                    helps.get(name, ""),
                ),
            )
        )
    return tuple(out)


# --- checking values ----------------------------------------------------------------------------


def show(value: Any) -> str:
    """A value as an error message shows it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(value: Any, field: str, low: float, high: float) -> int:
    """An integer in ``[low, high]`` (a float that is an integer counts), else ValueError."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field}: expected an integer in [{low}, {high:,}], got {show(value)}")
    return value


def check_float(value: Any, field: str, bounds: tuple[float, float] | None = None) -> float:
    """A finite number (in ``bounds`` when given, else of magnitude at most :data:`MAX_FLOAT`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field}: expected a number, got {show(value)}")
    value = float(value)
    if not math.isfinite(value) or abs(value) > MAX_FLOAT:
        raise ValueError(
            f"{field}: expected a finite number of magnitude at most {MAX_FLOAT:g}, "
            f"got {show(value)}"
        )
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{field}: expected a number in [{bounds[0]}, {bounds[1]}], got {value}")
    return value


def _check_list(value: Any, field: str, most: int = 100) -> list[float]:
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= most:
        raise ValueError(f"{field}: expected a list of 1 to {most} numbers, got {show(value)}")
    return [check_float(v, f"{field}[{i}]") for i, v in enumerate(value)]


def _check_value(p: Param, value: Any, field: str, image_size: int | None) -> Any:
    """``value`` checked against ``p``, as a JSON value (a removal or representation object is
    returned as given)."""
    if value is None:
        if p.nullable:
            return None
        raise ValueError(f"{field}: expected a value (default {show(p.default)}), got null")
    kind = p.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{field}: expected true or false, got {show(value)}")
        return value
    if kind == "int":
        low, high = p.range(image_size) or (0, 100_000)
        return check_int(value, field, low, high)
    if kind == "pair":
        low, high = p.range(image_size) or (1, 100_000)
        if isinstance(value, list | tuple):
            if len(value) != 2:
                raise ValueError(
                    f"{field}: expected an integer or [height, width], got {show(value)}"
                )
            return [check_int(v, f"{field}[{i}]", low, high) for i, v in enumerate(value)]
        return check_int(value, field, low, high)
    if kind == "float":
        return check_float(value, field, p.range(image_size))
    if kind == "floats":
        if isinstance(value, list | tuple):
            return _check_list(value, field, most=16)
        return check_float(value, field)
    if kind == "list":
        return _check_list(value, field)
    if kind == "choice":
        if not isinstance(value, str) or value not in p.choices:
            raise ValueError(f"{field}: expected one of: {', '.join(p.choices)}; got {show(value)}")
        return value
    if kind in ("removal", "representation"):
        if not isinstance(value, str):
            if hasattr(value, "spec") or callable(value) or hasattr(value, "forward"):
                return value  # an object built in code (the CLI, the Python API)
            raise ValueError(f"{field}: expected a {kind} spec, got {show(value)}")
        if kind == "removal":
            from .removal import make_removal as make
        else:
            from .representations import make_representation as make  # type: ignore[assignment]
        try:
            make(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{field}: {str(exc).split(': ', 1)[-1]}") from None
        return value
    if kind == "layer":
        if not isinstance(value, str) or not _LAYER.fullmatch(value):
            raise ValueError(
                f"{field}: expected a layer name (see `unmask layers`), got {show(value)}"
            )
        return value  # its existence is checked when the explainer is built on the model
    if kind == "classes":
        if isinstance(value, list | tuple):
            if not 1 <= len(value) <= 1000:
                raise ValueError(
                    f"{field}: expected a class or a list of 1 to 1000 classes, got {show(value)}"
                )
            return [check_int(v, f"{field}[{i}]", 0, _MAX_CLASS) for i, v in enumerate(value)]
        return check_int(value, field, 0, _MAX_CLASS)
    if kind == "method":
        from .registry import METHODS

        if not isinstance(value, str) or value not in METHODS:
            raise ValueError(
                f"{field}: expected a registered method; expected one of: "
                f"{', '.join(METHODS.names())}"
            )
        return value
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise ValueError(f"{field}: expected an object of hyperparameters, got {show(value)}")
        return dict(value)
    raise ValueError(f"{field}: cannot be set through this API")


def validate_params(
    entry: Entry,
    params: Mapping[str, Any] | None,
    image_size: int | None = None,
    *,
    where: str = "params",
) -> dict[str, Any]:
    """A method's or metric's hyperparameters, checked against its declaration.

    Each name must be a declared hyperparameter; each value of its type, within its bounds
    (sizes at most ``image_size``, or the image side limit when None) or one of its choices;
    removal and representation specs must build. A nested ``base_params`` (SmoothGrad's base
    method) is checked against the base method's declaration.

    Args:
        entry: a registry entry (``METHODS.get(name)``, ``METRICS.get(name)``).
        params: ``{name: value}``: JSON values, or objects (a removal) given in code.
        image_size: the image side the spec will run at, if known.
        where: the prefix of error messages (``"params"``, ``"methods[0].params"``).

    Returns:
        The checked values (a pair or list as a list, a float as a float).

    Raises:
        ValueError: one line naming the field (``params.steps``) and what is allowed.

    Example:
        >>> import unmask.explainers
        >>> from unmask.registry import METHODS
        >>> validate_params(METHODS.get("rise"), {"masks": 500, "p": 0.5})
        {'masks': 500, 'p': 0.5}
        >>> validate_params(METHODS.get("occlusion"), {"stride": 300}, 224)
        Traceback (most recent call last):
        ...
        ValueError: params.stride: expected an integer in [1, 224], got 300
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ValueError(f"{where}: expected an object of hyperparameters, got {show(params)}")
    declared = params_of(entry)
    kind = entry.registry_kind
    settable = [n for n, p in declared.items() if p.kind != "hidden"]
    out: dict[str, Any] = {}
    for name, value in params.items():
        field = f"{where}.{name}"
        p = declared.get(name)
        if p is None:
            raise ValueError(
                f"{field}: not a hyperparameter of {kind} {entry.name!r}; "
                f"expected one of: {', '.join(n for n in settable if n != 'seed') or 'none'}"
            )
        if p.kind == "hidden":
            raise ValueError(f"{field}: cannot be set through this API")
        out[name] = _check_value(p, value, field, image_size)
    if out.get("base_params") is not None and "base" in declared:
        from .registry import METHODS

        base = METHODS.get(out.get("base") or declared["base"].default)
        out["base_params"] = validate_params(base, out["base_params"], image_size, where=where)
    return out
