"""The explorer's JSON API under ``/api``, as a FastAPI ``APIRouter``.

Every route reads the application's :class:`~unmask.serve.state.Served` (``app.state.served``)
through a dependency. Errors are 4xx with ``{"detail": "<field>: <what is allowed>"}``: a
refused upload its own status (400, 413, 415), a job estimated to take longer than the limit
422 (with the estimate), a full queue 429, an unknown image, job or result 404, any other
refused value 400 (see ``docs/serve.md``).
"""

import warnings
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import Response
from fastapi.routing import APIRoute

from ..contrastive import CWOX_BASES, top_classes
from ..contrastive.cwox import DEFAULT_DELTA
from ..images import EXAMPLES, example_image
from ..models import list_models
from ..registry import METHODS, METRICS, to_json
from ..removal import REMOVALS
from . import validate
from .costs import TooCostly
from .jobs import Job, QueueFull
from .planners import HIDDEN_REMOVALS, METRIC_KINDS_SERVED, plan
from .results import FORMATS, encode_map
from .schemas import ERRORS, ExampleRequest, JobRequest, PredictRequest
from .state import Served, short
from .uploads import UploadError, read_upload

__all__ = ["router"]

T = TypeVar("T")

router = APIRouter(responses=ERRORS)

#: The 200 answer of routes that send a picture or an array.
_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG image"}
}
_MAP: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {}, "application/octet-stream": {}},
        "description": "a coloured PNG, an NPY file or raw little-endian float32",
    }
}


def _served(request: Request) -> Served:
    served: Served = request.app.state.served
    return served


State = Annotated[Served, Depends(_served)]


def _fail(exc: Exception) -> HTTPException:
    if isinstance(exc, UploadError):
        return HTTPException(exc.status, str(exc))
    if isinstance(exc, TooCostly):
        return HTTPException(422, str(exc))
    if isinstance(exc, QueueFull):
        return HTTPException(429, str(exc) or "the job queue is full; try again later")
    if isinstance(exc, LookupError):
        return HTTPException(404, str(exc).strip("'\""))
    return HTTPException(400, str(exc))


def _guarded(fn: Callable[[], T]) -> T:
    """``fn()``, with a refused value turned into its HTTP error."""
    try:
        return fn()
    except (ValueError, TypeError, LookupError, QueueFull) as exc:
        raise _fail(exc) from None


# ---------------------------------------------------------------------- info
@router.get("/api", summary="The routes of the API")
def api_index() -> dict[str, Any]:
    routes = [
        {"path": r.path, "methods": sorted((r.methods or set()) - {"HEAD"}), "summary": r.summary}
        for r in router.routes
        if isinstance(r, APIRoute)
    ]
    return {"routes": routes, "openapi": "/openapi.json"}


@router.get("/api/info", summary="Models, methods, metrics, removals, examples, trees, limits")
def info(state: State) -> dict[str, Any]:
    descriptions = list_models()
    models = [
        {
            "name": n,
            "description": descriptions.get(n, getattr(m, "name", n)),
            "num_classes": m.num_classes,
            "input_size": state.size(m),
            "trees": state.tree_names(m),
            "cwox_layers": state.cwox_layers[n],
        }
        for n, m in state.models.items()
    ]
    methods = []
    for entry in METHODS:
        base = CWOX_BASES.get(entry.name)
        methods.append(
            {
                "name": entry.name,
                "family": entry.family or "other",
                "summary": entry.summary,
                "aliases": METHODS.aliases_of(entry.name),
                "form": validate.method_form(entry.name),
                "cwox_delta": base.delta if base else DEFAULT_DELTA,
                "cwox_preset": None
                if base is None
                else {
                    "cluster": to_json(base.cluster),
                    "classes": to_json(base.classes),
                    "layers": base.layers,
                    "negative": base.negative,
                },
            }
        )
    metrics = [
        {
            "name": e.name,
            "kind": e.kind,
            "summary": e.summary,
            "higher_is_better": e.higher_is_better,
            "served": e.kind in METRIC_KINDS_SERVED,
        }
        for e in METRICS
    ]
    removals = [
        {"name": n, "summary": REMOVALS.get(n).summary}
        for n in REMOVALS.names()
        if n not in HIDDEN_REMOVALS
    ]
    trees = sorted({t for m in state.models.values() for t in state.tree_names(m)})
    return {
        "models": models,
        "methods": methods,
        "metrics": metrics,
        "removals": removals,
        "examples": list(EXAMPLES),
        "trees": trees,
        "limits": {
            "max_bytes": state.max_bytes,
            "max_pixels": state.max_pixels,
            "max_pending": state.max_pending,
            "max_job_seconds": state.max_seconds,
        },
    }


# ---------------------------------------------------------------------- images
def _stored(state: Served, image: np.ndarray) -> dict[str, Any]:
    image_id = state.images.put(image)
    return {"image_id": image_id, "width": int(image.shape[1]), "height": int(image.shape[0])}


