"""Removal strategies: how a part of an image is removed.

Each strategy is a callable ``removal(x, mask) -> x_removed`` with ``x`` (B, C, H, W) and
``mask`` (B, 1, H, W) in [0, 1], 1 = removed, computing ``x * (1 - mask) + fill * mask``.
Explainers and metrics take any of them, so an explainer with an inpainting removal *is* the
"-G" (generative) variant of that explainer. Every removal has a ``spec`` string, and
:func:`make_removal` (backed by the one :data:`REMOVALS` registry) rebuilds it from that string.
"""

from .base import FixedFill, Removal, bind, blend, is_differentiable
from .fills import Blur, BoxBlur, Constant, Noise, RiseBlur, TensorFill, gaussian_blur, rise_kernel
from .inpaint import Inpaint, TorchScriptInpainter
from .road import NoisyLinearImputation
from .specs import REMOVALS, make_removal, parse_spec, removal_names, resolve_removal

__all__ = [
    "Removal",
    "FixedFill",
    "Constant",
    "Blur",
    "Noise",
    "BoxBlur",
    "RiseBlur",
    "TensorFill",
    "Inpaint",
    "TorchScriptInpainter",
    "NoisyLinearImputation",
    "REMOVALS",
    "blend",
    "bind",
    "gaussian_blur",
    "is_differentiable",
    "make_removal",
    "parse_spec",
    "removal_names",
    "resolve_removal",
    "rise_kernel",
]
