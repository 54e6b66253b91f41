"""Layer outputs as spatial maps: transformer tokens and channels-last layouts -> (B, C, h, w).

Layer methods (the CAMs, Score-CAM, Ablation-CAM, excitation backprop) combine a layer's
activations as channels over a grid, (B, C, h, w). A vision transformer's layers output tokens
instead, (B, N, C): a few leading tokens that belong to no patch (the class token, DeiT's
distillation token, register tokens) and then the patches in raster order; Swin's stages output
(B, h, w, C). ``reshape=`` of every layer method says how to read them:

- ``"auto"`` (default): (B, C, h, w) as it is; (B, N, C) tokens: the grid (h, w) and the number
  of leading tokens p are inferred from N and the network's input size (:func:`token_grid`),
  the p leading tokens dropped; (B, h, w, C) when (h, w) is a patch grid of the input and
  (w, C) is not (Swin), else (B, C, h, w);
- ``"none"``: the layer must output (B, C, h, w);
- a callable ``f(activations) -> (B, C, h, w)`` for any other layout (as pytorch-grad-cam's
  ``reshape_transform``); it is applied to the gradients too.

A grid is "of the input" when one square patch side s gives it: ``h = floor(H / s)`` and
``w = floor(W / s)`` (a strided convolution), or the same with ``ceil`` (a padded one).

Example:
    >>> import torch
    >>> tokens = torch.randn(2, 1 + 14 * 14, 192)                  # class token + 14 x 14 patches
    >>> token_grid(tokens.shape[1], (224, 224))
    (1, 14, 14)
    >>> layout(tokens, (224, 224)).spatial(tokens).shape
    torch.Size([2, 192, 14, 14])
    >>> layout(torch.randn(2, 2 + 8 * 12, 64), (64, 96)).grid     # + a distillation token
    (2, 8, 12)
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

__all__ = [
    "Reshape",
    "RESHAPES",
    "MAX_PREFIX",
    "token_grid",
    "check_reshape",
    "layout",
    "Layout",
    "network_size",
]

#: What ``reshape=`` takes: ``"auto"``, ``"none"`` or ``f(activations) -> (B, C, h, w)`` (a
#: choice for specs, a callable for code).
Reshape = Literal["auto", "none"] | Callable[[Tensor], Tensor]

#: The named values of ``reshape=``.
RESHAPES: tuple[str, ...] = typing.get_args(typing.get_args(Reshape)[0])

#: The most leading (non-patch) tokens :func:`token_grid` considers (class, distillation and
#: register tokens).
MAX_PREFIX = 16


def _fits(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether one integer patch side s gives the grid (h, w) on an image of ``size``."""
    big_h, big_w = size
    if h <= 0 or w <= 0 or h > big_h or w > big_w:
        return False
    if h * big_w == w * big_h and big_h % h == 0:  # the common case: s = H / h exactly
        return True
    # floor(H / s) = h  <=>  H // (h + 1) < s <= H // h
    lo = max(big_h // (h + 1), big_w // (w + 1)) + 1
    if lo <= min(big_h // h, big_w // w):
        return True
    # ceil(H / s) = h  <=>  ceil(H / h) <= s < H / (h - 1)
    lo = max(-(-big_h // h), -(-big_w // w))
    hi = min(
        math.inf if h == 1 else -(-big_h // (h - 1)) - 1,
        math.inf if w == 1 else -(-big_w // (w - 1)) - 1,
    )
    return lo <= hi


def token_grid(n: int, size: tuple[int, int]) -> tuple[int, int, int]:
    """The layout of ``n`` tokens of an image of ``size`` (H, W): ``(p, h, w)``.

    ``p`` is the fewest leading tokens (at most :data:`MAX_PREFIX`) such that the other
    ``n - p`` form a grid of ``h × w`` patches of the input (see the module docstring).

    Raises:
        ValueError: when no such grid exists.
    """
    for p in range(0, min(MAX_PREFIX, n - 1) + 1):
        m = n - p
        guess = math.sqrt(m * size[0] / size[1])
        divisors = sorted(
            {d for i in range(1, math.isqrt(m) + 1) if m % i == 0 for d in (i, m // i)},
            key=lambda d: abs(d - guess),
        )
        for h in divisors:
            if _fits(h, m // h, size):
                return p, h, m // h
    raise ValueError(
        f"{n} tokens do not form a patch grid of a {size[0]}x{size[1]} input after dropping "
        f"0..{MAX_PREFIX} leading tokens; pass reshape=f with f(activations) -> (B, C, h, w)"
    )


def check_reshape(reshape: object) -> Reshape:
    """``"auto"``, ``"none"`` or a callable; a TypeError / ValueError naming ``reshape``."""
    if callable(reshape):
        return reshape
    if not isinstance(reshape, str):
        raise TypeError(
            f"reshape: expected 'auto', 'none' or a callable, got {type(reshape).__name__}"
        )
    if reshape == "auto":
        return "auto"
    if reshape == "none":
        return "none"
    raise ValueError(f"reshape: expected 'auto', 'none' or a callable, got {reshape!r}")


@dataclass(frozen=True)
class Layout:
    """How a layer's output (and its gradient, of the same shape) maps to (B, C, h, w).

    Attributes:
        kind: ``"spatial"`` (B, C, h, w), ``"tokens"`` (B, N, C), ``"channels_last"``
            (B, h, w, C) or ``"custom"`` (a callable).
        grid: ``(p, h, w)``: leading tokens dropped and the grid (p = 0 but for tokens).
        channel_axis: the channels' axis in the layer's own output (None when a callable
            hides it).
        transform: the callable of ``"custom"``.
    """

    kind: str
    grid: tuple[int, int, int]
    channel_axis: int | None
    transform: Callable[[Tensor], Tensor] | None = None

    def spatial(self, t: Tensor) -> Tensor:
        """``t`` (the layer's output or its gradient) as (B, C, h, w)."""
        if self.kind == "spatial":
            return t
        if self.kind == "channels_last":
            return t.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            p, h, w = self.grid
            return t[:, p:].transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)
        assert self.transform is not None
        return self.transform(t)


def layout(
    activation: Tensor, size: tuple[int, int], reshape: Reshape = "auto", layer: str = "layer"
) -> Layout:
    """The :class:`Layout` of a layer's output ``activation`` for a network input of ``size``.

    Raises:
        ValueError: naming ``layer`` when the output cannot be read as (B, C, h, w).
    """
    shape = tuple(activation.shape)
    if callable(reshape):
        out = reshape(activation)
        if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[0] != shape[0]:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"reshape: expected the callable to turn {layer!r}'s output {shape} into "
                f"(B, C, h, w), got {got}"
            )
        axes = [i for i in range(1, len(shape)) if shape[i] == out.shape[1]]
        return Layout("custom", (0, *out.shape[2:]), axes[0] if len(axes) == 1 else None, reshape)
    if len(shape) == 4:
        channels_last = (
            reshape == "auto"
            and _fits(shape[1], shape[2], size)
            and not _fits(shape[2], shape[3], size)
        )
        if channels_last:
            return Layout("channels_last", (0, shape[1], shape[2]), 3)
        return Layout("spatial", (0, shape[2], shape[3]), 1)
    if len(shape) == 3 and reshape == "auto":
        try:
            grid = token_grid(shape[1], size)
        except ValueError as exc:
            raise ValueError(f"layer: {layer!r} outputs tokens {shape}: {exc}") from None
        return Layout("tokens", grid, 2)
    hint = (
        "; reshape='auto' reads (B, N, C) tokens and (B, h, w, C) maps"
        if reshape == "none"
        else "; pass reshape=f with f(activations) -> (B, C, h, w)"
    )
    raise ValueError(
        f"layer: {layer!r} outputs shape {shape}; layer methods need (B, C, h, w) activations{hint}"
    )


def network_size(model: object, x: Tensor) -> tuple[int, int]:
    """The size (H, W) of the images the network sees: ``model.input_size``, else ``x``'s."""
    size = getattr(model, "input_size", None) or tuple(x.shape[-2:])
    return (int(size[0]), int(size[1]))
