"""Metric execution of a benchmark: :func:`unmask.metrics.evaluate`, by kind, shared curves once.

:func:`run_metrics` gives one explanation's metrics to :func:`unmask.metrics.evaluate`, one call
per map read (the saliency map, the relevance map, x̂), so that metrics reading the same
intermediate result compute it once: deletion and DC (one deletion curve), insertion and IC,
AD and IIC (one perturbed image), the three CP scores (one scoring of x and x̂), CAUC and CDROP
(one contrastive curve per pair). What is stored beside a value comes from those results:

* ``faithfulness``: deletion-type metrics store their curve (scores and fractions) for the
  report's mean curves.
* ``localisation``: ``metric(saliency, boxes | mask)``; ``localisation_error`` also stores its
  error at every alpha of :data:`unmask.metrics.ALPHAS` (the report's error-vs-alpha plot).
* ``explanation_image``: CP scores of x̂ with the method's representation and coefficients
  (x̂ of a pixel-mask method without one, Extremal Perturbations: keep mask ⊙ x);
  ``retained_probability`` stores p and p̂.
* ``artifact``: the hallucination score of x̂.
* ``contrastive`` (:func:`run_contrastive`): CAUC / CDROP of every (target, competitors) pair
  of the image (:mod:`unmask.bench.contrast`); the value is the mean over the pairs whose map
  is not zero everywhere, and every pair's value and n_δ is stored.

A metric that raises is a failed row; the others of its call are computed again one by one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._types import Model, Target
from ..explanation import Explanation
from .maps import choose_map

__all__ = ["run_metrics", "run_contrastive", "build_metric"]


def build_metric(run: Any, model: Model, representation: Any = None) -> Any:
    """The metric object of a :class:`~unmask.bench.spec.MetricRun` (for a method's
    representation)."""
    if run.kind == "explanation_image":  # the model comes at call time
        from ..registry import METRICS

        if METRICS.get(run.metric).accepts("representation"):
            return run.build(representation=representation)
    return run.build()


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _data(run: Any, result: Any) -> Any:
    """What a row stores beside its value, from the shared result it was reduced from."""
    from ..metrics.cp import Retained
    from ..metrics.deletion import Curve

    if isinstance(result, Curve):
        return {
            "scores": [float(v) for v in result.scores[0]],
            "fractions": [float(v) for v in result.fractions],
        }
    if isinstance(result, Retained):
        return {"p": float(result.p[0]), "p_hat": float(result.p_hat[0])}
    return None


def _evaluate(
    model: Model,
    x: Tensor,
    saliency: Tensor,
    members: list[tuple[Any, Any]],
    target: Target,
    inputs: dict[str, Any],
) -> dict[str, tuple[Tensor | None, Any, str | None]]:
    """label -> (values, shared result, error) of one :func:`evaluate` call; when it raises,
    each metric alone (so that one failing metric does not fail the others)."""
    from ..metrics import evaluate

    def call(group: list[tuple[Any, Any]]) -> dict[str, tuple[Tensor | None, Any, str | None]]:
        shared: dict[str, Any] = {}
        values = evaluate(
            model, x, saliency, {run.label: m for run, m in group}, target, shared=shared, **inputs
        )
        return {k: (v, shared.get(k), None) for k, v in values.items()}

    try:
        return call(members)
    except Exception:
        out: dict[str, tuple[Tensor | None, Any, str | None]] = {}
        for member in members:
            try:
                out.update(call([member]))
            except Exception as exc:  # recorded as a failed row; the run goes on
                out[member[0].label] = (None, None, f"{type(exc).__name__}: {exc}")
        return out


def run_metrics(
    model: Model,
    x: Tensor,
    explanation: Explanation,
    metrics: list[tuple[Any, Any]],
    relevance: Tensor | None = None,
    boxes: Tensor | None = None,
    mask: Tensor | None = None,
    x_hat: Tensor | None = None,
) -> dict[str, dict[str, Any]]:
    """Every (non-contrastive) metric of one explanation of one image.

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
    coeffs = explanation.extras.get("coefficients")
    coeffs = [coeffs] if isinstance(coeffs, Tensor) else coeffs
    gt: Any = [boxes] if boxes is not None else mask
    out: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[tuple[Any, Any]]] = {}
    for run, metric in metrics:
        which = choose_map(run.map, run.kind, relevance is not None)
        if run.kind == "localisation" and gt is None:
            continue
        if run.kind in ("explanation_image", "artifact") and x_hat is None:
            out[run.label] = {
                "error": f"ValueError: {run.metric} needs an explanation image x̂; "
                f"{explanation.method!r} makes none",
                "map": which,
            }
            continue
        if run.kind not in ("faithfulness", "localisation", "explanation_image", "artifact"):
            out[run.label] = {
                "error": f"ValueError: {run.metric}: kind {run.kind!r} is not run per explanation",
                "map": which,
            }
            continue
        groups.setdefault(which, []).append((run, metric))
    inputs = {"boxes": gt, "x_hat": x_hat, "coefficients": coeffs}
    computed: dict[str, tuple[Tensor | None, Any, str | None]] = {}
    for which, members in groups.items():
        saliency = (
            relevance if which == "relevance" and relevance is not None else explanation.saliency
        )
        computed.update(_evaluate(model, x, saliency, members, explanation.target, inputs))
    for run, metric in metrics:
        if run.label not in computed:
            continue
        which = choose_map(run.map, run.kind, relevance is not None)
        values, shared, error = computed[run.label]
        if error is not None or values is None:
            out[run.label] = {"error": error, "map": which}
            continue
        data = _data(run, shared)
        if run.metric == "localisation_error":
            from ..metrics.localisation import ALPHAS, localisation_error

            saliency = (
                relevance
                if which == "relevance" and relevance is not None
                else explanation.saliency
            )
            data = {
                "alphas": list(ALPHAS),
                "errors": [
                    float(localisation_error(saliency, gt, a, metric.box, metric.iou_threshold)[0])
                    for a in ALPHAS
                ],
            }
        v = float(torch.as_tensor(values).double().flatten()[0])
        out[run.label] = {"value": _finite(v), "data": data, "map": which}
    # the order of ``metrics``
    return {run.label: out[run.label] for run, _ in metrics if run.label in out}


