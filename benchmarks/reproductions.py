"""The seeds' directional claims measured on the shared ImageNet samples, from the bench stores.

Reads the stores of the configs in ``benchmarks/reproductions/`` (and of the preset ``cwox``),
and writes, per claim, the paper's number, ours (mean / median of each side), the number of
images, a paired comparison (wins / losses / ties, the sign test, a bootstrap 95 % interval of
the mean paired difference, :func:`unmask.bench.statistics.paired_comparison`) and a verdict by
the rule of :func:`verdict`; seed 004's metrics as a ranking of the methods of seed 001 and
the agreement between the metrics. Outputs: CSVs in ``benchmarks/results/reproductions/`` and
the page ``docs/reproductions.md``. A store that is missing or holds fewer images gives its
claims with the n it has (n = 0: "not run").

    python benchmarks/reproductions.py [--stores /work/repro] [--out DIR] [--doc FILE]

The stores are made (and extended to all 100 images, resuming) by the commands that
:data:`STORES` lists and the page repeats.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT

from unmask.bench.statistics import (
    Paired,
    contrastive_pairs,
    direction,
    paired_comparison,
    summarise,
)
from unmask.bench.store import Store

__all__ = [
    "Claim",
    "StoreSpec",
    "STORES",
    "CLAIMS",
    "MIN_PAIRS",
    "ON_PAR_MARGIN",
    "verdict",
    "claim_values",
    "evaluate",
    "metric_ranking",
    "main",
]

DATA = "/work/shared/data/imagenet-samples"

#: Fewer pairs than this: inconclusive whatever the numbers (with 5 pairs even 5 wins out of 5
#: give a two-sided sign-test p of 0.0625).
MIN_PAIRS = 6

#: An "on par" claim is supported when the 95 % interval of the mean difference lies within
#: +- this margin: the smallest difference Table 4 of seed 001 calls an improvement (MP2 0.0890
#: vs MP2-G 0.0540 = 0.035; its "on par" pair LIME / LIME-G differs by 0.003). Saliency-metric
#: units (a log ratio, the same scale for any classifier).
ON_PAR_MARGIN = 0.035


@dataclass(frozen=True)
class StoreSpec:
    """A store of the study: its config and file name (in ``--stores``), and the config with
    the paper's settings it reduces (``paper``; the same config when nothing is reduced)."""

    name: str
    config: str  # a path relative to the repository, or preset:NAME
    file: str
    paper: str = ""

    @property
    def command(self) -> str:
        return (
            f"unmask bench run {self.config} --data {DATA} "
            f"--store /work/repro/{self.file} --threads 1"
        )

    @property
    def config_path(self) -> Path:
        return _config_path(self.config)


def _config_path(config: str) -> Path:
    if config.startswith("preset:"):
        return ROOT / "src/unmask/bench/presets" / f"{config[7:]}.toml"
    return ROOT / config


def plan_cost(config: str) -> tuple[int, list[str]]:
    """Model evaluations per image of a config (its methods' and metrics' registry cost
    declarations, :func:`unmask.cli._cost.evaluations`: upper bounds where a method stops
    early; a forward + backward counts once), and the runs whose cost is not declared
    (CWOX-2s: it depends on the image's clusters)."""
    from unmask.bench import load_plan
    from unmask.cli._cost import evaluations
    from unmask.registry import METHODS, METRICS

    plan = load_plan(_config_path(config), data=DATA)
    size = int(plan.model.get("size") or 224)
    total, unknown = 0, []
    for run in plan.methods:
        n = None if run.method == "cwox" else evaluations(METHODS.get(run.method), run.params, size)
        if n is None:
            unknown.append(run.label)
        total += n or 0
        for m in plan.metrics:
            if plan.applies(run, m):
                total += evaluations(METRICS.get(m.metric), m.params, size) or 0
    return total, unknown


