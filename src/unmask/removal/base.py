"""What every removal strategy shares: blending, the fixed-fill base and the one binder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from .._checks import check_images, check_mask, check_unit_range

__all__ = ["Removal", "FixedFill", "BySpec", "blend", "bind", "checked", "is_differentiable"]


@runtime_checkable
class Removal(Protocol):
    """A way to remove part of an image: ``removal(x, mask) -> x_removed``.

    ``x`` is (B, C, H, W), ``mask`` is (B, 1, H, W) in [0, 1] with 1 = removed (either batch may
    be 1 and broadcast). The result is ``x * (1 - mask) + fill * mask``.

    Removals whose fill does not depend on the mask expose ``fill(x) -> (B, C, H, W)`` so that the
    scoring engine computes it once per image instead of once per perturbation. ``spec`` is a
    short string that :func:`unmask.removal.make_removal` turns back into an equal removal.
    """

    differentiable: bool

    @property
    def spec(self) -> str: ...

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor: ...


def blend(x: Tensor, fill: Tensor, mask: Tensor) -> Tensor:
    """``x * (1 - mask) + fill * mask``; exact where mask is 0 or 1."""
    return x * (1 - mask) + fill * mask


def checked(x: object, mask: object) -> tuple[Tensor, Tensor]:
    """Validate images (values in [0, 1]) and mask at a removal's public boundary."""
    x = check_unit_range(check_images(x, "x"), "x")
    mask = check_mask(mask, x, "mask")
    return x, mask.to(device=x.device, dtype=x.dtype)


def is_differentiable(removal: object) -> bool:
    """True when ``removal(x, mask)`` is differentiable with respect to ``mask``."""
    return bool(getattr(removal, "differentiable", False))


class BySpec:
    """Value semantics from the ``spec`` string: equal specs are equal removals."""

    @property
    def spec(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BySpec) and type(other) is type(self) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.spec))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class FixedFill(BySpec):
    """Base of the removals whose fill does not depend on the mask (constant, blur, noise...).

    A subclass defines ``fill(x) -> (B, C, H, W)`` and ``spec``; calling it checks the inputs
    and blends. Such removals are differentiable with respect to the mask.
    """

    differentiable = True

    def fill(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Remove ``mask`` (B, 1, H, W) from ``x`` (B, C, H, W); returns (B, C, H, W)."""
        x, mask = checked(x, mask)
        fill = self.fill(x)
        if fill.shape != x.shape:
            raise ValueError(
                f"removal: {self.spec} gave a fill of shape {tuple(fill.shape)} "
                f"for images {tuple(x.shape)}"
            )
        return blend(x, fill, mask)


def bind(
    removal: Callable[[Tensor, Tensor], Tensor], x: Tensor, grad: bool = False
) -> Callable[..., Tensor]:
    """Bind a removal to a batch of images ``x`` (B, C, H, W) for repeated use.

    Returns ``apply(mask, index=None)``: the removal applied to ``x[index]`` (all of ``x`` when
    ``index`` is None) with ``mask`` (N, 1, H, W). Fixed fills are computed once here, not once
    per call, and detached when ``grad`` is True (gradients then flow to the mask only). No input
    checks: this is the engines' internal fast path.
    """
    fill_fn = getattr(removal, "fill", None)
    if fill_fn is not None:
        if grad:
            with torch.no_grad():
                fill = fill_fn(x).detach()
        else:
            fill = fill_fn(x)
        if fill.shape != x.shape:
            raise ValueError(
                f"removal: {removal!r} gave a fill of shape {tuple(fill.shape)} "
                f"for images {tuple(x.shape)}"
            )

        def apply_fixed(mask: Tensor, index: Tensor | None = None) -> Tensor:
            if index is None:
                return blend(x, fill, mask)
            return blend(x[index], fill[index], mask)

        return apply_fixed

    def apply(mask: Tensor, index: Tensor | None = None) -> Tensor:
        xs = x if index is None else x[index]
        out = removal(xs, mask)
        if (
            not isinstance(out, Tensor)
            or out.shape[1:] != xs.shape[1:]
            or out.shape[0] not in (xs.shape[0], mask.shape[0])
        ):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"removal: {removal!r} returned {got}, expected images of shape "
                f"{(max(xs.shape[0], mask.shape[0]), *xs.shape[1:])}"
            )
        return out

    return apply
