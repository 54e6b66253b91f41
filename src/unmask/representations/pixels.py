"""The identity representation: one band holding the pixels (for pixel-space masks)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .._checks import check_images

__all__ = ["Pixels"]


class Pixels:
    """Pixels as coefficients: one group with one band, (B, C, 1, H, W).

    Lets pixel masks (PixelMask) use the same mask optimiser as wavelet and shearlet masks.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 3, 8, 8)
        >>> c = Pixels().forward(x)
        >>> [tuple(t.shape) for t in c]
        [(2, 3, 1, 8, 8)]
        >>> bool((Pixels().inverse(c, (8, 8)) == x).all())
        True
    """

    name = "pixels"

    def forward(self, x: Tensor) -> list[Tensor]:
        """Coefficients [(B, C, 1, H, W)] of images (B, C, H, W)."""
        check_images(x, "x")
        return [x.unsqueeze(2)]

    def inverse(self, coeffs: Sequence[Tensor], size: tuple[int, int] | None = None) -> Tensor:
        """Images (B, C, H, W) from [(B, C, 1, H, W)]; ``size`` is checked when given."""
        if len(coeffs) != 1 or coeffs[0].ndim != 5 or coeffs[0].shape[2] != 1:
            shapes = [tuple(c.shape) for c in coeffs]
            raise ValueError(f"coeffs: expected [(B, C, 1, H, W)], got {shapes}")
        x = coeffs[0].squeeze(2)
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            raise ValueError(
                f"size: expected {tuple(x.shape[-2:])} for these coefficients, got {size}"
            )
        return x

    spec = "pixels"

    def __repr__(self) -> str:
        return "Pixels()"