STORES = [
    StoreSpec(
        "seed001",
        "benchmarks/reproductions/seed001-generative.toml",
        "seed001.sqlite",
        "preset:generative",
    ),
    StoreSpec(
        "seed003-gradcam-16px",
        "benchmarks/reproductions/seed003-gradcam-16px.toml",
        "seed003-gradcam-16px.sqlite",
        "benchmarks/reproductions/seed003-gradcam-16px.toml",
    ),
    StoreSpec(
        "seed003-rise-16px",
        "benchmarks/reproductions/seed003-rise-16px.toml",
        "seed003-rise-16px.sqlite",
        "benchmarks/reproductions/seed003-rise-16px.toml",
    ),
    StoreSpec(
        "seed003-gradcam-256px",
        "preset:cwox",
        "seed003-gradcam-256px.sqlite",
        "benchmarks/reproductions/seed003-gradcam-16px.toml",
    ),
    StoreSpec(
        "seed000",
        "benchmarks/reproductions/seed000-figure4.toml",
        "seed000-figure4.sqlite",
        "preset:figure4",
    ),
]


@dataclass(frozen=True)
class Claim:
    """One directional claim: method run ``a`` is better than ``b`` on ``metric`` (or on par).

    ``kind``: ``"value"`` (the metric row of each image), ``"contrastive"`` (per image, the mean
    over its pairs of ``level`` that both runs scored; pair-level wins beside), or
    ``"alpha_star"`` (the saliency metric at each method's own alpha*, chosen on the even
    images, compared on the odd ones).
    """

    seed: str
    source: str
    store: str
    metric: str
    a: str
    b: str
    paper: str
    relation: str = "better"  # "better" or "on par"
    kind: str = "value"
    level: str | None = None
    note: str = ""

    @property
    def text(self) -> str:
        rel = "on par with" if self.relation == "on par" else "better than"
        where = f" ({self.level} pairs)" if self.level else ""
        return f"{self.a} {rel} {self.b} on {self.metric}{where}"


_SM_ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _seed001() -> list[Claim]:
    # the paper's ImageNet rows (ResNet-50, DeepFill-v1)
    t3 = {"sp": 0.1996, "sp-g": 0.1769, "lime": 0.1355, "lime-g": 0.1171}
    t3 |= {"mp2": 0.1530, "mp2-g": 0.1311, "fido-ca": 0.1638}
    t4 = {"sp": 0.3774, "sp-g": 0.3122, "lime": 0.1191, "lime-g": 0.1159}
    t4 |= {"mp2": 0.0890, "mp2-g": 0.0540, "fido-ca": 0.1071}
    pairs = [
        ("sp-g", "sp", "better"),
        ("lime-g", "lime", "better"),
        ("mp2-g", "mp2", "better"),
        ("mp2-g", "fido-ca", "better"),
    ]
    out = [
        Claim(
            "001", "Table 3", "seed001", "deletion_rise", a, b, f"{t3[a]:.4f} vs {t3[b]:.4f}", rel
        )
        for a, b, rel in pairs
    ]
    t4_pairs = [*pairs[:1], ("lime-g", "lime", "on par"), *pairs[2:]]
    for kind, metric in (("value", "saliency_metric"), ("alpha_star", "saliency_metric@alpha*")):
        for a, b, rel in t4_pairs:
            out.append(
                Claim(
                    "001",
                    "Table 4",
                    "seed001",
                    metric,
                    a,
                    b,
                    f"{t4[a]:.4f} vs {t4[b]:.4f}",
                    rel,
                    kind=kind,
                )
            )
    return out


def _seed003() -> list[Claim]:
    out = []
    lines = [
        ("seed003-gradcam-16px", "cwox-gradcam", "gradcam", 16),
        ("seed003-rise-16px", "cwox-rise", "rise", 16),
        ("seed003-gradcam-256px", "cwox-gradcam", "gradcam", 256),
    ]
    for store, a, b, px in lines:
        for metric in ("cauc", "cdrop"):
            for level in ("cluster", "class"):
                out.append(
                    Claim(
                        "003",
                        f"CWOX evaluation, {px} px/step",
                        store,
                        f"{metric}[pixels_per_step={px}]",
                        a,
                        b,
                        "no number in the seed's text",
                        kind="contrastive",
                        level=level,
                    )
                )
    return out


