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

import csv
import html
import json
import math
from pathlib import Path

import numpy as np

from .plots import alpha_plot, cp_hs_plot, curve_plots, example_grid, robustness_plot
from .statistics import FEW_IMAGES, contrastive_summary, robustness_scores, summarise
from .store import Store

__all__ = ["write_report"]


def _direction(higher: bool | None) -> str:
    if higher is None:
        return "direction unknown: not ranked"
    return "higher is better" if higher else "lower is better"


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
    if any(t["few_images"] for s in summary.values() for t in s["methods"].values()):
        parts.append(
            f"<p class='warn'>† the interval rests on fewer than {FEW_IMAGES} images: a "
            "bootstrap over so few values is not a reliable 95 % interval; run more images "
            "before reading it.</p>"
        )
    for label, s in summary.items():
        arrow = _direction(s["higher_is_better"])
        order = sorted(s["methods"], key=lambda r: (s["methods"][r]["rank"] or 0, runs.index(r)))
        table_rows = [
            [
                html.escape(r),
                _fmt(s["methods"][r]["mean"]) + " ± " + _fmt(s["methods"][r]["std"]),
                f"[{_fmt(s['methods'][r]['ci95'][0])}, {_fmt(s['methods'][r]['ci95'][1])}]"
                + (" †" if s["methods"][r]["few_images"] else ""),
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
        curve_plots(store, runs)
        + cp_hs_plot(store, runs)
        + robustness_plot(robust)
        + alpha_plot(store, runs)
        + example_grid(store, runs, examples)
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
