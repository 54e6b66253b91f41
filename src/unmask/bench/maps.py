"""Which map a metric reads: the saliency map, or a relevance map for ranking metrics.

The representation-mask family (ShearletX, WaveletX, CartoonX, PixelMask) displays the gray
explanation image x̂ = T⁻¹(m ⊙ T(x)) as its saliency: it is bright where the kept part of the
image is bright, so a ranking metric (deletion, insertion, pointing game) reading x̂ ranks bright
kept regions first whether or not the model uses them. Beside x̂ a benchmark stores a
**relevance map**: the fraction of each pixel's energy that the mask keeps,

    r = Σ_c x̂_c² / (Σ_c x_c² + ε),   clipped to [0, 1],

which is 1 where the mask keeps the pixel whole and 0 where it keeps nothing, whatever the
pixel's brightness (for a pixel mask, x̂ = m ⊙ x and r = m² up to ε: the mask's own ranking).
On the region model with a bright distractor outside its box (``python
benchmarks/fair_maps.py``; tests/bench/test_maps.py checks it), the map's mass inside the box
rises from 0.505 (x̂) to 0.823 (r) for WaveletX and from 0.783 to 0.965 for ShearletX (PixelMask:
1.000 both), and deletion falls from 0.162 to 0.149 and 0.146 to 0.145. A 3×3 smoothing of both
energies was tried and lost (0.815, 0.917, and 0.883 for PixelMask). Methods without an
explanation image have relevance = saliency. ``map = "auto"`` gives ranking and localisation
metrics the relevance map and explanation-image metrics x̂; the report says which map each
metric read.
"""

from __future__ import annotations

import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor

__all__ = ["relevance_map", "choose_map", "RELEVANCE"]

#: The name recorded for the relevance map of the representation-mask family.
RELEVANCE = "kept_energy"


def relevance_map(x: Tensor, x_hat: Tensor, eps: float = 1e-3) -> Tensor:
    """Kept-energy relevance (B, 1, H, W) of explanation images ``x_hat`` of images ``x``.

    Args:
        x: images (B, 3, H, W) in [0, 1].
        x_hat: explanation images (B, 3, H, W).
        eps: added to the image energy (dark pixels do not divide by zero).

    Example:
        >>> x = torch.full((1, 3, 4, 4), 0.5)
        >>> keep = torch.zeros(1, 1, 4, 4); keep[..., :2] = 1
        >>> r = relevance_map(x, x * keep)
        >>> bool(r[..., 0].min() > r[..., 3].max())
        True
    """
    if x.shape != x_hat.shape or x.ndim != 4:
        raise ValueError(
            f"x_hat: expected the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}"
        )
    kept = x_hat.float().pow(2).sum(1, keepdim=True)
    total = x.float().pow(2).sum(1, keepdim=True)
    return (kept / (total + eps)).clamp(0, 1)


def choose_map(choice: str, kind: str, has_relevance: bool) -> str:
    """The map a metric reads: ``"saliency"``, ``"relevance"`` or ``"x_hat"``.

    ``choice`` is the config's ``map`` (auto / saliency / relevance), ``kind`` the metric kind.
    """
    if kind in ("explanation_image", "artifact"):
        return "x_hat"
    if choice == "auto":
        return "relevance" if has_relevance else "saliency"
    if choice == "relevance" and not has_relevance:
        return "saliency"
    return choice
