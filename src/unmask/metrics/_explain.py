"""Running the explainer a metric of kind ``"explainer"`` is given, in batches.

A metric never imports an explainer: it is handed one, either an object with
``explain(x, target) -> Explanation`` (what :func:`unmask.make_explainer` builds, bound to the
model) or a function ``fn(x, target)`` returning an Explanation or maps (B, 1, h, w).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_positive
from .._types import Model
from ..explanation import Explanation
from ..inputs import check_explainer, check_inputs
from ..models import Classifier
from ..registry import METHODS, spec_of
from ..scoring import Scorer
from ._prepare import check_saliency

__all__ = ["run_maps", "prepare_explainer_inputs", "rebuilder"]


def run_maps(explain: Any, x: Tensor, target: Tensor, batch_size: int) -> Tensor:
    """Maps (N, 1, h, w) float64 on the CPU of ``explain`` on images ``x`` (N, ...), in batches."""
    out = []
    for start in range(0, x.shape[0], batch_size):
        xs, ts = x[start : start + batch_size], target[start : start + batch_size]
        e = explain(xs, ts)
        maps = e.saliency if isinstance(e, Explanation) else e
        out.append(check_saliency(maps, xs.shape[0], "explainer output").double())
    return torch.cat(out)


def prepare_explainer_inputs(
    model: Model, x: object, explainer: object, target: object, batch_size: int
) -> tuple[Classifier, Tensor, Any, Tensor, Scorer]:
    """Checked model, images, explain callable, targets ((B,) long or (B, K) bool; None = the
    top-1 class on the clean image) and a logit scorer."""
    model, x, t = check_inputs(model, x, target)
    explain = check_explainer(explainer)
    check_positive(batch_size, "batch_size", integer=True)
    scorer = Scorer(model, batch_size=batch_size, score="logit")
    if t is None:
        t = scorer.top1(x)
    return model, x, explain, t, scorer


def rebuilder(explainer: object, metric: str) -> Any:
    """``build(model) -> explainer``: ``explainer`` rebuilt on another model from its spec (its
    registered name and hyperparameters), for metrics that change the model.

    Raises:
        TypeError: naming ``explainer`` when it is not a registered explainer.
    """
    if not callable(getattr(explainer, "explain", None)):
        raise TypeError(
            f"explainer: {metric} rebuilds the explainer on other models, so it "
            f"needs a registered explainer (built by unmask.make_explainer), got "
            f"{type(explainer).__name__}"
        )
    try:
        spec = spec_of(explainer, METHODS)
    except (KeyError, ValueError):
        raise TypeError(
            f"explainer: {type(explainer).__name__} is not a registered method, so "
            f"{metric} cannot rebuild it on other models"
        ) from None
    entry, params = METHODS.get(spec.pop("method")), spec
    return lambda model: entry.build(model, **params)
