"""Helpers every explainer uses at its public boundary and for its output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive, check_targets
from .._types import Explainer
from ..explanation import Explanation
from ..inputs import check_inputs
from ..inputs import prepare as _prepare
from ..models import Classifier, as_classifier
from ..registry import METHODS, spec_of
from ..removal import resolve_removal as _resolve
from ..scoring import Scorer

__all__ = [
    "Explainer",
    "prepare",
    "prepare_many",
    "finish",
    "resolve_removal",
    "upsample",
    "check_pair",
    "check_side",
    "check_model_batch",
]


def finish(explainer: object, saliency: Tensor, target: Tensor, **extras: Any) -> Explanation:
    """The :class:`Explanation` of ``explainer``: its registered name and resolved spec.

    Every method ends with this, so that ``Explanation.method`` is the name it was built under
    and ``Explanation.params`` rebuilds it (``make_explainer(model, **e.spec)``).
    """
    spec = spec_of(explainer, METHODS)
    method = spec.pop("method")
    return Explanation(saliency, target, method, spec, extras)


def prepare(
    model: Classifier, x: object, target: object, scorer: Scorer | None = None
) -> tuple[Tensor, Tensor]:
    """Check images and targets; ``target=None`` becomes the model's top-1 class per image.

    Returns:
        ``x`` (B, 3, H, W) on the model's device and ``target`` (B,) long on the CPU.
    """
    _, x, t = _prepare(model, x, target, scorer)
    return x, t


def prepare_many(
    model: Classifier, x: object, targets: object, scorer: Scorer | None = None
) -> tuple[Tensor, list[Tensor], Tensor]:
    """Check images and a list of T targets (each as ``explain`` takes it).

    Returns:
        ``x``; each target normalised ((B,) long or (B, K) bool; None = top-1); and what the
        scoring engine reads: the single target itself when T = 1, else the stacked membership
        (B, T, K) bool, whose scores come out as (N, T).
    """
    if not isinstance(targets, list | tuple) or not targets:
        raise TypeError(f"targets: expected a non-empty list of targets, got {targets!r}")
    model, images, _ = check_inputs(model, x, None)
    resolved: list[Tensor] = []
    top1 = None
    for i, target in enumerate(targets):
        name = "target" if len(targets) == 1 else f"targets[{i}]"
        why = None if len(targets) == 1 else _STACKED
        t = check_targets(target, images.shape[0], model.num_classes, name, why)
        if t is None:
            if top1 is None:
                top1 = (scorer or Scorer(model)).top1(images)
            t = top1
        resolved.append(t)
    if len(resolved) == 1:
        return images, resolved, resolved[0]
    k = model.num_classes
    member = torch.stack(
        [t if t.dtype == torch.bool else F.one_hot(t, k).bool() for t in resolved], dim=1
    )
    return images, resolved, member


#: Why several targets at once cannot hold target functions.
_STACKED = (
    "several targets are scored from one pass as stacked class sets; explain a target "
    "function on its own"
)


def resolve_removal(removal: object, default: Callable[[], Callable]) -> Callable:
    """``None`` -> the method's default removal; a name -> :func:`make_removal`; else itself."""
    return _resolve(removal, default)


def check_pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """A positive int or (height, width) pair of positive ints -> (height, width), each at most
    the image side limit (``UNMASK_MAX_SIZE``, default 4096)."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"{name}: expected an int or (height, width), got {value!r}")
    for v in pair:
        check_side(v, name)
    return (int(pair[0]), int(pair[1]))


def check_side(value: object, name: str, allow_zero: bool = False) -> int:
    """A positive int (>= 0 with ``allow_zero``) no larger than the image side limit."""
    from .._limits import max_size

    check_positive(value, name, integer=True, allow_zero=allow_zero)
    if value > max_size():  # type: ignore[operator]
        raise ValueError(
            f"{name}: expected at most {max_size()} pixels (the image side limit, "
            f"UNMASK_MAX_SIZE), got {value!r}"
        )
    return int(value)  # type: ignore[call-overload]


def check_model_batch(model: Classifier, n: int, name: str, grad: bool = False) -> None:
    """Refuse ``n`` images per model call (with gradients when ``grad``) above the memory budget.

    The images are taken at the model's input size (224 x 224 when it has none); see
    :func:`unmask._limits.batch_bytes`.
    """
    from .._limits import batch_bytes, check_memory

    h, w = model.input_size if model.input_size is not None else (224, 224)
    check_memory(
        batch_bytes(n, 3, h, w, model.input_size, grad=grad),
        name,
        f"{n} images per model call{' with gradients' if grad else ''}",
    )


def upsample(maps: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize maps (B, 1, h, w) to ``size`` (H, W)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if mode == "nearest":
        return F.interpolate(maps, size=size, mode="nearest")
    return F.interpolate(maps, size=size, mode=mode, align_corners=False)


def as_model(model: object) -> Classifier:
    return as_classifier(model, "model")