def _seed000() -> list[Claim]:
    out = []
    rivals = ["waveletx", "pixelmask", *(f"smoothmask[areas=[{a}]]" for a in (0.05, 0.1, 0.2))]
    for store, source in (("seed000", "Figure 4"), ("seed000-earlier", "Figure 4, earlier run")):
        out += [
            Claim("000", source, store, "hallucination_score", "shearletx", b, "scatter")
            for b in ("pixelmask", "waveletx")
        ]
        for metric in ("cp_l1", "cp_entropy"):
            out += [Claim("000", source, store, metric, "shearletx", b, "scatter") for b in rivals]
    return out


#: The earlier Figure 4 run of docs/shearletx.md (8 images, the settings of
#: seed000-figure4.toml; SmoothMask rows of 6 images from before the issue-19 fix of extremal).
EARLIER_FIGURE4 = "docs/shearletx/figure4_lite0.csv"


class CsvValues:
    """The rows of a ``unmask figure4`` CSV read as a store's :meth:`~Store.files` and
    :meth:`~Store.values` (method ``smoothmask-0.1`` as the bench's ``smoothmask[areas=[0.1]]``,
    ``hs`` as ``hallucination_score``)."""

    def __init__(self, path: Path) -> None:
        with path.open(encoding="utf-8") as fh:
            self.rows = list(csv.DictReader(fh))

    def files(self) -> list[str]:
        return list(dict.fromkeys(r["image"] for r in self.rows))

    def values(self, metric: str) -> dict[tuple[str, str], float]:
        column = "hs" if metric == "hallucination_score" else metric
        out = {}
        for r in self.rows:
            run = re.sub(r"^smoothmask-(.*)$", r"smoothmask[areas=[\1]]", r["method"])
            if r.get(column) not in (None, ""):
                out[(r["image"], run)] = float(r[column])
        return out


CLAIMS: list[Claim] = [*_seed001(), *_seed003(), *_seed000()]


# ------------------------------------------------------------------------------- the numbers
def _finite(v: Any) -> bool:
    return v is not None and math.isfinite(v)


def _value_pairs(
    store: Store | CsvValues, claim: Claim
) -> tuple[list[float], list[float], dict[str, Any]]:
    values = store.values(claim.metric)
    a, b = [], []
    for f in store.files():
        va, vb = values.get((f, claim.a)), values.get((f, claim.b))
        if _finite(va) and _finite(vb):
            a.append(float(va))  # type: ignore[arg-type]
            b.append(float(vb))  # type: ignore[arg-type]
    return a, b, {}


def _alpha_label(alpha: float) -> str:
    return "saliency_metric" if alpha == 0.5 else f"saliency_metric[alpha={alpha}]"


def _alpha_star_pairs(
    store: Store, claim: Claim
) -> tuple[list[float], list[float], dict[str, Any]]:
    files = store.files()
    select, test = files[0::2], files[1::2]
    by_alpha = {al: store.values(_alpha_label(al)) for al in _SM_ALPHAS}
    star: dict[str, float] = {}
    for run in (claim.a, claim.b):
        means = {}
        for al, vals in by_alpha.items():
            v = [vals[(f, run)] for f in select if _finite(vals.get((f, run)))]
            if v:
                means[al] = float(np.mean(v))
        if not means:
            return [], [], {}
        star[run] = min(means, key=lambda al: (means[al], al))
    a, b = [], []
    for f in test:
        va = by_alpha[star[claim.a]].get((f, claim.a))
        vb = by_alpha[star[claim.b]].get((f, claim.b))
        if _finite(va) and _finite(vb):
            a.append(float(va))  # type: ignore[arg-type]
            b.append(float(vb))  # type: ignore[arg-type]
    return a, b, {"alpha_star": f"{claim.a} {star[claim.a]:g}, {claim.b} {star[claim.b]:g}"}


