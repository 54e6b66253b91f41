"""What the benchmark scripts share: the unmask sources on the path, the run environment, the
best forward time, the spread of repeated timings and map correlation.

Every script imports it as ``from common import ...`` (Python puts the script's folder, this one,
on the path), instead of importing another script.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

import unmask  # noqa: E402
from unmask.numerics import pearson  # noqa: E402

__all__ = ["ROOT", "PACKAGES", "best_forward", "environment", "map_pearson", "spread"]


def map_pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps, flattened (:func:`unmask.numerics.pearson`)."""
    return float(pearson(torch.as_tensor(a).reshape(1, -1), torch.as_tensor(b).reshape(1, -1))[0])


def top_iou(a: torch.Tensor, b: torch.Tensor, share: float = 0.1) -> float:
    """Intersection over union of the top-``share`` pixels of two maps."""
    a, b = torch.as_tensor(a).flatten().double(), torch.as_tensor(b).flatten().double()
    k = max(1, int(share * a.numel()))
    ta = torch.zeros_like(a, dtype=torch.bool)
    tb = torch.zeros_like(b, dtype=torch.bool)
    ta[a.topk(k).indices], tb[b.topk(k).indices] = True, True
    return float((ta & tb).sum() / (ta | tb).sum())


def best_forward(
    model, x: torch.Tensor, batch: int, backward: bool, tries: int = 3, engine: bool = False
) -> float:
    """The best per-image seconds of a batched forward (+ backward to the input) of ``batch``:
    the eager network (``model(x)``, what the peers run) or, ``engine=True``, unmask's scoring
    path in the model's execution mode (``model.infer``)."""
    xb = x[:1].expand(batch, -1, -1, -1).contiguous()
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        if backward:
            xx = xb.clone().requires_grad_(True)
            torch.autograd.grad(model(xx)[:, 0].sum(), xx)
        else:
            with torch.inference_mode():
                model.infer(xb) if engine else model(xb)
        best = min(best, (time.perf_counter() - start) / batch)
    return best


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


#: The packages whose versions a report records.
PACKAGES = (
    "torch",
    "numpy",
    "captum",
    "saliency-maps-metrics",
    "lime",
    "torchray",
    "scikit-learn",
    "scikit-image",
)


def environment(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """The commit, versions of ``packages`` and the machine, for a report."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "src", "benchmarks"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", None
    versions = {}
    for pkg in packages:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "commit": commit,
        "dirty": dirty,
        "unmask": unmask.__version__,
        "python": platform.python_version(),
        "versions": versions,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
    }
