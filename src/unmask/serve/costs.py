"""A job's cost in seconds: model evaluations × the model's measured time per image.

The explorer refuses a job whose estimate is above the time one job may take (HTTP 422, the
estimate in the message), and stops a running job at that time whatever its estimate said
(:class:`~unmask.serve.jobs.TimeLimit`), so that one client cannot hold a model for longer.
A model's time per image is measured once, on its first job, by unmask's one timer
(:func:`unmask.timing.measure`): the scoring path in the engine the jobs run (ONNX Runtime or
the channels-last copy) at the scorer's batch size, and a forward and backward pass to the
input, each at the side the model sees.
"""

from __future__ import annotations

from ..timing import ModelTime, measure

__all__ = ["ModelTime", "TooCostly", "measure", "estimate_seconds", "check_seconds"]


class TooCostly(ValueError):
    """A job whose estimated time is above the limit (HTTP 422)."""


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
