"""The explorer's request bodies (pydantic models), as the OpenAPI description shows them.

Every body forbids unknown fields; the routes' own checks (:mod:`unmask.serve.validate`, the
job planners) then check names, bounds and costs. A job is one of four bodies told apart by
its ``kind``.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

__all__ = [
    "ExampleRequest",
    "PredictRequest",
    "ExplainJob",
    "CwoxJob",
    "MetricsJob",
    "RemovalJob",
    "JobRequest",
    "Target",
    "ErrorBody",
    "ERRORS",
    "BODY_NAMES",
]

#: A class, or a set of classes scored as a whole (never a bool: ``true`` is not class 1).
Target = StrictInt | list[StrictInt]


class ErrorBody(BaseModel):
    """Every error's body: one line naming the field and what is allowed."""

    detail: str = Field(description="'<field>: <what is allowed>'")


#: The error statuses of the API, as the OpenAPI description documents them.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in (
        (400, "a refused value, or a damaged upload"),
        (404, "no such image, job, result or map"),
        (413, "an upload or body above the limit (bytes or pixels)"),
        (415, "an upload of a type that is not accepted"),
        (422, "a malformed body, or a job estimated to take longer than the limit"),
        (429, "the job queue is full"),
    )
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExampleRequest(_Body):
    """Use a bundled example image."""

    name: str = Field(description="a bundled example image (see /api/info examples)")


class PredictRequest(_Body):
    """Top classes of an image, the chosen ones, their label tree and clusters."""

    image_id: str = Field(description="from POST /api/images")
    model: str | None = Field(None, description="a served model (default: the first)")
    top: StrictInt | None = Field(None, description="explain the top K classes (a count)")
    top_p: float | None = Field(
        None,
        description="or the fewest top classes whose probabilities sum to top_p (default 0.95)",
    )
    max_top: StrictInt | None = Field(None, description="the most classes top_p chooses (5)")
    tree: str | None = Field(None, description="label tree (see /api/info trees)")
    cut_level: StrictInt = Field(0, description="tree level cut into clusters; 0 = the lowest")


class _Job(_Body):
    image_id: str = Field(description="from POST /api/images")
    model: str | None = Field(None, description="a served model (default: the first)")


class ExplainJob(_Job):
    """One map of a class, of a set of classes, or of the top-1 class."""

    kind: Literal["explain"]
    method: str = Field(description="a registered method (see /api/info methods)")
    params: dict[str, Any] = Field(default_factory=dict, description="the method's hyperparameters")
    target: Target | None = Field(
        None, description="a class, a set of classes (scored as a whole), or None: top-1"
    )
    seed: StrictInt = 0


class CwoxJob(_Job):
    """CWOX: contrastive maps of clusters, and of the classes within each cluster."""

    kind: Literal["cwox"]
    method: str = Field(
        "gradcam",
        description="the base explainer (CWOX's presets for "
        "gradcam, mwp, rise, lime; params override them)",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    clusters: list[list[StrictInt]] = Field(description="the clusters of the chosen classes")
    delta: float | None = Field(None, description="support percentile in [0, 100]")
    negative: Literal["error", "clamp", "keep"] | None = None
    seed: StrictInt = 0


_DEFAULT_METRICS: list[str | dict[str, Any]] = ["deletion", "insertion"]


class MetricsJob(_Job):
    """Metrics of one map of a finished explain or cwox result."""

    kind: Literal["metrics"]
    result: str = Field(description="a done explain/cwox job id or its result key")
    map: str | None = Field(None, description="which map of the result (default the first)")
    metrics: list[str | dict[str, Any]] = Field(
        default_factory=lambda: _DEFAULT_METRICS.copy(),
        description="metric names, or {name, params}",
    )
    removal: str | None = Field(None, description="the substrate of curve metrics")


class RemovalJob(_Job):
    """What a removal does to the image: the top fraction of a map, or a centred square."""

    kind: Literal["removal"]
    removal: str = Field(description="a removal spec such as 'blur' or 'telea'")
    result: str | None = Field(
        None,
        description="remove the top `fraction` of this result's map (default: a centred square)",
    )
    map: str | None = None
    fraction: float = Field(0.25, gt=0, le=1)


#: A job request: one of the four bodies, by ``kind``.
JobRequest = Annotated[ExplainJob | CwoxJob | MetricsJob | RemovalJob, Field(discriminator="kind")]

#: Names pydantic puts in an error's location that say which body, not which field.
BODY_NAMES = frozenset(
    ("ExplainJob", "CwoxJob", "MetricsJob", "RemovalJob", "explain", "cwox", "metrics", "removal")
)
