"""The plots of a benchmark report, as inline base64 PNGs (matplotlib's Agg backend): mean
deletion / insertion curves, localisation error vs alpha, CP vs hallucination score, robustness
bars and a grid of example maps per method.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .store import Store, decode_map

__all__ = ["curve_plots", "alpha_plot", "cp_hs_plot", "robustness_plot", "example_grid"]


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


def curve_plots(store: Store, runs: list[str]) -> list[tuple[str, str]]:
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


def alpha_plot(store: Store, runs: list[str]) -> list[tuple[str, str]]:
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


def cp_hs_plot(store: Store, runs: list[str]) -> list[tuple[str, str]]:
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


def robustness_plot(robust: dict[str, dict[str, dict[str, float]]]) -> list[tuple[str, str]]:
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


def example_grid(store: Store, runs: list[str], examples: int) -> list[tuple[str, str]]:
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
