"""Name -> implementation registries (explanation methods, metrics, ...).

A registry maps names (and aliases) to a factory plus default arguments, so that a variant such
as ``"sp-g"`` is the same class as ``"sp"`` with a different default removal. The contract
test suites iterate over the registries.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Registry",
    "Entry",
    "METHODS",
    "METRICS",
    "PASSES",
    "to_json",
    "spec_of",
    "EXECUTION_PARAMS",
]

#: Arguments that change how a result is computed, never what it is: they are recorded in a
#: spec's params but left out of result keys (``progress`` is not recorded at all).
EXECUTION_PARAMS = ("batch_size", "progress", "workers")

#: How an entry's model evaluations run (:attr:`Entry.passes`): ``"scoring"``, forward passes
#: on the scoring path (:meth:`unmask.models.Classifier.infer`, where ONNX Runtime applies);
#: ``"forward"``, forward passes in PyTorch (hooks on a layer: no gradients, no ONNX Runtime);
#: ``"autograd"``, forward and backward passes.
PASSES = ("scoring", "forward", "autograd")


def to_json(value: Any) -> Any:
    """A JSON-serialisable form of a hyperparameter value.

    Removals (anything with a ``spec`` string) become that string, tuples lists, numpy and torch
    scalars Python numbers, small tensors nested lists; other objects their ``repr``.

    Example:
        >>> from unmask.removal import Blur
        >>> to_json({"removal": Blur(5), "patch": (4, 4)})
        {'removal': 'blur:5', 'patch': [4, 4]}
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    spec = getattr(value, "spec", None)
    if isinstance(spec, str):
        return spec
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return to_json(item())
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # a numpy array or a torch tensor
        size = value.numel() if callable(getattr(value, "numel", None)) else value.size
        if size <= 64:
            return to_json(tolist())
        return f"{type(value).__name__}{tuple(value.shape)}"
    return repr(value)


def _record_arguments(cls: type) -> None:
    """Wrap ``cls.__init__`` once so that every instance records the arguments it was built with.

    The record (``instance._spec_arguments``: name -> value, defaults applied, the first
    positional argument, the model, left out) is what :func:`spec_of` turns into a spec.
    """
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_records_spec", False):
        return
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        names = list(bound.arguments)
        skip = set(names[:2]) if len(names) > 1 and names[1] == "model" else {names[0]}
        self._spec_arguments = {
            k: v for k, v in bound.arguments.items() if k not in skip and k != "progress"
        }

    __init__.__kwdefaults__ = init.__kwdefaults__  # type: ignore[attr-defined]
    __init__.__defaults__ = init.__defaults__  # type: ignore[attr-defined]
    __init__._records_spec = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


def spec_of(obj: Any, registry: Registry | None = None) -> dict[str, Any]:
    """The spec of a registered object: ``{"method": name, **params}`` (JSON-serialisable).

    ``name`` is the name it was built under (``METHODS.get("sp-g").build(...)`` gives
    ``"sp-g"``), or for a direct construction (``Occlusion(model)``) the class's primary name.
    Arguments left at None whose resolved value the object holds under the same attribute name
    (a default removal, a CAM's default layer name) are recorded resolved, so the spec says
    what ran.
    """
    registry = registry or METHODS
    name = getattr(obj, "_registered_name", None) or registry.name_of(type(obj))
    params: dict[str, Any] = {}
    for k, v in getattr(obj, "_spec_arguments", {}).items():
        held = getattr(obj, k, None)
        if v is None and (getattr(held, "spec", None) is not None or isinstance(held, str)):
            v = held
        params[k] = to_json(v)
    return {registry.kind: name, **params}


