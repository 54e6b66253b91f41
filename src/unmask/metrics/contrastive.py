"""Contrastive faithfulness: CAUC and CDROP (CWOX, Xie et al.; the seed's ``Evaluation/``).

A contrastive map H for target classes C against competing classes C′ should point at what
tells C apart from C′. Delete the pixels of x in descending order of H, 16 per step (ties by
row-major index), replacing them by the fill (default the ImageNet mean colour, zero after the
usual normalisation), and score every image on the way by

    s = P(C) · (1 − P(C′)),   P(S) = Σ_{c∈S} softmax(z)_c.

The curve is cut at the salient part of the map: with
``n_δ = #{H > min H + δ·(max H − min H)}`` (δ = 0.5), it holds ``L = ceil(n_δ / 16)`` points,
s_0 (the clean image) and L − 1 deletion steps -- as the original code, whose stop test
ends the curve once it holds L points (so (L − 1)·16 of the n_δ pixels are deleted).

- **CAUC** = (Σ s − (s_0 + s_{L−1}) / 2) / (ceil(HW / 16) + 1): the trapezoid over the salient
  prefix, normalised by the length of the full curve. **Lower is better** (deleting the
  contrastive evidence should destroy the contrast quickly).
- **CDROP** = (s_0 − mean(s_{L−3}, s_{L−2}, s_{L−1})) / log2(1 + max(n_δ, τ) / τ), τ = 0.05·HW
  (for L < 3: s_0 − s_{L−1}). **Higher is better**: a large drop for few salient pixels. NaN
  when no pixel lies above the threshold (n_δ = 0, e.g. a constant map), where the original
  reads past the curve.

Maps are read at the image's resolution (coarser maps are upsampled bilinearly first). Every
curve of a batch goes through :meth:`unmask.scoring.Scorer.perturbed` at once: the masks are
built from each pixel's rank chunk by chunk, and the two probabilities P(C), P(C′) come from one
forward pass per perturbed image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive, check_probability, check_targets
from .._types import Model, SaliencyLike, Target
from ..explanation import Explanation
from ..models import as_classifier, check_model_input
from ..params import Area, BatchSize, RemovalArg, Side
from ..registry import METRICS
from ..removal import Constant
from ..removal import resolve_removal as resolve_substrate
from ..scores import select_scores
from ..scoring import Scorer
from ._prepare import check_saliency, removal_key
from .deletion import curve_masks, pixel_ranks

__all__ = ["ContrastiveCurve", "contrastive_curve", "cauc", "cdrop", "CAUC", "CDROP"]


@dataclass
class ContrastiveCurve:
    """Contrastive deletion curves of a batch (NaN after each image's stop).

    Attributes:
        scores: (B, T + 1) float64, ``s = P(C)·(1 − P(C′))`` at steps 0..T, T = ceil(HW / step).
        target_probability: (B, T + 1) P(C) at each step.
        competitor_probability: (B, T + 1) P(C′) at each step.
        length: (B,) the number of points L of each curve (s_0 included).
        n_delta: (B,) the number of salient pixels n_δ.
        pixels: H·W.
    """

    scores: Tensor
    target_probability: Tensor
    competitor_probability: Tensor
    length: Tensor
    n_delta: Tensor
    pixels: int

    def cauc(self) -> Tensor:
        """CAUC per image (B,) float64; lower is better."""
        s = self.scores
        last = s.gather(1, (self.length.clamp(min=1) - 1)[:, None])[:, 0]
        return (s.nansum(1) - 0.5 * (s[:, 0] + last)) / s.shape[1]

    def cdrop(self, tau: float = 0.05, smooth: int = 3) -> Tensor:
        """CDROP per image (B,) float64 with τ = ``tau``·HW; higher is better."""
        s, n = self.scores, self.length
        idx = torch.arange(s.shape[1])[None, :]
        window = (idx < n[:, None]) & (idx >= (n - smooth)[:, None])
        window = torch.where((n >= smooth)[:, None], window, idx == (n - 1)[:, None])
        end = torch.where(window, s, torch.zeros_like(s)).sum(1) / window.sum(1).clamp(min=1)
        t = tau * self.pixels
        penalty = torch.log2(1 + torch.clamp(self.n_delta.double(), min=t) / t)
        value = (s[:, 0] - end) / penalty
        return torch.where(n > 0, value, torch.full_like(value, float("nan")))


#: Why contrastive metrics refuse target functions.
_SETS_ONLY = "a contrastive metric compares the probability of a class set with its competitors'"


def _members(t: Tensor, k: int) -> Tensor:
    return t if t.dtype == torch.bool else F.one_hot(t, k).bool()


def _check_competitors(competitors: object, batch: int, k: int) -> Tensor:
    if competitors is None:
        raise ValueError(
            "competitors: expected the competing classes C′ (a set, or one set per image), got None"
        )
    if (
        isinstance(competitors, list | tuple)
        and competitors
        and all(isinstance(c, int) and not isinstance(c, bool) for c in competitors)
    ):  # a flat list of classes is one set, for every image
        competitors = [set(competitors)]
    checked = check_targets(competitors, batch, k, "competitors", _SETS_ONLY)
    assert isinstance(checked, Tensor)  # competitors is not None, and no function
    return _members(checked, k)


def contrastive_curve(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    competitors: Any,
    removal: Any = None,
    pixels_per_step: int = 16,
    delta: float = 0.5,
    batch_size: int = 16,
    progress: object = False,
) -> ContrastiveCurve:
    """The contrastive deletion curves of CWOX's CAUC / CDROP (see the module docstring).

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: contrastive maps (B, 1, h, w) or an Explanation; upsampled to (H, W).
        target: the class or set of classes C per image (an int, a set, one per image, a (B,)
            or (B, K) tensor); None = the Explanation's target, else the top-1 class.
        competitors: the competing classes C′: a set (or a flat list) for every image, one set
            per image, or a (B,) / (B, K) tensor. Must not overlap C.
        removal: the fill of deleted pixels (default ``Constant("mean")``); any removal.
        pixels_per_step: pixels deleted per step (16).
        delta: the saliency threshold δ in (0, 1] of n_δ (0.5).
        batch_size: images per forward pass.
        progress: progress bar (bool) or callback ``(done, total)``.

    Returns:
        A :class:`ContrastiveCurve`.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> c = contrastive_curve(region_model(), region_images(1, 32), region_mask(32, 32).float(),
        ...                       target=1, competitors={0})
        >>> c.scores.shape, int(c.length[0]), int(c.n_delta[0])
        (torch.Size([1, 65]), 4, 64)
    """
    model = as_classifier(model, "model")
    x = check_model_input(model, x, "x")
    if target is None and isinstance(saliency, Explanation):
        target = saliency.target
    s = check_saliency(saliency, x.shape[0], size=(x.shape[-2], x.shape[-1]))
    check_positive(pixels_per_step, "pixels_per_step", integer=True)
    check_probability(delta, "delta", open_low=True)
    fill = resolve_substrate(removal, lambda: Constant("mean"))
    b, _, height, width = x.shape
    if tuple(s.shape[-2:]) != (height, width):
        s = F.interpolate(s.float(), size=(height, width), mode="bilinear", align_corners=False)
    k = model.num_classes
    scorer = Scorer(model, batch_size=batch_size, score="prob", progress=progress)
    logits = scorer.logits(x)
    t = check_targets(target, b, k, "target", _SETS_ONLY)
    if t is None:
        t = logits.argmax(dim=1).cpu()
    pos = _members(t, k)
    neg = _check_competitors(competitors, b, k)
    both = (pos & neg).any(1)
    if bool(both.any()):
        i = int(both.nonzero()[0])
        shared = (pos[i] & neg[i]).nonzero().flatten().tolist()
        raise ValueError(
            f"competitors: image {i} has classes {shared} "
            "both in the target and among the competitors"
        )
    member = torch.stack([pos, neg], dim=1)  # (B, 2, K): P(C), P(C′) from one forward pass
    clean = select_scores(logits, member, "prob").cpu().double()  # (B, 2)

    n = height * width
    flat = s.flatten(1).double()
    lo, hi = flat.min(1).values, flat.max(1).values
    n_delta = (flat > (lo + delta * (hi - lo))[:, None]).sum(1)
    length = (n_delta + pixels_per_step - 1) // pixels_per_step  # ceil; 0 when n_δ = 0
    steps = length.clamp(min=1) - 1  # deletion steps per image
    total = math.ceil(n / pixels_per_step) + 1
    image = torch.arange(b).repeat_interleave(steps)
    offsets = torch.cumsum(steps, 0) - steps
    step = torch.arange(int(steps.sum())) - offsets.repeat_interleave(steps) + 1
    ranks = pixel_ranks(s)

    def masks(start: int, stop: int) -> Tensor:
        return curve_masks(
            ranks,
            image[start:stop],
            step[start:stop],
            pixels_per_step=pixels_per_step,
            grid=(height, width),
            size=(height, width),
            mode="deletion",
        )

    probs = torch.full((b, total, 2), float("nan"), dtype=torch.float64)
    probs[:, 0] = clean
    if image.numel():
        out = scorer.perturbed(x, masks, member, fill, index=image, count=image.numel())
        probs[image, step] = out.double()
    scores = probs[..., 0] * (1 - probs[..., 1])
    return ContrastiveCurve(scores, probs[..., 0], probs[..., 1], length, n_delta, n)


class _ContrastiveMetric:
    """CAUC or CDROP: one contrastive curve per image reduced to a number."""

    kind = "contrastive"
    higher_is_better = False

    def __init__(
        self,
        removal: RemovalArg = None,
        *,
        pixels_per_step: Area = 16,
        delta: float = 0.5,
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        check_positive(pixels_per_step, "pixels_per_step", integer=True)
        check_probability(delta, "delta", open_low=True)
        check_positive(batch_size, "batch_size", integer=True)
        self.removal = resolve_substrate(removal, lambda: Constant("mean"))
        self.pixels_per_step, self.delta = pixels_per_step, float(delta)
        self.batch_size, self.progress = batch_size, progress

    def shared_key(self) -> tuple[Any, ...]:
        """CAUC and CDROP with the same fill, step and δ read the same curve."""
        return ("contrastive", removal_key(self.removal), self.pixels_per_step, self.delta)

    def shared(
        self,
        model: Model,
        x: Tensor,
        saliency: SaliencyLike,
        target: Target = None,
        *,
        competitors: Any = None,
    ) -> ContrastiveCurve:
        return contrastive_curve(
            model,
            x,
            saliency,
            target,
            competitors=competitors,
            removal=self.removal,
            pixels_per_step=self.pixels_per_step,
            delta=self.delta,
            batch_size=self.batch_size,
            progress=self.progress,
        )

    def reduce(self, curve: ContrastiveCurve) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(
        self,
        model: Model,
        x: Tensor,
        saliency: SaliencyLike,
        target: Target = None,
        *,
        competitors: Any = None,
    ) -> Tensor:
        """Per-image values (B,) for images (B, 3, H, W), maps (B, 1, h, w), C and C′."""
        return self.reduce(self.shared(model, x, saliency, target, competitors=competitors))


@METRICS.register(
    "cauc",
    aliases=("contrastive_auc",),
    cost=lambda p, size: -(-size * size // p["pixels_per_step"]),
)
class CAUC(_ContrastiveMetric):
    """Contrastive AUC (CWOX): area under ``P(C)·(1 − P(C′))`` while the salient pixels are
    deleted, 16 per step; lower is better.

    Call: ``metric(model, x, saliency, target=C, competitors=C′) -> (B,)``.

    Args:
        removal: the fill of deleted pixels (default ImageNet mean colour).
        pixels_per_step: pixels deleted per step (16).
        delta: the threshold δ of the salient pixels n_δ (0.5).
        batch_size: images per forward pass.
        progress: progress bar or callback.
    """

    higher_is_better = False

    def reduce(self, curve: ContrastiveCurve) -> Tensor:
        return curve.cauc()


@METRICS.register(
    "cdrop",
    aliases=("contrastive_drop",),
    cost=lambda p, size: -(-size * size // p["pixels_per_step"]),
)
class CDROP(_ContrastiveMetric):
    """Contrastive drop (CWOX): the fall of ``P(C)·(1 − P(C′))`` once the salient pixels are
    deleted, per log-number of them; higher is better.

    Call: ``metric(model, x, saliency, target=C, competitors=C′) -> (B,)``.

    Args:
        removal: the fill of deleted pixels (default ImageNet mean colour).
        pixels_per_step: pixels deleted per step (16).
        delta: the threshold δ of the salient pixels n_δ (0.5).
        tau: τ as a fraction of the image's pixels (0.05).
        smooth: points averaged at the end of the curve (3).
        batch_size: images per forward pass.
        progress: progress bar or callback.
    """

    higher_is_better = True

    def __init__(
        self,
        removal: RemovalArg = None,
        *,
        pixels_per_step: Area = 16,
        delta: float = 0.5,
        tau: float = 0.05,
        smooth: Side = 3,
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        super().__init__(
            removal,
            pixels_per_step=pixels_per_step,
            delta=delta,
            batch_size=batch_size,
            progress=progress,
        )
        check_probability(tau, "tau", open_low=True)
        check_positive(smooth, "smooth", integer=True)
        self.tau, self.smooth = float(tau), smooth

    def reduce(self, curve: ContrastiveCurve) -> Tensor:
        return curve.cdrop(self.tau, self.smooth)


def cauc(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    competitors: Any,
    **options: Any,
) -> Tensor:
    """CAUC per image (B,); options as :class:`CAUC`."""
    return CAUC(**options)(model, x, saliency, target, competitors=competitors)


def cdrop(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    competitors: Any,
    **options: Any,
) -> Tensor:
    """CDROP per image (B,); options as :class:`CDROP`."""
    return CDROP(**options)(model, x, saliency, target, competitors=competitors)
