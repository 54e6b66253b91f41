"""Metric kinds: what a metric is called with, declared once per kind.

Every registered metric is of one kind (``METRICS.add(..., kind=...)``, by default the
factory's ``kind`` attribute, recorded on the registry entry). A kind declares the call: the
positional inputs, the keyword inputs (required or optional) and the resolution at which the
metric reads saliency maps. Every metric also declares ``higher_is_better`` (a bool). The
contract test suite runs each registered metric through its kind, and
:func:`unmask.metrics.evaluate` calls every metric through its kind, so no caller has to guess
a metric's inputs from its parameter names.

Resolutions (how a metric reads maps):

- ``"any"``: maps at any resolution; the metric applies its own rule (deletion ranks pixels at
  the map's resolution, the single-step metrics upsample bicubically, ...);
- ``"image"``: maps at the image's resolution; coarser maps are upsampled bilinearly first;
- ``"ground_truth"``: maps and ground truth (boxes, masks) in the same pixels;
- ``"pair"``: two maps of the same shape;
- ``"none"``: no maps (the metric reads explanation images);
- ``"explainer"``: no maps given; the metric runs the explainer it is given (on perturbed
  images, for other classes, ...) and reads the maps it returns.

A new kind is one :func:`declare_kind` call::

    declare_kind(MetricKind("randomisation", inputs=("model", "x", "saliency"), ...))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..registry import METRICS, Entry

__all__ = [
    "MetricKind",
    "METRIC_KINDS",
    "RESOLUTIONS",
    "declare_kind",
    "kind_of",
    "FAITHFULNESS",
    "LOCALISATION",
    "SIMILARITY",
    "EXPLANATION_IMAGE",
    "ARTIFACT",
    "CONTRASTIVE",
    "MAP",
    "EXPLAINER",
]

RESOLUTIONS = ("any", "image", "ground_truth", "pair", "none", "explainer")


@dataclass(frozen=True)
class MetricKind:
    """A metric kind: ``metric(*inputs, **keywords) -> (B,)``.

    Attributes:
        name: the kind's name (what metrics give as ``kind``).
        inputs: the positional inputs, in call order (all required).
        keywords: keyword inputs, passed when given.
        required: the keyword inputs that must be given.
        resolution: how the metric reads saliency maps (one of :data:`RESOLUTIONS`).
        summary: one line for listings.

    Example:
        >>> FAITHFULNESS.signature
        'metric(model, x, saliency, target=None) -> (B,)'
    """

    name: str
    inputs: tuple[str, ...]
    keywords: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    resolution: str = "any"
    summary: str = ""

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(
                f"resolution: expected one of {', '.join(RESOLUTIONS)}, got {self.resolution!r}"
            )
        unknown = sorted(set(self.required) - set(self.keywords))
        if unknown:
            raise ValueError(f"required: {unknown[0]!r} is not one of the keywords {self.keywords}")

    @property
    def signature(self) -> str:
        """The call, e.g. ``metric(model, x, saliency, target=None) -> (B,)``."""
        kw = [f"{k}=..." if k in self.required else f"{k}=None" for k in self.keywords]
        return f"metric({', '.join([*self.inputs, *kw])}) -> (B,)"

    @property
    def reads_maps(self) -> bool:
        """Whether the metric is given maps (``saliency``) to read."""
        return self.resolution not in ("none", "explainer")

    def needs(self) -> tuple[str, ...]:
        """Every input that must be given: the positional ones and the required keywords."""
        return (*self.inputs, *self.required)

    def call(self, metric: Any, inputs: Mapping[str, Any]) -> Tensor:
        """Call ``metric`` with what it takes from ``inputs`` (name -> value; None = not given).

        Raises:
            ValueError: naming the first missing input and the kind's call.
        """
        missing = [n for n in self.needs() if inputs.get(n) is None]
        if missing:
            raise ValueError(
                f"{missing[0]}: a {self.name} metric needs it; its call is {self.signature}"
            )
        args = [inputs[n] for n in self.inputs]
        kwargs = {k: inputs[k] for k in self.keywords if inputs.get(k) is not None}
        return metric(*args, **kwargs)


#: Every declared kind by name.
METRIC_KINDS: dict[str, MetricKind] = {}


def declare_kind(kind: MetricKind) -> MetricKind:
    """Declare a metric kind (ValueError if the name is taken); returns it."""
    if not isinstance(kind, MetricKind):
        raise TypeError(f"kind: expected a MetricKind, got {type(kind).__name__}")
    if kind.name in METRIC_KINDS:
        raise ValueError(f"kind: {kind.name!r} is already declared")
    METRIC_KINDS[kind.name] = kind
    return kind


FAITHFULNESS = declare_kind(
    MetricKind(
        "faithfulness",
        ("model", "x", "saliency"),
        ("target",),
        resolution="any",
        summary="how the model's score responds when what the map points at is removed or kept",
    )
)
LOCALISATION = declare_kind(
    MetricKind(
        "localisation",
        ("saliency", "boxes"),
        resolution="ground_truth",
        summary="whether the map points at the object (boxes or masks)",
    )
)
SIMILARITY = declare_kind(
    MetricKind(
        "similarity", ("saliency", "reference"), resolution="pair", summary="how alike two maps are"
    )
)
EXPLANATION_IMAGE = declare_kind(
    MetricKind(
        "explanation_image",
        ("model", "x", "x_hat"),
        ("target", "coefficients"),
        resolution="none",
        summary="an explanation image x̂: retained probability per retained information",
    )
)
ARTIFACT = declare_kind(
    MetricKind(
        "artifact",
        ("x", "x_hat"),
        resolution="none",
        summary="what an explanation image x̂ adds that the image does not have",
    )
)
CONTRASTIVE = declare_kind(
    MetricKind(
        "contrastive",
        ("model", "x", "saliency"),
        ("target", "competitors"),
        required=("competitors",),
        resolution="image",
        summary="whether the map separates the target classes from competing classes",
    )
)

MAP = declare_kind(
    MetricKind(
        "map",
        ("saliency",),
        resolution="any",
        summary="a property of the map alone (sparseness, complexity), no model or images",
    )
)

EXPLAINER = declare_kind(
    MetricKind(
        "explainer",
        ("model", "x", "explainer"),
        ("target",),
        resolution="explainer",
        summary=(
            "how the explainer's maps behave when it is re-run (perturbed images, other classes)"
        ),
    )
)


def kind_of(metric: object) -> MetricKind:
    """The kind of a metric: a registered name, a registry entry, a metric object or class.

    Raises:
        ValueError: when the metric's kind is not declared.
    """
    if isinstance(metric, str):
        metric = METRICS.get(metric)
    name = metric.kind if isinstance(metric, Entry) else getattr(metric, "kind", None)
    if isinstance(metric, Entry) and not name:
        name = getattr(metric.factory, "kind", None)
    if name not in METRIC_KINDS:
        label = metric.name if isinstance(metric, Entry) else type(metric).__name__
        raise ValueError(
            f"kind: {label} has kind {name!r}; expected one of {', '.join(METRIC_KINDS)}"
        )
    return METRIC_KINDS[name]
