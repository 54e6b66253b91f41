"""The report of a benchmark store: one self-contained HTML page, plus CSV and JSON.

:func:`write_report` reads a store (never writes it) and writes into ``out``:

* ``index.html``: no network needed to view it (plots are inline base64 PNGs, styles inline):
  the run (config, sessions with versions / commit / machine, done / failed / pending), per
  metric a table of methods with mean ± std, a bootstrap 95 % interval of the mean over images
  and n, the best highlighted, the map each metric read; a rank table across metrics; plots:
  mean deletion / insertion curves, CP vs hallucination score, robustness bars (similarity of
  the maps of one method's runs across seeds / settings), localisation error vs alpha, a grid
  of example maps per method.
* ``results.csv``: every metric row (file, run, metric, value, map, status, error).
* ``results.json``: the config, the sessions, the summary tables and every row.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .store import Store, decode_map

__all__ = ["write_report", "summarise", "bootstrap_ci", "robustness_scores", "contrastive_summary"]


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


def _higher(metric: str) -> bool | None:
    """The registry's direction of ``metric``; None when it declares none (or is unknown):
    such a metric is reported but never ranked."""
    from ..registry import METRICS

    try:
        higher = getattr(METRICS.get(metric).factory, "higher_is_better", None)
    except ValueError:
        return None
    return higher if isinstance(higher, bool) else None


def _direction(higher: bool | None) -> str:
    if higher is None:
        return "direction unknown: not ranked"
    return "higher is better" if higher else "lower is better"


def summarise(store: Store, resamples: int = 1000) -> dict[str, Any]:
    """Per metric and method run: n, mean, std, bootstrap 95 % interval, map read, rank."""
    config = store.config
    runs = [m["label"] for m in config["methods"]]
    metrics = [m for m in config["metrics"] if m["label"] in {r["metric"] for r in store.results()}]
    rows = [r for r in store.results() if r["status"] == "done" and r["value"] is not None]
    out: dict[str, Any] = {}
    for m in metrics:
        higher = _higher(m["metric"])
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
        higher = _higher(metric)
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
def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve_plots(store: Store, runs: list[str]) -> list[tuple[str, str]]:
    plt = _plt()
    out = []
    rows = [
        r for r in store.results() if r["status"] == "done" and r["data"] and "scores" in r["data"]
    ]
    # metrics that read the same curve (deletion and dc, insertion and ic) share one plot
    curves: dict[str, list[str]] = {}
    for label in dict.fromkeys(r["metric"] for r in rows):
        sig = json.dumps(
            sorted((r["file"], r["run"], r["data"]["scores"]) for r in rows if r["metric"] == label)
        )
        curves.setdefault(sig, []).append(label)
    for labels in curves.values():
        label = labels[0]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for run in runs:
            sel = [r["data"] for r in rows if r["metric"] == label and r["run"] == run]
            if not sel:
                continue
            n = min(len(d["scores"]) for d in sel)
            mean = np.mean([d["scores"][:n] for d in sel], axis=0)
            ax.plot(sel[0]["fractions"][:n], mean, label=f"{run} (n={len(sel)})")
        ax.set_xlabel("fraction of pixels changed")
        ax.set_ylabel("target score (mean over images)")
        ax.set_title(f"mean curve: {', '.join(labels)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        out.append((f"Mean curve of {' and '.join(labels)}", _png(fig)))
    return out


def _alpha_plot(store: Store, runs: list[str]) -> list[tuple[str, str]]:
    plt = _plt()
    rows = [
        r for r in store.results() if r["status"] == "done" and r["data"] and "alphas" in r["data"]
    ]
    out = []
    for label in dict.fromkeys(r["metric"] for r in rows):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for run in runs:
            sel = [r["data"] for r in rows if r["metric"] == label and r["run"] == run]
            if sel:
                ax.plot(
                    sel[0]["alphas"],
                    np.mean([d["errors"] for d in sel], axis=0),
                    marker=".",
                    label=f"{run} (n={len(sel)})",
                )
        ax.set_xlabel("alpha (threshold = alpha * max)")
        ax.set_ylabel("localisation error")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{label} vs alpha")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        out.append((f"{label} vs alpha", _png(fig)))
    return out


def _cp_hs_plot(store: Store, runs: list[str]) -> list[tuple[str, str]]:
    config = store.config
    cps = [m["label"] for m in config["metrics"] if m["metric"].startswith("cp_")]
    hss = [m["label"] for m in config["metrics"] if m["metric"] == "hallucination_score"]
    if not cps or not hss:
        return []
    plt = _plt()
    values = {
        (r["file"], r["run"], r["metric"]): r["value"]
        for r in store.results()
        if r["status"] == "done" and r["value"] is not None
    }
    out = []
    for cp in cps:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for run in runs:
            pts = [
                (values[(f, run, hss[0])], values[(f, run, cp)])
                for f in store.files()
                if (f, run, hss[0]) in values and (f, run, cp) in values
            ]
            pts = [(max(h, 1e-4), c) for h, c in pts if c > 0]
            if pts:
                ax.scatter(*zip(*pts, strict=True), label=run, s=18, alpha=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"{hss[0]} (0 drawn at 1e-4)")
        ax.set_ylabel(cp)
        ax.set_title(f"{cp} vs {hss[0]}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        out.append((f"{cp} vs {hss[0]}", _png(fig)))
    return out


def _robustness_plot(robust: dict[str, dict[str, dict[str, float]]]) -> list[tuple[str, str]]:
    plt = _plt()
    out = []
    for label, groups in robust.items():
        if not groups:
            continue
        fig, ax = plt.subplots(figsize=(5, 3))
        names = list(groups)
        ax.bar(names, [groups[n]["mean"] for n in names], color="tab:blue")
        ax.set_ylabel(f"mean pairwise {label}")
        ax.set_title(f"robustness: {label} across each method's runs")
        ax.tick_params(axis="x", labelrotation=30)
        out.append((f"Robustness ({label})", _png(fig)))
    return out


def _example_grid(store: Store, runs: list[str], examples: int) -> list[tuple[str, str]]:
    plt = _plt()
    units = {(u["file"], u["run"]): u for u in store.units(with_maps=True) if u["status"] == "done"}
    files = [f for f in store.files() if any((f, r) in units for r in runs)][:examples]
    if not files:
        return []
    data_path = Path(store.config["data"]["path"])
    fit = store.config["model"].get("fit", "crop")
    cols = 1 + len(runs)
    fig, axes = plt.subplots(
        len(files), cols, figsize=(1.6 * cols, 1.7 * len(files)), squeeze=False
    )
    for i, file in enumerate(files):
        any_unit = next(units[(file, r)] for r in runs if (file, r) in units)
        h = json.loads(any_unit["shape"])[-2]
        ax = axes[i, 0]
        try:
            from ..images import load_image

            ax.imshow(load_image(data_path / file, size=h, mode=fit)[0].permute(1, 2, 0).numpy())
        except Exception:  # the data folder moved: maps only
            ax.text(0.5, 0.5, "image\nunavailable", ha="center", va="center", fontsize=7)
        ax.set_ylabel(file, fontsize=6)
        if i == 0:
            ax.set_title("image", fontsize=7)
        for j, run in enumerate(runs, start=1):
            ax = axes[i, j]
            if (file, run) in units:
                u = units[(file, run)]
                ax.imshow(decode_map(u["saliency"], u["shape"]), cmap="jet")
            if i == 0:
                ax.set_title(run, fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return [("Example saliency maps (rows: images; columns: method runs)", _png(fig))]


# ----------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
tr.best td{background:#d9f2d9;font-weight:600}
figure{display:inline-block;margin:6px}
figcaption{font-size:12px;color:#555}
code{background:#f4f4f4;padding:1px 4px}
"""


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.4g}"


