"""Localisation metrics: does a saliency map point at the object?

Three metrics compare saliency maps (B, 1, H, W) with ground-truth object locations, given
either as boxes or as binary masks:

* **Localisation error** (Zhou et al. 2016 CAM protocol as run by Fong & Vedaldi 2017 and
  Agarwal & Nguyen 2020, seed 001 Sec. 4.3): threshold the map at ``alpha * max``, draw one box
  around the pixels that remain, and count an error when its IoU with every ground-truth box is
  below 0.5. ``alpha`` is chosen on a held-out split with :func:`select_alpha`.
* **Pointing game** (Zhang et al. 2016, "Top-down neural attention by excitation backprop"): a
  hit when the map's maximum lies on the object, with a tolerance of 15 pixels.
* **Energy-based pointing game** (Wang et al. 2020, Score-CAM), also called the mass inside
  the ground-truth mask: the fraction of the map's positive mass that falls on the object.

Conventions (used by every function here):

* Boxes are ``(x_min, y_min, x_max, y_max)`` in pixels of the saliency map, **max exclusive**
  (the box covers columns ``x_min .. x_max - 1``), the torchvision convention. An ImageNet XML
  box (inclusive corners) converts with ``x_max + 1, y_max + 1``. ``boxes`` is a tensor
  (B, 4) (one box per image), (B, N, 4), or a list of B arrays (N_i, 4) (several boxes per
  image: an image is localised when *any* of its boxes matches).
* Masks are tensors (B, 1, H, W), non-zero = object. Where a box is needed (localisation
  error), a mask stands for its bounding box.
* The kept pixels at ``alpha`` are ``{s >= alpha * max(s)} ∩ {s > 0}``: at ``alpha = 0``
  these are the positive pixels (the behaviour of the seed authors' code, which zeroes pixels
  below the threshold and boxes the non-zero ones). A map with no positive value keeps nothing,
  and then the predicted box is **the whole image** (also as the authors' code), so a blank map
  scores like the whole-image baseline (38.56 % error on ImageNet in seed 001, Table 2).
* Box rule: ``box="all"`` (default) is the bounding box of **all** kept pixels, as in the seed
  paper and its code; ``box="largest"`` is the bounding box of the largest 8-connected
  component of the kept pixels, as in the CAM / ILSVRC localisation code (Zhou et al.).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_probability
from ..registry import METRICS
from ._prepare import check_saliency

__all__ = [
    "ALPHAS",
    "AlphaChoice",
    "box_iou",
    "boxes_from_masks",
    "boxes_to_masks",
    "saliency_boxes",
    "localisation_iou",
    "localisation_error",
    "select_alpha",
    "pointing_game",
    "energy_pointing_game",
    "LocalisationError",
    "PointingGame",
    "EnergyPointingGame",
]

#: The thresholds of the seed paper: alpha in {0, 0.05, ..., 0.95}.
ALPHAS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))

BOX_RULES = ("all", "largest")


# ----------------------------------------------------------------------------- input checks
def _as_box_tensor(value: Any, name: str) -> Tensor:
    t = torch.as_tensor(
        np.asarray(value, dtype=np.float64) if not isinstance(value, Tensor) else value
    )
    t = t.detach().to("cpu", torch.float64)
    if t.ndim == 1 and t.numel() == 4:
        t = t.reshape(1, 4)
    if t.ndim != 2 or t.shape[-1] != 4:
        raise ValueError(
            f"{name}: expected boxes of shape (N, 4) as (x_min, y_min, x_max, y_max), "
            f"got {tuple(t.shape)}"
        )
    if t.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one box per image, got none")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    if bool(((t[:, 2] <= t[:, 0]) | (t[:, 3] <= t[:, 1])).any()):
        bad = t[(t[:, 2] <= t[:, 0]) | (t[:, 3] <= t[:, 1])][0].tolist()
        raise ValueError(
            f"{name}: a box needs x_max > x_min and y_max > y_min (max exclusive), got {bad}"
        )
    return t


def check_boxes(boxes: object, batch: int, name: str = "boxes") -> tuple[Tensor, Tensor]:
    """Normalise boxes to a padded tensor (B, N, 4) float64 and a validity mask (B, N).

    Accepts a tensor (B, 4) or (B, N, 4), or a sequence of B box arrays (N_i, 4).
    """
    if isinstance(boxes, Tensor) and boxes.ndim in (2, 3):
        if boxes.shape[0] != batch:
            raise ValueError(f"{name}: expected boxes for {batch} images, got {boxes.shape[0]}")
        per_image = [boxes[i] for i in range(batch)]
    elif isinstance(boxes, Sequence | np.ndarray) and not isinstance(boxes, str | Tensor):
        if len(boxes) != batch:
            raise ValueError(f"{name}: expected boxes for {batch} images, got {len(boxes)}")
        per_image = list(boxes)
    else:
        raise TypeError(
            f"{name}: expected a tensor (B, 4) / (B, N, 4), a list of B arrays (N_i, 4), or masks "
            f"(B, 1, H, W); got {type(boxes).__name__}"
            + (f" of shape {tuple(boxes.shape)}" if isinstance(boxes, Tensor) else "")
        )
    items = [_as_box_tensor(b, f"{name}[{i}]") for i, b in enumerate(per_image)]
    n = max(b.shape[0] for b in items)
    padded = torch.zeros(batch, n, 4, dtype=torch.float64)
    valid = torch.zeros(batch, n, dtype=torch.bool)
    for i, b in enumerate(items):
        padded[i, : b.shape[0]] = b
        valid[i, : b.shape[0]] = True
    return padded, valid


def _is_mask(value: object) -> bool:
    return isinstance(value, Tensor) and value.ndim == 4


def check_object_masks(masks: Tensor, saliency: Tensor, name: str = "masks") -> Tensor:
    """Ground-truth masks (B, 1, H, W) matching the maps, as bool (B, H, W)."""
    if (
        masks.shape[1] != 1
        or masks.shape[-2:] != saliency.shape[-2:]
        or masks.shape[0] != saliency.shape[0]
    ):
        raise ValueError(
            f"{name}: expected shape "
            f"({saliency.shape[0]}, 1, {saliency.shape[-2]}, {saliency.shape[-1]}) "
            f"matching the saliency maps, got {tuple(masks.shape)}"
        )
    m = masks[:, 0].detach().cpu()
    if m.is_floating_point() and not bool(torch.isfinite(m).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    m = m != 0
    empty = ~m.flatten(1).any(1)
    if bool(empty.any()):
        raise ValueError(f"{name}: image {int(empty.nonzero()[0])} has an empty ground-truth mask")
    return m


# ----------------------------------------------------------------------------- boxes
def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of boxes ``a`` (..., 4) and ``b`` (..., 4) (broadcast).

    Boxes are (x_min, y_min, x_max, y_max), max exclusive, so the area is
    ``(x_max - x_min) * (y_max - y_min)``.

    Example:
        >>> box_iou(torch.tensor([0., 0, 10, 10]), torch.tensor([5., 0, 15, 10]))
        tensor(0.3333)
    """
    a, b = torch.broadcast_tensors(a, b)
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _bounding_boxes(kept: Tensor) -> Tensor:
    """Bounding boxes (..., 4) of boolean maps (..., H, W); the whole image when nothing is kept."""
    h, w = kept.shape[-2:]
    rows, cols = kept.any(-1), kept.any(-2)  # (..., H), (..., W)
    any_kept = rows.any(-1)
    r_idx = torch.arange(h, device=kept.device)
    c_idx = torch.arange(w, device=kept.device)
    y0 = torch.where(rows, r_idx, h).amin(-1)
    y1 = torch.where(rows, r_idx, -1).amax(-1) + 1
    x0 = torch.where(cols, c_idx, w).amin(-1)
    x1 = torch.where(cols, c_idx, -1).amax(-1) + 1
    box = torch.stack([x0, y0, x1, y1], -1)
    full = torch.tensor([0, 0, w, h], device=kept.device).expand_as(box)
    return torch.where(any_kept[..., None], box, full).to(torch.float64)


