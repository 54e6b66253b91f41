"""IROF, iterative removal of features (Rieger & Hansen, "IROF: a low resource evaluation metric
for explanation methods", ICLR 2020 workshop; quantus ``IROF``).

The image is cut into SLIC superpixels (:func:`unmask.segments.slic_segments`, scikit-image's
defaults as quantus: 100 segments, compactness 10, sigma 0); the superpixels are ranked by the
mean of the map over them (most relevant first) and removed one more per step, until none is
left; the curve is the target's score divided by its score on the clean image, and IROF the area
*over* that curve, ``1 - AUC`` on x ∈ [0, 1] (the clean image at x = 0, all superpixels
removed at x = 1). A map that ranks the evidence first makes the score fall at once: a large
area; higher is better. Maps are read at the image's resolution (coarser maps are upsampled
bilinearly first). All perturbations of a batch go through one :meth:`Scorer.perturbed`.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive
from .._limits import check_at_most, max_size
from .._types import Model, SaliencyLike, Target
from ..params import BatchSize, Bounds, RemovalArg, Score
from ..registry import METRICS
from ..removal import Constant, resolve_removal
from ..scores import SCORES
from ..segments import slic_segments
from ._prepare import prepare_inputs
from .deletion import curve_auc

__all__ = ["irof", "irof_curves", "IROF"]


def _check_slic(n_segments: object, compactness: object, sigma: object) -> None:
    check_positive(n_segments, "n_segments", integer=True)
    check_positive(compactness, "compactness")
    check_positive(sigma, "sigma", allow_zero=True)
    check_at_most(sigma, "sigma", max_size(), "the image side limit, UNMASK_MAX_SIZE")  # type: ignore[arg-type]


def irof_curves(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    n_segments: int = 100,
    compactness: float = 10.0,
    sigma: float = 0.0,
    removal: Any = None,
    score: str = "prob",
    batch_size: int = 16,
    progress: object = False,
) -> list[Tensor]:
    """Per image, the IROF curve (S_b + 1,) float64: the score after removing the k most
    relevant superpixels over the clean image's score, k = 0..S_b (S_b superpixels).

    Ties between superpixels' mean values are broken by the lower label. Arguments as
    :func:`irof`.
    """
    _check_slic(n_segments, compactness, sigma)
    removal = resolve_removal(removal, lambda: Constant("image_mean"))
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score, "progress": progress}
    )
    b, _, height, width = x.shape
    if tuple(s.shape[-2:]) != (height, width):
        s = F.interpolate(s.double(), size=(height, width), mode="bilinear", align_corners=False)
    segments = slic_segments(x, n_segments, compactness, sigma).flatten(1)  # (B, H·W)
    counts = segments.max(dim=1).values + 1  # S_b
    k = int(counts.max())
    flat = s.flatten(1).double()
    sums = torch.zeros(b, k, dtype=torch.float64).scatter_add_(1, segments, flat)
    sizes = torch.zeros(b, k, dtype=torch.float64).scatter_add_(1, segments, torch.ones_like(flat))
    means = torch.where(sizes > 0, sums / sizes.clamp(min=1), -torch.inf)
    order = torch.sort(means, dim=1, descending=True, stable=True).indices
    seg_rank = torch.empty_like(order).scatter_(1, order, torch.arange(k).expand(b, k).contiguous())
    pixel_rank = seg_rank.gather(1, segments)  # (B, H·W): rank of each pixel's superpixel
    image = torch.arange(b).repeat_interleave(counts)
    step = torch.cat([torch.arange(1, int(c) + 1) for c in counts])

    def masks(start: int, stop: int) -> Tensor:
        m = pixel_rank[image[start:stop]] < step[start:stop, None]
        return m.reshape(-1, 1, height, width).float()

    after = scorer.perturbed(x, masks, t, removal, index=image, count=int(counts.sum()))
    out = []
    for i, part in enumerate(after.double().split(counts.tolist())):
        y0 = base[i].double()
        out.append(torch.cat([torch.ones(1, dtype=torch.float64), part / y0]))
    return out


def irof(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    n_segments: int = 100,
    compactness: float = 10.0,
    sigma: float = 0.0,
    removal: Any = None,
    score: str = "prob",
    batch_size: int = 16,
    progress: object = False,
) -> Tensor:
    """IROF (Rieger & Hansen 2020) per image (B,) float64: the area over the normalised
    superpixel-removal curve; higher is better.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: maps (B, 1, h, w) or an Explanation (read at the image's resolution).
        target: None (top-1), a class or a set of classes per image.
        n_segments, compactness, sigma: SLIC's arguments (scikit-image's defaults: 100, 10, 0).
        removal: what replaces a removed superpixel (default each image's mean colour,
            ``image_mean``).
        score: ``"prob"`` (default, quantus' ``softmax=True``), ``"logit"``, ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar (bool) or callback ``(done, total)``.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> x, m = region_images(1, 32), region_mask(32, 32).float()
        >>> bool(irof(region_model(), x, m) > 0.5)
        True
    """
    curves = irof_curves(
        model,
        x,
        saliency,
        target,
        n_segments=n_segments,
        compactness=compactness,
        sigma=sigma,
        removal=removal,
        score=score,
        batch_size=batch_size,
        progress=progress,
    )
    return torch.stack([1 - curve_auc(c[None])[0] for c in curves])


@METRICS.register("irof", cost=lambda p, size: p["n_segments"] + 1)
class IROF:
    """IROF (Rieger & Hansen 2020): area over the superpixel-removal curve; higher is better.

    Arguments as :func:`irof` (defaults: SLIC 100 / 10 / 0, each image's mean colour, prob).
    """

    kind = "faithfulness"
    higher_is_better = True

    def __init__(
        self,
        n_segments: Annotated[int, Bounds(1, 2_000)] = 100,
        compactness: float = 10.0,
        sigma: float = 0.0,
        *,
        removal: RemovalArg = None,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        _check_slic(n_segments, compactness, sigma)
        if score not in SCORES:
            raise ValueError(f"score: expected one of {', '.join(SCORES)}, got {score!r}")
        check_positive(batch_size, "batch_size", integer=True)
        self.n_segments, self.compactness, self.sigma = n_segments, compactness, sigma
        self.removal = resolve_removal(removal, lambda: Constant("image_mean"))
        self.score, self.batch_size, self.progress = score, batch_size, progress

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        """Per-image values (B,) for images (B, 3, H, W) and maps (B, 1, h, w)."""
        return irof(
            model,
            x,
            saliency,
            target,
            n_segments=self.n_segments,
            compactness=self.compactness,
            sigma=self.sigma,
            removal=self.removal,
            score=self.score,
            batch_size=self.batch_size,
            progress=self.progress,
        )

    def __repr__(self) -> str:
        return (
            f"IROF(n_segments={self.n_segments}, compactness={self.compactness}, "
            f"sigma={self.sigma}, removal={self.removal!r}, score={self.score!r})"
        )
