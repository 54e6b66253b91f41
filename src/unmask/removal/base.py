"""What every removal strategy shares: blending and the batched binding used by the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from torch import Tensor

from .._checks import check_images, check_mask

__all__ = ["Removal", "blend", "bind", "checked"]


@runtime_checkable
class Removal(Protocol):
    """A way to remove part of an image: ``removal(x, mask) -> x_removed``.

    ``x`` is (B, C, H, W), ``mask`` is (B, 1, H, W) in [0, 1] with 1 = removed (either batch may
    be 1 and broadcast). The result is ``x * (1 - mask) + fill * mask``.

    Removals whose fill does not depend on the mask expose ``fill(x) -> (B, C, H, W)`` so that the
    scoring engine computes it once per image instead of once per perturbation.
    """

    differentiable: bool

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor: ...


def blend(x: Tensor, fill: Tensor, mask: Tensor) -> Tensor:
    """``x * (1 - mask) + fill * mask``; exact where mask is 0 or 1."""
    return x * (1 - mask) + fill * mask


def checked(x: object, mask: object) -> tuple[Tensor, Tensor]:
    """Validate images and mask at a removal's public boundary."""
    x = check_images(x, "x")
    mask = check_mask(mask, x, "mask")
    return x, mask.to(device=x.device, dtype=x.dtype)


def bind(removal: Callable[[Tensor, Tensor], Tensor], x: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """Bind a removal to a batch of images for repeated use.

    Returns ``apply(mask, index)``: the removal applied to ``x[index]`` (N, C, H, W) with
    ``mask`` (N, 1, H, W). Fixed fills are computed once here, not once per call. No input
    checks: this is the engine's internal fast path.
    """
    fill_fn = getattr(removal, "fill", None)
    if fill_fn is not None:
        fill = fill_fn(x)

        def apply_fixed(mask: Tensor, index: Tensor) -> Tensor:
            return blend(x[index], fill[index], mask)

        return apply_fixed

    def apply(mask: Tensor, index: Tensor) -> Tensor:
        return removal(x[index], mask)

    return apply