def _contrastive_pairs(
    store: Store, claim: Claim, higher: bool
) -> tuple[list[float], list[float], dict[str, Any]]:
    per_run = contrastive_pairs(store, claim.metric)
    ra, rb = per_run.get(claim.a, {}), per_run.get(claim.b, {})
    per_file: dict[str, list[tuple[float, float]]] = {}
    for k, (va, _, zero_a) in ra.items():
        if k[1] != claim.level or k not in rb:
            continue
        vb, _, zero_b = rb[k]
        if zero_a or zero_b or not (_finite(va) and _finite(vb)):
            continue
        per_file.setdefault(k[0], []).append((float(va), float(vb)))
    a, b, better, scored = [], [], 0, 0
    for f in store.files():
        if f not in per_file:
            continue
        pa, pb = zip(*per_file[f], strict=True)
        a.append(float(np.mean(pa)))
        b.append(float(np.mean(pb)))
        scored += len(pa)
        better += sum((x > y) if higher else (x < y) for x, y in per_file[f])
    left_out = sum(1 for k in ra if k[1] == claim.level) - scored
    return a, b, {"pairs": scored, "pair_wins": better, "pairs_left_out": left_out}


def claim_values(
    store: Store | CsvValues, claim: Claim, higher: bool
) -> tuple[list[float], list[float], dict[str, Any]]:
    """The paired values (a, b) of ``claim`` in ``store``, one per image, in the data set's
    order, and extra columns (pair counts, alpha*)."""
    if claim.kind != "value" and not isinstance(store, Store):
        raise TypeError(f"claim {claim.text!r}: a {claim.kind} claim needs a bench store")
    if claim.kind == "contrastive":
        return _contrastive_pairs(store, claim, higher)
    if claim.kind == "alpha_star":
        return _alpha_star_pairs(store, claim)
    return _value_pairs(store, claim)


def verdict(p: Paired, relation: str = "better", margin: float = ON_PAR_MARGIN) -> str:
    """The rule of the page: ``supported`` / ``not supported`` / ``inconclusive``.

    ``better``: supported when the bootstrap interval of the mean difference lies above 0 (the
    paper's side) **and** the sign test gives p < 0.05 with more wins than losses; not
    supported when the evidence is against the claim only (the interval below 0, or p < 0.05
    with more losses); inconclusive otherwise, and always below :data:`MIN_PAIRS` pairs.
    ``on par``: supported when the interval lies within +- ``margin``, not supported when it
    excludes 0, inconclusive otherwise.

    Example:
        >>> from unmask.bench.statistics import paired_comparison
        >>> verdict(paired_comparison([1.0] * 8, [2.0] * 8, higher_is_better=False))
        'supported'
    """
    if p.n < MIN_PAIRS:
        return "inconclusive"
    lo, hi = p.ci95
    if relation == "on par":
        if -margin < lo and hi < margin:
            return "supported"
        return "not supported" if lo > 0 or hi < 0 else "inconclusive"
    if relation != "better":
        raise ValueError(f"relation: expected 'better' or 'on par', got {relation!r}")
    signif = p.p_sign < 0.05
    favour = [lo > 0, signif and p.wins > p.losses]
    against = [hi < 0, signif and p.losses > p.wins]
    if all(favour):
        return "supported"
    if any(against) and not any(favour):
        return "not supported"
    return "inconclusive"


def _metric_name(claim: Claim) -> str:
    if claim.kind == "alpha_star":
        return "saliency_metric"
    return claim.metric.split("[", 1)[0]


