"""Shearlets as a maskable representation: the size-agnostic adapter of :class:`ShearletSystem`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_images
from .shearlets import ShearletSystem, shearlet_system

__all__ = ["Shearlets"]


class _Synthesis(torch.autograd.Function):
    """``ShearletSystem.inverse`` with its adjoint as the backward pass.

    The synthesis ``x = Σ_j D_j c_j`` with dual filters ``D_j = ψ̂_j / W`` (``W = Σ_j ψ̂_j²``)
    has real, even frequency responses (the system's filters are real and even), so its adjoint
    is the analysis ``c_j = D_j g = ψ̂_j · (g / W)``: the system's forward transform of
    ``F⁻¹(F(g) / W)``. One FFT + K inverse FFTs instead of autograd's generic path through
    ``rfft2``'s backward (full complex FFTs of every band and zero-filled buffers): measured
    ~2× faster per optimisation step. Checked by gradcheck in the tests.
    """

    @staticmethod
    def forward(ctx: Any, c: Tensor, system: ShearletSystem) -> Tensor:  # type: ignore[override]
        ctx.system = system
        return system.inverse(c)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        system: ShearletSystem = ctx.system
        h, w = system.height, system.width
        weights = system.dual_weights.to(device=grad.device, dtype=grad.dtype)[..., : w // 2 + 1]
        scaled = torch.fft.irfft2(torch.fft.rfft2(grad) / weights, s=(h, w))
        return system.forward(scaled), None


class Shearlets:
    """Digital shearlet coefficients as one band group (B, C, K, H, W), K = 49 by default.

    Builds (and caches, via :func:`shearlet_system`) the system of each input size, so one
    object serves images of any H × W. Every filter is one band.

    Args:
        scales: directional scales (default 4, as ShearletX).
        directions: directions per scale, coarse to fine (default (8, 8, 16, 16)).

    Example:
        >>> import torch
        >>> s = Shearlets()
        >>> x = torch.rand(1, 3, 40, 56)
        >>> c = s.forward(x)
        >>> tuple(c[0].shape)
        (1, 3, 49, 40, 56)
        >>> bool((s.inverse(c, (40, 56)) - x).abs().max() < 1e-5)
        True
    """

    name = "shearlets"

    def __init__(self, scales: int = 4, directions: Sequence[int] | None = (8, 8, 16, 16)) -> None:
        self.scales = scales
        self.directions = None if directions is None else tuple(directions)
        shearlet_system(64, 64, scales, self.directions)  # validates the configuration early

    def system(self, height: int, width: int) -> ShearletSystem:
        """The (cached) shearlet system of ``height`` × ``width`` images."""
        return shearlet_system(height, width, self.scales, self.directions)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Coefficients [(B, C, K, H, W)] of images (B, C, H, W)."""
        check_images(x, "x")
        return [self.system(*x.shape[-2:]).forward(x)]

    def inverse(self, coeffs: Sequence[Tensor], size: tuple[int, int] | None = None) -> Tensor:
        """Images (B, C, H, W) from [(B, C, K, H, W)] (canonical dual frame)."""
        if len(coeffs) != 1:
            raise ValueError(f"coeffs: expected one band group [(B, C, K, H, W)], got {len(coeffs)}")
        c = coeffs[0]
        if size is not None and tuple(c.shape[-2:]) != tuple(size):
            raise ValueError(f"size: expected {tuple(c.shape[-2:])} for these coefficients, got {size}")
        return _Synthesis.apply(c, self.system(*c.shape[-2:]))

    def __repr__(self) -> str:
        return f"Shearlets(scales={self.scales}, directions={self.directions})"
