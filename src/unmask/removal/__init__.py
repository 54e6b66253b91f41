"""Removal strategies: how a part of an image is removed.

Each strategy is a callable ``removal(x, mask) -> x_removed`` with ``x`` (B, C, H, W) and
``mask`` (B, 1, H, W) in [0, 1], 1 = removed, computing ``x * (1 - mask) + fill * mask``.
Explainers and metrics take any of them, so an explainer with an inpainting removal *is* the
"-G" (generative) variant of that explainer.
"""

from .base import Removal, bind, blend
from .fills import Blur, Constant, Noise, gaussian_blur
from .inpaint import Inpaint, TorchScriptInpainter

__all__ = [
    "Removal",
    "Constant",
    "Blur",
    "Noise",
    "Inpaint",
    "TorchScriptInpainter",
    "blend",
    "bind",
    "gaussian_blur",
    "make_removal",
]


def make_removal(spec: "str | Removal") -> Removal:
    """A removal from a short name (for the CLI and configs), or the removal itself.

    Names: ``gray``, ``black``, ``white``, ``mean``, ``image_mean`` (constants), ``blur`` or
    ``blur:SIGMA``, ``noise`` / ``uniform-noise`` (seed 0), ``telea``, ``ns``, ``patchmatch``,
    ``biharmonic`` (inpainting).
    """
    if not isinstance(spec, str):
        if callable(spec):
            return spec  # type: ignore[return-value]
        raise TypeError(f"removal: expected a removal strategy or a name, got {type(spec).__name__}")
    name, _, arg = spec.partition(":")
    if name in ("gray", "grey", "black", "white", "mean", "imagenet_mean", "image_mean"):
        return Constant(name)
    if name == "blur":
        try:
            return Blur(float(arg)) if arg else Blur()
        except ValueError:
            raise ValueError(f"removal: expected 'blur' or 'blur:SIGMA', got {spec!r}") from None
    if name == "noise":
        return Noise("gaussian")
    if name == "uniform-noise":
        return Noise("uniform")
    if name in ("telea", "ns", "patchmatch", "biharmonic"):
        return Inpaint(name)
    raise ValueError(
        "removal: unknown removal "
        f"{spec!r}; expected one of gray, black, white, mean, image_mean, blur[:SIGMA], noise, "
        "uniform-noise, telea, ns, patchmatch, biharmonic"
    )
