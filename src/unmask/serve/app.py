"""The explorer's web app: a FastAPI application factory, its JSON API and the page.

:func:`create_app` serves the page (``static/``: plain ES modules, nothing fetched from the
network) and a JSON API under ``/api`` (documented at ``/openapi.json``; see
``docs/serve.md``). Uploads are decoded and bounded by :mod:`unmask.serve.uploads` and kept in
a temporary directory; explanations, CWOX, metrics and removal previews run as background jobs
(:mod:`unmask.serve.jobs`: a bounded queue, progress, cancel, a cache by result key);
every name and parameter is checked by :mod:`unmask.serve.validate` before any work.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, which name
# classes local to create_app.
import copy
import ipaddress
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Annotated, Any, Literal

import numpy as np
import torch

from .. import explainers  # noqa: F401  (registers every method)
from .. import metrics as _metrics  # noqa: F401  (registers every metric)
from .._limits import MAX_PIXELS
from ..api import make_explainer
from ..contrastive import CWOX, CWOX_BASES, LabelTree, data_free_tree, load_tree, top_classes
from ..contrastive.cwox import DEFAULT_DELTA
from ..explanation import image_digest, result_key, target_json
from ..images import EXAMPLES, example_image, load_image
from ..model_specs import make_model
from ..models import Classifier, list_models
from ..registry import METHODS, METRICS, spec_of, to_json
from ..removal import REMOVALS, bind, make_removal
from . import validate
from .jobs import JobQueue, QueueFull
from .results import FORMATS, ResultStore, StoredResult, encode_map, map_info
from .uploads import MAX_BYTES, ImageStore, UploadError, read_upload

__all__ = [
    "create_app",
    "is_loopback",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "METRIC_KINDS_SERVED",
    "FAMILIES",
]

#: Upload limits: bytes of one file and pixels (width x height) of one decoded image (the
#: library's decoded-image limit, unmask._limits.MAX_PIXELS).
DEFAULT_MAX_BYTES = MAX_BYTES
DEFAULT_MAX_PIXELS = MAX_PIXELS

#: Metric kinds the metrics job can run: they need only the model, the image, the map, a target.
METRIC_KINDS_SERVED = ("faithfulness", "map")

#: A method's family (for the page's grouped list), by the module that implements it.
FAMILIES = {
    "cam": "CAM",
    "scorecam": "CAM",
    "mwp": "backprop",
    "gradient": "gradient",
    "occlusion": "perturbation",
    "rise": "perturbation",
    "lime": "perturbation",
    "mp": "mask optimisation",
    "mp2": "mask optimisation",
    "extremal": "mask optimisation",
    "fido": "mask optimisation",
    "shearletx": "representation",
}

#: Removals the page offers (a TorchScript inpainter needs a file path: never from a client).
_HIDDEN_REMOVALS = ("torchscript",)

#: The largest JSON body (bytes); uploads may be max_bytes plus this much multipart overhead.
_MAX_JSON = 256 * 1024

_CUT = 1000  # progress units per CWOX stage


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------- request bodies
def _models():  # the pydantic models, built on first use (fastapi is an optional extra)
    from pydantic import BaseModel, ConfigDict, Field

    class Body(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class ExampleRequest(Body):
        name: str = Field(description="a bundled example image (see /api/info examples)")

    class PredictRequest(Body):
        image_id: str = Field(description="from POST /api/images")
        model: str | None = Field(None, description="a served model (default: the first)")
        top: int | None = Field(None, description="explain the top K classes (a count)")
        top_p: float | None = Field(
            None,
            description="or the fewest top classes whose probabilities sum to top_p (default 0.95)",
        )
        max_top: int | None = Field(None, description="the most classes top_p chooses (5)")
        tree: str | None = Field(None, description="label tree (see /api/info trees)")
        cut_level: int = Field(0, description="tree level cut into clusters; 0 = the lowest")

    class Common(Body):
        image_id: str
        model: str | None = None

    class ExplainJob(Common):
        kind: Literal["explain"]
        method: str = Field(description="a registered method (see /api/info methods)")
        params: dict[str, Any] = Field(
            default_factory=dict, description="the method's hyperparameters"
        )
        target: int | list[int] | None = Field(
            None, description="a class, a set of classes (scored as a whole), or None: top-1"
        )
        seed: int = 0

    class CwoxJob(Common):
        kind: Literal["cwox"]
        method: str = Field(
            "gradcam",
            description="the base explainer (CWOX's presets for "
            "gradcam, mwp, rise, lime; params override them)",
        )
        params: dict[str, Any] = Field(default_factory=dict)
        clusters: list[list[int]] = Field(description="the clusters of the chosen classes")
        delta: float | None = Field(None, description="support percentile in [0, 100]")
        negative: Literal["error", "clamp", "keep"] | None = None
        seed: int = 0

    class MetricsJob(Common):
        kind: Literal["metrics"]
        result: str = Field(description="a done explain/cwox job id or its result key")
        map: str | None = Field(None, description="which map of the result (default the first)")
        metrics: list[str | dict[str, Any]] = Field(
            default_factory=lambda: ["deletion", "insertion"],
            description="metric names, or {name, params}",
        )
        removal: str | None = Field(None, description="the substrate of curve metrics")

    class RemovalJob(Common):
        kind: Literal["removal"]
        removal: str = Field(description="a removal spec such as 'blur' or 'telea'")
        result: str | None = Field(
            None,
            description="remove the top `fraction` of this "
            "result's map (default: a centred square)",
        )
        map: str | None = None
        fraction: float = Field(0.25, gt=0, le=1)

    job = Annotated[ExplainJob | CwoxJob | MetricsJob | RemovalJob, Field(discriminator="kind")]
    return ExampleRequest, PredictRequest, job


# ---------------------------------------------------------------------- the server's state
class _Served:
    """What the routes share: models, images, jobs, results, trees."""

    def __init__(
        self,
        models: dict[str, Classifier],
        *,
        max_bytes: int,
        max_pixels: int,
        workers: int,
        max_pending: int,
        cache_size: int,
        max_images: int,
        image_size: int | None,
        trees: dict[str, LabelTree],
    ) -> None:
        self.models = models
        self.max_bytes, self.max_pixels, self.max_pending = max_bytes, max_pixels, max_pending
        self.image_size = image_size
        self.images = ImageStore(max_images=max_images)
        self.jobs = JobQueue(workers=workers, max_pending=max_pending, cache_size=cache_size)
        self.results = ResultStore(max_results=2 * cache_size + max_pending)
        self.extra_trees = trees
        self._locks = {name: threading.Lock() for name in models}
        from ..contrastive import stage_layers

        #: per model, CWOX's (cluster, class) stage layers of its layer bases
        self.cwox_layers = {
            name: {b: list(stage_layers(m, b)) for b in ("gradcam", "mwp")}
            for name, m in models.items()
        }
        self._predict = {name: (copy.deepcopy(m), threading.Lock()) for name, m in models.items()}
        self._trees: dict[tuple[str, str], LabelTree] = {}
        self._probs: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.jobs.close()
        self.images.close()

    # -- models and images ---------------------------------------------------------
    def model(self, name: str | None) -> tuple[str, Classifier]:
        if name is None:
            name = next(iter(self.models))
        if name not in self.models:
            raise ValueError(f"model: unknown model {name!r}; served: {', '.join(self.models)}")
        return name, self.models[name]

    def lock(self, name: str) -> threading.Lock:
        return self._locks[name]

    def size(self, model: Classifier) -> int:
        if self.image_size is not None:
            return self.image_size
        return int(model.input_size[0]) if model.input_size is not None else 224

    def pixels(self, image_id: str) -> np.ndarray:
        try:
            return self.images.get(image_id)
        except (KeyError, ValueError):
            raise LookupError(f"image_id: no image {image_id!r} (upload it first)") from None

    def input(self, image_id: str, model: Classifier) -> torch.Tensor:
        """The image (1, 3, S, S) as the model sees it (centre crop, resized)."""
        return load_image(self.pixels(image_id), size=self.size(model))

    def probabilities(self, image_id: str, name: str) -> torch.Tensor:
        key = (image_id, name)
        with self._lock:
            if key in self._probs:
                self._probs.move_to_end(key)
                return self._probs[key]
        net, lock = self._predict[name]
        x = self.input(image_id, net)
        with lock, torch.no_grad():
            p = net(x).softmax(dim=1)[0].detach().cpu().double()
        with self._lock:
            self._probs[key] = p
            while len(self._probs) > 256:
                self._probs.popitem(last=False)
        return p

    # -- trees ---------------------------------------------------------------------
    def tree_names(self, model: Classifier) -> list[str]:
        names = [n for n, t in self.extra_trees.items() if t.num_classes == model.num_classes]
        if model.num_classes == 1000:
            names.append("resnet50")
        return names + ["data-free"]

    def tree(self, name: str | None, model_name: str) -> tuple[str, LabelTree]:
        model = self.models[model_name]
        allowed = self.tree_names(model)
        if name is None:
            name = allowed[0]
        if name not in allowed:
            raise ValueError(
                f"tree: expected one of {', '.join(allowed)} for model {model_name!r}, got {name!r}"
            )
        key = (name, model_name if name == "data-free" else "")
        with self._lock:
            tree = self._trees.get(key)
        if tree is None:
            if name in self.extra_trees:
                tree = self.extra_trees[name]
            elif name == "resnet50":
                tree = load_tree("resnet50", num_classes=1000)
            else:
                tree = data_free_tree(model)
            with self._lock:
                self._trees[key] = tree
        return name, tree

    # -- results -------------------------------------------------------------------
    def source(self, ref: str) -> StoredResult:
        """A stored result from a job id or a result key."""
        key = ref
        try:
            job = self.jobs.get(ref)
        except (KeyError, ValueError):
            job = None
        if job is not None:
            if job.status != "done":
                raise ValueError(f"result: job {ref} is {job.status}, not done")
            key = (job.result or {}).get("key", ref)
        try:
            return self.results.get(key)
        except KeyError:
            raise LookupError(
                f"result: no result {ref!r} (run it again; old results are dropped)"
            ) from None


# ---------------------------------------------------------------------- computations
def _names(model: Classifier, classes: Sequence[int]) -> list[str]:
    return [model.class_names[c] for c in classes]


def _target_arg(target: Any) -> Any:
    """A JSON target (a class or a list of classes) as the explainers take it for one image."""
    return set(target) if isinstance(target, list) else target


def _check_target(target: Any, model: Classifier, name: str = "target") -> Any:
    classes = target if isinstance(target, list) else [target]
    if isinstance(target, list) and not target:
        raise ValueError(f"{name}: expected a class or a non-empty list of classes, got []")
    for c in classes:
        if not 0 <= int(c) < model.num_classes:
            raise ValueError(
                f"{name}: class {c} is outside [0, {model.num_classes}) for this model"
            )
    if isinstance(target, list):
        if len(set(target)) != len(target):
            raise ValueError(f"{name}: a class appears twice in {target}")
        return sorted(int(c) for c in target)
    return int(target)


def _method_params(
    name: str, params: dict[str, Any], size: int, model: Classifier
) -> tuple[str, dict[str, Any]]:
    spec = validate.method_spec(name, params, size=size, model=model)
    spec = dict(spec)
    method = METHODS.get(spec.pop("method", name)).name
    return method, spec


def _with_progress(method: str, params: dict[str, Any], progress: Callable | None) -> dict:
    if progress is not None and METHODS.get(method).accepts("progress"):
        return {**params, "progress": progress}
    return dict(params)


def _cwox_stage_params(
    model: Classifier, method: str, user: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (cluster, class) stage hyperparameters: CWOX's preset, then the user's."""
    from ..contrastive import stage_layers

    base = CWOX_BASES.get(method)
    if base is None:
        return dict(user), dict(user)
    stages = []
    layers = stage_layers(model, base.layers) if base.layers is not None else (None, None)
    for params, layer in ((base.cluster, layers[0]), (base.classes, layers[1])):
        p = dict(params)
        if layer is not None:
            p["layer"] = layer
        p.update(user)
        stages.append(p)
    return stages[0], stages[1]


