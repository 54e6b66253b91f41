"""What a configuration written by someone else may do: name things, never run code.

A benchmark config (``unmask bench run CONFIG``) is data: it names a model, a data folder,
methods, metrics and removals. Two kinds of spec string would make it code:

- a model name ``"module:function"``: the module is imported and the function called;
- a removal ``"torchscript:PATH"``: a TorchScript program is loaded and run.

Both are refused unless the user allows code explicitly (``unmask bench run --allow-code``,
``allow_code=True`` in Python), by :func:`refuse_code`, the one place that decides; a model-name
grammar calls it for its ``module:function`` branch. A config also never chooses where files
are written: the default store is ``<name>.sqlite`` in the current folder, and
:func:`default_store` refuses a ``name`` that would put it anywhere else (give ``--store``).

Reading is not restricted: a config may read images, weights (``weights_only=True``), label
trees (JSON) wherever it points.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = [
    "LOADER_PREFIXES",
    "names_function",
    "code_in",
    "refuse_code",
    "refuse_code_in_config",
    "default_store",
]

#: Model-name prefixes that build a named architecture from local weights: not code.
LOADER_PREFIXES = ("tv:", "timm:", "hf:")
_FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def names_function(spec: str) -> bool:
    """Whether a model spec names a Python function to import and call (``module:function``,
    options such as ``:weights=FILE`` aside), rather than a model :func:`unmask.load_model`
    builds.

    Example:
        >>> names_function("os:system"), names_function("tv:resnet50:weights=r.pth")
        (True, False)
        >>> names_function("efficientnet_lite0:weights=w.pt")
        False
    """
    base, sep, tail = spec.strip().rpartition(":")
    if sep and "=" in tail:
        spec = base
    return bool(_FUNCTION.fullmatch(spec.strip())) and not spec.strip().startswith(LOADER_PREFIXES)


#: How the user allows code, named in every refusal.
_HOW = "allow it explicitly with `unmask bench run --allow-code` (allow_code=True in Python)"


def code_in(spec: str, kind: str) -> str | None:
    """What code the spec string ``spec`` would run, or None.

    Args:
        spec: a model name (``kind="model"``) or a removal spec (``kind="removal"``).
        kind: ``"model"`` or ``"removal"``.

    Example:
        >>> code_in("os:system", "model")
        'imports and calls the Python function system of module os'
        >>> code_in("tv:resnet50", "model") is None, code_in("blur:5", "removal") is None
        (True, True)
    """
    if kind == "model" and names_function(spec):
        module, _, function = spec.partition(":")
        return f"imports and calls the Python function {function} of module {module}"
    if kind == "removal" and spec.strip().lower().partition(":")[0] == "torchscript":
        return "loads and runs a TorchScript program"
    return None


def refuse_code(spec: str, key: str, kind: str, *, allow_code: bool = False) -> None:
    """Refuse a spec string that runs code (:func:`code_in`) unless ``allow_code``.

    Args:
        spec: the spec string.
        key: the config key named in the error (``"model.name"``, ``"methods[0].params.removal"``).
        kind: ``"model"`` or ``"removal"``.
        allow_code: the user's explicit permission.

    Example:
        >>> refuse_code("os:system", "model.name", "model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: model.name: 'os:system' imports and calls the Python function system ...
    """
    what = code_in(spec, kind)
    if what is not None and not allow_code:
        raise ValueError(f"{key}: {spec!r} {what}; a configuration runs no code unless you {_HOW}")


def _strings(value: object, key: str) -> Iterator[tuple[str, str]]:
    """Every string inside ``value`` (nested tables and lists), with its key path."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if k not in ("label", "method", "metric", "map"):  # names, never specs
                yield from _strings(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{key}[{i}]")


def refuse_code_in_config(config: Mapping[str, object], *, allow_code: bool = False) -> None:
    """Refuse a benchmark config (as parsed from TOML, not yet checked) that would run code:
    a ``module:function`` model name, or a TorchScript removal anywhere in its methods' and
    metrics' tables (params, removals, sweeps). Runs before anything in it is built.

    Example:
        >>> refuse_code_in_config({"model": {"name": "efficientnet_lite0"},
        ...                        "methods": [{"method": "occlusion", "removals": ["blur"]}]})
        >>> refuse_code_in_config({"methods": [{"method": "occlusion",
        ...                        "removals": ["torchscript:lama.pt"]}]})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: methods[0].removals[0]: 'torchscript:lama.pt' loads and runs a TorchScript ...
    """
    model = config.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("name"), str):
        refuse_code(model["name"], "model.name", "model", allow_code=allow_code)
    for table in ("methods", "metrics"):
        for key, spec in _strings(config.get(table), table):
            refuse_code(spec, key, "removal", allow_code=allow_code)


def default_store(name: str, folder: str | os.PathLike[str] = ".") -> Path:
    """The default store of a benchmark called ``name``: ``<name>.sqlite`` in ``folder``.

    A config chooses its name, not where files go: a name that is not a plain file name (a
    separator, ``..``, a leading dot) is refused; ``--store PATH`` chooses any place.

    Example:
        >>> default_store("tiny").name
        'tiny.sqlite'
        >>> default_store("../../x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: name: '../../x' is not a plain file name, and the default store ...
    """
    seps = {os.sep, os.altsep or os.sep, "/", "\\"}
    plain = bool(name) and not name.startswith(".") and not any(s in name for s in seps)
    path = Path(folder) / f"{name}.sqlite"
    if not plain or path.resolve().parent != Path(folder).resolve():
        raise ValueError(
            f"name: {name!r} is not a plain file name, and the default store <name>.sqlite is "
            "written in the current folder only; rename the benchmark, or choose the store "
            "with --store PATH"
        )
    return path