@dataclass(frozen=True)
class Entry:
    """One registered name: ``factory(*args, **defaults, **kwargs)`` builds it.

    Default values that are callables with no arguments (e.g. ``lambda: Inpaint()``) are called
    at each build, so every instance gets fresh components.
    """

    name: str
    factory: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    #: what sort of object it builds within its registry (a metric's kind, see
    #: :mod:`unmask.metrics.kinds`); "" when the registry has no kinds.
    kind: str = ""
    #: a method's family (``"CAM"``, ``"perturbation"``...), for grouped lists.
    family: str = ""
    #: the model evaluations of one image as a function of the hyperparameters (every one
    #: resolved, defaults included) and the image side: ``formula(p, size)``, or
    #: ``formula(p, size, model)`` when it depends on the model (a layer's channels); see
    #: :meth:`cost`. None: the object never calls the model (a map-only metric).
    cost_formula: Callable[..., int] | None = None
    #: how its model evaluations run: one of :data:`PASSES` (see :meth:`scoring_cost`).
    passes: str = ""
    #: hyperparameters the CLI uses instead of the defaults (a first run in seconds on a CPU).
    cli: dict[str, Any] = field(default_factory=dict)
    #: small hyperparameters for the contract suite (3 images of 32x32, a few seconds).
    test: dict[str, Any] | None = None
    #: a metric's direction (None for a method).
    higher_is_better: bool | None = None
    #: the registry's kind of object: ``"method"`` or ``"metric"``.
    registry_kind: str = "method"

    def resolved(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every hyperparameter's value: ``params`` over the entry's and the signature's
        defaults (a default factory such as ``lambda: Inpaint()`` left uncalled)."""
        out = {
            n: p.default
            for n, p in self.parameters().items()
            if p.default is not p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        out.update(self.defaults)
        out.update({k: v for k, v in (params or {}).items() if v is not None})
        return out

    @property
    def cost_needs_model(self) -> bool:
        """Whether :meth:`cost` needs the model (a layer's channels)."""
        formula = self.cost_formula
        return formula is not None and len(inspect.signature(formula).parameters) == 3

    def cost(self, params: Mapping[str, Any] | None, image_size: int, model: Any = None) -> int:
        """Model evaluations (images given to the model: forward passes, or forward + backward
        for gradient methods) to explain or score one ``image_size`` x ``image_size`` image
        for a given target (one more finds the top-1 class when the target is None).

        An upper bound where a method may stop early or a metric's steps depend on the map.
        A metric that re-runs an explainer (kind ``explainer``) counts its own evaluations
        only: the explainer's runs cost what the explainer's entry says, each. Raises
        ValueError when the entry declares no cost, or its cost depends on the model
        (``model`` not given).

        Example:
            >>> import unmask.explainers
            >>> METHODS.get("rise").cost({"masks": 500}, 224)
            500
        """
        if self.cost_formula is None:
            raise ValueError(f"{self.registry_kind} {self.name!r} declares no cost")
        p = self.resolved(params)
        if self.cost_needs_model:
            if model is None:
                raise ValueError(
                    f"model: the cost of {self.registry_kind} {self.name!r} depends on the model"
                )
            return int(self.cost_formula(p, image_size, model))
        return int(self.cost_formula(p, image_size))

    def scoring_cost(
        self, params: Mapping[str, Any] | None, image_size: int, model: Any = None
    ) -> int:
        """The model evaluations of :meth:`cost` that run on the scoring path (where ONNX
        Runtime applies): all of them when :attr:`passes` is ``"scoring"``, else 0; 0 also when
        the entry declares no cost or its cost needs the model and ``model`` is None.

        Example:
            >>> import unmask.explainers
            >>> METHODS.get("rise").scoring_cost({"masks": 500}, 224)
            500
            >>> METHODS.get("gradcam").scoring_cost(None, 224)
            0
        """
        if self.passes != "scoring" or self.cost_formula is None:
            return 0
        if self.cost_needs_model and model is None:
            return 0
        return self.cost(params, image_size, model)

    def parameters(self) -> dict[str, inspect.Parameter]:
        target = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        params = dict(inspect.signature(target).parameters)
        params.pop("self", None)
        return params

    def accepts(self, name: str) -> bool:
        params = self.parameters()
        return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

    def build(self, *args: Any, **kwargs: Any) -> Any:
        params = self.parameters()
        named = [
            n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(named))
            if unknown:
                allowed = ", ".join(n for n in named[len(args) :])
                raise ValueError(
                    f"{unknown[0]}: not a hyperparameter of {self.name!r}; "
                    f"expected one of: {allowed}"
                )
        merged = {
            k: (v() if callable(v) and not inspect.isclass(v) and _no_args(v) else v)
            for k, v in self.defaults.items()
            if k not in kwargs
        }
        merged.update(kwargs)
        obj = self.factory(*args, **merged)
        try:
            obj._registered_name = self.name
        except AttributeError:  # a function's result, a slotted object: nothing to record on
            pass
        return obj


def _no_args(fn: Callable[..., Any]) -> bool:
    try:
        return not any(
            p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(fn).parameters.values()
        )
    except (TypeError, ValueError):
        return False


class Registry:
    """A registry of named factories of one kind (``"method"``, ``"metric"``...)."""

    def __init__(self, kind: str, fill: tuple[str, ...] = (), passes: str = "") -> None:
        self.kind = kind
        #: The modules whose import registers every entry: imported on the first read, so a
        #: registry is complete whatever was imported before (``import unmask`` is lazy).
        self.fill = fill
        self._filled = not fill
        #: the :attr:`Entry.passes` of entries that declare none ("" : each must declare it)
        self.passes = passes
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._primary: dict[type, str] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        aliases: tuple[str, ...] = (),
        defaults: dict[str, Any] | None = None,
        summary: str | None = None,
        kind: str | None = None,
        family: str | None = None,
        cost: Callable[..., int] | None = None,
        passes: str | None = None,
        cli: dict[str, Any] | None = None,
        test: dict[str, Any] | None = None,
        higher_is_better: bool | None = None,
    ) -> None:
        """Register ``factory`` under ``name`` (and ``aliases``) with default arguments.

        ``kind`` (default: the factory's ``kind`` attribute, if any) is recorded on the entry,
        with the rest of the declaration (see :class:`Entry`): ``family``, ``cost`` (the
        formula of :meth:`Entry.cost`), ``passes`` (one of :data:`PASSES`; default: the
        registry's), ``cli`` defaults, a ``test`` setting and
        ``higher_is_better`` (default: the factory's attribute). A factory registered again
        under another name (a variant with other defaults) keeps the first entry's
        declarations unless given.
        """
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        if summary is None:
            summary = (inspect.getdoc(factory) or "").split("\n", 1)[0]
        if kind is None:
            kind = getattr(factory, "kind", "")
        first = next((e for e in self._entries.values() if e.factory is factory), None)
        if first is not None:
            family = first.family if family is None else family
            cost = first.cost_formula if cost is None else cost
            passes = first.passes if passes is None else passes
            cli = first.cli if cli is None else cli
            test = first.test if test is None else test
        passes = self.passes if passes is None else passes
        if passes and passes not in PASSES:
            raise ValueError(f"passes: expected one of {', '.join(PASSES)}, got {passes!r}")
        if higher_is_better is None:
            direction = getattr(factory, "higher_is_better", None)
            higher_is_better = direction if isinstance(direction, bool) else None
        self._entries[name] = Entry(
            name,
            factory,
            dict(defaults or {}),
            summary,
            kind if isinstance(kind, str) else "",
            family=family or "",
            cost_formula=cost,
            passes=passes,
            cli=dict(cli or {}),
            test=None if test is None else dict(test),
            higher_is_better=higher_is_better,
            registry_kind=self.kind,
        )
        if inspect.isclass(factory):
            _record_arguments(factory)
            self._primary.setdefault(factory, name)
        for alias in aliases:
            self._aliases[alias] = name

    def register(
        self,
        name: str,
        *,
        aliases: tuple[str, ...] = (),
        defaults: dict[str, Any] | None = None,
        summary: str | None = None,
        kind: str | None = None,
        family: str | None = None,
        cost: Callable[..., int] | None = None,
        passes: str | None = None,
        cli: dict[str, Any] | None = None,
        test: dict[str, Any] | None = None,
        higher_is_better: bool | None = None,
    ) -> Callable[[Any], Any]:
        """Class decorator form of :meth:`add`."""

        def decorate(factory: Any) -> Any:
            self.add(
                name,
                factory,
                aliases=aliases,
                defaults=defaults,
                summary=summary,
                kind=kind,
                family=family,
                cost=cost,
                passes=passes,
                cli=cli,
                test=test,
                higher_is_better=higher_is_better,
            )
            return factory

        return decorate

    def _complete(self) -> None:
        if not self._filled:
            self._filled = True  # before importing: the modules read the registry themselves
            for module in self.fill:
                importlib.import_module(module)

    def get(self, name: object) -> Entry:
        """The entry for ``name`` or an alias; ValueError listing the choices otherwise."""
        self._complete()
        if not isinstance(name, str):
            raise TypeError(f"{self.kind}: expected a name (str), got {type(name).__name__}")
        key = self._aliases.get(name.lower(), name.lower())
        if key not in self._entries:
            raise ValueError(
                f"{self.kind}: unknown {self.kind} {name!r}; "
                f"expected one of: {', '.join(self.names())}"
            )
        return self._entries[key]

    def names(self, aliases: bool = False) -> list[str]:
        """Registered names (sorted), with aliases when asked."""
        self._complete()
        names = list(self._entries)
        if aliases:
            names += list(self._aliases)
        return sorted(names)

    def name_of(self, cls: type) -> str:
        """The primary (first registered) name of a registered class."""
        self._complete()
        for klass in cls.__mro__:
            if klass in self._primary:
                return self._primary[klass]
        raise ValueError(f"{self.kind}: {cls.__name__} is not registered")

    def aliases_of(self, name: str) -> list[str]:
        self._complete()
        return sorted(a for a, target in self._aliases.items() if target == name)

    def __contains__(self, name: object) -> bool:
        self._complete()
        return isinstance(name, str) and (
            name.lower() in self._entries or name.lower() in self._aliases
        )

    def __iter__(self) -> Iterator[Entry]:
        self._complete()
        return iter(self._entries.values())


#: Every explanation method: ``METHODS.get("occlusion").build(model, **hyperparameters)``.
METHODS = Registry("method", fill=("unmask.explainers",))

#: Every evaluation metric; see :mod:`unmask.metrics` for the calling conventions of each kind.
#: A metric's own model evaluations score images (a metric never takes gradients; one that
#: re-runs an explainer counts the explainer's evaluations under the explainer's entry).
METRICS = Registry("metric", fill=("unmask.metrics",), passes="scoring")
