"""Input checks shared by the faithfulness metrics (single step and deletion / insertion)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_targets
from ..explanation import Explanation
from ..models import Classifier, as_classifier, check_model_input
from ..scoring import Scorer, select_scores

__all__ = ["check_saliency", "prepare_inputs"]


def check_saliency(saliency: object, batch: int, name: str = "saliency") -> Tensor:
    """Saliency maps as a float tensor (B, 1, h, w) on the CPU.

    Accepts an :class:`~unmask.explanation.Explanation`, a tensor or array of shape
    (B, 1, h, w), (B, h, w), or (h, w) when B == 1.
    """
    if isinstance(saliency, Explanation):
        saliency = saliency.saliency
    if not isinstance(saliency, Tensor):
        try:
            import numpy as np

            if isinstance(saliency, np.ndarray):
                saliency = torch.from_numpy(saliency)
        except ImportError:  # pragma: no cover
            pass
    if not isinstance(saliency, Tensor):
        raise TypeError(f"{name}: expected a tensor (B, 1, h, w), got {type(saliency).__name__}")
    s = saliency.detach()
    if s.ndim == 2 and batch == 1:
        s = s[None, None]
    elif s.ndim == 3:
        s = s[:, None]
    shape = "(" + ", ".join(map(str, saliency.shape)) + ")"
    if s.ndim != 4 or s.shape[1] != 1:
        raise ValueError(f"{name}: expected shape (B, 1, h, w) or (B, h, w), got {shape}")
    if s.shape[0] != batch:
        raise ValueError(f"{name}: expected one map per image ({batch}), got {s.shape[0]} in {shape}")
    if s.numel() == 0:
        raise ValueError(f"{name}: expected non-empty maps, got {shape}")
    if s.is_complex() or s.dtype == torch.bool:
        raise TypeError(f"{name}: expected real numbers, got dtype {s.dtype}")
    s = s.to(device="cpu", dtype=torch.float32 if not s.is_floating_point() else s.dtype)
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return s


def prepare_inputs(model: Any, x: object, saliency: object, target: object,
                   scorer_kwargs: dict[str, Any]
                   ) -> tuple[Classifier, Tensor, Tensor, Tensor, Tensor, Scorer]:
    """Check the uniform metric call ``(model, x, saliency, target)``.

    ``target`` None means the target of an :class:`Explanation` when one is given, else each
    image's top-1 class on the clean image.

    Returns:
        model, images (B, 3, H, W) on the model's device, maps (B, 1, h, w) on the CPU, targets
        (B,) long on the CPU, the scores (B,) of the clean images (CPU), and the scorer.
    """
    model = as_classifier(model, "model")
    x = check_model_input(model, x, "x")
    if target is None and isinstance(saliency, Explanation):
        target = saliency.target
    s = check_saliency(saliency, x.shape[0])
    scorer = Scorer(model, **scorer_kwargs)
    t = check_targets(target, x.shape[0], model.num_classes, "target")
    logits = scorer.logits(x)
    if t is None:
        t = logits.argmax(dim=1).cpu()
    base = select_scores(logits, t, scorer.score).cpu()
    return model, x, s, t, base, scorer
