"""``unmask bench``: methods × metrics × data sets into a result store that loses nothing.

A benchmark is a TOML file (:mod:`unmask.bench.spec`); :func:`run` computes its units (image ×
method run) with a local or Ray executor (:mod:`unmask.bench.executors`) into one SQLite store
per run (:mod:`unmask.bench.store`), resuming where a killed run stopped; :func:`report` writes a
self-contained HTML page with tables, plots, CSV and JSON (:mod:`unmask.bench.report`, from
:mod:`unmask.bench.statistics` and :mod:`unmask.bench.plots`).
Data-set layouts: :mod:`unmask.bench.data`; presets: :mod:`unmask.bench.presets`; contrastive
faithfulness (per-image cluster / class pairs, CWOX-2s as ``method = "cwox"``):
:mod:`unmask.bench.contrast`; metric execution (through :func:`unmask.metrics.evaluate`):
:mod:`unmask.bench.metrics`.
"""

from .data import Dataset, Item, Sample, open_dataset
from .runner import RunSummary, run
from .spec import MethodRun, MetricRun, Plan, load_plan, parse_plan
from .store import Store
from .worker import Worker

__all__ = [
    "Dataset",
    "Item",
    "Sample",
    "open_dataset",
    "RunSummary",
    "Worker",
    "run",
    "MethodRun",
    "MetricRun",
    "Plan",
    "load_plan",
    "parse_plan",
    "Store",
]