def evaluate(
    claims: Iterable[Claim],
    open_store: Callable[[str], Store | CsvValues | None],
    resamples: int = 1000,
) -> list[dict[str, Any]]:
    """One row per claim: the paper's number, ours, the paired comparison and the verdict."""
    rows = []
    cache: dict[str, Store | CsvValues | None] = {}
    for c in claims:
        if c.store not in cache:
            cache[c.store] = open_store(c.store)
        store = cache[c.store]
        higher = direction(_metric_name(c))
        if higher is None:
            raise ValueError(f"metric {c.metric!r}: its direction is not declared")
        a, b, extra = claim_values(store, c, higher) if store is not None else ([], [], {})
        p = paired_comparison(a, b, higher, resamples=resamples)
        rows.append(
            {
                "seed": c.seed,
                "source": c.source,
                "claim": c.text,
                "store": c.store,
                "metric": c.metric,
                "higher_is_better": higher,
                "a": c.a,
                "b": c.b,
                "relation": c.relation,
                "level": c.level or "",
                "paper": c.paper,
                "n": p.n,
                "mean_a": p.mean_a,
                "mean_b": p.mean_b,
                "median_a": p.median_a,
                "median_b": p.median_b,
                "wins": p.wins,
                "losses": p.losses,
                "ties": p.ties,
                "p_sign": p.p_sign,
                "mean_diff": p.mean_diff,
                "ci_lo": p.ci95[0],
                "ci_hi": p.ci95[1],
                "verdict": "not run" if p.n == 0 else verdict(p, c.relation),
                "pairs": extra.get("pairs", ""),
                "pair_wins": extra.get("pair_wins", ""),
                "pairs_left_out": extra.get("pairs_left_out", ""),
                "alpha_star": extra.get("alpha_star", ""),
                "note": c.note,
            }
        )
    return rows


# ---------------------------------------------------------------------------- seed 004
SEED004 = ["deletion", "insertion", "dc", "ic", "ad", "iic", "add"]
SEED001_METRICS = ["deletion_rise", "saliency_metric"]


def complete_files(store: Store, metrics: Sequence[str]) -> list[str]:
    """The images on which every method run has a finite value of every metric."""
    runs = [m["label"] for m in store.config["methods"]]
    values = {m: store.values(m) for m in metrics}
    return [
        f
        for f in store.files()
        if all(_finite(values[m].get((f, r))) for m in metrics for r in runs)
    ]


def metric_ranking(store: Store, metrics: Sequence[str]) -> dict[str, Any]:
    """Seed 004's metrics (and seed 001's) on the same maps: per metric and method run the mean
    over the images every run has, its rank (:func:`unmask.bench.statistics.summarise`), and
    the Spearman correlation between the metrics' orderings of the methods (oriented: +1 = the
    same best-to-worst order)."""
    files = complete_files(store, metrics)
    summary = summarise(store, files=files) if files else {}
    runs = [m["label"] for m in store.config["methods"]]
    table = {m: summary[m]["methods"] for m in metrics if m in summary}
    scores = {}
    for m, per_run in table.items():
        sign = 1.0 if summary[m]["higher_is_better"] else -1.0
        scores[m] = np.array([sign * per_run[r]["mean"] for r in runs])
    names = list(scores)
    corr = {(x, y): float(_spearman(scores[x], scores[y])) for x in names for y in names}
    return {"files": files, "runs": runs, "table": table, "spearman": corr}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    import torch

    from unmask.numerics import spearman_rows

    return float(spearman_rows(torch.from_numpy(x)[None], torch.from_numpy(y)[None])[0])


# ------------------------------------------------------------------------------- output
def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        if not rows:
            return
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def store_rows(stores: dict[str, Store | None]) -> list[dict[str, Any]]:
    """Per store and method run: images done / failed / of the data set, seconds per unit."""
    out = []
    for spec in STORES:
        st = stores.get(spec.name)
        if st is None:
            out.append({"store": spec.name, "run": "", "done": 0, "failed": 0, "images": 0})
            continue
        secs: dict[str, list[float]] = {}
        for u in st.units():
            if u["status"] == "done" and u["seconds"] is not None:
                secs.setdefault(u["run"], []).append(u["seconds"])
        for run, s in st.status().items():
            t = secs.get(run, [])
            out.append(
                {
                    "store": spec.name,
                    "run": run,
                    "done": s["done"],
                    "failed": s["failed"],
                    "images": len(st.files()),
                    "median_seconds": float(np.median(t)) if t else math.nan,
                }
            )
    return out


