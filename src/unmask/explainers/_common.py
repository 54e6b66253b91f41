"""Helpers every explainer uses at its public boundary and for its output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive, check_targets
from ..explanation import Explanation
from ..models import Classifier, as_classifier, check_model_input
from ..removal import make_removal
from ..scoring import Scorer

__all__ = ["Explainer", "prepare", "resolve_removal", "upsample", "check_seed", "check_pair"]


class Explainer(Protocol):
    """What every explanation method offers: ``explain(x, target=None) -> Explanation``."""

    model: Classifier

    def explain(self, x: Tensor, target: Any = None) -> Explanation: ...


def prepare(model: Classifier, x: object, target: object, scorer: Scorer | None = None) -> tuple[Tensor, Tensor]:
    """Check images and targets; ``target=None`` becomes the model's top-1 class per image.

    Returns:
        ``x`` (B, 3, H, W) on the model's device and ``target`` (B,) long on the CPU.
    """
    x = check_model_input(model, x, "x")
    t = check_targets(target, x.shape[0], model.num_classes, "target")
    if t is None:
        scorer = scorer or Scorer(model)
        t = scorer.top1(x)
    return x, t


def resolve_removal(removal: object, default: Callable[[], Callable]) -> Callable:
    """``None`` -> the method's default removal; a name -> :func:`make_removal`; else itself."""
    if removal is None:
        return default()
    return make_removal(removal)  # type: ignore[arg-type]


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    return seed


def check_pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """A positive int or (height, width) pair of positive ints -> (height, width)."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"{name}: expected an int or (height, width), got {value!r}")
    for v in pair:
        check_positive(v, name, integer=True)
    return (int(pair[0]), int(pair[1]))


def upsample(maps: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize maps (B, 1, h, w) to ``size`` (H, W)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if mode == "nearest":
        return F.interpolate(maps, size=size, mode="nearest")
    return F.interpolate(maps, size=size, mode=mode, align_corners=False)


def as_model(model: object) -> Classifier:
    return as_classifier(model, "model")


def describe(obj: object) -> object:
    """A JSON-friendly description of a hyperparameter value (removals become their repr)."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, list | tuple):
        return [describe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist() if obj.numel() <= 16 else f"tensor{tuple(obj.shape)}"
    return repr(obj)
