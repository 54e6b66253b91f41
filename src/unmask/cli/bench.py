"""`unmask bench`: run a benchmark (methods × metrics × a data set) into a resumable store.

    unmask bench run CONFIG.toml [--limit N] [--executor local|ray] [--address ADDR] [--workers N]
    unmask bench run preset:generative --data DIR --limit 4
    unmask bench status RUN.sqlite
    unmask bench report RUN.sqlite [--out DIR]
    unmask bench presets [NAME]

CONFIG is a TOML file (see docs/bench.md) or ``preset:NAME``; RUN is the store file that
``bench run`` writes (``--store``, default ``<config name>.sqlite`` in the current folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

COMMAND = "bench"
HELP = (
    "Benchmark methods x metrics on a data set "
    "(TOML config, resumable SQLite store, Ray, HTML report)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(
        dest="bench_command", metavar="SUBCOMMAND", parser_class=type(parser)
    )
    sub.required = True
    p = sub.add_parser(
        "run", help="run or resume a benchmark", description="Run or resume a benchmark."
    )
    p.add_argument("config", metavar="CONFIG", help="a TOML benchmark file, or preset:NAME")
    p.add_argument(
        "--store",
        default=None,
        metavar="FILE",
        help="the result store (default: <config name>.sqlite in the current folder)",
    )
    p.add_argument("--data", default=None, metavar="DIR", help="replace the config's data.path")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="local (default, this process) or ray",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster address (default: start a local cluster)",
    )
    p.add_argument("--workers", type=int, default=2, metavar="N", help="Ray workers (default 2)")
    p.add_argument(
        "--threads", type=int, default=None, metavar="N", help="torch threads per worker"
    )
    p.add_argument("--retry-failed", action="store_true", help="recompute the units that failed")
    p.add_argument(
        "--allow-code",
        action="store_true",
        help="let the config run code: a 'module:function' model (imported and called) and "
        "TorchScript removals; refused by default (a config from elsewhere is data only)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(_bench=_run)

    p = sub.add_parser(
        "status",
        help="done / failed / pending per method run",
        description="Done / failed / pending units per method run of a store.",
    )
    p.add_argument("run", metavar="RUN", help="a store file written by `unmask bench run`")
    p.add_argument(
        "--errors", type=int, default=5, metavar="N", help="show the first N failures (default 5)"
    )
    p.set_defaults(_bench=_status)

    p = sub.add_parser(
        "report",
        help="write the HTML report (+ CSV, JSON) of a store",
        description="Write a self-contained HTML report, CSV and JSON of a store.",
    )
    p.add_argument("run", metavar="RUN", help="a store file written by `unmask bench run`")
    p.add_argument(
        "--out", default=None, metavar="DIR", help="output folder (default: RUN-report/)"
    )
    p.add_argument(
        "--examples", type=int, default=4, metavar="N", help="images in the map grid (default 4)"
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples (default 1000)",
    )
    p.set_defaults(_bench=_report)

    p = sub.add_parser(
        "presets",
        help="list the preset benchmarks, or print one",
        description="List the preset benchmarks, or print one's TOML.",
    )
    p.add_argument("name", nargs="?", default=None, metavar="NAME")
    p.set_defaults(_bench=_presets)


def _plan(config: str, data: str | None, allow_code: bool = False):
    from ..bench.presets import preset_path
    from ..bench.spec import load_plan

    if config.startswith("preset:"):  # a preset's relative data path: from the current folder
        path = preset_path(config[len("preset:") :])
        return load_plan(path, data=data, base=Path.cwd(), allow_code=allow_code)
    return load_plan(Path(config), data=data, allow_code=allow_code)


def _announce(
    plan: Any, limit: int | None, store: Path, retry_failed: bool, threads: int | None
) -> None:
    """Print the plan's cost (every unit, stored or not) before the run starts, timed on the
    engine the units will run: the engine policy (an export the pending units repay) first,
    as every other command, at the run's threads and the methods' batch size."""
    from ..bench.data import open_dataset
    from ..bench.runner import scoring_evaluations
    from ..bench.store import Store
    from ..bench.worker import load_bench_model
    from ..metrics import METRICS
    from ..registry import METHODS
    from ._cost import announce, evaluations
    from ._engine import choose_engine

    try:
        dataset = open_dataset(plan.data["path"], plan.data.get("kind", "auto"))
    except (ValueError, FileNotFoundError, OSError):
        return  # the run reports it, with its own message
    limit = limit or plan.data.get("limit")
    items = dataset.items[:limit] if limit else dataset.items
    images = len(items)
    if threads:
        import torch

        torch.set_num_threads(threads)  # what the run's worker in this process sets
    model = load_bench_model(plan.model)
    size = int(plan.model.get("size") or (model.input_size or (224, 224))[0])
    done: set[tuple[str, str]] = set()
    if store.is_file():  # resumed: the units still to compute (run() forgets failed ones)
        db = Store.open(store)
        try:
            done = db.done_units(include_failed=not retry_failed)
        finally:
            db.close()
    pending = [
        (i.file, m.label) for i in items for m in plan.methods if (i.file, m.label) not in done
    ]
    if pending:
        choose_engine(model, scoring_evaluations(plan, pending, model))
    batch = next((b for m in plan.methods if isinstance(b := m.params.get("batch_size"), int)), 16)
    # CWOX-2s' cost depends on each image's clusters: unknown before the run
    parts = [
        (
            m.label,
            None
            if m.method == "cwox"
            else evaluations(METHODS.get(m.method), m.params, size, model),
        )
        for m in plan.methods
    ]
    runs = len(plan.methods)
    for m in plan.metrics:
        n = evaluations(METRICS.get(m.metric), m.params, size, model)
        parts.append((f"{m.label} x {runs} runs", None if n is None else n * runs))
    announce("bench", parts, images, model, size, batch)


def _run(args: argparse.Namespace) -> int:
    from ..bench.runner import run

    for opt in ("limit", "workers", "threads"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise ValueError(f"--{opt}: expected a positive integer, got {v}")
    from .._trust import default_store

    plan = _plan(args.config, args.data, args.allow_code)
    store = Path(args.store) if args.store else default_store(plan.name)
    from ..bench.store import Store

    Store.check_path(store, plan.config, plan.config_hash)  # a foreign store: before the cost
    _announce(plan, args.limit, store, args.retry_failed, args.threads)
    summary = run(
        plan,
        store,
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        limit=args.limit,
        retry_failed=args.retry_failed,
        threads=args.threads,
        progress=not args.no_progress,
        argv=sys.argv,
    )
    print(
        f"{plan.name}: {summary.written} units computed ({summary.failed} failed), "
        f"{summary.skipped} already stored, in {summary.seconds:.1f} s -> {store}"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from ..bench.store import Store

    store = Store.open(args.run)
    status = store.status()
    width = max([len("method run"), *map(len, status)])
    print(
        f"{store.config['name']}: {len(store.files())} images, {len(store.sessions())} session(s)"
    )
    print(f"{'method run':<{width}}  {'done':>6}  {'failed':>6}  {'pending':>7}")
    for run, s in status.items():
        print(f"{run:<{width}}  {s['done']:>6}  {s['failed']:>6}  {s['pending']:>7}")
    failures = [u for u in store.units() if u["status"] == "failed"]
    failures += [r for r in store.results() if r["status"] == "failed"]
    for f in failures[: args.errors]:
        what = f"{f['run']} / {f['metric']}" if "metric" in f else f["run"]
        print(f"failed: {f['file']} {what}: {f['error']}")
    if len(failures) > args.errors:
        print(
            f"... {len(failures) - args.errors} more failures (--errors N); "
            "rerun with --retry-failed"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..bench.report import write_report

    out = Path(args.out) if args.out else Path(args.run).with_name(Path(args.run).stem + "-report")
    page = write_report(args.run, out, examples=args.examples, bootstrap=args.bootstrap)
    print(f"wrote {page} (and results.csv, results.json, in {out})")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from ..bench.presets import PRESETS, preset_path

    if args.name:
        print(preset_path(args.name).read_text(), end="")
        return 0
    width = max(map(len, PRESETS))
    for name, summary in PRESETS.items():
        print(f"{name:<{width}}  {summary}")
    print("run one with: unmask bench run preset:NAME --data DIR --limit 4")
    return 0


def run(args: argparse.Namespace) -> int:
    return int(args._bench(args) or 0)