def _header(path: Path) -> str:
    """The comment block at the top of a config: what differs from the paper and why."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(f"> {x}" if x else ">" for x in lines)


def _claims_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| claim | paper (a vs b) | ours: mean a vs b | median a vs b | n | wins / losses / ties "
        "| sign p | mean diff [95 % CI] | verdict |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    body = []
    for r in rows:
        extra = []
        if r["pairs"] != "":
            extra.append(f"pairs {r['pair_wins']} / {r['pairs']} won")
        if r["alpha_star"]:
            extra.append(f"α* {r['alpha_star']}")
        claim = r["claim"] + (f" ({'; '.join(extra)})" if extra else "")
        body.append(
            f"| {claim} | {r['paper']} | {_fmt(r['mean_a'])} vs {_fmt(r['mean_b'])} "
            f"| {_fmt(r['median_a'])} vs {_fmt(r['median_b'])} | {r['n']} "
            f"| {r['wins']} / {r['losses']} / {r['ties']} | {_fmt(r['p_sign'], 3)} "
            f"| {_fmt(r['mean_diff'])} [{_fmt(r['ci_lo'])}, {_fmt(r['ci_hi'])}] "
            f"| **{r['verdict']}** |"
        )
    return head + "\n".join(body) + "\n"


def _ranking_md(rank: dict[str, Any]) -> str:
    if not rank["table"]:
        return "No image has every metric of every method yet.\n"
    metrics = list(rank["table"])
    head = "| method | " + " | ".join(metrics) + " | mean rank |\n"
    head += "|---|" + "---|" * (len(metrics) + 1) + "\n"
    body = []
    for run in rank["runs"]:
        cells, ranks = [], []
        for m in metrics:
            t = rank["table"][m].get(run)
            if t is None:
                cells.append("–")
                continue
            ranks.append(t["rank"])
            cells.append(f"{_fmt(t['mean'], 3)} ({t['rank']})")
        mean_rank = _fmt(float(np.mean(ranks)), 2) if ranks else "–"
        body.append(f"| {run} | " + " | ".join(cells) + f" | {mean_rank} |")
    corr = "| | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
    for x in metrics:
        corr += (
            f"| {x} | " + " | ".join(_fmt(rank["spearman"][(x, y)], 2) for y in metrics) + " |\n"
        )
    return head + "\n".join(body) + "\n\n" + corr


def _verdict_counts(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def write_page(
    path: Path,
    rows: list[dict[str, Any]],
    rank: dict[str, Any],
    runs: list[dict[str, Any]],
    when: str,
) -> None:
    """docs/reproductions.md from the rows (the text around the tables lives here)."""
    by = lambda pred: [r for r in rows if pred(r)]  # noqa: E731
    t3 = by(lambda r: r["source"] == "Table 3")
    t4 = by(lambda r: r["source"] == "Table 4" and r["metric"] == "saliency_metric")
    t4s = by(lambda r: r["source"] == "Table 4" and r["metric"] != "saliency_metric")
    s3 = by(lambda r: r["seed"] == "003")
    s0 = by(lambda r: r["seed"] == "000")
    run_md = "| store | method run | images done | failed | of | median s per unit |\n"
    run_md += "|---|---|---|---|---|---|\n" + "\n".join(
        f"| {r['store']} | {r['run']} | {r['done']} | {r['failed']} | {r['images']} "
        f"| {_fmt(r.get('median_seconds', math.nan), 3)} |"
        for r in runs
    )
    cost_md = (
        "| store | evaluations per image | paper's settings | config with the paper's settings |\n"
    )
    cost_md += "|---|---|---|---|\n"
    for spec in STORES:
        ours, unknown = plan_cost(spec.config)
        paper, unknown_p = plan_cost(spec.paper)
        plus = lambda u: f" + {', '.join(u)}" if u else ""  # noqa: E731
        cost_md += (
            f"| {spec.name} | {ours:,}{plus(unknown)} | {paper:,}{plus(unknown_p)} "
            f"| `{spec.paper}` |\n"
        )
    configs = "\n\n".join(
        f"**{s.name}** (`{s.config}`, store `/work/repro/{s.file}`):\n\n"
        f"    {s.command}\n\n{_header(s.config_path)}"
        for s in STORES
    )
    text = f"""# The seeds' claims, measured on the shared ImageNet samples

