"""Input checks shared by every metric: the saliency maps, and the faithfulness call."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_not_meta
from .._types import Model
from ..explanation import Explanation
from ..inputs import check_inputs
from ..models import Classifier
from ..scores import select_scores
from ..scoring import Scorer

__all__ = ["check_saliency", "check_grid", "prepare_inputs", "removal_key"]


def check_saliency(
    saliency: object,
    batch: int | None = None,
    name: str = "saliency",
    size: tuple[int, int] | None = None,
) -> Tensor:
    """Saliency maps as a finite real tensor (B, 1, h, w) on the CPU: the one map check of
    every metric.

    **Maps meet images by one rule** (``size``: the images' (H, W), given wherever a map is laid
    on images): a map is either at the image's size, or a coarser *grid* whose cells tile the
    image exactly (H a multiple of h and W a multiple of w: a 7 x 7 map on 224 x 224 images,
    each cell 32 x 32 pixels). Metrics that read maps at the image's resolution upsample a grid
    bilinearly (``align_corners=False``); the others read its cells (deletion's ``"seed"`` rule
    ranks them, a removed cell removes its block of pixels). Any other size (a 30 x 30 or a
    finer map on 64 x 64 images, another aspect ratio) is refused, naming both sizes.

    Accepts an :class:`~unmask.explanation.Explanation` (its maps), or a torch tensor or numpy
    array of shape (B, 1, h, w). When the number of images is known (``batch``: the metric also
    receives the images), (B, h, w) and, for one image, (h, w) are accepted too, since B is then
    checked; without it a 3-D array is refused (it could be one RGB image). Integer and boolean
    maps become float32; floating maps keep their dtype.

    Args:
        saliency: the maps.
        batch: the number of images, hence of maps expected, or None (any number).
        name: the argument name used in error messages.
        size: the images' (H, W), when the maps are laid on images (see above).

    Example:
        >>> check_saliency(torch.ones(2, 4, 4), batch=2).shape
        torch.Size([2, 1, 4, 4])
        >>> check_saliency(torch.ones(1, 1, 3, 3), size=(8, 8))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: saliency: a 3 x 3 map does not fit 8 x 8 images: expected 8 x 8, or a ...
    """
    if isinstance(saliency, Explanation):
        saliency = saliency.saliency
    if isinstance(saliency, np.ndarray):
        if saliency.dtype.kind not in "fiub":
            raise TypeError(
                f"{name}: expected real numbers, got an array of dtype {saliency.dtype}"
            )
        saliency = torch.from_numpy(np.ascontiguousarray(saliency))
    if not isinstance(saliency, Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor (or numpy array) of shape (B, 1, H, W), "
            f"got {type(saliency).__name__}"
        )
    check_not_meta(saliency, name)
    s = saliency.detach()
    shape = "(" + ", ".join(map(str, saliency.shape)) + ")"
    if batch is not None and s.ndim == 2 and batch == 1:
        s = s[None, None]
    elif batch is not None and s.ndim == 3:
        s = s[:, None]
    if s.ndim != 4 or s.shape[1] != 1:
        also = " or (B, H, W)" if batch is not None else ""
        raise ValueError(f"{name}: expected shape (B, 1, H, W){also}, got {shape}")
    if s.numel() == 0:
        raise ValueError(f"{name}: expected non-empty maps, got {shape}")
    if batch is not None and s.shape[0] != batch:
        raise ValueError(
            f"{name}: expected one map per image ({batch}) matching the images, "
            f"got {s.shape[0]} in {shape}"
        )
    if size is not None:
        check_grid(tuple(s.shape[-2:]), size, name)
    if s.is_complex():
        raise TypeError(f"{name}: expected real numbers, got dtype {s.dtype}")
    s = s.to(device="cpu", dtype=s.dtype if s.is_floating_point() else torch.float32)
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return s


def check_grid(map_size: tuple[int, ...], image_size: tuple[int, ...], name: str) -> None:
    """Refuse a map of ``map_size`` (h, w) that is neither ``image_size`` (H, W) nor a grid
    whose cells tile it (see :func:`check_saliency`)."""
    (h, w), (hh, ww) = map_size, image_size
    if (h, w) != (hh, ww) and (hh % h or ww % w):
        raise ValueError(
            f"{name}: a {h} x {w} map does not fit {hh} x {ww} images: expected {hh} x {ww}, "
            f"or a coarser grid whose cells tile the image (its height dividing {hh}, its "
            f"width dividing {ww}); resize the maps to the images first"
        )


def prepare_inputs(
    model: Model, x: object, saliency: object, target: object, scorer_kwargs: dict[str, Any]
) -> tuple[Classifier, Tensor, Tensor, Tensor, Tensor, Scorer]:
    """Check the uniform metric call ``(model, x, saliency, target)``.

    ``target`` None means the target of an :class:`Explanation` when one is given, else each
    image's top-1 class on the clean image.

    Returns:
        model, images (B, 3, H, W) on the model's device, maps (B, 1, h, w) on the CPU, targets
        (B,) long or class sets (B, K) bool on the CPU, the scores (B,) of the clean images
        (CPU; a set's score is that of the whole set), and the scorer.
    """
    if target is None and isinstance(saliency, Explanation):
        target = saliency.target
    model, x, t = check_inputs(model, x, target)
    s = check_saliency(saliency, x.shape[0], size=(x.shape[-2], x.shape[-1]))
    scorer = Scorer(model, **scorer_kwargs)
    logits = scorer.logits(x)
    if t is None:
        t = logits.argmax(dim=1).cpu()
    base = select_scores(logits, t, scorer.score).cpu()
    return model, x, s, t, base, scorer


def removal_key(removal: Any) -> Any:
    """What identifies a removal when metrics share a computation: its spec string when that
    rebuilds it, else the object itself (a fill given as a tensor has no full string form)."""
    spec = getattr(removal, "spec", None)
    if isinstance(spec, str) and not spec.startswith("tensor:"):
        return (type(removal).__name__, spec)
    return ("object", id(removal))