def _table(
    head: list[str], rows: list[list[str]], best: list[bool] | None = None, cls: str = ""
) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = []
    for i, row in enumerate(rows):
        attr = ' class="best"' if best and best[i] else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def write_report(
    run: str | Path, out: str | Path, examples: int = 4, bootstrap: int = 1000
) -> Path:
    """Write ``out/index.html``, ``out/results.csv`` and ``out/results.json`` for a store.

    Args:
        run: the store file.
        out: the output folder (created).
        examples: images in the example-map grid.
        bootstrap: bootstrap resamples of the 95 % intervals.

    Returns:
        The path of ``index.html``.
    """
    store = Store.open(run)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = store.config
    runs = [m["label"] for m in config["methods"]]
    summary = summarise(store, bootstrap)
    robust = robustness_scores(store)
    contrastive = contrastive_summary(store)
    status = store.status()
    rows = store.results()

    with (out / "results.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "run", "metric", "value", "map", "status", "error", "key"])
        for r in rows:
            w.writerow(
                [
                    r["file"],
                    r["run"],
                    r["metric"],
                    r["value"],
                    r["map"],
                    r["status"],
                    r["error"] or "",
                    r["key"],
                ]
            )
    sessions = store.sessions()
    failures = [
        {"file": u["file"], "run": u["run"], "error": u["error"]}
        for u in store.units()
        if u["status"] == "failed"
    ]
    failures += [
        {"file": r["file"], "run": r["run"], "metric": r["metric"], "error": r["error"]}
        for r in rows
        if r["status"] == "failed"
    ]
    (out / "results.json").write_text(
        json.dumps(
            {
                "config": config,
                "sessions": sessions,
                "status": status,
                "summary": summary,
                "robustness": robust,
                "contrastive": contrastive,
                "failures": failures,
                "rows": rows,
            },
            indent=1,
            default=str,
        )
    )

    parts = [f"<h1>Benchmark {html.escape(config['name'])}</h1>"]
    last = sessions[-1] if sessions else {}
    machine = json.loads(last.get("machine") or "{}")
    parts.append(
        f"<p>Model <code>{html.escape(config['model']['name'])}</code>, data "
        f"<code>{html.escape(config['data']['path'])}</code> ({len(store.files())} images), "
        f"{len(runs)} method runs, {len(summary)} metrics. Store "
        f"<code>{html.escape(str(run))}</code>, "
        f"{len(sessions)} session(s); last: unmask {html.escape(str(last.get('unmask')))}, torch "
        f"{html.escape(str(last.get('torch')))}, Python {html.escape(str(last.get('python')))}, "
        f"commit <code>{html.escape(str(last.get('git_commit')))}</code>, "
        f"executor {html.escape(str(last.get('executor')))}, "
        f"machine {html.escape(str(machine.get('node')))} ({machine.get('cpus')} CPUs).</p>"
    )
    parts.append(
        "<h2>Status</h2>"
        + _table(
            ["method run", "done", "failed", "pending"],
            [
                [html.escape(r), str(s["done"]), str(s["failed"]), str(s["pending"])]
                for r, s in status.items()
            ],
            cls="status",
        )
    )
    if failures:
        parts.append(
            "<details><summary>"
            + f"{len(failures)} failure(s)</summary><ul>"
            + "".join(
                f"<li>{html.escape(f['file'])} {html.escape(f['run'])} "
                f"{html.escape(f.get('metric', ''))}: "
                f"{html.escape(str(f['error']))}</li>"
                for f in failures[:50]
            )
            + "</ul></details>"
        )

    parts.append(
        "<h2>Metrics</h2><p>Mean ± std over images, bootstrap 95 % interval of the mean "
        f"({bootstrap} resamples), the best method highlighted. <i>map</i> is the map the "
        "metric read: <code>saliency</code> (the method's map), <code>relevance</code> "
        "(kept-energy map of explanation-image methods, see docs/bench.md) or "
        "<code>x_hat</code> (the explanation image).</p>"
    )
    for label, s in summary.items():
        arrow = _direction(s["higher_is_better"])
        order = sorted(s["methods"], key=lambda r: (s["methods"][r]["rank"] or 0, runs.index(r)))
        table_rows = [
            [
                html.escape(r),
                _fmt(s["methods"][r]["mean"]) + " ± " + _fmt(s["methods"][r]["std"]),
                f"[{_fmt(s['methods'][r]['ci95'][0])}, {_fmt(s['methods'][r]['ci95'][1])}]",
                str(s["methods"][r]["n"]),
                html.escape(s["methods"][r]["map"]),
                str(s["methods"][r]["rank"] or "—"),
            ]
            for r in order
        ]
        parts.append(
            f"<h3>{html.escape(label)} <small>({arrow})</small></h3>"
            + _table(
                ["method run", "mean ± std", "95 % CI", "n", "map", "rank"],
                table_rows,
                [r in s["best"] for r in order],
                cls="metric",
            )
        )
    ranked = {label: s for label, s in summary.items() if s["higher_is_better"] is not None}
    if ranked:
        mean_rank = {
            r: np.mean([s["methods"][r]["rank"] for s in ranked.values() if r in s["methods"]])
            for r in runs
            if any(r in s["methods"] for s in ranked.values())
        }
        order = sorted(mean_rank, key=lambda r: mean_rank[r])
        head = ["method run", *ranked, "mean rank"]
        table_rows = [
            [
                html.escape(r),
                *[
                    str(s["methods"][r]["rank"]) if r in s["methods"] else "—"
                    for s in ranked.values()
                ],
                f"{mean_rank[r]:.2f}",
            ]
            for r in order
        ]
        parts.append(
            "<h2>Ranks across metrics</h2>"
            + _table(
                head, table_rows, [mean_rank[r] == mean_rank[order[0]] for r in order], cls="ranks"
            )
        )
    if contrastive:
        parts.append(
            "<h2>Contrastive faithfulness</h2><p>Per (target C, competitors C′) pair of each "
            "image (seed 003): <i>cluster</i> pairs are a cluster of the image's top classes "
            "against its other top classes, <i>class</i> pairs a class against its cluster "
            "mates. CWOX-2s runs read their contrastive maps, other runs their plain map of C. "
            "Pairs whose map is zero everywhere (no salient pixel) are left out. The method "
            "tables above show the mean over images of each image's mean over its pairs.</p>"
        )
        for label, c in contrastive.items():
            arrow = _direction(c["higher_is_better"])
            parts.append(
                f"<h3>{html.escape(label)} per pair <small>({arrow})</small></h3>"
                + _table(
                    ["method run", "level", "pairs", "left out", "mean", "median", "median n_δ"],
                    [
                        [
                            html.escape(t["run"]),
                            t["level"],
                            str(t["pairs"]),
                            str(t["left_out"]),
                            _fmt(t["mean"]),
                            _fmt(t["median"]),
                            _fmt(t["median_n_delta"]),
                        ]
                        for t in c["table"]
                    ],
                    cls="contrastive",
                )
            )
            if c["paired"]:
                parts.append(
                    _table(
                        ["method run", "against", "level", "better on", "share"],
                        [
                            [
                                html.escape(p["run"]),
                                html.escape(p["against"]),
                                p["level"],
                                f"{p['better']} / {p['pairs']} pairs",
                                f"{p['better'] / p['pairs']:.0%}",
                            ]
                            for p in c["paired"]
                        ],
                        [p["better"] * 2 > p["pairs"] for p in c["paired"]],
                        cls="paired",
                    )
                )
    if any(robust.values()):
        parts.append(
            "<h2>Robustness</h2>"
            + _table(
                ["similarity", "method", "mean pairwise similarity", "images", "runs"],
                [
                    [html.escape(lab), html.escape(g), _fmt(v["mean"]), str(v["n"]), str(v["runs"])]
                    for lab, groups in robust.items()
                    for g, v in groups.items()
                ],
                cls="robustness",
            )
        )
    figures = (
        _curve_plots(store, runs)
        + _cp_hs_plot(store, runs)
        + _robustness_plot(robust)
        + _alpha_plot(store, runs)
        + _example_grid(store, runs, examples)
    )
    if figures:
        parts.append(
            "<h2>Plots</h2>"
            + "".join(
                f'<figure><img alt="{html.escape(cap)}" src="{src}"><figcaption>{html.escape(cap)}'
                "</figcaption></figure>"
                for cap, src in figures
            )
        )
    parts.append(
        '<p>Every number: <a href="results.csv">results.csv</a>, '
        '<a href="results.json">results.json</a>.</p>'
    )
    page = out / "index.html"
    page.write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>'
        f"unmask bench: {html.escape(config['name'])}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>",
        encoding="utf-8",
    )
    store.close()
    return page
