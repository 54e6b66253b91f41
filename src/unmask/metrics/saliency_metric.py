"""The saliency metric of Dabkowski & Gal (2017, "Real time image saliency for black box
classifiers"), as used in seed 001 (Agarwal & Nguyen 2020, Sec. 4.3, Table 4).

Per image: threshold the map at ``alpha * max`` (the kept pixels of
:mod:`unmask.metrics.localisation`), take the smallest box covering every kept pixel, crop it
from the image, resize the crop back to the image size (bilinear) and score it with the model:

    ``SM = log(max(a, 0.05)) - log p_c(crop)``,  ``a = box area / image area``.

A small box that alone keeps the class probability high scores low: **lower is better**. The
area floor 0.05 stops tiny boxes from being rewarded without bound. As for the localisation
error, seed 001 picks ``alpha`` per method on a held-out split (:func:`select_saliency_alpha`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive, check_probability, check_targets
from .._types import Model, Target
from ..explanation import Explanation
from ..models import as_classifier, check_model_input
from ..params import BatchSize
from ..registry import METRICS
from ..scoring import Scorer
from ._prepare import check_saliency
from .localisation import ALPHAS, AlphaChoice, saliency_boxes

__all__ = [
    "crop_and_resize",
    "saliency_metric",
    "select_saliency_alpha",
    "SaliencyMetric",
    "AREA_FLOOR",
]

#: The area floor of Dabkowski & Gal: boxes smaller than 5 % of the image count as 5 %.
AREA_FLOOR = 0.05


def crop_and_resize(x: Tensor, boxes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Crop box ``boxes[i]`` from image ``x[i]`` and resize it to ``size`` (default: the image's).

    The same values as cropping and then ``F.interpolate(crop, size, mode="bilinear",
    align_corners=False)`` (pixels outside the box never leak in), computed for the whole
    batch at once with one sampling grid per image.

    Args:
        x: images (B, C, H, W).
        boxes: (B, 4) as (x_min, y_min, x_max, y_max) in whole pixels, max exclusive.
        size: output (height, width).

    Returns:
        (B, C, *size) crops.
    """
    b, _, h, w = x.shape
    out_h, out_w = (h, w) if size is None else size
    bx = boxes.to(device=x.device, dtype=torch.float64).round()

    def axis(lo: Tensor, hi: Tensor, n_out: int, n_in: int) -> Tensor:
        # source pixel-centre index of each output pixel, clamped inside the box, then
        # normalised for grid_sample(align_corners=False): index i -> (2i + 1) / n_in - 1
        j = torch.arange(n_out, dtype=torch.float64, device=x.device)
        src = lo[:, None] + (j[None] + 0.5) * ((hi - lo)[:, None] / n_out) - 0.5
        src = torch.minimum(src.clamp(min=0), (hi - 1)[:, None]).maximum(lo[:, None])
        return (2 * src + 1) / n_in - 1

    gx = axis(bx[:, 0], bx[:, 2], out_w, w)  # (B, out_w)
    gy = axis(bx[:, 1], bx[:, 3], out_h, h)  # (B, out_h)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _scores(
    model: Model,
    x: Tensor,
    saliency: Tensor,
    target: Target,
    alphas: Sequence[float],
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Saliency-metric values (B, A) and box areas (B, A) for every alpha."""
    model = as_classifier(model, "model")
    x = check_model_input(model, x, "x")
    if target is None and isinstance(saliency, Explanation):
        target = saliency.target
    saliency = check_saliency(saliency, x.shape[0], size=(x.shape[-2], x.shape[-1]))
    if saliency.shape[-2:] != x.shape[-2:]:  # coarse maps: upsampled to the image, as in seed 001
        saliency = F.interpolate(saliency, size=x.shape[-2:], mode="bilinear", align_corners=False)
    check_positive(batch_size, "batch_size", integer=True)
    scorer = Scorer(model, batch_size=batch_size, score="log_prob")
    t = check_targets(target, x.shape[0], model.num_classes, "target")
    if t is None:
        t = scorer.top1(x)
    b, _, h, w = x.shape
    boxes = saliency_boxes(saliency, list(alphas))  # (B, A, 4)
    n_alpha = boxes.shape[1]
    flat = boxes.reshape(-1, 4)
    index = torch.arange(b).repeat_interleave(n_alpha)
    log_p = torch.empty(flat.shape[0])
    for start in range(0, flat.shape[0], batch_size):  # chunks, so crops never all sit in memory
        stop = min(start + batch_size, flat.shape[0])
        idx = index[start:stop]
        crops = crop_and_resize(x[idx.to(x.device)], flat[start:stop])
        log_p[start:stop] = scorer(crops, t[idx]).cpu()
    area = ((flat[:, 2] - flat[:, 0]) * (flat[:, 3] - flat[:, 1]) / (h * w)).float()
    value = torch.log(area.clamp(min=AREA_FLOOR)) - log_p
    return value.reshape(b, n_alpha), area.reshape(b, n_alpha)


def saliency_metric(
    model: Model,
    x: Tensor,
    saliency: Tensor,
    target: Target = None,
    alpha: float = 0.5,
    batch_size: int = 16,
) -> Tensor:
    """Dabkowski & Gal's saliency metric per image (B,); lower is better.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: maps (B, 1, h, w); coarser maps are upsampled (bilinear) to the image size.
        target: a class or a set of classes per image (a set scores ``log Σ_{c∈C} p_c``);
            None = the Explanation's target, else the model's top-1 on ``x``.
        alpha: threshold as a fraction of each map's maximum (choose it with
            :func:`select_saliency_alpha`).
        batch_size: crops per forward pass (through :class:`unmask.Scorer`).

    Returns:
        ``log(max(a, 0.05)) - log p_c(crop)`` (B,), with ``a`` the box's share of the image.
    """
    check_probability(alpha, "alpha")
    return _scores(model, x, saliency, target, [float(alpha)], batch_size)[0][:, 0]


def select_saliency_alpha(
    model: Model,
    x: Tensor,
    saliency: Tensor,
    target: Target = None,
    alphas: Sequence[float] = ALPHAS,
    batch_size: int = 16,
) -> AlphaChoice:
    """Choose ``alpha`` on held-out images: the lowest mean saliency metric (seed 001, Fig. S6).

    Costs B × len(alphas) model evaluations. Ties go to the smallest alpha.

    Returns:
        ``AlphaChoice(alpha, alphas, errors)`` where ``errors`` (A,) holds the mean metric.
    """
    alphas = tuple(float(a) for a in alphas)
    if not alphas:
        raise ValueError("alphas: expected at least one threshold")
    for a in alphas:
        check_probability(a, "alphas")
    values = _scores(model, x, saliency, target, alphas, batch_size)[0].mean(0)
    return AlphaChoice(alphas[int(torch.argmin(values))], alphas, values)


@METRICS.register("saliency_metric", aliases=("dabkowski_gal", "sm"), cost=lambda p, size: 1)
class SaliencyMetric:
    """Saliency metric (Dabkowski & Gal 2017): ``log(max(a, 0.05)) - log p_c(crop)`` of the
    smallest box around the pixels above ``alpha * max``, cropped and resized to the image.

    Call (faithfulness convention): ``metric(model, x (B, 3, H, W), saliency (B, 1, H, W),
    target=None) -> (B,)``. Lower is better.
    """

    kind = "faithfulness"
    higher_is_better = False

    def __init__(self, alpha: float = 0.5, *, batch_size: BatchSize = 16) -> None:
        check_probability(alpha, "alpha")
        check_positive(batch_size, "batch_size", integer=True)
        self.alpha, self.batch_size = float(alpha), batch_size

    def __call__(self, model: Model, x: Tensor, saliency: Tensor, target: Target = None) -> Tensor:
        return saliency_metric(model, x, saliency, target, self.alpha, self.batch_size)

    def __repr__(self) -> str:
        return f"SaliencyMetric(alpha={self.alpha})"