def _largest_component(kept: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(kept, structure=np.ones((3, 3), dtype=bool))
    if n <= 1:
        return kept
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def _kept(saliency: Tensor, alphas: Tensor) -> Tensor:
    """Kept pixels (B, A, H, W): ``s >= alpha * max(s)`` and ``s > 0``."""
    s = saliency[:, 0]  # (B, H, W)
    top = s.flatten(1).amax(1)  # (B,)
    thr = alphas.to(s)[None, :] * top[:, None]  # (B, A)
    return (s[:, None] >= thr[..., None, None]) & (s[:, None] > 0)


def saliency_boxes(
    saliency: Tensor, alpha: float | Sequence[float] = 0.5, box: str = "all"
) -> Tensor:
    """The box a thresholded map points at: (B, 4), or (B, A, 4) for a sequence of alphas.

    Args:
        saliency: maps (B, 1, H, W).
        alpha: threshold as a fraction of each map's maximum (one value or several).
        box: ``"all"`` = bounding box of every kept pixel (seed paper); ``"largest"`` =
            bounding box of the largest 8-connected component of the kept pixels (CAM code).

    Returns:
        Boxes (x_min, y_min, x_max, y_max), max exclusive, float64; the whole image for a map
        with no positive value.

    Example:
        >>> s = torch.zeros(1, 1, 8, 8); s[0, 0, 2:4, 3:6] = 1.0
        >>> saliency_boxes(s, 0.5).tolist()
        [[3.0, 2.0, 6.0, 4.0]]
    """
    saliency = check_saliency(saliency)
    check_choice(box, "box", BOX_RULES)
    single = isinstance(alpha, int | float)
    alphas = [alpha] if single else list(alpha)  # type: ignore[arg-type]
    if not alphas:
        raise ValueError("alpha: expected at least one threshold")
    for a in alphas:
        check_probability(a, "alpha")
    kept = _kept(saliency, torch.tensor(alphas, dtype=torch.float64))
    if box == "largest":
        flat = kept.cpu().numpy().reshape(-1, *kept.shape[-2:])
        kept = torch.from_numpy(np.stack([_largest_component(k) for k in flat])).reshape(kept.shape)
    out = _bounding_boxes(kept.cpu())
    return out[:, 0] if single else out


def boxes_from_masks(masks: Tensor) -> Tensor:
    """Bounding box (B, 4) of each binary mask (B, 1, H, W) (non-zero = object)."""
    if not isinstance(masks, Tensor) or masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(
            "masks: expected a tensor (B, 1, H, W), "
            f"got {getattr(masks, 'shape', type(masks).__name__)}"
        )
    m = masks[:, 0].detach().cpu() != 0
    if bool((~m.flatten(1).any(1)).any()):
        raise ValueError("masks: an image has an empty ground-truth mask")
    return _bounding_boxes(m)


def boxes_to_masks(boxes: object, height: int, width: int) -> Tensor:
    """Union of each image's boxes as a bool mask (B, 1, H, W); box corners are rounded."""
    batch = boxes.shape[0] if isinstance(boxes, Tensor) else len(boxes)  # type: ignore[arg-type]
    padded, valid = check_boxes(boxes, batch)
    return _union_masks(padded, valid, height, width)[:, None]


def _union_masks(padded: Tensor, valid: Tensor, height: int, width: int) -> Tensor:
    b = padded.round()
    ys = torch.arange(height, dtype=torch.float64)
    xs = torch.arange(width, dtype=torch.float64)
    in_rows = (ys >= b[..., 1, None]) & (ys < b[..., 3, None])  # (B, N, H)
    in_cols = (xs >= b[..., 0, None]) & (xs < b[..., 2, None])  # (B, N, W)
    inside = in_rows[..., :, None] & in_cols[..., None, :] & valid[..., None, None]
    return inside.any(1)  # (B, H, W)


def _ground_truth_masks(target: object, saliency: Tensor, name: str) -> Tensor:
    """(B, H, W) bool object masks from boxes or masks."""
    if _is_mask(target):
        return check_object_masks(target, saliency, name)  # type: ignore[arg-type]
    padded, valid = check_boxes(target, saliency.shape[0], name)
    h, w = saliency.shape[-2:]
    m = _union_masks(padded, valid, h, w)
    empty = ~m.flatten(1).any(1)
    if bool(empty.any()):
        raise ValueError(
            f"{name}: the boxes of image {int(empty.nonzero()[0])} lie outside the {h}x{w} map"
        )
    return m


def _ground_truth_boxes(target: object, saliency: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if _is_mask(target):
        m = check_object_masks(target, saliency, name)  # type: ignore[arg-type]
        return _bounding_boxes(m)[:, None], torch.ones(m.shape[0], 1, dtype=torch.bool)
    return check_boxes(target, saliency.shape[0], name)


# ----------------------------------------------------------------------------- localisation error
def localisation_iou(
    saliency: Tensor, boxes: object, alpha: float | Sequence[float] = 0.5, box: str = "all"
) -> Tensor:
    """Best IoU between the map's box and any ground-truth box: (B,), or (B, A) for several alphas.

    Args:
        saliency: maps (B, 1, H, W).
        boxes: ground truth, boxes (B, 4) / (B, N, 4) / list of (N_i, 4), or masks (B, 1, H, W)
            (a mask stands for its bounding box).
        alpha: threshold(s) as a fraction of the map's maximum.
        box: ``"all"`` or ``"largest"`` (see :func:`saliency_boxes`).
    """
    saliency = check_saliency(saliency)
    gt, valid = _ground_truth_boxes(boxes, saliency, "boxes")
    pred = saliency_boxes(saliency, alpha, box)
    single = pred.ndim == 2
    pred = pred[:, None] if single else pred  # (B, A, 4)
    iou = box_iou(pred[:, :, None], gt[:, None])  # (B, A, N)
    iou = torch.where(valid[:, None], iou, torch.full_like(iou, -1.0)).amax(-1)
    iou = iou.float()
    return iou[:, 0] if single else iou


def localisation_error(
    saliency: Tensor,
    boxes: object,
    alpha: float = 0.5,
    box: str = "all",
    iou_threshold: float = 0.5,
) -> Tensor:
    """Per-image localisation error (B,): 1.0 when the best IoU is below ``iou_threshold``.

    The mean over a data set is the localisation error of seed 001 (Table 2). Lower is better.

    Example:
        >>> s = torch.zeros(2, 1, 8, 8); s[:, 0, 2:6, 2:6] = 1.0
        >>> localisation_error(s, torch.tensor([[2., 2, 6, 6], [0, 0, 3, 3]])).tolist()
        [0.0, 1.0]
    """
    check_probability(iou_threshold, "iou_threshold")
    iou = localisation_iou(saliency, boxes, float(alpha), box)
    return (iou < iou_threshold).float()


class AlphaChoice(NamedTuple):
    """The threshold chosen on a held-out split and the mean error at every candidate."""

    alpha: float
    alphas: tuple[float, ...]
    errors: Tensor


def select_alpha(
    saliency: Tensor,
    boxes: object,
    alphas: Sequence[float] = ALPHAS,
    box: str = "all",
    iou_threshold: float = 0.5,
) -> AlphaChoice:
    """Choose ``alpha`` on a held-out split: the one with the lowest mean localisation error.

    Seed 001 (Sec. 4.3) picks ``alpha*`` per method on 1000 held-out ImageNet images and then
    reports :func:`localisation_error` at that ``alpha`` on the other images. Ties go to the
    smallest alpha.

    Returns:
        ``AlphaChoice(alpha, alphas, errors)`` with ``errors`` (A,) the mean error per alpha.
    """
    check_probability(iou_threshold, "iou_threshold")
    alphas = tuple(float(a) for a in alphas)
    iou = localisation_iou(saliency, boxes, alphas, box)  # (B, A)
    errors = (iou < iou_threshold).float().mean(0)
    best = int(torch.argmin(errors))  # first minimum = smallest alpha among ties
    return AlphaChoice(alphas[best], alphas, errors)


# ----------------------------------------------------------------------------- pointing games
def pointing_game(saliency: Tensor, boxes: object, tolerance: float = 15.0) -> Tensor:
    """Pointing game hits (B,): 1.0 when the map's maximum lies within ``tolerance`` pixels
    (Euclidean) of the object (Zhang et al. 2016 use 15 px at the image resolution).

    The maximum is the first one in raster order when several pixels tie (a constant map
    therefore points at the top-left corner). Higher is better.

    Args:
        saliency: maps (B, 1, H, W).
        boxes: ground-truth boxes (B, 4) / (B, N, 4) / list of (N_i, 4) or masks (B, 1, H, W).
        tolerance: the distance in pixels (>= 0) within which a miss still counts as a hit.

    Example:
        >>> s = torch.zeros(1, 1, 64, 64); s[0, 0, 40, 20] = 1.0  # 11 px below the box
        >>> box = torch.tensor([[0., 0, 30, 30]])
        >>> pointing_game(s, box, tolerance=15).item(), pointing_game(s, box, tolerance=5).item()
        (1.0, 0.0)
    """
    saliency = check_saliency(saliency)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise ValueError(f"tolerance: expected a number of pixels >= 0, got {tolerance!r}")
    gt = _ground_truth_masks(boxes, saliency, "boxes")  # (B, H, W)
    b, _, h, w = saliency.shape
    idx = saliency.flatten(1).argmax(1).cpu()
    r, c = (idx // w).double(), (idx % w).double()
    ys = torch.arange(h, dtype=torch.float64)[None, :, None]
    xs = torch.arange(w, dtype=torch.float64)[None, None, :]
    d2 = (ys - r[:, None, None]) ** 2 + (xs - c[:, None, None]) ** 2
    d2 = torch.where(gt, d2, torch.full_like(d2, float("inf")))
    tolerance = min(tolerance, h + w)  # beyond the map's diagonal every pixel is as near
    return (d2.flatten(1).amin(1) <= float(tolerance) ** 2).float()


def energy_pointing_game(saliency: Tensor, boxes: object) -> Tensor:
    """Fraction of the map's positive mass inside the object (B,), in [0, 1] (Wang et al. 2020).

    ``sum(relu(s) * object) / sum(relu(s))``; a map without positive values scores 0. With a
    mask as ``boxes`` this is the "mass inside the ground-truth mask". Higher is better.

    Example:
        >>> s = torch.zeros(1, 1, 4, 4)
        >>> s[0, 0, 0, 0] = 3.0; s[0, 0, 3, 3] = 1.0; s[0, 0, 1, 1] = -5.0
        >>> energy_pointing_game(s, torch.tensor([[0., 0, 2, 2]])).item()
        0.75
    """
    saliency = check_saliency(saliency)
    gt = _ground_truth_masks(boxes, saliency, "boxes").to(saliency.device)
    pos = saliency[:, 0].clamp(min=0).double()
    total = pos.flatten(1).sum(1)
    inside = (pos * gt).flatten(1).sum(1)
    return (
        torch.where(total > 0, inside / total.clamp(min=1e-300), torch.zeros_like(total))
        .float()
        .cpu()
    )


# ----------------------------------------------------------------------------- registered metrics
@METRICS.register("localisation_error", aliases=("localization_error", "loc_error"))
class LocalisationError:
    """Localisation error at a fixed ``alpha`` (seed 001 Sec. 4.3): per image 1.0 when the box
    around the pixels above ``alpha * max`` has IoU < ``iou_threshold`` with every ground-truth
    box. Choose ``alpha`` on held-out images with :func:`select_alpha`.

    Call: ``metric(saliency (B, 1, H, W), boxes (B, 4) | list of (N_i, 4) | masks (B, 1, H, W))
    -> (B,)``. Lower is better.
    """

    kind = "localisation"
    higher_is_better = False

    def __init__(
        self,
        alpha: float = 0.5,
        *,
        box: Literal["all", "largest"] = "all",
        iou_threshold: float = 0.5,
    ) -> None:
        check_probability(alpha, "alpha")
        check_probability(iou_threshold, "iou_threshold")
        self.alpha, self.box, self.iou_threshold = (
            float(alpha),
            check_choice(box, "box", BOX_RULES),
            iou_threshold,
        )

    def __call__(self, saliency: Tensor, boxes: object) -> Tensor:
        return localisation_error(saliency, boxes, self.alpha, self.box, self.iou_threshold)

    def __repr__(self) -> str:
        return (
            f"LocalisationError(alpha={self.alpha}, box={self.box!r}, "
            f"iou_threshold={self.iou_threshold})"
        )


@METRICS.register("pointing_game", aliases=("pointing",))
class PointingGame:
    """Pointing game (Zhang et al. 2016): per image 1.0 when the map's maximum lies within
    ``tolerance`` pixels (default 15) of a ground-truth box or mask.

    Call: ``metric(saliency (B, 1, H, W), boxes | masks) -> (B,)``. Higher is better.
    """

    kind = "localisation"
    higher_is_better = True

    def __init__(self, tolerance: float = 15.0) -> None:
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not tolerance >= 0
        ):
            raise ValueError(f"tolerance: expected a number of pixels >= 0, got {tolerance!r}")
        self.tolerance = float(tolerance)

    def __call__(self, saliency: Tensor, boxes: object) -> Tensor:
        return pointing_game(saliency, boxes, self.tolerance)

    def __repr__(self) -> str:
        return f"PointingGame(tolerance={self.tolerance})"


@METRICS.register("energy_pointing_game", aliases=("energy_pointing", "mass_inside"))
class EnergyPointingGame:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM) / mass inside the object mask:
    the fraction of the map's positive mass on the ground-truth boxes or mask.

    Call: ``metric(saliency (B, 1, H, W), boxes | masks) -> (B,)`` in [0, 1]. Higher is better.
    """

    kind = "localisation"
    higher_is_better = True

    def __call__(self, saliency: Tensor, boxes: object) -> Tensor:
        return energy_pointing_game(saliency, boxes)

    def __repr__(self) -> str:
        return "EnergyPointingGame()"
