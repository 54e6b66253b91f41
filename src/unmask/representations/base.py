"""The protocol every maskable image representation follows, and helpers on its coefficients.

A representation ``T`` maps images (B, C, H, W) to **coefficients**: a list of ``G`` band
groups, each a tensor (B, C, K_g, h_g, w_g). Slice ``[:, :, k]`` of group ``g`` is one *band*
(a wavelet level/orientation, one shearlet filter, the pixels), whose coefficients share
statistics. Groups exist because bands of different spatial sizes cannot be stacked
(wavelet levels); a non-subsampled frame (shearlets, pixels) is one group.

``T.inverse(coeffs, size)`` maps (possibly masked) coefficients back to images (B, C, H, W);
it is linear, differentiable, and the exact inverse of ``T.forward`` on its range.

A **mask** over coefficients is a list of tensors (B, 1, K_g, h_g, w_g), one value per
coefficient position shared over the colour channels (Kolek et al., CVPR 2023).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "Coefficients",
    "Representation",
    "band_statistics",
    "gray",
    "ones_mask",
    "apply_mask",
    "coefficient_count",
    "modulated_inverse",
]

#: Band groups, each (B, C, K_g, h_g, w_g).
Coefficients = list[Tensor]


@runtime_checkable
class Representation(Protocol):
    """An invertible, linear, differentiable image representation with band structure."""

    name: str

    def forward(self, x: Tensor) -> Coefficients:
        """Coefficients of images ``x`` (B, C, H, W): a list of (B, C, K_g, h_g, w_g)."""
        ...

    def inverse(self, coeffs: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        """Images (B, C, H, W) of spatial ``size`` (H, W) from coefficients."""
        ...


def gray(x: Tensor) -> Tensor:
    """The gray image (B, 1, H, W) of images (B, C, H, W): the mean over channels.

    The mean (not luma weights) as in the ShearletX/WaveletX code (``x.sum(1) / 3``); since every
    representation here is linear and channel-wise, ``T(gray(x)) = gray over channels of T(x)``.
    """
    return x.mean(dim=1, keepdim=True)


def band_statistics(coeffs: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Mean and standard deviation of every band, per image and channel.

    Args:
        coeffs: band groups (B, C, K_g, h_g, w_g).

    Returns:
        One ``(mean, std)`` pair per group, each (B, C, K_g, 1, 1) (std: unbiased, 0 for a band
        of one coefficient).
    """
    out = []
    for c in coeffs:
        flat = c.flatten(-2)
        mean = flat.mean(-1)[..., None, None]
        std = (flat.std(-1) if flat.shape[-1] > 1 else torch.zeros_like(flat[..., 0]))[
            ..., None, None
        ]
        out.append((mean, std))
    return out


def ones_mask(coeffs: Sequence[Tensor]) -> list[Tensor]:
    """An all-ones mask (B, 1, K_g, h_g, w_g) per group, shared over channels."""
    return [torch.ones_like(c[:, :1]) for c in coeffs]


def apply_mask(coeffs: Sequence[Tensor], mask: Sequence[Tensor]) -> Coefficients:
    """``m ⊙ c`` per group (the mask broadcasts over channels)."""
    if len(coeffs) != len(mask):
        raise ValueError(f"mask: expected {len(coeffs)} band groups, got {len(mask)}")
    return [m * c for m, c in zip(mask, coeffs, strict=True)]


def coefficient_count(coeffs: Sequence[Tensor]) -> int:
    """Number of coefficient positions per image and channel (the size of a mask)."""
    return sum(c[0, 0].numel() for c in coeffs)


def modulated_inverse(
    rep: Representation,
    modulation: Sequence[Tensor],
    signals: Sequence[Tensor],
    size: tuple[int, int],
) -> Tensor:
    """Images ``T⁻¹(u ⊙ z_s)`` of one modulation applied to several signals, (B, S, Cn, H, W).

    The mask optimiser's syntheses: the masked image (``u = m``, signals = the colour channels'
    coefficients) and the obfuscation noise (``u = (1 - m) ⊙ scale``, signals = unit draws).

    Args:
        rep: the representation. One that defines ``modulated_inverse(modulation, signals,
            size)`` (shearlets: a fused, signal-by-signal synthesis) is used as is; otherwise
            this is ``rep.inverse`` of the (B · S)-sized products.
        modulation: per group (B, Cn, K_g, h_g, w_g), differentiable.
        signals: per group (B, S, Cn, K_g, h_g, w_g), constants.
        size: (H, W) of the images.
    """
    fast = getattr(rep, "modulated_inverse", None)
    if fast is not None:
        return fast(modulation, signals, size)
    b, s = signals[0].shape[:2]
    coeffs = [(u.unsqueeze(1) * z).flatten(0, 1) for u, z in zip(modulation, signals, strict=True)]
    return rep.inverse(coeffs, size).unflatten(0, (b, s))
