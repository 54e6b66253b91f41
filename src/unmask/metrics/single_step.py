"""Single-step faithfulness: Increase in Confidence, Average Drop, Average Drop in Deletion.

One perturbed image per explanation (Chattopadhyay et al., WACV 2018, "Grad-CAM++" for IIC and
AD; Gomez et al., "Computing and evaluating saliency maps for image classification: a
tutorial", J. Electron. Imaging 2023, for ADD and the common protocol; seed package
``saliency_maps_metrics``).

The explanation becomes a soft mask ``m``: min-max normalised, then bicubic upsampled to the
image. With ``s`` the target score of the image and ``s̃`` that of the perturbed image:

- **IIC** = 1[s̃ > s] with ``x̃ = x·m + r·(1 - m)`` (only the salient part kept); higher is better.
- **AD** = max(s - s̃, 0) / s, same ``x̃``; lower is better.
- **ADD** = (s - s̃) / s with ``x̃ = x·(1 - m) + r·m`` (the salient part replaced); higher is
  better.

``r`` is the substrate, any unmask removal (default: black, as in the seed package).

Deviations from ``saliency_maps_metrics`` 0.0.26 (see ``docs/metrics-faithfulness.md``):

- it min-max normalises over the **whole batch**, so an image's mask depends on the other
  images in the batch; we normalise **per image** (identical for a batch of one);
- a constant map (no min-max range) is left raw there; here it becomes an all-zero mask (the
  map points at nothing);
- bicubic upsampling overshoots [0, 1]; we clamp the mask to [0, 1] (``clamp=True``) so that
  every removal, inpainters included, receives a valid mask. ``clamp=False`` keeps the
  original's extrapolated blend (fixed-fill removals only).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_positive
from .._types import Model, SaliencyLike, Target
from ..numerics import minmax_normalise
from ..params import BatchSize, RemovalArg, Score
from ..registry import METRICS
from ..removal import Constant
from ..removal import resolve_removal as resolve_substrate
from ..scores import SCORES
from ._prepare import prepare_inputs, removal_key

__all__ = [
    "normalise_maps",
    "soft_masks",
    "single_step_scores",
    "increase_in_confidence",
    "average_drop",
    "average_drop_in_deletion",
    "IncreaseInConfidence",
    "AverageDrop",
    "AverageDropInDeletion",
]


def normalise_maps(saliency: Tensor, per_image: bool = True) -> Tensor:
    """Min-max normalise maps (B, 1, h, w) to [0, 1].

    Args:
        saliency: maps (B, 1, h, w).
        per_image: normalise each map by its own range (default). ``False`` reproduces
            ``saliency_maps_metrics``: one range over the whole batch, and a batch with no range
            is returned unchanged.

    Returns:
        (B, 1, h, w). Per image, a constant map becomes all zeros.
    """
    s = saliency.float()
    if not per_image:
        lo, hi = s.min(), s.max()
        return s if bool(lo == hi) else (s - lo) / (hi - lo)
    return minmax_normalise(s)


def soft_masks(
    saliency: Tensor, size: tuple[int, int], per_image: bool = True, clamp: bool = True
) -> Tensor:
    """The single-step "keep" masks: normalised maps, bicubic upsampled to ``size``.

    Args:
        saliency: maps (B, 1, h, w).
        size: image (H, W).
        per_image: see :func:`normalise_maps`.
        clamp: clamp the bicubic overshoot to [0, 1].

    Returns:
        (B, 1, H, W), 1 = salient (kept by IIC / AD, replaced by ADD).
    """
    m = F.interpolate(
        normalise_maps(saliency, per_image), size=size, mode="bicubic", align_corners=False
    )
    return m.clamp(0, 1) if clamp else m


def single_step_scores(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    removal: Any = None,
    replace_salient: bool = False,
    per_image: bool = True,
    clamp: bool = True,
    score: str = "prob",
    batch_size: int = 16,
) -> tuple[Tensor, Tensor, Tensor]:
    """Scores of the clean and of the single-step perturbed images.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: maps (B, 1, h, w) or (B, h, w), or an Explanation.
        target: None (top-1 on ``x``, or the Explanation's target), an int, one class per
            image, or a set of classes per image (a list of sets, or a (B, K) membership mask:
            the set is scored as a whole, ``Σ p_c`` / ``log Σ exp z_c`` / ``log Σ p_c``).
        removal: the substrate (default black); a name or any unmask removal.
        replace_salient: False: keep the salient part (IIC, AD); True: replace it (ADD).
        per_image, clamp: see :func:`soft_masks`.
        score: ``"prob"`` (default, as the seed package), ``"logit"`` or ``"log_prob"``.
        batch_size: images per forward pass.

    Returns:
        ``(s, s_perturbed, target)``: scores (B,), (B,) and the classes (B,) (or the class
        sets (B, K) bool), on the CPU.
    """
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score}
    )
    fill = resolve_substrate(removal, lambda: Constant("black"))
    keep = soft_masks(s, (x.shape[-2], x.shape[-1]), per_image, clamp)
    removed = keep if replace_salient else 1 - keep
    perturbed = scorer.perturbed(x, removed, t, fill, index=torch.arange(x.shape[0]))
    return base, perturbed, t


def increase_in_confidence(score: Tensor, perturbed: Tensor) -> Tensor:
    """IIC per image: 1.0 where the perturbed score exceeds the clean one. (B,), (B,) -> (B,)."""
    return (perturbed > score).float()


def average_drop(score: Tensor, perturbed: Tensor) -> Tensor:
    """AD per image: ``max(s - s̃, 0) / s``. (B,), (B,) -> (B,)."""
    return (score - perturbed).clamp(min=0) / score


def average_drop_in_deletion(score: Tensor, perturbed: Tensor) -> Tensor:
    """ADD per image: ``(s - s̃) / s`` (salient part replaced). (B,), (B,) -> (B,)."""
    return (score - perturbed) / score


class _SingleStep:
    """Shared call of the three single-step metrics (composition: a scoring rule + options)."""

    kind = "faithfulness"
    replace_salient = False
    higher_is_better = True

    def __init__(
        self,
        removal: RemovalArg = None,
        *,
        per_image: bool = True,
        clamp: bool = True,
        score: Score = "prob",
        batch_size: BatchSize = 16,
    ) -> None:
        self.removal = resolve_substrate(removal, lambda: Constant("black"))
        self.per_image, self.clamp = bool(per_image), bool(clamp)
        self.score, self.batch_size = score, batch_size
        check_choice(score, "score", SCORES)
        check_positive(batch_size, "batch_size", integer=True)

    @staticmethod
    def compute(score: Tensor, perturbed: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def shared_key(self) -> tuple[Any, ...]:
        """Metrics with the same key read the same scores (IIC and AD)."""
        return (
            "single_step",
            self.replace_salient,
            removal_key(self.removal),
            self.per_image,
            self.clamp,
            self.score,
        )

    def shared(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> tuple[Tensor, Tensor]:
        """The clean and perturbed scores (B,), (B,) this metric reads."""
        s, p, _ = single_step_scores(
            model,
            x,
            saliency,
            target,
            removal=self.removal,
            replace_salient=self.replace_salient,
            per_image=self.per_image,
            clamp=self.clamp,
            score=self.score,
            batch_size=self.batch_size,
        )
        return s, p

    def reduce(self, scores: tuple[Tensor, Tensor]) -> Tensor:
        """This metric's values (B,) from the clean and perturbed scores."""
        return self.compute(*scores)

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        """Per-image values (B,) for images ``x`` (B, 3, H, W) and maps (B, 1, h, w)."""
        return self.reduce(self.shared(model, x, saliency, target))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(removal={self.removal!r}, per_image={self.per_image})"


@METRICS.register("iic", aliases=("increase_in_confidence",), cost=lambda p, size: 2)
class IncreaseInConfidence(_SingleStep):
    """Increase in Confidence (IIC): 1 if keeping only the salient part raises the score.

    Chattopadhyay et al., WACV 2018. Higher is better; the mean over images is the IIC rate.

    Args:
        removal: substrate for the non-salient part (default black).
        per_image: per-image min-max normalisation (the seed package: whole batch).
        clamp: clamp the bicubic-upsampled mask to [0, 1].
        score: ``"prob"`` (default), ``"logit"``, ``"log_prob"``.
        batch_size: images per forward pass.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> x = region_images(2, 32)
        >>> mask = region_mask(32, 32).float().expand(2, 1, 32, 32)
        >>> IncreaseInConfidence()(region_model(), x, mask).shape
        torch.Size([2])
    """

    higher_is_better = True
    compute = staticmethod(increase_in_confidence)


@METRICS.register("ad", aliases=("average_drop",), cost=lambda p, size: 2)
class AverageDrop(_SingleStep):
    """Average Drop (AD): relative score drop when only the salient part is kept.

    ``max(s - s̃, 0) / s`` (Chattopadhyay et al., WACV 2018). Lower is better. Arguments as
    :class:`IncreaseInConfidence`.
    """

    higher_is_better = False
    compute = staticmethod(average_drop)


@METRICS.register("add", aliases=("average_drop_in_deletion",), cost=lambda p, size: 2)
class AverageDropInDeletion(_SingleStep):
    """Average Drop in Deletion (ADD): relative score drop when the salient part is replaced.

    ``(s - s̃) / s`` (Gomez et al. 2023). Higher is better. Arguments as
    :class:`IncreaseInConfidence`.
    """

    replace_salient = True
    higher_is_better = True
    compute = staticmethod(average_drop_in_deletion)
