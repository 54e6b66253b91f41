"""Run a benchmark plan into its store: units of (image, method run), resumable.

The driver (:func:`run`) hands the units not yet done to an executor
(:mod:`unmask.bench.executors`), whose workers (:class:`~unmask.bench.worker.Worker`) compute
them, and writes what comes back: a resumed run and an uninterrupted one store the same
values, since a unit's result does not depend on the order or the executor.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Dataset, open_dataset
from .spec import Plan
from .store import Store, UnitRecord

__all__ = ["run", "RunSummary", "check_plan", "scoring_evaluations"]


@dataclass
class RunSummary:
    """What one call of :func:`run` did."""

    store: Path
    units: int
    written: int
    failed: int
    skipped: int
    seconds: float


def scoring_evaluations(plan: Plan, tasks: Sequence[tuple[str, str]], model: Any) -> int:
    """Model evaluations on the scoring path of the units ``tasks`` ((file, method label)
    pairs): per unit, the target's pass, the method's and every applicable metric's declared
    :meth:`~unmask.registry.Entry.scoring_cost` (a lower bound: a metric that re-runs the
    explainer counts its own evaluations, CWOX none)."""
    from ..registry import METHODS, METRICS

    size = plan.model.get("size") or (model.input_size[0] if model.input_size else 224)
    per_unit = {}
    for run in plan.methods:
        n = 1
        if run.method in METHODS:
            n += METHODS.get(run.method).scoring_cost(run.params, size, model)
        for m in plan.metrics:
            if plan.applies(run, m):
                n += METRICS.get(m.metric).scoring_cost(m.params, size, model)
        per_unit[run.label] = n
    return sum(per_unit[label] for _, label in tasks)


def _prepare_engine(plan: Plan, tasks: Sequence[tuple[str, str]], model: Any = None) -> str:
    """The engine policy (:func:`unmask.onnx_engine.prepare_for`) for the pending units, in
    this process: a job long enough exports the model once to the disk cache, where every
    worker's model finds it. Returns the engine the units will use."""
    from ..onnx_engine import prepare_for
    from .worker import load_bench_model

    model = load_bench_model(plan.model) if model is None else model
    if model.execution != "auto":
        return str(model.execution)
    return prepare_for(model, scoring_evaluations(plan, tasks, model))


def check_plan(plan: Plan, dataset: Dataset) -> list[str]:
    """Plan-vs-data checks that need the data set; returns warnings (nothing is wrong enough
    to stop: localisation metrics skip images without boxes or masks)."""
    needs = [m.label for m in plan.metrics if m.kind == "localisation"]
    if needs and not dataset.has_boxes:
        return [
            f"metrics: {', '.join(needs)} need ground-truth boxes or masks, and the data set at "
            f"{plan.data['path']} has none (no boxes.csv, masks/ or annotations/): skipped"
        ]
    return []


def run(
    plan: Plan,
    store: str | Path,
    *,
    executor: Any = "local",
    workers: int = 1,
    address: str | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    threads: int | None = None,
    progress: bool | Callable[[int, int], object] = True,
    argv: Sequence[str] | None = None,
    on_unit: Callable[[UnitRecord], object] | None = None,
    log: Callable[[str], object] | None = lambda line: print(
        f"unmask: warning: {line}", file=sys.stderr
    ),
) -> RunSummary:
    """Run (or resume) ``plan`` into the store file ``store``.

    Args:
        plan: a checked :class:`Plan` (:func:`unmask.bench.load_plan`).
        store: the SQLite file (created; resumed when it holds the same config).
        executor: ``"local"`` (this process), ``"ray"``, or an executor object
            (:mod:`unmask.bench.executors`).
        workers: Ray workers (one model each).
        address: a Ray cluster's address (None: start a local one).
        limit: only the first ``limit`` images (default: the config's ``data.limit``, or all).
        retry_failed: recompute the units that failed (their rows are replaced).
        threads: torch CPU threads per worker.
        progress: a bar with ETA (True), a callback ``(done, total)``, or nothing.
        argv: the command line recorded with the session.
        on_unit: called with each unit as it is stored (tests, live views).
        log: where warnings go (default: stderr; None: nowhere).
    """
    from ..progress import track
    from .executors import make_executor

    started = time.perf_counter()
    dataset = open_dataset(plan.data["path"], plan.data.get("kind", "auto"))
    for warning in check_plan(plan, dataset):
        if log is not None:
            log(warning)
    limit = limit or plan.data.get("limit")
    items = dataset.items[:limit] if limit else dataset.items
    Store.check_path(
        store, plan.config, plan.config_hash
    )  # a foreign store / another config: before any work
    ex = make_executor(executor, workers=workers, address=address)
    ex.start(plan, threads=threads)  # loads the model, builds every explainer and metric once
    db = Store.create_or_resume(store, plan.config, plan.config_hash)
    try:
        db.set_files(i.file for i in dataset.items)
        if retry_failed:
            db.forget_failed()
        done = db.done_units()
        tasks = [
            (i.file, m.label) for i in items for m in plan.methods if (i.file, m.label) not in done
        ]
        skipped = len(items) * len(plan.methods) - len(tasks)
        if tasks:  # before any unit: the workers' models (``"auto"``) read the cached graph
            _prepare_engine(plan, tasks, getattr(getattr(ex, "worker", None), "model", None))
        written = failed = 0
        db.start_session(getattr(ex, "name", str(executor)), argv)
        if tasks:
            stream = ex.run(tasks)
            for unit in track(
                stream, len(tasks), progress, desc=f"bench {plan.name}", unit="unit", minimum=0
            ):
                if db.write_unit(unit):
                    written += 1
                    failed += unit.status == "failed" or any(
                        r.status == "failed" for r in unit.results
                    )
                if on_unit is not None:
                    on_unit(unit)
        return RunSummary(
            Path(store),
            len(tasks) + skipped,
            written,
            failed,
            skipped,
            time.perf_counter() - started,
        )
    finally:
        ex.close()
        db.close()
