"""The explorer's web app: :func:`create_app` assembles the FastAPI application.

It serves the page (``static/``: plain ES modules, nothing fetched from the network) and the
JSON API of :mod:`unmask.serve.routes` (documented at ``/openapi.json``; see
``docs/serve.md``), behind the guards of :mod:`unmask.serve.guards` (allowed Host headers,
request size, security headers). The state the routes share is a
:class:`~unmask.serve.state.Served`; jobs are planned by :mod:`unmask.serve.planners`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from .. import explainers  # noqa: F401  (registers every method)
from .. import metrics as _metrics  # noqa: F401  (registers every metric)
from .._limits import max_pixels as _max_pixels
from ..contrastive import LabelTree, load_tree
from ..models import Classifier
from .guards import SECURITY_HEADERS, BodyLimit, trusted_hosts
from .state import DEFAULT_JOB_MEMORY, DEFAULT_MAX_SECONDS, Served, load_models
from .uploads import MAX_BYTES

__all__ = ["create_app"]

#: The largest JSON body (bytes); uploads may be max_bytes plus this much multipart overhead.
_MAX_JSON = 256 * 1024


def create_app(
    models: dict[str, Classifier] | list[str] | tuple[str, ...] | None = None,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int | None = None,
    workers: int = 1,
    max_pending: int = 8,
    cache_size: int = 32,
    max_images: int = 64,
    image_size: int | None = None,
    trees: dict[str, Any] | None = None,
    host: str | None = None,
    max_job_seconds: float = DEFAULT_MAX_SECONDS,
    cache_bytes: int = 256 * 1024**2,
    image_bytes: int = 1024**3,
    max_job_memory: int = DEFAULT_JOB_MEMORY,
) -> Any:
    """The explorer as a FastAPI application (run it with uvicorn, or ``unmask serve``).

    Args:
        models: served models: a dict name -> :class:`unmask.Classifier`, model names for
            :func:`unmask.load_model`, or None (the embedded ``efficientnet_lite0``).
        max_bytes: the largest upload (bytes); larger ones get 413.
        max_pixels: the most pixels (width x height) of an upload, checked from its header
            before decoding (decompression bombs); more get 413. Default: the library's one
            pixel cap (:func:`unmask._limits.max_pixels`, ``UNMASK_MAX_PIXELS``), as
            ``unmask explain`` has.
        workers: threads computing jobs.
        max_pending: jobs queued or running at most; more get 429.
        cache_size: finished results kept (a repeated request is answered from them).
        max_images: uploaded images kept (least recently used dropped).
        image_size: the side of the square the models see (default: each model's input size,
            224 for models without one).
        trees: extra label trees by name (a :class:`~unmask.contrastive.LabelTree` or what
            :func:`~unmask.contrastive.load_tree` reads), offered for models with as many
            classes. ``resnet50`` (1000 classes) and ``data-free`` are always offered.
        host: the address the server listens on: accepted as a ``Host:`` header beside
            127.0.0.1, localhost and [::1] (any other Host gets 400: DNS rebinding).
        max_job_seconds: the longest one job may take: a job estimated to take longer (its
            cost in model evaluations × the model's measured time per image) gets 422 with the
            estimate, and a running job is stopped (failed) at this time.
        cache_bytes: the most bytes of finished results kept (their maps; least recently used
            dropped).
        image_bytes: the most bytes of uploaded image files kept (on disk).
        max_job_memory: the most working memory of one job's batch, bytes (images and the
            model's activations, :func:`unmask._limits.batch_bytes`): a method's default batch
            size is lowered to fit it, a larger ``batch_size`` (or noise batch, areas...) gets
            422. The server's peak is about its idle level plus this per running job.

    Returns:
        A ``fastapi.FastAPI``; ``app.state.served`` holds the state (closed at shutdown).

    Example:
        >>> from fastapi.testclient import TestClient
        >>> from unmask.testing import conv_region_model
        >>> app = create_app({"toy": conv_region_model()}, image_size=32)
        >>> with TestClient(app, base_url="http://127.0.0.1") as client:
        ...     client.get("/api/info").json()["models"][0]["name"]
        'toy'
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import FileResponse, JSONResponse, Response
        from fastapi.staticfiles import StaticFiles
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        from .routes import router
        from .schemas import BODY_NAMES
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError(
            f"unmask serve needs the 'serve' extra: pip install 'unmask[serve]' ({exc})"
        ) from None

    if max_pixels is None:
        max_pixels = _max_pixels()
    for value, label in (
        (max_bytes, "max_bytes"),
        (max_pixels, "max_pixels"),
        (workers, "workers"),
        (max_pending, "max_pending"),
        (cache_size, "cache_size"),
        (max_images, "max_images"),
        (cache_bytes, "cache_bytes"),
        (image_bytes, "image_bytes"),
        (max_job_memory, "max_job_memory"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label}: expected a positive int, got {value!r}")
    if (
        isinstance(max_job_seconds, bool)
        or not isinstance(max_job_seconds, int | float)
        or not 0 < max_job_seconds < float("inf")
    ):
        raise ValueError(
            f"max_job_seconds: expected a positive finite number, got {max_job_seconds!r}"
        )
    if host is not None and not isinstance(host, str):
        raise TypeError(f"host: expected a host name or address (str), got {type(host).__name__}")
    served_models = load_models(models)
    extra_trees = {}
    for name, tree in (trees or {}).items():
        extra_trees[str(name)] = tree if isinstance(tree, LabelTree) else load_tree(tree)
    state = Served(
        served_models,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        workers=workers,
        max_pending=max_pending,
        cache_size=cache_size,
        max_images=max_images,
        image_size=image_size,
        trees=extra_trees,
        max_seconds=float(max_job_seconds),
        cache_bytes=cache_bytes,
        image_bytes=image_bytes,
        job_memory=max_job_memory,
    )

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
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

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """One line naming the field."""
        err = (exc.errors() or [{}])[0]
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(p for p in loc if p not in BODY_NAMES) or "body"
        return JSONResponse(
            {"detail": f"{field}: {err.get('msg', 'invalid request')}"}, status_code=422
        )

    def cap(path: str) -> int:
        return max_bytes + _MAX_JSON if path == "/api/images" else _MAX_JSON

    app.add_middleware(BodyLimit, cap=cap, max_bytes=max_bytes)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Any]) -> Any:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # outermost: a request with another Host is refused before anything else reads it
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts(host))
    app.include_router(router)

    static = resources.files("unmask.serve") / "static"

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def _version() -> str:
    from .. import __version__

    return __version__
