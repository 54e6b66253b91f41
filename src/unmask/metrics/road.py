"""ROAD: RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022).

The pixels are ranked by saliency at the image's resolution (maps of another size are
bilinearly upsampled first; ties by row-major index, as :func:`~unmask.metrics.pixel_ranks`).
At each percentage ``p`` (default 10, 20, ..., 90) the ``round(p · H · W / 100)`` most relevant
(**MoRF**) or least relevant (**LeRF**) pixels are removed by ROAD's noisy linear imputation
(:class:`~unmask.removal.NoisyLinearImputation`), which leaks far less of the removed shape than
a constant fill, so no retraining is needed. Each image's score is the change of the target
score, ``s_p - s_0``, averaged over the percentages, as pytorch-grad-cam's
``ROADMostRelevantFirstAverage`` / ``ROADLeastRelevantFirstAverage``:

- ``road_morf``: lower is better (removing what the map points at should hurt fast);
- ``road_lerf``: higher is better (removing what it leaves out should not hurt);
- ``road_combined``: ``(LeRF - MoRF) / 2``, pytorch-grad-cam's ``ROADCombined``; higher is better.

All perturbations of a batch go through :meth:`unmask.scoring.Scorer.perturbed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_positive
from .._types import Model, SaliencyLike, Target
from ..params import BatchSize, RemovalArg, Score
from ..registry import METRICS
from ..removal import NoisyLinearImputation, resolve_removal
from ..scores import SCORES
from ._prepare import prepare_inputs, removal_key
from .deletion import pixel_ranks

__all__ = [
    "PERCENTAGES",
    "ORDERS",
    "RoadCurve",
    "road_curve",
    "RoadMoRF",
    "RoadLeRF",
    "RoadCombined",
]

#: ROAD's default percentages of removed pixels.
PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ORDERS = ("morf", "lerf")


def _check_percentages(percentages: object) -> tuple[float, ...]:
    if (
        isinstance(percentages, str | bytes)
        or not isinstance(percentages, Sequence)
        or not percentages
    ):
        raise TypeError(
            f"percentages: expected a non-empty sequence of numbers in [0, 100], "
            f"got {percentages!r}"
        )
    out = []
    for p in percentages:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 100:
            raise ValueError(f"percentages: expected numbers in [0, 100], got {percentages!r}")
        out.append(p)
    return tuple(out)


@dataclass
class RoadCurve:
    """ROAD scores of a batch at each percentage.

    Attributes:
        scores: (B, P) the target score after removing each percentage.
        base: (B,) the score of the clean image.
        percentages: the P percentages removed.
        order: ``"morf"`` or ``"lerf"``.
        target: (B,) classes or (B, K) bool class sets.
    """

    scores: Tensor
    base: Tensor
    percentages: tuple[float, ...]
    order: str
    target: Tensor

    def mean_change(self) -> Tensor:
        """(B,) float64: ``s_p - s_0`` averaged over the percentages."""
        return (self.scores.double() - self.base.double()[:, None]).mean(dim=1)


def road_curve(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    order: str = "morf",
    percentages: Sequence[float] = PERCENTAGES,
    removal: Any = None,
    score: str = "prob",
    batch_size: int = 16,
    progress: object = False,
) -> RoadCurve:
    """ROAD curves: scores after removing the most (MoRF) or least (LeRF) relevant pixels.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: maps (B, 1, h, w) or an Explanation (upsampled bilinearly to (H, W)).
        target: None (top-1 on ``x``), a class or a set of classes per image.
        order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first).
        percentages: percentages of the pixels removed (default 10, ..., 90).
        removal: the removal (default :class:`~unmask.removal.NoisyLinearImputation`, ``road``).
        score: ``"prob"`` (default), ``"logit"`` or ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar (bool) or a callback ``(done, total)``.

    Returns:
        A :class:`RoadCurve` with scores (B, P).

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> c = road_curve(region_model(), region_images(1, 16), region_mask(16, 16).float())
        >>> c.scores.shape, c.mean_change().shape
        (torch.Size([1, 9]), torch.Size([1]))
    """
    check_choice(order, "order", ORDERS)
    pcts = _check_percentages(percentages)
    removal = resolve_removal(removal, NoisyLinearImputation)
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score, "progress": progress}
    )
    b, _, height, width = x.shape
    if tuple(s.shape[-2:]) != (height, width):
        s = F.interpolate(s.float(), size=(height, width), mode="bilinear", align_corners=False)
    n = height * width
    ranks = pixel_ranks(s)
    counts = torch.tensor([round(p * n / 100) for p in pcts])
    per_image = len(pcts)

    def masks(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop)
        r, k = ranks[j // per_image], counts[j % per_image][:, None]
        removed = r < k if order == "morf" else r >= n - k
        return removed.reshape(-1, 1, height, width).float()

    index = torch.arange(b).repeat_interleave(per_image)
    out = scorer.perturbed(x, masks, t, removal, index=index, count=b * per_image)
    return RoadCurve(out.reshape(b, per_image), base, pcts, order, t)


class _RoadMetric:
    """ROAD reduced to one number per image."""

    kind = "faithfulness"
    order = "morf"
    higher_is_better = False

    def __init__(
        self,
        percentages: Sequence[float] = PERCENTAGES,
        *,
        removal: RemovalArg = None,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        self.percentages = _check_percentages(percentages)
        check_choice(score, "score", SCORES)
        check_positive(batch_size, "batch_size", integer=True)
        self.removal = resolve_removal(removal, NoisyLinearImputation)
        self.score, self.batch_size, self.progress = score, batch_size, progress

    def curve(
        self,
        model: Model,
        x: Tensor,
        saliency: SaliencyLike,
        target: Target = None,
        order: str | None = None,
    ) -> RoadCurve:
        """The ROAD curves (see :func:`road_curve`) of this metric's order (or ``order``)."""
        return road_curve(
            model,
            x,
            saliency,
            target,
            order=order or self.order,
            percentages=self.percentages,
            removal=self.removal,
            score=self.score,
            batch_size=self.batch_size,
            progress=self.progress,
        )

    def shared_key(self) -> tuple[Any, ...] | None:
        """MoRF (LeRF) metrics with the same settings read the same curve."""
        return ("road", self.order, removal_key(self.removal), self.percentages, self.score)

    def shared(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> RoadCurve:
        return self.curve(model, x, saliency, target)

    def reduce(self, curve: RoadCurve) -> Tensor:
        return curve.mean_change()

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        """Per-image values (B,) float64 for images (B, 3, H, W) and maps (B, 1, h, w)."""
        return self.reduce(self.curve(model, x, saliency, target))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(percentages={list(self.percentages)}, "
            f"removal={self.removal!r}, score={self.score!r})"
        )


_ARGS = """
    Args:
        percentages: percentages of the pixels removed (default 10, 20, ..., 90).
        removal: the removal (default ROAD's noisy linear imputation, ``road``).
        score: ``"prob"`` (default), ``"logit"`` or ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar (bool) or a callback ``(done, total)``.
"""


@METRICS.register("road_morf", cost=lambda p, size: len(p["percentages"]) + 1)
class RoadMoRF(_RoadMetric):
    __doc__ = (
        """ROAD MoRF: mean score change removing the most relevant first; lower is better.

    Rong et al., ICML 2022; pytorch-grad-cam's ``ROADMostRelevantFirstAverage``.
"""
        + _ARGS
        + """
    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> m = region_mask(16, 16).float().expand(2, 1, 16, 16)
        >>> RoadMoRF()(region_model(), region_images(2, 16), m).shape
        torch.Size([2])
    """
    )

    order, higher_is_better = "morf", False


@METRICS.register("road_lerf", cost=lambda p, size: len(p["percentages"]) + 1)
class RoadLeRF(_RoadMetric):
    __doc__ = (
        """ROAD LeRF: mean score change removing the least relevant first; higher is better.

    Rong et al., ICML 2022; pytorch-grad-cam's ``ROADLeastRelevantFirstAverage``.
"""
        + _ARGS
    )

    order, higher_is_better = "lerf", True


@METRICS.register("road_combined", cost=lambda p, size: 2 * len(p["percentages"]) + 2)
class RoadCombined(_RoadMetric):
    __doc__ = (
        """ROAD combined: ``(LeRF - MoRF) / 2``; higher is better.

    pytorch-grad-cam's ``ROADCombined``: both averages over the same percentages. The clean
    score cancels, so this is half the mean gap between the LeRF and MoRF curves.
"""
        + _ARGS
    )

    higher_is_better = True

    def shared_key(self) -> None:
        return None  # reads two curves

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        morf = self.curve(model, x, saliency, target, order="morf").mean_change()
        lerf = self.curve(model, x, saliency, target, order="lerf").mean_change()
        return (lerf - morf) / 2
