"""The statistics of a benchmark store: per metric and method run, the mean, spread, bootstrap
interval and rank (the direction read from the metric registry: a metric that declares none is
reported but never ranked); the robustness of a method's runs; the contrastive pair tables.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .store import Store, decode_map

__all__ = [
    "bootstrap_ci",
    "summarise",
    "robustness_scores",
    "contrastive_summary",
    "direction",
    "FEW_IMAGES",
]

#: Below this many images a bootstrap interval is flagged (``few_images``): resampling so few
#: values gives an interval that looks precise but is not (with 4 images only 35 distinct
#: resamples exist).
FEW_IMAGES = 10


def bootstrap_ci(
    values: Sequence[float], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling images), fixed seed.

    Example:
        >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
        >>> 1.0 <= lo < 2.5 < hi <= 4.0
        True
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def direction(metric: str) -> bool | None:
    """The registry's direction of ``metric``; None when it declares none (or is unknown):
    such a metric is reported but never ranked."""
    from ..registry import METRICS

    try:
        higher = getattr(METRICS.get(metric).factory, "higher_is_better", None)
    except ValueError:
        return None
    return higher if isinstance(higher, bool) else None


def summarise(store: Store, resamples: int = 1000) -> dict[str, Any]:
    """Per metric and method run: n, mean, std, bootstrap 95 % interval, map read, rank."""
    config = store.config
    runs = [m["label"] for m in config["methods"]]
    metrics = [m for m in config["metrics"] if m["label"] in {r["metric"] for r in store.results()}]
    rows = [r for r in store.results() if r["status"] == "done" and r["value"] is not None]
    out: dict[str, Any] = {}
    for m in metrics:
        higher = direction(m["metric"])
        table: dict[str, dict[str, Any]] = {}
        for run in runs:
            vals = [r["value"] for r in rows if r["metric"] == m["label"] and r["run"] == run]
            maps = sorted({r["map"] for r in rows if r["metric"] == m["label"] and r["run"] == run})
            if not vals:
                continue
            lo, hi = bootstrap_ci(vals, resamples)
            table[run] = {
                "n": len(vals),
                "mean": float(np.mean(vals)),
                "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                "ci95": [lo, hi],
                "few_images": len(vals) < FEW_IMAGES,
                "map": ",".join(m_ for m_ in maps if m_),
            }
        sign = 1 if higher else -1
        for run in table:  # competition ranking: ties share the better rank
            table[run]["rank"] = (
                None
                if higher is None
                else 1 + sum(sign * t["mean"] > sign * table[run]["mean"] for t in table.values())
            )
        best = [r for r in table if table[r]["rank"] == 1]
        out[m["label"]] = {
            "metric": m["metric"],
            "params": m["params"],
            "higher_is_better": higher,
            "best": best,
            "methods": table,
        }
    return out


def robustness_scores(store: Store) -> dict[str, dict[str, dict[str, float]]]:
    """similarity label -> method group -> {"mean", "n"}: the mean over images of the mean
    pairwise similarity of the saliency maps of one ``[[methods]]`` table's runs (seeds, removals
    or swept settings; seed 001's robustness study)."""
    import torch

    from ..metrics import METRICS

    config = store.config
    sims = [m for m in config["metrics"] if _kind(m["metric"]) == "similarity"]
    groups: dict[str, list[str]] = {}
    for m in config["methods"]:
        groups.setdefault(m["group"], []).append(m["label"])
    units = {(u["file"], u["run"]): u for u in store.units(with_maps=True) if u["status"] == "done"}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for sim in sims:
        fn = METRICS.get(sim["metric"]).build(**sim["params"])
        per_group = {}
        for labels in groups.values():
            if len(labels) < 2:
                continue
            name = _group_name(labels)
            scores = []
            for file in store.files():
                maps = [units[(file, lab)] for lab in labels if (file, lab) in units]
                if len(maps) < 2:
                    continue
                arrs = [
                    torch.from_numpy(decode_map(u["saliency"], u["shape"]))[None, None]
                    for u in maps
                ]
                pair = [float(fn(a, b)[0]) for a, b in itertools.combinations(arrs, 2)]
                pair = [p for p in pair if math.isfinite(p)]
                if pair:
                    scores.append(float(np.mean(pair)))
            if scores:
                per_group[name] = {
                    "mean": float(np.mean(scores)),
                    "n": len(scores),
                    "runs": len(labels),
                }
        out[sim["label"]] = per_group
    return out