Every directional claim of the seed papers that unmask can test, measured with the bench
presets (or a reduced copy of one, stated) on the 100 ImageNet photos of
`/work/shared/data/imagenet-samples` with EfficientNet-Lite0, one resumable SQLite store per
study. This page and the CSVs in
[benchmarks/results/reproductions/](../benchmarks/results/reproductions/) are written by
`python benchmarks/reproductions.py` from the stores (generated {when}); **n** is the number of
images each comparison rests on, which is what the stores held then, not 100 for most claims: the
machine budget (2 cores shared with other jobs, about an hour of computing in one evening, one
torch thread per store, a fifth of a core each at load 7-11) did not fit the papers' settings
on 100 images, nor most reduced ones.
The commands below extend every store to all 100 images (a rerun resumes where it stopped).

Verdicts so far: {_verdict_counts(rows)}.

## How a claim is judged

Each claim says that method run **a** is better than **b** on a metric (or on par). Per image
(the unit of resampling) the paired difference is oriented so that a positive value favours
a (b − a for metrics where lower is better). Reported: the paper's number, our mean and median
of a and b on the images both have, n, a's wins / losses / ties, the two-sided exact sign test
(ties left out), and the 95 % percentile-bootstrap interval of the mean difference (1000
resamples of images, seed 0; `unmask.bench.statistics.paired_comparison`). The verdict:

- **supported**: the interval lies above 0 *and* the sign test gives p < 0.05 with more wins
  than losses;
- **not supported**: the evidence goes against the claim only (the interval below 0, or
  p < 0.05 with more losses than wins);
- **inconclusive**: anything else, and always with fewer than {MIN_PAIRS} images (with 5, even
  5 wins of 5 give p = 0.0625);
- an **on par** claim is supported when the whole interval lies within ±{ON_PAR_MARGIN} (the
  smallest difference Table 4 calls an improvement), not supported when it excludes 0.

Contrastive claims (seed 003) are paired per image too: the mean over the image's cluster (or
class) pairs that both maps scored (a map zero everywhere has no salient pixel and is left out,
as in the bench report); the pair-level count the original reports ("pairs won") is given
beside it. Pairs within an image share the image, so the image, not the pair, is resampled.

## Seed 001: generative removal (Agarwal & Nguyen 2020)