def _stage_progress(progress: Callable[[int, int], None], stage: int, stages: int):
    def report(done: int, total: int) -> None:
        frac = done / total if total else 1.0
        progress(stage * _CUT + round(_CUT * frac), stages * _CUT)

    return report


# ---------------------------------------------------------------------- the app
def create_app(
    models: dict[str, Classifier] | Sequence[str] | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
    max_pending: int = 8,
    cache_size: int = 32,
    max_images: int = 64,
    image_size: int | None = None,
    trees: dict[str, Any] | None = None,
) -> Any:
    """The explorer as a FastAPI application (run it with uvicorn, or ``unmask serve``).

    Args:
        models: served models: a dict name -> :class:`unmask.Classifier`, model names for
            :func:`unmask.load_model`, or None (the embedded ``efficientnet_lite0``).
        max_bytes: the largest upload (bytes); larger ones get 413.
        max_pixels: the most pixels (width x height) of an upload, checked from its header
            before decoding (decompression bombs); more get 413.
        workers: threads computing jobs.
        max_pending: jobs queued or running at most; more get 429.
        cache_size: finished results kept (a repeated request is answered from them).
        max_images: uploaded images kept (least recently used dropped).
        image_size: the side of the square the models see (default: each model's input size,
            224 for models without one).
        trees: extra label trees by name (a :class:`~unmask.contrastive.LabelTree` or what
            :func:`~unmask.contrastive.load_tree` reads), offered for models with as many
            classes. ``resnet50`` (1000 classes) and ``data-free`` are always offered.

    Returns:
        A ``fastapi.FastAPI``; ``app.state.served`` holds the state (closed at shutdown).

    Example:
        >>> from fastapi.testclient import TestClient
        >>> from unmask.testing import conv_region_model
        >>> with TestClient(create_app({"toy": conv_region_model()}, image_size=32)) as client:
        ...     client.get("/api/info").json()["models"][0]["name"]
        'toy'
    """
    try:
        from fastapi import FastAPI, File, HTTPException, Request, UploadFile
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import FileResponse, JSONResponse, Response
        from fastapi.routing import APIRoute
        from fastapi.staticfiles import StaticFiles
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError(
            f"unmask serve needs the 'serve' extra: pip install 'unmask[serve]' ({exc})"
        ) from None

    for value, label in (
        (max_bytes, "max_bytes"),
        (max_pixels, "max_pixels"),
        (workers, "workers"),
        (max_pending, "max_pending"),
        (cache_size, "cache_size"),
        (max_images, "max_images"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label}: expected a positive int, got {value!r}")
    served_models = _load_models(models)
    extra_trees = {}
    for name, tree in (trees or {}).items():
        extra_trees[str(name)] = tree if isinstance(tree, LabelTree) else load_tree(tree)
    ExampleRequest, PredictRequest, JobRequest = _models()

    state = _Served(
        served_models,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        workers=workers,
        max_pending=max_pending,
        cache_size=cache_size,
        max_images=max_images,
        image_size=image_size,
        trees=extra_trees,
    )

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: Any):
        yield
        state.close()

    app = FastAPI(
        title="unmask explorer",
        version=_version(),
        lifespan=lifespan,
        description="Explain an image classifier's whole output: top classes, label "
        "confusion clusters, CWOX and every registered method and metric.",
    )
    app.state.served = state

    # -- errors: one line naming the field ----------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = (exc.errors() or [{}])[0]
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        loc = [
            p
            for p in loc
            if p
            not in (
                "ExplainJob",
                "CwoxJob",
                "MetricsJob",
                "RemovalJob",
                "explain",
                "cwox",
                "metrics",
                "removal",
            )
        ]
        field = ".".join(loc) or "body"
        return JSONResponse(
            {"detail": f"{field}: {err.get('msg', 'invalid request')}"}, status_code=422
        )

    def fail(exc: Exception) -> HTTPException:
        if isinstance(exc, UploadError):
            return HTTPException(exc.status, str(exc))
        if isinstance(exc, QueueFull):
            return HTTPException(429, str(exc) or "the job queue is full; try again later")
        if isinstance(exc, LookupError):
            return HTTPException(404, str(exc).strip("'\""))
        return HTTPException(400, str(exc))

    def guarded(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (ValueError, TypeError, LookupError, QueueFull) as exc:
            raise fail(exc) from None

    # -- body size: refused by Content-Length before parsing, and while streaming ----------
    def cap(path: str) -> int:
        return max_bytes + _MAX_JSON if path == "/api/images" else _MAX_JSON

    app.add_middleware(_BodyLimit, cap=cap, max_bytes=max_bytes)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable) -> Any:
        response = await call_next(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' blob: data:; "
            "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
            "frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # -- info ------------------------------------------------------------------------
    @app.get("/api", summary="The routes of the API")
    def api_index() -> dict:
        routes = [
            {"path": r.path, "methods": sorted(r.methods - {"HEAD"}), "summary": r.summary}
            for r in app.routes
            if isinstance(r, APIRoute) and r.path.startswith("/api") and r.methods
        ]
        return {"routes": routes, "openapi": "/openapi.json"}

    @app.get("/api/info", summary="Models, methods, metrics, removals, examples, trees, limits")
    def info() -> dict:
        return _info(state)

    # -- images ------------------------------------------------------------------------
    def stored(image: np.ndarray) -> dict:
        image_id = state.images.put(image)
        return {"image_id": image_id, "width": int(image.shape[1]), "height": int(image.shape[0])}

    @app.post("/api/images", summary="Upload an image (multipart field `file`)")
    async def upload(
        file: UploadFile = File(  # noqa: B008 (FastAPI's way)
            ..., description="PNG, JPEG, WebP, BMP or GIF"
        ),
    ) -> dict:
        data = await file.read(max_bytes + 1)
        return guarded(
            lambda: stored(read_upload(data, max_bytes=max_bytes, max_pixels=max_pixels))
        )

    @app.post("/api/images/example", summary="Use a bundled example image")
    def example(body: ExampleRequest) -> dict:  # type: ignore[valid-type]
        name = body.name  # type: ignore[attr-defined]  # a model built at run time (_models)
        if name not in EXAMPLES:
            raise HTTPException(400, f"name: expected one of {', '.join(EXAMPLES)}, got {name!r}")
        return stored(np.ascontiguousarray(example_image(name))[..., :3])

    @app.get("/api/images/{image_id}.png", summary="The image as the model sees it (PNG)")
    def image_png(image_id: str, model: str | None = None) -> Response:
        def run() -> Response:
            _, m = state.model(model)
            x = state.input(image_id, m)
            data, media = encode_map(x[0].permute(1, 2, 0).numpy(), "png")
            return Response(data, media_type=media)

        return guarded(run)

    # -- predict ---------------------------------------------------------------------------
    @app.post("/api/predict", summary="Top classes, the chosen ones, their tree and clusters")
    def predict(body: PredictRequest) -> dict:  # type: ignore[valid-type]
        return guarded(lambda: _predict(state, body))

    # -- jobs ----------------------------------------------------------------------------
    @app.post(
        "/api/jobs", status_code=202, summary="Start an explain, cwox, metrics or removal job"
    )
    def submit(body: JobRequest) -> dict:  # type: ignore[valid-type]
        def run() -> dict:
            kind, key, fn = _plan(state, body)
            job = state.jobs.submit(kind, fn, key=key)
            return _job_json(job)

        return guarded(run)

    @app.get("/api/jobs/{job_id}", summary="A job's status, progress and (when done) result")
    def job_status(job_id: str) -> dict:
        try:
            job = state.jobs.get(job_id)
        except (KeyError, ValueError):
            raise HTTPException(404, f"job: no job {job_id!r}") from None
        return _job_json(job)

    @app.delete("/api/jobs/{job_id}", summary="Cancel a job")
    def job_cancel(job_id: str) -> dict:
        try:
            job = state.jobs.cancel(job_id)
        except (KeyError, ValueError):
            raise HTTPException(404, f"job: no job {job_id!r}") from None
        return _job_json(job)

    # -- results ---------------------------------------------------------------------------
    @app.get("/api/results/{key}.json", summary="All the numbers of a result")
    def result_json(key: str) -> dict:
        return guarded(lambda: state.source(key).data)

    @app.get("/api/results/{key}/{name}.{fmt}", summary="One map of a result: png, npy or f32")
    def result_map(key: str, name: str, fmt: str) -> Response:
        if fmt not in FORMATS:
            raise HTTPException(404, f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")

        def run() -> Response:
            result = state.source(key)
            if name not in result.maps:
                raise LookupError(
                    f"map: no map {name!r} in result {key}; it has {', '.join(result.maps)}"
                )
            data, media = encode_map(result.maps[name], fmt)
            headers = (
                {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
                if fmt != "png"
                else {}
            )
            return Response(data, media_type=media, headers=headers)

        return guarded(run)

    # -- the page --------------------------------------------------------------------------
    static = resources.files("unmask.serve") / "static"

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


class _BodyLimit:
    """ASGI middleware: a request body above ``cap(path)`` bytes gets 413, from its
    Content-Length before anything is read, or as soon as a streamed body passes the cap."""

    def __init__(self, app: Any, cap: Callable[[str], int], max_bytes: int) -> None:
        self.app, self.cap, self.max_bytes = app, cap, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        from fastapi import HTTPException
        from fastapi.responses import JSONResponse

        cap = self.cap(scope["path"])
        detail = (
            f"file: the request is larger than the limit of {self.max_bytes:,} bytes"
            if scope["path"] == "/api/images"
            else f"body: the request is larger than the limit of {cap:,} bytes"
        )
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)


def _version() -> str:
    from .. import __version__

    return __version__


def _load_models(models: Any) -> dict[str, Classifier]:
    if models is None:
        models = ["efficientnet_lite0"]
    if isinstance(models, dict):
        if not models:
            raise ValueError("models: expected at least one model")
        out = {}
        for name, m in models.items():
            if not isinstance(m, Classifier):
                raise TypeError(
                    f"models[{name!r}]: expected an unmask.Classifier, got {type(m).__name__}"
                )
            out[str(name)] = m.eval()
        return out
    if isinstance(models, str) or not isinstance(models, Sequence) or not models:
        raise TypeError(
            f"models: expected a dict name -> Classifier or a list of model names, got {models!r}"
        )
    known = list_models()
    for name in models:
        if ":" not in str(name) and name not in known:
            raise ValueError(f"model: unknown model {name!r}; expected one of {', '.join(known)}")
    return {name: make_model(name) for name in models}


def _info(state: _Served) -> dict[str, Any]:
    descriptions = list_models()
    models: list[dict[str, Any]] = [
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
        module = entry.factory.__module__.rsplit(".", 1)[-1]
        base = CWOX_BASES.get(entry.name)
        methods.append(
            {
                "name": entry.name,
                "family": FAMILIES.get(module, "other"),
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
            "higher_is_better": getattr(e.factory, "higher_is_better", None),
            "served": e.kind in METRIC_KINDS_SERVED,
        }
        for e in METRICS
    ]
    removals = [
        {"name": n, "summary": REMOVALS.get(n).summary}
        for n in REMOVALS.names()
        if n not in _HIDDEN_REMOVALS
    ]
    trees = sorted({t for m in models for t in m["trees"]})
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
        },
    }


def _predict(state: _Served, body: Any) -> dict[str, Any]:
    name, model = state.model(body.model)
    probs = state.probabilities(body.image_id, name)
    top, top_p, max_top = validate.top_k(body.top, body.top_p, body.max_top)
    chosen = [int(c) for c in top_classes(probs[None], top=top, top_p=top_p, max_top=max_top)[0]]
    tree_name, tree = state.tree(body.tree, name)
    if isinstance(body.cut_level, bool) or not 0 <= body.cut_level < tree.depth:
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


def _job_json(job: Any) -> dict[str, Any]:
    out = dict(job.to_json())
    if job.status == "done":
        out["result"] = job.result
    return out


def _plan(state: _Served, body: Any) -> tuple[str, str, Callable]:
    """Validate a job request; returns (kind, result key, the job's function)."""
    name, model = state.model(body.model)
    x = state.input(body.image_id, model)
    digest = image_digest(x[0])
    kind = body.kind
    if kind == "explain":
        return kind, *_plan_explain(state, body, name, model, x, digest)
    if kind == "cwox":
        return kind, *_plan_cwox(state, body, name, model, x, digest)
    if kind == "metrics":
        return kind, *_plan_metrics(state, body, name, model, x, digest)
    return kind, *_plan_removal(state, body, name, model, x, digest)


def _plan_explain(
    state: _Served, body: Any, name: str, model: Classifier, x: torch.Tensor, digest: str
) -> tuple[str, Callable]:
    method, params = _method_params(body.method, body.params, x.shape[-1], model)
    if body.target is None:
        target: Any = int(state.probabilities(body.image_id, name).argmax())
    else:
        target = _check_target(body.target, model)
    spec = spec_of(make_explainer(model, method, seed=body.seed, **params))
    key = result_key(spec, name, digest, target)

    def run(progress: Callable[[int, int], None]) -> dict[str, Any]:
        progress(0, 1)
        with state.lock(name):
            explainer = make_explainer(
                model, method, seed=body.seed, **_with_progress(method, params, progress)
            )
            e = explainer.explain(x, [_target_arg(target)])
        saliency = e.saliency[0, 0].detach().float().cpu().numpy()
        probs = state.probabilities(body.image_id, name)
        classes = target if isinstance(target, list) else [target]
        info = map_info(key, "saliency", saliency, target=target)
        data = {
            "kind": "explain",
            "key": key,
            "model": name,
            "image_id": body.image_id,
            "image_digest": digest,
            "spec": to_json(e.spec),
            "target": target_json(e.target[0]),
            "target_names": _names(model, classes),
            "probability": float(probs[classes].sum()),
            "maps": [info],
        }
        state.results.put(StoredResult(key, data, {"saliency": saliency}, {"saliency": target}))
        progress(1, 1)
        return data

    return key, run


def _plan_cwox(
    state: _Served, body: Any, name: str, model: Classifier, x: torch.Tensor, digest: str
) -> tuple[str, Callable]:
    method, params = _method_params(body.method, body.params, x.shape[-1], model)
    clusters = [[int(c) for c in cl] for cl in body.clusters]
    if not clusters or any(not cl for cl in clusters):
        raise ValueError("clusters: expected a non-empty list of non-empty clusters")
    flat = [c for cl in clusters for c in cl]
    _check_target(flat, model, "clusters")
    base = CWOX_BASES.get(method)
    delta = body.delta if body.delta is not None else (base.delta if base else DEFAULT_DELTA)
    if not np.isfinite(delta) or not 0 <= delta <= 100:
        raise ValueError(f"delta: expected a percentile in [0, 100], got {body.delta!r}")
    negative = body.negative or (base.negative if base else "clamp")
    rescale = base.rescale if base else "none"
    cluster_params, class_params = _cwox_stage_params(model, method, params)
    for p in (cluster_params, class_params):
        validate.method_spec(method, p, size=x.shape[-1], model=model)
    specs = [
        spec_of(make_explainer(model, method, seed=body.seed, **p))
        for p in (cluster_params, class_params)
    ]
    spec = {
        "method": "cwox-2s",
        "cluster_explainer": specs[0],
        "class_explainer": specs[1],
        "delta": float(delta),
        "negative": negative,
        "rescale": rescale,
        "clusters": clusters,
    }
    key = result_key(spec, name, digest, flat)
    same = specs[0] == specs[1]
    stages = 1 if same or all(len(cl) == 1 for cl in clusters) else 2

    def run(progress: Callable[[int, int], None]) -> dict[str, Any]:
        progress(0, stages * _CUT)
        with state.lock(name):
            cluster_exp = make_explainer(
                model,
                method,
                seed=body.seed,
                **_with_progress(method, cluster_params, _stage_progress(progress, 0, stages)),
            )
            class_exp = (
                cluster_exp
                if same
                else make_explainer(
                    model,
                    method,
                    seed=body.seed,
                    **_with_progress(
                        method, class_params, _stage_progress(progress, stages - 1, stages)
                    ),
                )
            )
            e = CWOX(
                model,
                cluster_exp,
                class_exp,
                delta=delta,
                negative=negative,
                rescale=rescale,
                seed=body.seed,
            ).explain(x, clusters)
        data, maps, targets = _cwox_json(e, key, name, body.image_id, model)
        data["image_digest"] = digest
        state.results.put(StoredResult(key, data, maps, targets))
        progress(stages * _CUT, stages * _CUT)
        return data

    return key, run


def _cwox_json(
    e: Any, key: str, name: str, image_id: str, model: Classifier
) -> tuple[dict, dict, dict]:
    maps: dict[str, np.ndarray] = {}
    targets: dict[str, Any] = {}
    rows = []
    summary = e.summary(model.class_names)
    for i, members in enumerate(e.clusters[0]):
        label = f"cluster{i + 1}"
        h = e.cluster_maps[0][i].detach().float().cpu().numpy()
        maps[label] = h
        targets[label] = members if len(members) > 1 else members[0]
        info = summary["images"][0]["clusters"][i]
        row = {
            "index": i + 1,
            "classes": members,
            "names": _names(model, members),
            "probability": info["probability"],
            "class_probabilities": info["class_probabilities"],
            "threshold": info["threshold"],
            "map": map_info(key, label, h, target=targets[label]),
            "members": [],
        }
        class_maps = e.class_maps[0][i]
        if class_maps is not None:
            s = e.class_base[0][i].double()
            raw = (len(members) * s - s.sum(0, keepdim=True)).clamp(min=0).float().numpy()
            for k, c in enumerate(members):
                cname, rname = f"{label}_{c}", f"{label}_{c}_raw"
                maps[cname] = class_maps[k].detach().float().cpu().numpy()
                maps[rname] = raw[k]
                targets[cname] = targets[rname] = c
                row["members"].append(
                    {
                        "class": c,
                        "name": model.class_names[c],
                        "probability": info["class_probabilities"][k],
                        "map": map_info(key, cname, maps[cname], target=c),
                        "raw": map_info(key, rname, raw[k], target=c),
                    }
                )
        rows.append(row)
    data = {
        "kind": "cwox",
        "key": key,
        "model": name,
        "image_id": image_id,
        "delta": e.delta,
        "negative": e.negative,
        "cluster_explainer": summary["cluster_explainer"],
        "class_explainer": summary["class_explainer"],
        "clusters": e.clusters[0],
        "rows": rows,
        "summary": summary,
        "maps": [map_info(key, n, v, target=targets[n]) for n, v in maps.items()],
    }
    return data, maps, targets


def _metric_items(items: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append((item, {}))
            continue
        extra = sorted(set(item) - {"name", "params"})
        if "name" not in item or extra or not isinstance(item.get("params", {}), dict):
            raise ValueError(
                f"metrics[{i}]: expected a name or {{'name': ..., 'params': {{...}}}}, got {item!r}"
            )
        out.append((str(item["name"]), dict(item.get("params", {}))))
    if not out:
        raise ValueError("metrics: expected at least one metric")
    return out


def _plan_metrics(
    state: _Served, body: Any, name: str, model: Classifier, x: torch.Tensor, digest: str
) -> tuple[str, Callable]:
    source = state.source(body.result)
    if not source.targets:
        raise ValueError(
            "result: expected an explain or cwox result (this one has no maps with a target)"
        )
    map_name = body.map or next(iter(source.targets))
    if map_name not in source.maps or map_name not in source.targets:
        raise ValueError(f"map: expected one of {', '.join(source.targets)}, got {map_name!r}")
    if source.data.get("image_digest") != digest or source.data.get("model") != name:
        raise ValueError("result: the result is of another image or model")
    target = source.targets[map_name]
    removal = validate.removal_spec(body.removal) if body.removal is not None else None
    built: dict[str, Any] = {}
    specs = []
    for label, params in _metric_items(body.metrics):
        spec = dict(validate.metric_spec(label, params, size=x.shape[-1]))
        entry = METRICS.get(spec.pop("metric", label))
        if entry.kind not in METRIC_KINDS_SERVED:
            raise ValueError(
                f"metrics: {entry.name!r} is a {entry.kind!r} metric; this API "
                f"runs metrics of the kinds {', '.join(METRIC_KINDS_SERVED)}"
            )
        if entry.name in built:
            raise ValueError(f"metrics: {entry.name!r} is given twice")
        if removal is not None and entry.accepts("removal") and "removal" not in spec:
            spec["removal"] = removal
        built[entry.name] = entry.build(**spec)
        specs.append({"metric": entry.name, **to_json(spec)})
    key = result_key(
        {"method": "metrics", "metrics": specs, "source": source.key, "map": map_name},
        name,
        digest,
        target,
    )
    saliency = torch.from_numpy(source.maps[map_name]).float()[None, None]

    def run(progress: Callable[[int, int], None]) -> dict[str, Any]:
        from ..metrics import evaluate

        values: dict[str, float] = {}
        curves: dict[str, Any] = {}
        shared: dict[Any, Any] = {}
        t = [_target_arg(target)]
        progress(0, len(built))
        for done, (label, metric) in enumerate(built.items(), 1):
            with state.lock(name):
                if callable(getattr(metric, "curve", None)) and callable(
                    getattr(metric, "shared_key", None)
                ):
                    skey = metric.shared_key()
                    if skey not in shared:
                        shared[skey] = metric.curve(model, x, saliency, t)
                    curve = shared[skey]
                    values[label] = float(metric.reduce(curve)[0])
                    curves[label] = {
                        "mode": curve.mode,
                        "fractions": curve.fractions.tolist(),
                        "scores": curve.scores[0].double().tolist(),
                        "auc": float(curve.auc()[0]),
                    }
                else:
                    out = evaluate(model, x, saliency, {label: metric}, target=t)
                    values[label] = float(out[label][0])
            progress(done, len(built))
        data = {
            "kind": "metrics",
            "key": key,
            "model": name,
            "image_id": body.image_id,
            "image_digest": digest,
            "source": source.key,
            "map": map_name,
            "target": target,
            "metrics": specs,
            "values": values,
            "curves": curves,
            "higher_is_better": {
                m: getattr(obj, "higher_is_better", None) for m, obj in built.items()
            },
        }
        state.results.put(StoredResult(key, data, {}, {}))
        return data

    return key, run


def _plan_removal(
    state: _Served, body: Any, name: str, model: Classifier, x: torch.Tensor, digest: str
) -> tuple[str, Callable]:
    spec = validate.removal_spec(body.removal)
    if spec.partition(":")[0].strip().lower() in _HIDDEN_REMOVALS:
        raise ValueError(f"removal: {spec!r} is not offered by the explorer")
    removal = make_removal(spec)
    side = x.shape[-1]
    if body.result is not None:
        source = state.source(body.result)
        if source.data.get("image_digest") != digest:
            raise ValueError("result: the result is of another image")
        usable = [n for n, v in source.maps.items() if v.ndim == 2]
        if not usable:
            raise ValueError("result: expected a result with maps (explain or cwox)")
        map_name = body.map or usable[0]
        if map_name not in usable:
            raise ValueError(f"map: expected one of {', '.join(usable)}, got {map_name!r}")
        values = torch.from_numpy(source.maps[map_name]).float()[None, None]
        if tuple(values.shape[-2:]) != tuple(x.shape[-2:]):
            values = torch.nn.functional.interpolate(
                values, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False
            )
        flat = values.flatten()
        n = max(1, round(body.fraction * flat.numel()))
        mask = torch.zeros_like(flat)
        mask[flat.argsort(descending=True)[:n]] = 1.0
        mask = mask.reshape(1, 1, *x.shape[-2:])
        what = {"source": source.key, "map": map_name, "fraction": body.fraction}
    else:
        mask = torch.zeros(1, 1, *x.shape[-2:])
        lo, hi = side // 4, side - side // 4
        mask[..., lo:hi, lo:hi] = 1.0
        what = {"source": None, "map": "centre square", "fraction": 0.25}
    key = result_key({"method": "removal", "removal": spec, **what}, name, digest, None)

    def run(progress: Callable[[int, int], None]) -> dict[str, Any]:
        progress(0, 1)
        with torch.no_grad():
            out = bind(removal, x)(mask)
        removed = out[0].permute(1, 2, 0).clamp(0, 1).float().cpu().numpy()
        m = mask[0, 0].numpy()
        maps = {"removed": removed, "mask": m}
        data = {
            "kind": "removal",
            "key": key,
            "model": name,
            "image_id": body.image_id,
            "image_digest": digest,
            "removal": spec,
            **what,
            "maps": [map_info(key, n, v) for n, v in maps.items()],
        }
        state.results.put(StoredResult(key, data, maps, {}))
        progress(1, 1)
        return data

    return key, run
