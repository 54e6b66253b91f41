"""`evaluate`: several metrics on the same explanations, each shared computation done once.

Every metric is called through its kind (:mod:`unmask.metrics.kinds`), which says what it
takes; nothing is guessed from parameter names. Metrics that read the same intermediate result
declare it with three methods, and :func:`evaluate` computes it once per distinct key:

- ``shared_key()``: a hashable key (e.g. a deletion curve's mode, fill, step rule and score);
- ``shared(*inputs, **keywords)``: the result, called like the metric itself (its kind's call);
- ``reduce(result)``: the metric's values (B,) from it.

So DAUC and DC (one deletion curve), IAUC and IC (one insertion curve), IIC and AD (one
perturbed image) and CAUC and CDROP (one contrastive curve) each cost a single pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from .._types import Model, SaliencyLike, Target
from ..explanation import Explanation
from ..progress import check_progress, track
from ..registry import METRICS
from ._prepare import check_saliency
from .kinds import METRIC_KINDS, kind_of

__all__ = ["evaluate", "build_metrics"]


def build_metrics(metrics: object) -> dict[str, Any]:
    """Metric objects by label from names, objects, or a mapping label -> name or object."""
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    elif isinstance(metrics, Sequence):
        items = [
            (
                m
                if isinstance(m, str)
                else getattr(m, "_registered_name", None) or type(m).__name__,
                m,
            )
            for m in metrics
        ]
    else:
        raise TypeError(
            f"metrics: expected metric names, metric objects or a mapping label -> "
            f"metric, got {type(metrics).__name__}"
        )
    if not items:
        raise ValueError("metrics: expected at least one metric")
    out: dict[str, Any] = {}
    for label, m in items:
        if label in out:
            raise ValueError(f"metrics: {label!r} is given twice")
        out[str(label)] = METRICS.get(m).build() if isinstance(m, str) else m
        kind_of(out[str(label)])  # an undeclared kind fails here, before any work
    return out


def evaluate(
    model: Model,
    x: Tensor | None,
    saliency: SaliencyLike | None = None,
    metrics: object = ("deletion", "insertion"),
    target: Target = None,
    *,
    progress: object = False,
    shared: dict[str, Any] | None = None,
    **inputs: Any,
) -> dict[str, Tensor]:
    """Run several metrics on the same images and maps; shared curves are computed once.

    Args:
        model: an :class:`unmask.Classifier` (None when no metric needs one).
        x: images (B, 3, H, W) in [0, 1] (None when no metric needs them).
        saliency: maps (B, 1, h, w) or an Explanation (its maps; its target when ``target``
            is None). Each metric reads them at its kind's resolution: ``"image"`` kinds get
            them bilinearly upsampled to the images, the others as given.
        metrics: registered names, metric objects, or a mapping label -> name or object.
        target: a class or a set of classes per image (None = the Explanation's target, else
            each metric's default: the top-1 class).
        progress: a progress bar over the metrics (bool) or a callback ``(done, total)``.
        shared: a dict to fill with label -> the intermediate result each sharing metric was
            reduced from (a deletion :class:`~unmask.metrics.deletion.Curve`, a contrastive
            curve, ...), for callers that keep it (the bench stores the curves); metrics
            without one are left out.
        **inputs: what other kinds need: ``boxes=`` (localisation), ``reference=`` (a second
            set of maps: similarity), ``x_hat=`` and ``coefficients=`` (explanation images,
            artifacts), ``competitors=`` (contrastive), ``explainer=`` (an explainer the
            ``"explainer"`` kind re-runs: randomisation, robustness, input invariance).

    Returns:
        label -> values (B,), in the order of ``metrics``.

    Example:
        >>> import torch
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> x, m = region_images(2, 32), region_mask(32, 32).float().expand(2, 1, 32, 32)
        >>> out = evaluate(region_model(), x, m, ["deletion", "dc", "pointing_game"],
        ...                boxes=torch.tensor([[8., 8, 24, 24]] * 2))
        >>> list(out), out["deletion"].shape
        (['deletion', 'dc', 'pointing_game'], torch.Size([2]))
    """
    progress = check_progress(progress)
    built = build_metrics(metrics)
    known = {n for k in METRIC_KINDS.values() for n in (*k.inputs, *k.keywords)}
    unknown = sorted(set(inputs) - known)
    if unknown:
        raise TypeError(
            f"{unknown[0]}: not an input of any metric kind; expected some of "
            f"{', '.join(sorted(known - {'model', 'x', 'saliency', 'target'}))}"
        )
    if isinstance(saliency, Explanation):
        if target is None:
            target = saliency.target
        saliency = saliency.saliency
    if saliency is not None:
        images = isinstance(x, Tensor) and x.ndim == 4  # other x: refused by the metric itself
        saliency = check_saliency(
            saliency,
            x.shape[0] if images else None,  # type: ignore[union-attr]
            size=(x.shape[-2], x.shape[-1]) if images else None,  # type: ignore[union-attr]
        )
    given = {"model": model, "x": x, "saliency": saliency, "target": target, **inputs}
    full: Tensor | None = None
    results: dict[Any, Any] = {}
    values: dict[str, Tensor] = {}
    for label in track(list(built), len(built), progress, "metrics", unit="metric"):
        metric = built[label]
        kind = kind_of(metric)
        call = given
        if (
            kind.resolution == "image"
            and saliency is not None
            and isinstance(x, Tensor)
            and tuple(saliency.shape[-2:]) != tuple(x.shape[-2:])
        ):
            if full is None:
                full = F.interpolate(
                    saliency.float(), size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False
                )
            call = {**given, "saliency": full}
        key = metric.shared_key() if callable(getattr(metric, "shared_key", None)) else None
        if key is None:
            values[label] = kind.call(metric, call)
            continue
        key = (kind.name, call["saliency"] is full, key)
        if key not in results:
            results[key] = kind.call(metric.shared, call)
        values[label] = metric.reduce(results[key])
        if shared is not None:
            shared[label] = results[key]
    return values
