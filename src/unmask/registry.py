"""Name -> implementation registries (explanation methods, metrics, ...).

A registry maps names (and aliases) to a factory plus default arguments, so that a variant such
as ``"sp-g"`` is the same class as ``"sp"`` with a different default removal. The contract
test suites iterate over the registries.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Registry", "Entry", "METHODS", "METRICS"]


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
        named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(named))
            if unknown:
                allowed = ", ".join(n for n in named[len(args):])
                raise ValueError(
                    f"{unknown[0]}: not a hyperparameter of {self.name!r}; expected one of: {allowed}"
                )
        merged = {k: (v() if callable(v) and not inspect.isclass(v) and _no_args(v) else v)
                  for k, v in self.defaults.items() if k not in kwargs}
        merged.update(kwargs)
        return self.factory(*args, **merged)


def _no_args(fn: Callable[..., Any]) -> bool:
    try:
        return not any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                       for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


class Registry:
    """A registry of named factories of one kind (``"method"``, ``"metric"``...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, factory: Callable[..., Any], *, aliases: tuple[str, ...] = (),
            defaults: dict[str, Any] | None = None, summary: str | None = None) -> None:
        """Register ``factory`` under ``name`` (and ``aliases``) with default arguments."""
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        if summary is None:
            summary = (inspect.getdoc(factory) or "").split("\n", 1)[0]
        self._entries[name] = Entry(name, factory, dict(defaults or {}), summary)
        for alias in aliases:
            self._aliases[alias] = name

    def register(self, name: str, *, aliases: tuple[str, ...] = (),
                 defaults: dict[str, Any] | None = None,
                 summary: str | None = None) -> Callable[[Any], Any]:
        """Class decorator form of :meth:`add`."""

        def decorate(factory: Any) -> Any:
            self.add(name, factory, aliases=aliases, defaults=defaults, summary=summary)
            return factory

        return decorate

    def get(self, name: object) -> Entry:
        """The entry for ``name`` or an alias; ValueError listing the choices otherwise."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind}: expected a name (str), got {type(name).__name__}")
        key = self._aliases.get(name.lower(), name.lower())
        if key not in self._entries:
            raise ValueError(f"{self.kind}: unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}")
        return self._entries[key]

    def names(self, aliases: bool = False) -> list[str]:
        """Registered names (sorted), with aliases when asked."""
        names = list(self._entries)
        if aliases:
            names += list(self._aliases)
        return sorted(names)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, target in self._aliases.items() if target == name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name.lower() in self._entries or name.lower() in self._aliases)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._entries.values())


#: Every explanation method: ``METHODS.get("occlusion").build(model, **hyperparameters)``.
METHODS = Registry("method")

#: Every evaluation metric; see :mod:`unmask.metrics` for the calling conventions of each kind.
METRICS = Registry("metric")
