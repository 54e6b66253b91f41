"""Deletion and insertion curves: DAUC, IAUC (Petsiuk et al.) and DC, IC (Gomez et al.).

The pixels are ranked by saliency (most salient first). The **deletion** curve scores the image
as more and more of its top-ranked pixels are replaced by a substrate; the **insertion** curve
starts from the substrate and reveals the top-ranked pixels of the image. Both curves include
the start image, so a curve of ``T`` steps has ``T + 1`` points.

- **DAUC / IAUC** (Petsiuk et al., "RISE", BMVC 2018): the area under the curve by the
  trapezoid rule on x ∈ [0, 1] (the points equally spaced, as in both reference codes).
  Deletion: lower is better; insertion: higher is better.
- **DC / IC** (Gomez et al., "Computing and evaluating saliency maps for image classification:
  a tutorial", J. Electron. Imaging 2023): per image, the Pearson correlation between the
  score change at each step (deletion ``s_{k-1} - s_k``, insertion ``s_k - s_{k-1}``) and the
  mean saliency of the pixels changed at that step. Higher is better. NaN when either series is
  constant (no correlation is defined), as ``numpy.corrcoef``.

Two step rules:

- ``rule="seed"`` (``saliency_maps_metrics``): pixels ranked at the **explanation's
  resolution** (h, w), masks upsampled to the image by nearest neighbour;
  ``steps = min(max_steps, h·w)`` (``max_steps=None`` = one pixel per step, the seed's
  ``bound_max_step=False``), ``pixels_per_step = h·w // steps``; the number of steps is then
  ``ceil(h·w / pixels_per_step)`` and the last step takes what is left (the seed package crashes
  there when ``h·w`` is not a multiple of ``pixels_per_step``). Default substrates: black
  (deletion), :class:`~unmask.removal.BoxBlur` (insertion).
- ``rule="rise"`` (the RISE evaluation code): pixels ranked at the **image's resolution** (maps
  of another size are bilinearly upsampled first), ``pixels_per_step`` pixels per step
  (default ``8·W``: 224·8 at 224²). Default substrates: zeros of normalised images, i.e. the
  ImageNet mean colour (deletion), :class:`~unmask.removal.RiseBlur` (insertion).

``cumulative=False`` is the seed package's variant: step ``k`` changes **only** the ``k``-th
block of pixels (from the start image), the AUC is taken over steps 1..T (the start point
dropped) and the score change of DC / IC is measured from the start, ``s_0 - s_k``.

Ties in the ranking are broken deterministically by a stable sort: among equal saliencies the
pixel with the lower row-major index goes first. The default target is each image's top-1
class on the clean image (for insertion, too: the seed package takes the top-1 of the blurred
start image when no class is given). A target may be a set of classes per image, scored as
a whole (with ``score="prob"``, the curve of the summed probability Σ_{c∈C} p_c).

All masks are built from each pixel's rank (``removed_k = rank < k·pixels_per_step``), chunk by
chunk inside :meth:`unmask.scoring.Scorer.perturbed`; no loop over pixels or steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_positive
from .._types import Model, SaliencyLike, Target
from ..numerics import pearson
from ..params import Area, BatchSize, Count, RemovalArg, Score
from ..progress import Progress
from ..registry import METRICS
from ..removal import BoxBlur, Constant, RiseBlur
from ..removal import resolve_removal as resolve_substrate
from ..scores import SCORES
from ._prepare import prepare_inputs, removal_key

__all__ = [
    "RULES",
    "CurveRule",
    "KINDS",
    "Curve",
    "pixel_ranks",
    "plan_steps",
    "curve_steps",
    "step_saliency",
    "curve_masks",
    "curve_auc",
    "curve_correlation",
    "deletion_curve",
    "insertion_curve",
    "default_substrate",
    "Deletion",
    "Insertion",
    "DeletionCorrelation",
    "InsertionCorrelation",
]

CurveRule = Literal["seed", "rise"]
RULES: tuple[str, ...] = get_args(CurveRule)
KINDS = ("deletion", "insertion")


@dataclass
class Curve:
    """Deletion or insertion curves of a batch.

    Attributes:
        scores: (B, T + 1) the target score at steps 0..T (step 0 = the start image).
        step_saliency: (B, T) mean saliency of the pixels changed at steps 1..T.
        fractions: (T + 1,) fraction of the pixels changed (cumulatively) after each step.
        target: (B,) the explained classes, or (B, K) bool: a set of classes per image.
        mode: ``"deletion"`` or ``"insertion"``.
        cumulative: whether step k changes the first k blocks (True) or only the k-th.
    """

    scores: Tensor
    step_saliency: Tensor
    fractions: Tensor
    target: Tensor
    mode: str
    cumulative: bool = True

    def auc(self) -> Tensor:
        """DAUC or IAUC per image (B,)."""
        return curve_auc(self.scores, self.cumulative)

    def correlation(self) -> Tensor:
        """DC or IC per image (B,)."""
        return curve_correlation(self.scores, self.step_saliency, self.mode, self.cumulative)


def pixel_ranks(saliency: Tensor) -> Tensor:
    """Rank of every pixel, 0 = most salient, ties by row-major index. (B, 1, h, w) -> (B, h·w)."""
    flat = saliency.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return ranks


def plan_steps(
    n_pixels: int, *, max_steps: int | None = 196, pixels_per_step: int | None = None
) -> tuple[int, int]:
    """``(pixels_per_step, steps)`` for ranking ``n_pixels`` pixels.

    Without ``pixels_per_step``: the seed package's rule, ``steps = min(max_steps, n)`` (all
    ``n`` when ``max_steps`` is None) and ``pixels_per_step = n // steps``. Then
    ``steps = ceil(n / pixels_per_step)``: the last step takes the remainder.
    """
    check_positive(n_pixels, "n_pixels", integer=True)
    if pixels_per_step is None:
        if max_steps is not None:
            check_positive(max_steps, "max_steps", integer=True)
        target_steps = n_pixels if max_steps is None else min(max_steps, n_pixels)
        per = n_pixels // target_steps
    else:
        check_positive(pixels_per_step, "pixels_per_step", integer=True)
        per = min(pixels_per_step, n_pixels)
    return per, math.ceil(n_pixels / per)


def curve_steps(params: Mapping[str, Any], size: int) -> int:
    """The steps of a deletion or insertion curve on ``size`` x ``size`` maps, from a metric's
    hyperparameters (``rule``, ``max_steps``, ``pixels_per_step``): the curve has one more point.

    Example:
        >>> curve_steps({"rule": "seed", "max_steps": 196, "pixels_per_step": None}, 224)
        196
    """
    if params["rule"] == "rise":
        return plan_steps(size * size, pixels_per_step=params["pixels_per_step"] or 8 * size)[1]
    return plan_steps(
        size * size, max_steps=params["max_steps"], pixels_per_step=params["pixels_per_step"]
    )[1]


def step_saliency(saliency: Tensor, ranks: Tensor, pixels_per_step: int, steps: int) -> Tensor:
    """Mean saliency of the pixels changed at each step. (B, 1, h, w), (B, h·w) -> (B, T)."""
    flat = saliency.flatten(1).double()
    block = (ranks // pixels_per_step).clamp(max=steps - 1)
    sums = torch.zeros(flat.shape[0], steps, dtype=torch.float64).scatter_add_(1, block, flat)
    counts = torch.zeros_like(sums).scatter_add_(1, block, torch.ones_like(flat))
    return sums / counts


def curve_masks(
    ranks: Tensor,
    image: Tensor,
    step: Tensor,
    *,
    pixels_per_step: int,
    grid: tuple[int, int],
    size: tuple[int, int],
    mode: str = "deletion",
    cumulative: bool = True,
) -> Tensor:
    """Removal masks (N, 1, H, W) of perturbation ``n`` = step ``step[n]`` of image ``image[n]``.

    Args:
        ranks: (B, h·w) pixel ranks at the ranking resolution ``grid`` = (h, w).
        image: (N,) image of each mask; step: (N,) step 0..T of each mask.
        pixels_per_step: pixels changed per step (at the ranking resolution).
        size: image (H, W); masks are upsampled by nearest neighbour when ``grid`` differs.
        mode: ``"deletion"`` (1 = deleted) or ``"insertion"`` (1 = not yet revealed).
        cumulative: step k changes blocks 1..k (True) or only block k.

    Returns:
        (N, 1, H, W) float masks, 1 = replaced by the substrate.
    """
    r = ranks[image]
    hi = (step * pixels_per_step)[:, None]
    changed = r < hi
    if not cumulative:
        changed &= r >= hi - pixels_per_step
    removed = changed if mode == "deletion" else ~changed
    m = removed.reshape(-1, 1, *grid).float()
    if tuple(grid) != tuple(size):
        m = F.interpolate(m, size=size, mode="nearest")
    return m


def curve_auc(scores: Tensor, cumulative: bool = True) -> Tensor:
    """Area under curves (B, T + 1) by the trapezoid rule on [0, 1], equally spaced points.

    With ``cumulative=False`` the start point is dropped first (seed package). Returns (B,)
    float64.
    """
    y = scores.double()
    if not cumulative:
        y = y[:, 1:]
    n = y.shape[1]
    if n < 2:
        return torch.zeros(y.shape[0], dtype=torch.float64)
    return torch.trapezoid(y, torch.arange(n, dtype=torch.float64) / (n - 1), dim=1)


def curve_correlation(
    scores: Tensor, saliency: Tensor, mode: str = "deletion", cumulative: bool = True
) -> Tensor:
    """DC / IC: Pearson correlation of score changes and step saliency, per image.

    Args:
        scores: (B, T + 1) curves.
        saliency: (B, T) mean saliency of the pixels changed at each step.
        mode: ``"deletion"`` (change ``s_{k-1} - s_k``) or ``"insertion"`` (``s_k - s_{k-1}``).
        cumulative: False: changes measured from the start, ``s_0 - s_k`` (resp. ``s_k - s_0``).

    Returns:
        (B,) float64; NaN where either series is constant.
    """
    s = scores.double()
    prev = s[:, :-1] if cumulative else s[:, :1]
    change = prev - s[:, 1:]
    if mode == "insertion":
        change = -change
    return pearson(change, saliency.double())


def default_substrate(mode: str, rule: str) -> Any:
    """The reference substrate: seed (black / box blur) or RISE (ImageNet mean / RISE blur)."""
    if rule == "rise":
        return Constant("mean") if mode == "deletion" else RiseBlur()
    return Constant("black") if mode == "deletion" else BoxBlur()


def _curve(
    mode: str,
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target,
    *,
    removal: Any,
    rule: str,
    max_steps: int | None,
    pixels_per_step: int | None,
    cumulative: bool,
    score: str,
    batch_size: int,
    progress: Progress,
) -> Curve:
    check_choice(rule, "rule", RULES)
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score, "progress": progress}
    )
    fill = resolve_substrate(removal, lambda: default_substrate(mode, rule))
    b, _, height, width = x.shape
    if rule == "rise":
        if tuple(s.shape[-2:]) != (height, width):
            s = F.interpolate(s.float(), size=(height, width), mode="bilinear", align_corners=False)
        per, steps = plan_steps(
            height * width,
            pixels_per_step=8 * width if pixels_per_step is None else pixels_per_step,
        )
    else:
        per, steps = plan_steps(
            s.shape[-2] * s.shape[-1], max_steps=max_steps, pixels_per_step=pixels_per_step
        )
    grid = (s.shape[-2], s.shape[-1])
    ranks = pixel_ranks(s)
    first = 1 if mode == "deletion" else 0  # the deletion start image is the clean image
    per_image = steps + 1 - first

    def masks(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop)
        return curve_masks(
            ranks,
            j // per_image,
            j % per_image + first,
            pixels_per_step=per,
            grid=grid,
            size=(height, width),
            mode=mode,
            cumulative=cumulative,
        )

    index = torch.arange(b).repeat_interleave(per_image)
    out = scorer.perturbed(x, masks, t, fill, index=index, count=b * per_image)
    out = out.reshape(b, per_image)
    if first:
        out = torch.cat([base[:, None].to(out.dtype), out], dim=1)
    n = grid[0] * grid[1]
    fractions = (torch.arange(steps + 1) * per).clamp(max=n).double() / n
    return Curve(out, step_saliency(s, ranks, per, steps), fractions, t, mode, cumulative)


def deletion_curve(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    removal: Any = None,
    rule: str = "seed",
    max_steps: int | None = 196,
    pixels_per_step: int | None = None,
    cumulative: bool = True,
    score: str = "prob",
    batch_size: int = 16,
    progress: Progress = False,
) -> Curve:
    """Deletion curves: replace the most salient pixels first by the substrate.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: maps (B, 1, h, w) or (B, h, w), or an Explanation.
        target: None (top-1 on ``x``, or the Explanation's target), an int, one class per
            image, or a set of classes per image (a list of sets, or a (B, K) membership mask:
            the set is scored as a whole, ``Σ p_c`` / ``log Σ exp z_c`` / ``log Σ p_c``).
        removal: the substrate: a removal or a name (default by ``rule``: black / ImageNet mean).
        rule: ``"seed"`` or ``"rise"`` (see the module docstring).
        max_steps: seed rule's ``max_step_nb`` (None = one pixel per step).
        pixels_per_step: pixels per step; overrides ``max_steps`` (RISE default ``8·W``).
        cumulative: False = the seed package's non-cumulative variant.
        score: ``"prob"`` (default), ``"logit"`` or ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar.

    Returns:
        A :class:`Curve` with scores (B, T + 1).

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> c = deletion_curve(region_model(), region_images(1, 28), region_mask(28, 28).float())
        >>> c.scores.shape, c.auc().shape
        (torch.Size([1, 197]), torch.Size([1]))
    """
    return _curve(
        "deletion",
        model,
        x,
        saliency,
        target,
        removal=removal,
        rule=rule,
        max_steps=max_steps,
        pixels_per_step=pixels_per_step,
        cumulative=cumulative,
        score=score,
        batch_size=batch_size,
        progress=progress,
    )


def insertion_curve(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    removal: Any = None,
    rule: str = "seed",
    max_steps: int | None = 196,
    pixels_per_step: int | None = None,
    cumulative: bool = True,
    score: str = "prob",
    batch_size: int = 16,
    progress: Progress = False,
) -> Curve:
    """Insertion curves: start from the substrate, reveal the most salient pixels first.

    Arguments as :func:`deletion_curve`; the default substrate is a blur (box blur for the seed
    rule, RISE's Gaussian blur for the RISE rule).
    """
    return _curve(
        "insertion",
        model,
        x,
        saliency,
        target,
        removal=removal,
        rule=rule,
        max_steps=max_steps,
        pixels_per_step=pixels_per_step,
        cumulative=cumulative,
        score=score,
        batch_size=batch_size,
        progress=progress,
    )


class _CurveMetric:
    """A deletion / insertion curve reduced to one number per image (AUC or correlation)."""

    kind = "faithfulness"
    mode = "deletion"
    statistic = "auc"
    higher_is_better = False

    def __init__(
        self,
        removal: RemovalArg = None,
        *,
        rule: CurveRule = "seed",
        max_steps: Count | None = 196,
        pixels_per_step: Area | None = None,
        cumulative: bool = True,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: bool = False,
    ) -> None:
        check_choice(rule, "rule", RULES)
        check_choice(score, "score", SCORES)
        check_positive(batch_size, "batch_size", integer=True)
        if max_steps is not None:
            check_positive(max_steps, "max_steps", integer=True)
        if pixels_per_step is not None:
            check_positive(pixels_per_step, "pixels_per_step", integer=True)
        self.removal = resolve_substrate(removal, lambda: default_substrate(self.mode, rule))
        self.rule, self.max_steps, self.pixels_per_step = rule, max_steps, pixels_per_step
        self.cumulative, self.score = bool(cumulative), score
        self.batch_size, self.progress = batch_size, progress

    def curve(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Curve:
        """The curves (see :func:`deletion_curve`), to get AUC and correlation from one run."""
        return _curve(
            self.mode,
            model,
            x,
            saliency,
            target,
            removal=self.removal,
            rule=self.rule,
            max_steps=self.max_steps,
            pixels_per_step=self.pixels_per_step,
            cumulative=self.cumulative,
            score=self.score,
            batch_size=self.batch_size,
            progress=self.progress,
        )

    def shared_key(self) -> tuple[Any, ...]:
        """Metrics with the same key read the same curve (DAUC and DC, IAUC and IC)."""
        return (
            "curve",
            self.mode,
            removal_key(self.removal),
            self.rule,
            self.max_steps,
            self.pixels_per_step,
            self.cumulative,
            self.score,
        )

    def shared(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Curve:
        """The curves this metric reads (:meth:`curve`)."""
        return self.curve(model, x, saliency, target)

    def reduce(self, curve: Curve) -> Tensor:
        """This metric's values (B,) from the curves."""
        return curve.auc() if self.statistic == "auc" else curve.correlation()

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        """Per-image values (B,) for images ``x`` (B, 3, H, W) and maps (B, 1, h, w)."""
        return self.reduce(self.curve(model, x, saliency, target))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(removal={self.removal!r}, rule={self.rule!r}, "
            f"max_steps={self.max_steps}, pixels_per_step={self.pixels_per_step}, "
            f"cumulative={self.cumulative})"
        )


_ARGS = """
    Args:
        removal: the substrate, a removal or a name (default by ``rule``).
        rule: ``"seed"`` (rank at the map's resolution, ``max_steps`` steps) or ``"rise"``
            (rank at the image's resolution, ``pixels_per_step`` pixels per step, default 8·W).
        max_steps: seed rule's ``max_step_nb`` (196); None = one pixel per step.
        pixels_per_step: pixels changed per step (overrides ``max_steps``).
        cumulative: False = only the k-th block changed at step k (seed package option).
        score: ``"prob"`` (default), ``"logit"`` or ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar.
"""


@METRICS.register("deletion", aliases=("dauc",), cost=lambda p, size: curve_steps(p, size) + 1)
class Deletion(_CurveMetric):
    __doc__ = (
        """Deletion AUC (DAUC): area under the deletion curve; lower is better.

    Petsiuk et al., BMVC 2018. Default substrate black (seed rule) / ImageNet mean (RISE rule).
"""
        + _ARGS
        + """
    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> x = region_images(2, 32)
        >>> Deletion()(region_model(), x, region_mask(32, 32).float().expand(2, 1, 32, 32)).shape
        torch.Size([2])
    """
    )

    mode, statistic, higher_is_better = "deletion", "auc", False


@METRICS.register("insertion", aliases=("iauc",), cost=lambda p, size: curve_steps(p, size) + 2)
class Insertion(_CurveMetric):
    __doc__ = (
        """Insertion AUC (IAUC): area under the insertion curve; higher is better.

    Petsiuk et al., BMVC 2018. Default substrate box blur (seed rule) / RISE blur (RISE rule).
"""
        + _ARGS
    )

    mode, statistic, higher_is_better = "insertion", "auc", True


@METRICS.register(
    "dc", aliases=("deletion_correlation",), cost=lambda p, size: curve_steps(p, size) + 1
)
class DeletionCorrelation(_CurveMetric):
    __doc__ = (
        """Deletion Correlation (DC): score drop per step vs saliency deleted; higher is better.

    Gomez et al. 2023: per image, the Pearson correlation of the score drop at each deletion
    step with the mean saliency of the pixels deleted at that step.
"""
        + _ARGS
    )

    mode, statistic, higher_is_better = "deletion", "correlation", True


@METRICS.register(
    "ic", aliases=("insertion_correlation",), cost=lambda p, size: curve_steps(p, size) + 2
)
class InsertionCorrelation(_CurveMetric):
    __doc__ = (
        """Insertion Correlation (IC): score gain per step vs saliency revealed; higher is better.

    Gomez et al. 2023: per image, the Pearson correlation of the score gain at each insertion
    step with the mean saliency of the pixels revealed at that step.
"""
        + _ARGS
    )

    mode, statistic, higher_is_better = "insertion", "correlation", True


METRICS.add(
    "deletion_rise",
    Deletion,
    defaults={"rule": "rise"},
    summary="Deletion AUC with the RISE reference rule (8·W pixels per step, ImageNet-mean fill).",
)
METRICS.add(
    "insertion_rise",
    Insertion,
    defaults={"rule": "rise"},
    summary="Insertion AUC with the RISE reference rule (8·W pixels per step, RISE blur).",
)
