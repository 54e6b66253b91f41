"""A job's cost in seconds: model evaluations × the model's measured time per image.

The explorer refuses a job whose estimate is above the time one job may take (HTTP 422, the
estimate in the message), and stops a running job at that time whatever its estimate said
(:class:`~unmask.serve.jobs.TimeLimit`), so that one client cannot hold a model for longer.
A model's time per image is measured once, on its first job (:func:`measure`): a forward pass
without gradients, and a forward and backward pass to the input, each on a small batch at the
side the model sees.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..models import Classifier

__all__ = ["ModelTime", "TooCostly", "measure", "estimate_seconds", "check_seconds"]

#: Images per timed batch, and timed repeats (the fastest is kept).
_BATCH = 4
_REPEATS = 2


@dataclass(frozen=True)
class ModelTime:
    """Measured seconds per image of one model at one input side.

    Attributes:
        forward: a forward pass without gradients.
        backward: a forward and a backward pass to the input (gradient methods, optimisers).
    """

    forward: float
    backward: float


class TooCostly(ValueError):
    """A job whose estimated time is above the limit (HTTP 422)."""


def measure(model: Classifier, side: int, batch: int = _BATCH) -> ModelTime:
    """Time ``model`` on a batch of random images (B, 3, side, side); seconds per image.

    Example:
        >>> from unmask.testing import conv_region_model
        >>> t = measure(conv_region_model(), 32)
        >>> 0 < t.forward and 0 < t.backward
        True
    """
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0))
    forward = backward = math.inf
    for _ in range(_REPEATS):
        start = time.perf_counter()
        with torch.no_grad():
            model(x)
        forward = min(forward, time.perf_counter() - start)
        xg = x.clone().requires_grad_(True)
        start = time.perf_counter()
        torch.autograd.grad(model(xg).sum(), xg)
        backward = min(backward, time.perf_counter() - start)
    return ModelTime(forward / batch, max(backward, forward) / batch)


def estimate_seconds(evaluations: int, model_time: ModelTime, gradients: bool = False) -> float:
    """Estimated seconds of ``evaluations`` model evaluations (images through the model).

    Args:
        evaluations: images through the model (a method's declared cost).
        model_time: the model's measured time per image.
        gradients: each evaluation is a forward and backward pass (gradient methods, mask
            optimisers) rather than a forward pass.

    Example:
        >>> estimate_seconds(1000, ModelTime(forward=0.01, backward=0.03))
        10.0
        >>> estimate_seconds(1000, ModelTime(forward=0.01, backward=0.03), gradients=True)
        30.0
    """
    if isinstance(evaluations, bool) or not isinstance(evaluations, int) or evaluations < 0:
        raise ValueError(f"evaluations: expected an int >= 0, got {evaluations!r}")
    per = model_time.backward if gradients else model_time.forward
    return evaluations * per


def check_seconds(
    evaluations: int,
    model_time: ModelTime,
    limit: float,
    *,
    gradients: bool = False,
    field: str = "params",
    what: str = "",
) -> float:
    """The estimate of :func:`estimate_seconds`; :class:`TooCostly` when above ``limit``.

    Example:
        >>> check_seconds(100, ModelTime(0.01, 0.03), limit=60)
        1.0
        >>> check_seconds(10_000, ModelTime(0.01, 0.03), limit=60, what="masks")
        Traceback (most recent call last):
        ...
        unmask.serve.costs.TooCostly: params: masks ask for 10,000 model evaluations, about 100 s \
(10 ms per image), above the limit of 60 s for one job
    """
    seconds = estimate_seconds(evaluations, model_time, gradients)
    if seconds > limit:
        per = model_time.backward if gradients else model_time.forward
        pass_ = "forward and backward pass" if gradients else "image"
        raise TooCostly(
            f"{field}: {what + ' ask for ' if what else ''}{evaluations:,} model evaluations, "
            f"about {seconds:,.0f} s ({per * 1000:.3g} ms per {pass_}), above the limit of "
            f"{limit:g} s for one job"
        )
    return seconds