@router.post("/api/images", summary="Upload an image (multipart field `file`)")
async def upload(
    state: State,
    file: UploadFile = File(  # noqa: B008 (FastAPI's way)
        ..., description="PNG, JPEG, WebP, BMP or GIF"
    ),
) -> dict[str, Any]:
    data = await file.read(state.max_bytes + 1)
    return _guarded(
        lambda: _stored(
            state, read_upload(data, max_bytes=state.max_bytes, max_pixels=state.max_pixels)
        )
    )


@router.post("/api/images/example", summary="Use a bundled example image")
def example(body: ExampleRequest, state: State) -> dict[str, Any]:
    if body.name not in EXAMPLES:
        raise HTTPException(
            400, f"name: expected one of {', '.join(EXAMPLES)}, got {short(body.name)}"
        )
    return _stored(state, np.ascontiguousarray(example_image(body.name))[..., :3])


@router.get(
    "/api/images/{image_id}.png",
    summary="The image as the model sees it (PNG)",
    response_class=Response,
    responses=_PNG,
)
def image_png(image_id: str, state: State, model: str | None = None) -> Response:
    def run() -> Response:
        _, m = state.model(model)
        x = state.input(image_id, m)
        data, media = encode_map(x[0].permute(1, 2, 0).numpy(), "png")
        return Response(data, media_type=media)

    return _guarded(run)


# ---------------------------------------------------------------------- predict
@router.post("/api/predict", summary="Top classes, the chosen ones, their tree and clusters")
def predict(body: PredictRequest, state: State) -> dict[str, Any]:
    return _guarded(lambda: _predict(state, body))


def _predict(state: Served, body: PredictRequest) -> dict[str, Any]:
    name, model = state.model(body.model)
    probs = state.probabilities(body.image_id, name)
    top, top_p, max_top = validate.top_k(body.top, body.top_p, body.max_top)
    chosen = [int(c) for c in top_classes(probs[None], top=top, top_p=top_p, max_top=max_top)[0]]
    tree_name, tree = state.tree(body.tree, name)
    if not 0 <= body.cut_level < tree.depth:
        raise ValueError(
            f"cut_level: expected an int in [0, {tree.depth - 1}] for tree "
            f"{tree_name!r}, got {body.cut_level!r}"
        )
    shown = min(model.num_classes, max(len(chosen), 20))
    order = probs.argsort(descending=True)[:shown].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes outside the tree are roots of their own
        sub = tree.subtree(chosen)
    return {
        "model": name,
        "image_id": body.image_id,
        "classes": [
            {"class": int(c), "name": model.class_names[c], "probability": float(probs[c])}
            for c in order
        ],
        "chosen": chosen,
        "tree_name": tree_name,
        "cut_level": body.cut_level,
        "depth": tree.depth,
        "tree": sub,
        "clusters": tree.clusters(chosen, body.cut_level),
    }


# ---------------------------------------------------------------------- jobs
def _job_json(job: Job) -> dict[str, Any]:
    out = dict(job.to_json())
    if job.status == "done":
        out["result"] = job.result
    return out


@router.post("/api/jobs", status_code=202, summary="Start an explain, cwox, metrics or removal job")
def submit(body: JobRequest, state: State) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        key, fn = plan(state, body)
        return _job_json(state.jobs.submit(body.kind, fn, key=key))

    return _guarded(run)


def _job(job_id: str, act: Callable[[str], Job]) -> dict[str, Any]:
    try:
        return _job_json(act(job_id))
    except (KeyError, ValueError):
        raise HTTPException(404, f"job: no job {short(job_id)}") from None


@router.get("/api/jobs/{job_id}", summary="A job's status, progress and (when done) result")
def job_status(job_id: str, state: State) -> dict[str, Any]:
    return _job(job_id, state.jobs.get)


@router.delete("/api/jobs/{job_id}", summary="Cancel a job")
def job_cancel(job_id: str, state: State) -> dict[str, Any]:
    return _job(job_id, state.jobs.cancel)


# ---------------------------------------------------------------------- results
@router.get("/api/results/{key}.json", summary="All the numbers of a result")
def result_json(key: str, state: State) -> dict[str, Any]:
    return _guarded(lambda: state.source(key).data)


@router.get(
    "/api/results/{key}/{name}.{fmt}",
    summary="One map of a result: png, npy or f32",
    response_class=Response,
    responses=_MAP,
)
def result_map(key: str, name: str, fmt: str, state: State) -> Response:
    if fmt not in FORMATS:
        raise HTTPException(404, f"format: expected one of {', '.join(FORMATS)}, got {short(fmt)}")

    def run() -> Response:
        result = state.source(key)
        if name not in result.maps:
            raise LookupError(
                f"map: no map {short(name)} in result {key}; it has {', '.join(result.maps)}"
            )
        data, media = encode_map(result.maps[name], fmt)
        headers = (
            {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'} if fmt != "png" else {}
        )
        return Response(data, media_type=media, headers=headers)

    return _guarded(run)