def contrastive_summary(store: Store) -> dict[str, Any]:
    """Per contrastive metric: per method run and pair level (cluster / class) the pairs, the
    ones left out (a map zero everywhere has no salient pixel), mean, median and median n_δ;
    and the paired comparison of seed 003: for every CWOX-2s run against every other run (all
    ordered pairs of runs when there is no ``cwox`` run), on how many of the pairs both scored
    the first is better (lower CAUC, higher CDROP)."""
    config = store.config
    methods = {m["label"]: m["method"] for m in config["methods"]}
    labels = [m["label"] for m in config["metrics"] if _kind(m["metric"]) == "contrastive"]
    rows = [
        r
        for r in store.results()
        if r["status"] == "done" and r["metric"] in labels and r["data"] and "pairs" in r["data"]
    ]
    out: dict[str, Any] = {}
    for label in labels:
        metric = next(m["metric"] for m in config["metrics"] if m["label"] == label)
        higher = direction(metric)
        # (run) -> {(file, level, target, competitors): (value, n_delta, zero)}
        per_run: dict[str, dict[tuple, tuple]] = {}
        for r in rows:
            if r["metric"] != label:
                continue
            for p in r["data"]["pairs"]:
                k = (r["file"], p["level"], tuple(p["target"]), tuple(p["competitors"]))
                per_run.setdefault(r["run"], {})[k] = (p["value"], p["n_delta"], p["zero_map"])
        table = []
        for run, pairs in per_run.items():
            for level in ("cluster", "class"):
                sel = [v for k, v in pairs.items() if k[1] == level]
                if not sel:
                    continue
                kept = [v for v in sel if not v[2] and v[0] is not None]
                vals = [v[0] for v in kept]
                table.append(
                    {
                        "run": run,
                        "level": level,
                        "pairs": len(sel),
                        "left_out": len(sel) - len(kept),
                        "mean": float(np.mean(vals)) if vals else None,
                        "median": float(np.median(vals)) if vals else None,
                        "median_n_delta": float(np.median([v[1] for v in kept])) if kept else None,
                    }
                )
        runs = list(per_run)
        cw = [r for r in runs if methods.get(r) == "cwox"]
        order = (
            [(a, b) for a in cw for b in runs if b not in cw]
            if cw
            else list(itertools.permutations(runs, 2))
        )
        paired = []
        for a, b in order if higher is not None else []:  # no direction: no "better"
            for level in ("cluster", "class"):
                both = [
                    (per_run[a][k][0], per_run[b][k][0])
                    for k in per_run[a]
                    if k[1] == level
                    and k in per_run[b]
                    and not per_run[a][k][2]
                    and not per_run[b][k][2]
                    and per_run[a][k][0] is not None
                    and per_run[b][k][0] is not None
                ]
                if both:
                    better = sum((va > vb) if higher else (va < vb) for va, vb in both)
                    paired.append(
                        {
                            "run": a,
                            "against": b,
                            "level": level,
                            "better": better,
                            "pairs": len(both),
                        }
                    )
        out[label] = {
            "metric": metric,
            "higher_is_better": higher,
            "table": table,
            "paired": paired,
        }
    return out


def _group_name(labels: list[str]) -> str:
    """The common part of a group's labels: ``lime[seed=0]``, ``lime[seed=1]`` -> ``lime``;
    ``mp[removal=telea,l1=0.1]``... -> ``mp[removal=telea]``."""
    base = labels[0].split("[", 1)[0]
    parts = [set(lab[len(base) + 1 : -1].split(",")) if "[" in lab else set() for lab in labels]
    common = [p for p in labels[0][len(base) + 1 : -1].split(",") if all(p in q for q in parts)]
    common = [p for p in common if p]
    return base + (f"[{','.join(common)}]" if common else "")


def _kind(metric: str) -> str | None:
    from ..registry import METRICS

    try:
        return getattr(METRICS.get(metric).factory, "kind", None)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- plots
