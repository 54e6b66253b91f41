"""The ShearletX Figure 4 study on the bench: the preset's config and the rows of its stores.

``unmask figure4`` runs the bench preset ``figure4`` (one store per model, configured by
:func:`bench_config`) and writes the study's CSV (:data:`unmask.studies.figure4.FIELDS`) from
the stores (:func:`rows_from_store`), so the bench resumes, records versions and machine, and
its report shows the same numbers as :func:`unmask.studies.figure4.run`.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..studies.figure4 import METHOD_ORDER
from .presets import preset_path
from .store import Store

__all__ = ["bench_config", "rows_from_store"]


def bench_config(
    model: str,
    images: str | Path,
    *,
    areas: Sequence[float] = (0.05, 0.1, 0.2),
    steps: int = 300,
    noise_bs: int = 16,
    smooth_steps: int = 800,
    methods: Sequence[str] = METHOD_ORDER,
    detector: str = "shearlet",
    seed: int = 0,
    size: int = 256,
    fit: str = "resize",
) -> dict[str, Any]:
    """The bench preset ``figure4`` with these settings (a config for
    :func:`unmask.bench.parse_plan`), for the model ``model`` (a load_model name or
    ``"module:function"``) on the image folder ``images``.

    Example:
        >>> cfg = bench_config("efficientnet_lite0", ".", steps=10, methods=["pixelmask"])
        >>> [m["method"] for m in cfg["methods"]], cfg["methods"][0]["params"]["steps"]
        (['pixelmask'], 10)
    """
    unknown = sorted(set(methods) - set(METHOD_ORDER))
    if unknown:
        raise ValueError(
            f"methods: unknown {unknown}; expected a subset of {', '.join(METHOD_ORDER)}"
        )
    config = tomllib.loads(preset_path("figure4").read_text(encoding="utf-8"))
    config["model"] = {**config["model"], "name": model, "size": size, "fit": fit}
    config["data"] = {**config["data"], "path": str(images)}
    kept = []
    for entry in config["methods"]:
        name = entry["method"]
        if name not in methods:
            continue
        if name == "smoothmask":
            entry["sweep"] = {"areas": [[float(a)] for a in areas]}
            entry["params"] = {**entry.get("params", {}), "steps": smooth_steps}
        else:
            entry["params"] = {**entry.get("params", {}), "steps": steps, "noise_bs": noise_bs}
            entry["seeds"] = [seed]
        kept.append(entry)
    config["methods"] = kept
    for entry in config["metrics"]:
        if entry["metric"] == "hallucination_score" and detector != "shearlet":
            entry["params"] = {**entry.get("params", {}), "detector": detector}
    return config


def rows_from_store(path: str | Path, model: str | None = None) -> list[dict[str, Any]]:
    """The Figure 4 rows (:data:`FIELDS`) of a bench store of the ``figure4`` preset: one per
    done unit with its CP scores, HS and retained probabilities (``model`` names the rows;
    default the config's model)."""
    store = Store.open(path)
    try:
        config = store.config
        labels = {m["label"]: m for m in config["metrics"]}
        results: dict[tuple[str, str], dict[str, Any]] = {}
        for r in store.results():
            if r["status"] == "done" and r["metric"] in labels:
                results.setdefault((r["file"], r["run"]), {})[r["metric"]] = r
        rows = []
        for u in store.units():
            if u["status"] != "done":
                continue
            spec = json.loads(u["spec"])
            by = results.get((u["file"], u["run"]), {})

            def pick(metric: str, scale: str | None = None, by: dict = by) -> dict[str, Any] | None:
                for label, r in by.items():
                    m = labels[label]
                    scaled = m["params"].get("scale", "none")
                    if m["metric"] == metric and scaled == (scale or "none"):
                        return r
                return None

            def value(metric: str) -> float:
                r = pick(metric)
                return math.nan if r is None or r["value"] is None else float(r["value"])

            kept, kept_max = pick("retained_probability"), pick("retained_probability", "max")
            if spec["method"] == "extremal":
                method, n_steps, n_noise = f"smoothmask-{spec['areas'][0]:g}", spec["steps"], 0
            else:
                method, n_steps, n_noise = spec["method"], spec.get("steps"), spec.get("noise_bs")
            rows.append(
                {
                    "model": model or config["model"]["name"],
                    "image": u["file"],
                    "method": method,
                    "target": json.loads(u["target"]),
                    "p": kept["data"]["p"] if kept else math.nan,
                    "p_hat": kept["data"]["p_hat"] if kept else math.nan,
                    "p_hat_max": kept_max["data"]["p_hat"] if kept_max else math.nan,
                    "cp_l1_pixel": value("cp_l1_pixel"),
                    "cp_l1": value("cp_l1"),
                    "cp_entropy": value("cp_entropy"),
                    "hs": value("hallucination_score"),
                    "seconds": round(float(u["seconds"] or 0), 2),
                    "steps": n_steps,
                    "noise_bs": n_noise,
                    "size": config["model"].get("size"),
                }
            )
        return rows
    finally:
        store.close()