Table 3, deletion (the RISE code's: 224·8 pixels per step, zero substrate; lower is better):

{_claims_table(t3)}
Table 4, saliency metric (lower is better), at α = 0.5 for every method (no held-out set to
choose α* per method as the paper does):

{_claims_table(t4)}
The same with each method's own α* ∈ {{0.1, 0.3, 0.5, 0.7, 0.9}}, chosen by the mean on the
even-numbered images and compared on the odd-numbered ones (so n is about half):

{_claims_table(t4s)}
## Seed 003: contrastive faithfulness of CWOX-2s

CAUC (lower is better) and CDROP (higher is better) of CWOX-2s against the plain map of its
base explainer, per pair level; the first two blocks at the original's 16 pixels per step, the
last one at the preset's 256 (a cheaper curve, on more images):

{_claims_table(s3)}
## Seed 000: Figure 4 of ShearletX

Hallucination score (lower is better) and CP scores (higher is better) of ShearletX against
WaveletX, PixelMask and SmoothMask (areas 0.05 / 0.1 / 0.2). The paper draws a scatter (no
table): ShearletX has a low HS and the highest CP scores, PixelMask and WaveletX hallucinate
edges, smooth masks have low CP scores.

{_claims_table(s0)}
The "earlier run" rows are the Figure 4 run of [shearletx.md](shearletx.md#the-run) read from
its CSV (`{EARLIER_FIGURE4}`: the first 8 images, the same settings as `seed000-figure4.toml`,
an earlier commit; the SmoothMask rows of 6 of its 8 images predate the issue-19 fix of
`extremal`). They are not in the store and overlap its first images.

## Seed 004: how the metrics rank the same maps

The saliency_maps_metrics suite (DAUC = `deletion`, IAUC = `insertion`, DC, IC, AD, IIC, ADD;
the package's settings, as the preset `saliency-maps-metrics`) and seed 001's two metrics on
the maps of seed 001's {len(rank["runs"])} method runs, over the {len(rank["files"])} images where
every run has every metric: the mean and, in brackets, the rank (1 = best by the metric's own
direction). Seed 004 makes no directional claim; the point is whether the metrics agree.

{_ranking_md(rank)}
The second table is the Spearman correlation between two metrics' orderings of the
methods (oriented so that +1 means the same best-to-worst order).

## Settings, stores and the commands that extend them

What a store costs per image in model evaluations (the registry's cost declarations; upper
bounds where a method stops early, a forward + backward counted once though it costs about
three forwards; CWOX-2s's cost depends on the image's clusters and is not declared), against
the same study at the paper's settings (for seed 001 the whole preset `generative`, which also
runs MP, FIDO with blur, a second SP patch size and second LIME seeds):

{cost_md}
Each config's header says what differs from the paper and why:

{configs}

Progress when this page was written (the median seconds of a unit, one torch thread, on the
shared 2-core machine with other jobs running; a unit's time includes any pause of the run):

{run_md}

CSV: `claims.csv` (every column of the tables above), `seed004-ranking.csv`, `stores.csv`.
"""
    path.write_text(text, encoding="utf-8")


def _open(directory: Path) -> Callable[[str], Store | CsvValues | None]:
    files = {s.name: directory / s.file for s in STORES}

    def open_store(name: str) -> Store | CsvValues | None:
        if name == "seed000-earlier":
            return CsvValues(ROOT / EARLIER_FIGURE4)
        p = files[name]
        return Store.open(p) if p.exists() else None

    return open_store


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stores", type=Path, default=Path("/work/repro"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reproductions")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs/reproductions.md")
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args(argv)
    import time

    open_store = _open(args.stores)
    stores: dict[str, Store | None] = {}
    for spec in STORES:
        st = open_store(spec.name)
        stores[spec.name] = st if isinstance(st, Store) else None
    rows = evaluate(
        CLAIMS, lambda name: stores[name] if name in stores else open_store(name), args.resamples
    )
    seed001 = stores["seed001"]
    rank = (
        metric_ranking(seed001, [*SEED004, *SEED001_METRICS])
        if seed001 is not None
        else {"files": [], "runs": [], "table": {}, "spearman": {}}
    )
    runs = store_rows(stores)
    write_csv(args.out / "claims.csv", rows)
    write_csv(
        args.out / "seed004-ranking.csv",
        [
            {"metric": m, "run": r, "n": t["n"], "mean": t["mean"], "rank": t["rank"]}
            for m, per in rank["table"].items()
            for r, t in per.items()
        ],
    )
    write_csv(args.out / "stores.csv", runs)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write_page(args.doc, rows, rank, runs, when)
    for r in rows:
        print(f"{r['verdict']:>13}  n={r['n']:<3} {r['seed']} {r['source']}: {r['claim']}")
    print(f"wrote {args.out}/claims.csv, seed004-ranking.csv, stores.csv and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
