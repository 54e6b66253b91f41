"""Helpers every explainer uses at its public boundary and for its output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive, check_targets
from .._types import Target
from ..explanation import Explanation
from ..models import Classifier, as_classifier, check_model_input
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
    "check_seed",
    "check_pair",
    "check_side",
    "check_model_batch",
]


class Explainer(Protocol):
    """What every explanation method offers: ``explain(x, target=None) -> Explanation``.

    Black-box methods also offer ``explain_each(x, targets) -> list[Explanation]``: several
    targets from one pass of the model over the perturbations.
    """

    model: Classifier

    def explain(self, x: Tensor, target: Target = None) -> Explanation: ...


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
    x = check_model_input(model, x, "x")
    t = check_targets(target, x.shape[0], model.num_classes, "target")
    if t is None:
        scorer = scorer or Scorer(model)
        t = scorer.top1(x)
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
    x = check_model_input(model, x, "x")
    resolved: list[Tensor] = []
    top1 = None
    for i, target in enumerate(targets):
        name = "target" if len(targets) == 1 else f"targets[{i}]"
        t = check_targets(target, x.shape[0], model.num_classes, name)
        if t is None:
            if top1 is None:
                top1 = (scorer or Scorer(model)).top1(x)
            t = top1
        resolved.append(t)
    if len(resolved) == 1:
        return x, resolved, resolved[0]
    k = model.num_classes
    member = torch.stack(
        [t if t.dtype == torch.bool else F.one_hot(t, k).bool() for t in resolved], dim=1
    )
    return x, resolved, member


def resolve_removal(removal: object, default: Callable[[], Callable]) -> Callable:
    """``None`` -> the method's default removal; a name -> :func:`make_removal`; else itself."""
    return _resolve(removal, default)


def check_seed(seed: object) -> int:
    """A seed for torch's generators: an int (numpy ints too) in [0, 2**63 - 1]."""
    import numpy as np

    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    if not 0 <= int(seed) < 2**63:
        text = str(seed)
        shown = text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"
        raise ValueError(f"seed: expected an int in [0, 2**63 - 1], got {shown}")
    return int(seed)


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