def run_contrastive(
    model: Model,
    x: Tensor,
    maps: Tensor,
    pairs: list[Any],
    metrics: list[tuple[Any, Any]],
    map_name: str = "saliency",
) -> dict[str, dict[str, Any]]:
    """The contrastive metrics of one image's pairs.

    Args:
        model: the classifier.
        x: the image (1, 3, H, W).
        maps: one map per pair (P, 1, H, W).
        pairs: the image's :class:`~unmask.bench.contrast.Pair` list (P).
        metrics: (MetricRun, built metric) pairs of the contrastive kind.
        map_name: what the rows record as the map read (``"contrastive"`` for CWOX-2s).

    Returns:
        label -> ``{"value", "data", "map"}`` as :func:`run_metrics`; ``data["pairs"]`` holds
        every pair's level, target, competitors, value, n_δ and whether its map is zero.
    """
    if not pairs or not metrics:
        return {}
    xs = x.expand(len(pairs), *x.shape[1:])
    target = [list(p.target) for p in pairs]
    competitors = [set(p.competitors) for p in pairs]
    computed = _evaluate(model, xs, maps, metrics, target, {"competitors": competitors})
    zero = [bool(float(m.abs().max()) == 0) for m in maps]
    out: dict[str, dict[str, Any]] = {}
    for run, _ in metrics:
        values, curve, error = computed[run.label]
        if error is not None or values is None:
            out[run.label] = {"error": error, "map": map_name}
            continue
        vals = [float(v) for v in torch.as_tensor(values).double()]
        n_delta = [int(n) for n in curve.n_delta] if curve is not None else [None] * len(pairs)
        rows = [
            {**p.to_json(), "value": _finite(v), "n_delta": n, "zero_map": z}
            for p, v, n, z in zip(pairs, vals, n_delta, zero, strict=True)
        ]
        kept = [v for v, z in zip(vals, zero, strict=True) if not z and math.isfinite(v)]
        value = sum(kept) / len(kept) if kept else None
        out[run.label] = {"value": value, "data": {"pairs": rows}, "map": map_name}
    return out
