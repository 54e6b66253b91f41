"""Removal names: one registry that turns a spec string into a removal, for every caller.

A spec is ``NAME`` or ``NAME:VALUE`` or ``NAME:KEY=VALUE,KEY=VALUE...``; values are JSON
(numbers, ``true``, lists such as ``[0.1,0.2,0.3]``) or plain text (a path). Every removal's
``spec`` property is such a string, and ``make_removal(r.spec)`` rebuilds an equal removal.
"""

from __future__ import annotations

import json
from typing import Any

from ..registry import Registry
from .base import Removal
from .fills import Blur, BoxBlur, Constant, Noise, RiseBlur
from .inpaint import Inpaint, TorchScriptInpainter
from .road import NoisyLinearImputation

__all__ = ["REMOVALS", "make_removal", "removal_names", "parse_spec", "resolve_removal"]

#: Every removal by name: ``REMOVALS.get("blur").build(sigma=5)``.
REMOVALS = Registry("removal", fill=("unmask.removal",))

for _colour in ("gray", "black", "white", "mean", "image_mean"):
    REMOVALS.add(
        _colour,
        Constant,
        defaults={"value": _colour},
        aliases={"gray": ("grey",), "mean": ("imagenet_mean",)}.get(_colour, ()),
        summary=f"constant fill: {_colour}"
        + (" (ImageNet mean colour)" if _colour == "mean" else ""),
    )
REMOVALS.add(
    "constant", Constant, summary="constant fill: constant:VALUE or constant:[R,G,B] in [0, 1]"
)
REMOVALS.add("blur", Blur, summary="Gaussian blur: blur or blur:SIGMA (default 10, SIGMA > 0)")
REMOVALS.add(
    "noise",
    Noise,
    defaults={"kind": "gaussian"},
    summary="Gaussian noise N(0.5, 0.25), seeded: noise:seed=N,mean=M,std=S",
)
REMOVALS.add(
    "uniform-noise",
    Noise,
    defaults={"kind": "uniform"},
    summary="uniform noise U(0, 1), seeded: uniform-noise:seed=N",
)
REMOVALS.add(
    "box-blur",
    BoxBlur,
    summary="saliency_maps_metrics' blur: box filter max(H//5, 9), zero padding",
)
REMOVALS.add(
    "rise-blur",
    RiseBlur,
    summary="RISE's insertion blur: gkern(11, 5), padded with the ImageNet mean colour",
)
REMOVALS.add(
    "rise-zeros",
    Constant,
    defaults={"value": "mean"},
    summary="RISE's deletion substrate: zeros of normalised images (the ImageNet mean)",
)
for _method, _what in (
    ("telea", "OpenCV Telea"),
    ("ns", "OpenCV Navier-Stokes"),
    ("patchmatch", "PyPatchMatch"),
    ("biharmonic", "scikit-image biharmonic"),
):
    REMOVALS.add(_method, Inpaint, defaults={"method": _method}, summary=f"inpainting: {_what}")
REMOVALS.add(
    "road",
    NoisyLinearImputation,
    summary="ROAD's noisy linear imputation (neighbour mean + N(0, 0.01)): road:noise=S,seed=N",
)
REMOVALS.add(
    "torchscript",
    TorchScriptInpainter,
    summary="a learned inpainter saved as TorchScript: torchscript:PATH",
)


def removal_names() -> list[str]:
    """The removal names :func:`make_removal` accepts (sorted, aliases excluded)."""
    return REMOVALS.names()


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split(text: str) -> list[str]:
    """Split at commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[(" and 1 or (-1 if ch in "])" else 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p]


def parse_spec(spec: str) -> tuple[str, list[Any], dict[str, Any]]:
    """Split a spec: ``"blur:sigma=5"`` -> ``("blur", [], {"sigma": 5})``.

    ``"blur:5"`` -> ``("blur", [5], {})``.
    """
    name, _, rest = spec.strip().partition(":")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for part in _split(rest):
        key, eq, value = part.partition("=")
        if eq and key.isidentifier():
            kwargs[key] = _value(value)
        elif kwargs:
            raise ValueError(f"removal: positional value {part!r} after KEY=VALUE in {spec!r}")
        else:
            args.append(_value(part))
    return name.lower(), args, kwargs


def make_removal(spec: str | Removal) -> Removal:
    """A removal from its spec string (for the CLI, configs and stored results), or itself.

    Names (``unmask.removal.removal_names()``): ``gray``, ``black``, ``white``, ``mean``,
    ``image_mean``, ``constant:V``, ``blur[:SIGMA]``, ``noise``, ``uniform-noise``,
    ``box-blur``, ``rise-blur``, ``rise-zeros``, ``telea``, ``ns``, ``patchmatch``,
    ``biharmonic``, ``road``, ``torchscript:PATH``.

    Example:
        >>> make_removal("blur:5")
        Blur('blur:5')
        >>> make_removal(make_removal("noise:seed=3").spec).spec
        'noise:seed=3'
    """
    if not isinstance(spec, str):
        if callable(spec):
            return spec
        raise TypeError(
            f"removal: expected a removal strategy or a name, got {type(spec).__name__}"
        )
    name, args, kwargs = parse_spec(spec)
    if name not in REMOVALS:
        raise ValueError(
            f"removal: unknown removal {spec!r}; expected one of: {', '.join(removal_names())}"
        )
    entry = REMOVALS.get(name)
    positional = [n for n in entry.parameters() if n not in entry.defaults][: len(args)]
    if len(positional) < len(args):
        raise ValueError(
            f"removal: {name!r} takes no positional value, got {spec!r}; "
            f"use {name}:KEY=VALUE ({', '.join(entry.parameters())})"
        )
    try:
        return entry.build(**dict(zip(positional, args, strict=True)), **kwargs)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise ValueError(f"removal: {spec!r}: {exc} ({name}: {entry.summary})") from None


def resolve_removal(removal: object, default: Any = None) -> Removal:
    """``None`` -> ``default()``; a name -> :func:`make_removal`; a removal -> itself."""
    if removal is None:
        if default is None:
            raise ValueError("removal: expected a removal strategy or a name, got None")
        return default()
    return make_removal(removal)  # type: ignore[arg-type]
