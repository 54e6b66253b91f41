"""The statistics of a benchmark store: per metric and method run, the mean, spread, bootstrap
interval and rank (the direction read from the metric registry: a metric that declares none is
reported but never ranked); the robustness of a method's runs; the contrastive pair tables; the
paired comparison of two method runs on the same images (wins, sign test, bootstrap interval).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .store import Store, decode_map

__all__ = [
    "bootstrap_ci",
    "sign_test",
    "Paired",
    "paired_comparison",
    "summarise",
    "robustness_scores",
    "contrastive_summary",
    "contrastive_pairs",
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


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the probability, under no difference (each non-tied pair a
    fair coin), of a split at least as uneven as ``wins`` : ``losses`` (ties left out before).

    Example:
        >>> sign_test(6, 0)   # 2 * 0.5 ** 6
        0.03125
        >>> sign_test(3, 3)
        1.0
    """
    for name, v in (("wins", wins), ("losses", losses)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {v!r}")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class Paired:
    """Two method runs compared on the same images (:func:`paired_comparison`).

    ``diff`` is oriented so that a positive value means ``a`` is better (lower for a metric
    where lower is better); ``ci95`` is the percentile-bootstrap interval of its mean.
    """

    n: int
    mean_a: float
    mean_b: float
    median_a: float
    median_b: float
    wins: int
    losses: int
    ties: int
    p_sign: float
    mean_diff: float
    ci95: tuple[float, float]


def paired_comparison(
    a: Sequence[float],
    b: Sequence[float],
    higher_is_better: bool,
    resamples: int = 1000,
    seed: int = 0,
) -> Paired:
    """Compare paired values ``a[i]``, ``b[i]`` (one image each): wins / losses / ties of ``a``,
    the sign test (:func:`sign_test`) and a bootstrap interval (:func:`bootstrap_ci`) of the
    mean oriented difference (``a - b`` when higher is better, ``b - a`` otherwise).

    Example:
        >>> r = paired_comparison([0.1, 0.2, 0.3], [0.2, 0.2, 0.5], higher_is_better=False)
        >>> r.wins, r.losses, r.ties, round(r.mean_diff, 4)
        (2, 0, 1, 0.1)
    """
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if va.ndim != 1 or va.shape != vb.shape:
        raise ValueError(
            f"a, b: expected two 1-d sequences of one length, got shapes {va.shape} and {vb.shape}"
        )
    if not (np.isfinite(va).all() and np.isfinite(vb).all()):
        raise ValueError("a, b: expected finite values (leave out the images without a value)")
    d = va - vb if higher_is_better else vb - va
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    empty = va.size == 0
    return Paired(
        n=int(va.size),
        mean_a=math.nan if empty else float(va.mean()),
        mean_b=math.nan if empty else float(vb.mean()),
        median_a=math.nan if empty else float(np.median(va)),
        median_b=math.nan if empty else float(np.median(vb)),
        wins=wins,
        losses=losses,
        ties=int(va.size) - wins - losses,
        p_sign=sign_test(wins, losses),
        mean_diff=math.nan if empty else float(d.mean()),
        ci95=bootstrap_ci(d.tolist(), resamples, seed),
    )


def direction(metric: str) -> bool | None:
    """The registry's direction of ``metric``; None when it declares none (or is unknown):
    such a metric is reported but never ranked."""
    from ..registry import METRICS

    try:
        higher = getattr(METRICS.get(metric).factory, "higher_is_better", None)
    except ValueError:
        return None
    return higher if isinstance(higher, bool) else None


def summarise(
    store: Store, resamples: int = 1000, files: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per metric and method run: n, mean, std, bootstrap 95 % interval, map read, rank
    (over the images ``files`` only, when given: e.g. those every run has done)."""
    config = store.config
    runs = [m["label"] for m in config["methods"]]
    results = store.results()
    metrics = [m for m in config["metrics"] if m["label"] in {r["metric"] for r in results}]
    keep = None if files is None else set(files)
    rows = [
        r
        for r in results
        if r["status"] == "done" and r["value"] is not None and (keep is None or r["file"] in keep)
    ]
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
    rows = store.results()
    out: dict[str, Any] = {}
    for label in labels:
        metric = next(m["metric"] for m in config["metrics"] if m["label"] == label)
        higher = direction(metric)
        per_run = contrastive_pairs(store, label, rows)
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


def contrastive_pairs(
    store: Store, metric: str, rows: list[dict[str, Any]] | None = None
) -> dict[str, dict[tuple, tuple]]:
    """Every pair scored by the contrastive metric labelled ``metric``: method run ->
    {(file, level, target classes, competitor classes): (value, n_delta, zero map)}.
    ``rows``: ``store.results()`` when already read."""
    per_run: dict[str, dict[tuple, tuple]] = {}
    for r in store.results() if rows is None else rows:
        if r["status"] != "done" or r["metric"] != metric or not isinstance(r["data"], dict):
            continue
        for p in r["data"].get("pairs", ()):
            k = (r["file"], p["level"], tuple(p["target"]), tuple(p["competitors"]))
            per_run.setdefault(r["run"], {})[k] = (p["value"], p["n_delta"], p["zero_map"])
    return per_run


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
