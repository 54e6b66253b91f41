"""Metric execution of a benchmark, in one function (:func:`run_metrics`).

Every metric value of a benchmark goes through :func:`run_metrics`, so that switching to a
declared-kind evaluator (``unmask.metrics.evaluate``) is a change here only. Kinds:

* ``faithfulness``: ``metric(model, x, saliency, target)``; deletion-type metrics also store
  their curve (scores and fractions) for the report's mean curves.
* ``localisation``: ``metric(saliency, boxes | mask)``; ``localisation_error`` also stores its
  error at every alpha of :data:`unmask.metrics.ALPHAS` (the report's error-vs-alpha plot).
* ``explanation_image``: CP scores of x̂ with the method's representation and coefficients
  (x̂ of a pixel-mask method without one, Extremal Perturbations: keep mask ⊙ x).
* ``artifact``: the hallucination score of x̂.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..explanation import Explanation
from .maps import choose_map

__all__ = ["run_metrics", "build_metric"]


def build_metric(run: Any, model: Any, representation: Any = None) -> Any:
    """The metric object of a :class:`~unmask.bench.spec.MetricRun` (for a method's representation)."""
    if run.kind == "explanation_image":  # the model comes at call time
        return run.build(representation=representation)
    return run.build()


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def run_metrics(
    model: Any,
    x: Tensor,
    explanation: Explanation,
    metrics: list[tuple[Any, Any]],
    relevance: Tensor | None = None,
    boxes: Tensor | None = None,
    mask: Tensor | None = None,
    x_hat: Tensor | None = None,
) -> dict[str, dict[str, Any]]:
    """Every metric of one explanation of one image.

    Args:
        model: the classifier.
        x: the image (1, 3, H, W).
        explanation: its explanation (one image).
        metrics: (MetricRun, built metric) pairs.
        relevance: the relevance map (1, 1, H, W), or None (then ranking metrics read saliency).
        boxes: ground-truth boxes (N, 4) in pixels of ``x``, or None.
        mask: ground-truth mask (1, 1, H, W), or None.
        x_hat: the explanation image (1, 3, H, W) (default: ``explanation.extras["image"]``).

    Returns:
        label -> ``{"value": float | None, "data": JSON | None, "map": str}``; a metric that
        raises is returned as ``{"error": message, "map": str}``. Localisation metrics of an
        image without boxes or mask are left out (an image without annotations is not a
        failure; the report's n says how many images each metric read).
    """
    if x_hat is None:
        x_hat = explanation.extras.get("image")
    out: dict[str, dict[str, Any]] = {}
    target = explanation.target
    curves: dict[str, Any] = {}
    for run, metric in metrics:
        which = choose_map(run.map, run.kind, relevance is not None)
        saliency = relevance if which == "relevance" else explanation.saliency
        try:
            data: Any = None
            if run.kind == "faithfulness":
                if hasattr(metric, "curve") and hasattr(metric, "statistic"):
                    ck = repr(metric).split("(", 1)[-1] + metric.mode
                    if ck not in curves:
                        curves[ck] = metric.curve(model, x, saliency, target)
                    c = curves[ck]
                    value = c.auc() if metric.statistic == "auc" else c.correlation()
                    data = {
                        "scores": [float(v) for v in c.scores[0]],
                        "fractions": [float(v) for v in c.fractions],
                    }
                else:
                    value = metric(model, x, saliency, target)
            elif run.kind == "localisation":
                gt: Any = [boxes] if boxes is not None else mask
                if gt is None:
                    continue
                value = metric(saliency, gt)
                if run.metric == "localisation_error":
                    from ..metrics.localisation import ALPHAS, localisation_error

                    data = {
                        "alphas": list(ALPHAS),
                        "errors": [
                            float(
                                localisation_error(
                                    saliency, gt, a, metric.box, metric.iou_threshold
                                )[0]
                            )
                            for a in ALPHAS
                        ],
                    }
            elif run.kind in ("explanation_image", "artifact"):
                if x_hat is None:
                    raise ValueError(
                        f"{run.metric} needs an explanation image x̂; "
                        f"{explanation.method!r} makes none"
                    )
                if run.kind == "artifact":
                    value = metric(x, x_hat)
                else:
                    coeffs = explanation.extras.get("coefficients")
                    coeffs = [coeffs] if isinstance(coeffs, Tensor) else coeffs
                    value = metric(model, x, x_hat, target, coefficients=coeffs)
            else:  # pragma: no cover - the plan never schedules other kinds
                raise ValueError(f"{run.metric}: kind {run.kind!r} is not run per image")
            v = float(torch.as_tensor(value).double().flatten()[0])
            out[run.label] = {"value": _finite(v), "data": data, "map": which}
        except Exception as exc:  # recorded as a failed row; the run goes on
            out[run.label] = {"error": f"{type(exc).__name__}: {exc}", "map": which}
    return out
