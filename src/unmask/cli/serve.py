"""`unmask serve`: the explorer in the browser (top classes, clusters, CWOX, every method)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

COMMAND = "serve"
HELP = (
    "Start the explorer in the browser: upload an image, read its top classes, clusters, "
    "CWOX and every method's maps and metrics (needs the 'serve' extra)."
)

_NEEDED = ("fastapi", "uvicorn", "multipart")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME",
        help="a model to serve (see `unmask models`); repeat for several; "
        "default: efficientnet_lite0",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="threads computing jobs (default 1; at most 64)",
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=8,
        metavar="N",
        help="jobs queued or running at most; more get HTTP 429 (default 8)",
    )
    parser.add_argument(
        "--max-job-seconds",
        type=float,
        default=180.0,
        metavar="S",
        help="the longest one job may take: a job estimated to take longer (its model "
        "evaluations x the model's measured time per image) is refused with the estimate, "
        "and a running one is stopped at this time (default 180)",
    )
    parser.add_argument(
        "--max-job-memory-mb",
        type=float,
        default=512.0,
        metavar="MB",
        help="the most working memory of one job's batch in MiB (images and the model's "
        "activations): default batch sizes are lowered to fit, larger ones refused (default 512)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        metavar="MB",
        help="the largest upload in MiB (default 20)",
    )


def run(args: argparse.Namespace) -> int:
    from .._checks import check_positive
    from ..models import list_models

    missing = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        shown = ", ".join("python-multipart" if m == "multipart" else m for m in missing)
        raise ValueError(
            f"serve: the 'serve' extra is not installed (missing: {shown}); "
            "install it with: pip install 'unmask[serve]'"
        )
    if not 0 < args.port < 65536:
        raise ValueError(f"--port: expected a port in [1, 65535], got {args.port}")
    from ..serve.jobs import MAX_PENDING, MAX_WORKERS

    for value, flag, high in (
        (args.workers, "--workers", MAX_WORKERS),
        (args.max_pending, "--max-pending", MAX_PENDING),
    ):
        check_positive(value, flag, integer=True)
        if value > high:
            raise ValueError(f"{flag}: expected an int in [1, {high:,}], got {value:,}")
    check_positive(args.max_upload_mb, "--max-upload-mb")
    check_positive(args.max_job_seconds, "--max-job-seconds")
    check_positive(args.max_job_memory_mb, "--max-job-memory-mb")
    names = args.model or ["efficientnet_lite0"]
    known = list_models()
    for name in names:
        if name not in known:
            raise ValueError(f"--model: unknown model {name!r}; expected one of {', '.join(known)}")
        if "[not installed" in known[name]:
            raise ValueError(f"--model: {name!r} is {known[name].split('[', 1)[1].rstrip(']')}")

    import uvicorn

    from ..serve import create_app, is_loopback
    from ..serve.jobs import map_large_buffers

    if not is_loopback(args.host):
        print(
            f"unmask serve: warning: bound to {args.host}, not loopback: anyone who can reach "
            "this address can upload images and run jobs (there is no authentication)",
            file=sys.stderr,
        )
    map_large_buffers()  # the RSS returns to its idle level after heavy jobs
    app = create_app(
        names,
        max_bytes=int(args.max_upload_mb * 1024 * 1024),
        workers=args.workers,
        max_pending=args.max_pending,
        host=args.host,
        max_job_seconds=args.max_job_seconds,
        max_job_memory=max(1, int(args.max_job_memory_mb * 1024 * 1024)),
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"unmask serve: http://{shown}:{args.port}/ (models: {', '.join(names)}; Ctrl+C stops)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
