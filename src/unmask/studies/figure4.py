"""The Figure 4 study of Kolek et al. (CVPR 2023): CP scores against the hallucination score.

For every (model, image) pair: the target is the model's top-1 class on the image; ShearletX,
WaveletX, PixelMask (the paper's Figure 4 settings, ``steps`` / ``noise_bs`` adjustable) and
SmoothMask (Extremal Perturbations, one run per area) explain it; each explanation image x̂
gets CP-ℓ1 pixel, CP-ℓ1 (the method's own representation: shearlet / wavelet coefficients
m ⊙ T(x), pixels for pixel masks), CP-entropy (same coefficients) and the hallucination score.
The CSV also keeps ``p_hat`` (target probability on x̂, what the CP scores use) and
``p_hat_max``, the target probability on x̂ / max(x̂): the authors' script feeds the model the
max-normalised explanation image.
Every number is appended to a CSV as soon as it is computed, and pairs already in the CSV are
skipped, so an interrupted run resumes where it stopped. Scatter plots (one PNG per model:
CP-ℓ1 vs HS and CP-entropy vs HS, log axes, one point per image and method) and a Markdown
summary (``summary.md``: medians per method and per-image checks of the paper's claims, see
:func:`summarise`) are made from the CSV.

Each explanation is scored once: the CP scores reuse the explainer's own coefficients
(``Explanation.extras["coefficients"]``) and one scoring of x and of x̂
(:func:`unmask.metrics.cp.cp_scores`).

The pipeline takes any :class:`unmask.Classifier` and in-memory images (see :func:`run`). The
command line ``unmask figure4`` runs the bench preset ``figure4`` instead (one bench store per
model, :func:`unmask.bench.figure4.bench_config` applies its options) and writes the same CSV
from the stores (:func:`unmask.bench.figure4.rows_from_store`): the bench resumes, records
versions and machine, and its report (``unmask bench report``) shows the same numbers.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from .._checks import check_positive
from ..images import IMAGE_SUFFIXES
from ..metrics.cp import cp_scores, masked_image
from ..metrics.hallucination import hallucination_score
from ..models import Classifier
from ..registry import METHODS
from ..representations import make_representation
from ..scoring import Scorer

__all__ = [
    "run",
    "plot",
    "read_rows",
    "summarise",
    "FIELDS",
    "list_images",
    "METHOD_ORDER",
    "write_rows",
]

#: CSV columns.
FIELDS = (
    "model",
    "image",
    "method",
    "target",
    "p",
    "p_hat",
    "p_hat_max",
    "cp_l1_pixel",
    "cp_l1",
    "cp_entropy",
    "hs",
    "seconds",
    "steps",
    "noise_bs",
    "size",
)

METHOD_ORDER = ("shearletx", "waveletx", "pixelmask", "smoothmask")
_STYLE = {
    "shearletx": ("tab:blue", "o"),
    "waveletx": ("tab:orange", "s"),
    "pixelmask": ("tab:red", "^"),
    "smoothmask": ("tab:green", "D"),
}


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files of ``folder`` (sorted by name), the first ``limit`` of them (None: all)."""
    if limit is not None:
        check_positive(limit, "limit", integer=True)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"images: no such directory {str(folder)!r}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"images: no image files in {str(folder)!r}")
    return files if limit is None else files[:limit]


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a Figure 4 CSV (numbers as floats; empty file or none -> [])."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in FIELDS[3:]:
            row[key] = float(row[key]) if row.get(key) not in (None, "") else math.nan
    return rows


def _explain_mask_method(
    name: str, model: Classifier, x: Tensor, target: Tensor, steps: int, noise_bs: int, seed: int
) -> tuple[Tensor, list[Tensor], Any]:
    """x̂ and the masked coefficients m ⊙ T(x) of one representation-mask method."""
    explainer = METHODS.get(name).build(model, steps=steps, noise_bs=noise_bs, seed=seed)
    e = explainer.explain(x, target)
    coeffs = e.extras["coefficients"]  # the explainer's own m ⊙ T(x): nothing recomputed
    coeffs = [coeffs] if isinstance(coeffs, Tensor) else list(coeffs)
    return e.extras["image"], coeffs, explainer.representation


def _check_settings(path: Path, current: dict[str, Any]) -> None:
    """Refuse to resume a study made with other settings; record the settings otherwise."""
    import json

    saved = json.loads(path.read_text()) if path.is_file() else {}
    changed = [
        f"{k}={saved[k]!r} (now {v!r})" for k, v in current.items() if k in saved and saved[k] != v
    ]
    if changed:
        raise ValueError(
            f"out: {str(path.parent)!r} holds a study made with {', '.join(changed)}; "
            f"use the same settings or a new output folder"
        )
    path.write_text(json.dumps({**saved, **current}, indent=1, default=str))


def _row(
    model_name: str,
    image: str,
    method: str,
    model: Classifier,
    x: Tensor,
    x_hat: Tensor,
    target: Tensor,
    coeffs: list[Tensor] | None,
    representation: Any,
    p: float,
    seconds: float,
    steps: int,
    noise_bs: int,
    detector: Any,
) -> dict[str, Any]:
    # the three CP scores from one scoring of x and of x̂ (and the explainer's coefficients)
    cp = cp_scores(model, x, x_hat, target, representation=representation, coefficients=coeffs)
    p_hat_max = float(Scorer(model)(x_hat / x_hat.max().clamp_min(1e-12), target)[0])
    return {
        "model": model_name,
        "image": image,
        "method": method,
        "target": int(target[0]),
        "p": p,
        "p_hat": float(cp["p_hat"][0]),
        "p_hat_max": p_hat_max,
        "cp_l1_pixel": float(cp["l1_pixel"][0]),
        "cp_l1": float(cp["l1"][0]),
        "cp_entropy": float(cp["entropy"][0]),
        "hs": float(hallucination_score(x, x_hat, detector)[0]),
        "seconds": round(seconds, 2),
        "steps": steps,
        "noise_bs": noise_bs,
        "size": x.shape[-1],
    }


def run(
    models: Mapping[str, Classifier],
    images: Sequence[tuple[str, Tensor]],
    out: str | Path,
    *,
    areas: Sequence[float] = (0.05, 0.1, 0.2),
    steps: int = 300,
    noise_bs: int = 16,
    smooth_steps: int = 800,
    methods: Sequence[str] = METHOD_ORDER,
    detector: Any = "shearlet",
    seed: int = 0,
    smooth_options: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Run the study and return the CSV path (``out/figure4.csv``); plots go to ``out``.

    Args:
        models: name -> classifier.
        images: (name, image (1, 3, H, W) in [0, 1]) pairs (the paper: 256 × 256).
        out: output directory (created).
        areas: SmoothMask areas (one explanation each).
        steps: optimisation steps of ShearletX / WaveletX / PixelMask (paper 300).
        noise_bs: their noise samples per step (paper 16).
        smooth_steps: Extremal Perturbation iterations (TorchRay 800).
        methods: a subset of :data:`METHOD_ORDER`.
        detector: edge detector of the hallucination score.
        seed: noise seed.
        smooth_options: extra hyperparameters of the ``extremal`` method (e.g. for tiny images).
        settings: more settings the rows depend on (the command line passes the image size and
            fit). With steps, noise_bs, smooth_steps, detector and seed they are kept in
            ``out/settings.json``; resuming a folder with different values is refused, so that
            one CSV never mixes protocols (models, images, methods and areas may be added).
        log: progress messages (None: silent).
    """
    from ..api import make_explainer

    unknown = sorted(set(methods) - set(METHOD_ORDER))
    if unknown:
        raise ValueError(
            f"methods: unknown {unknown}; expected a subset of {', '.join(METHOD_ORDER)}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(
        out / "settings.json",
        {
            "steps": steps,
            "noise_bs": noise_bs,
            "smooth_steps": smooth_steps,
            "seed": seed,
            "detector": detector
            if isinstance(detector, str)
            else getattr(detector, "__name__", repr(detector)),
            **dict(settings or {}),
        },
    )
    path = out / "figure4.csv"
    new_file = not path.is_file() or path.stat().st_size == 0
    if not new_file:
        with path.open(newline="") as f:
            header = tuple(next(csv.reader(f), ()))
        if header != FIELDS:
            raise ValueError(
                f"out: {str(path)!r} has columns {', '.join(header)}; this version "
                f"writes {', '.join(FIELDS)}: use a new output folder"
            )
    done = {(r["model"], r["image"], r["method"]) for r in read_rows(path)}
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        for model_name, model in models.items():
            scorer = Scorer(model)
            for image_name, x in images:
                x = x.to(model.device)
                target = scorer.top1(x)
                p = float(scorer(x, target)[0])
                todo: list[tuple[str, float | None]] = [
                    (m, None) for m in methods if m != "smoothmask"
                ]
                if "smoothmask" in methods:
                    todo += [("smoothmask", a) for a in areas]
                for method, area in todo:
                    label = method if area is None else f"smoothmask-{area:g}"
                    if (model_name, image_name, label) in done:
                        continue
                    start = time.perf_counter()
                    if area is None:
                        x_hat, coeffs, rep = _explain_mask_method(
                            method, model, x, target, steps, noise_bs, seed
                        )
                        n_steps, n_noise = steps, noise_bs
                    else:
                        smooth = make_explainer(
                            model,
                            "extremal",
                            areas=[area],
                            steps=smooth_steps,
                            **dict(smooth_options or {}),
                        )
                        e = smooth.explain(x, target)
                        x_hat, coeffs, rep = (
                            masked_image(x, e.extras["keep_masks"][:, :1]),
                            None,
                            make_representation("pixels"),
                        )
                        n_steps, n_noise = smooth_steps, 0
                    seconds = time.perf_counter() - start
                    row = _row(
                        model_name,
                        image_name,
                        label,
                        model,
                        x,
                        x_hat,
                        target,
                        coeffs,
                        rep,
                        p,
                        seconds,
                        n_steps,
                        n_noise,
                        detector,
                    )
                    writer.writerow(row)
                    f.flush()
                    if log:
                        log(
                            f"{model_name} {image_name} {label}: CP-l1 {row['cp_l1']:.3g} "
                            f"CP-entropy {row['cp_entropy']:.3g} HS {row['hs']:.3g} "
                            f"({seconds:.0f} s)"
                        )
    plot(path, out)
    (out / "summary.md").write_text(summarise(read_rows(path)))
    return path


def _median(values: list[float]) -> float:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return math.nan
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def summarise(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown summary of Figure 4 rows: medians per (model, method) and per-image claims.

    Columns: images, median CP-ℓ1, CP-entropy, CP-ℓ1 pixel, HS, retained probability p̂/p and
    p̂_max/p (on x̂ / max x̂, the authors' script), and the images where x̂ loses the class
    (p̂/p < 0.1). Below the table, per model: on how many images ShearletX has the highest
    CP-ℓ1 and CP-entropy of all methods, and a lower HS than PixelMask and WaveletX.
    """
    lines = [
        "| model | method | n | CP-ℓ1 | CP-entropy | CP-ℓ1 pixel | HS | p̂/p | p̂_max/p "
        "| p̂/p < 0.1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    claims: list[str] = []
    for model in sorted({r["model"] for r in rows}):
        sel = [r for r in rows if r["model"] == model]
        labels = sorted(
            {r["method"] for r in sel}, key=lambda m: (METHOD_ORDER.index(m.split("-")[0]), m)
        )
        for label in labels:
            rs = [r for r in sel if r["method"] == label]
            ratio = [r["p_hat"] / r["p"] for r in rs]
            ratio_max = [r["p_hat_max"] / r["p"] for r in rs]
            lines.append(
                f"| {model} | {label} | {len(rs)} | {_median([r['cp_l1'] for r in rs]):.3g} | "
                f"{_median([r['cp_entropy'] for r in rs]):.3g} | "
                f"{_median([r['cp_l1_pixel'] for r in rs]):.3g} | "
                f"{_median([r['hs'] for r in rs]):.3g} | {_median(ratio):.3g} | "
                f"{_median(ratio_max):.3g} | "
                f"{sum(v < 0.1 for v in ratio)} |"
            )
        by_image: dict[str, dict[str, Mapping[str, Any]]] = {}
        for r in sel:
            by_image.setdefault(r["image"], {})[r["method"]] = r
        complete = [m for m in by_image.values() if "shearletx" in m and len(m) > 1]
        for key, name in (("cp_l1", "CP-ℓ1"), ("cp_entropy", "CP-entropy")):
            if complete:
                best = sum(
                    max(m.values(), key=lambda r: r[key])["method"] == "shearletx" for m in complete
                )
                claims.append(
                    f"- {model}: ShearletX has the highest {name} on {best} of {len(complete)} "
                    "images"
                )
        for other in ("pixelmask", "waveletx"):
            pairs = [m for m in complete if other in m]
            if pairs:
                lower = sum(m["shearletx"]["hs"] < m[other]["hs"] for m in pairs)
                claims.append(
                    f"- {model}: ShearletX's HS is below {other}'s on {lower} of {len(pairs)} "
                    "images"
                )
    if claims:
        lines += ["", *claims]
    return "\n".join(lines).rstrip() + "\n"


def plot(csv_path: str | Path, out: str | Path, hs_floor: float = 1e-4) -> list[Path]:
    """Scatter plots from a Figure 4 CSV: one PNG per model, CP-ℓ1 and CP-entropy vs HS.

    Log axes; HS = 0 (no artificial edge) is drawn at ``hs_floor`` (marked by a dotted line)
    and CP ≤ 0 or NaN points are left out (counted in the legend).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(csv_path)
    paths = []
    for model_name in sorted({r["model"] for r in rows}):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, key, title in ((axes[0], "cp_l1", "CP-ℓ1"), (axes[1], "cp_entropy", "CP-entropy")):
            for method in METHOD_ORDER:
                sel = [
                    r for r in rows if r["model"] == model_name and r["method"].startswith(method)
                ]
                labels = sorted({r["method"] for r in sel})
                for i, label in enumerate(labels):
                    pts = [
                        (max(r["hs"], hs_floor), r[key])
                        for r in sel
                        if r["method"] == label and r[key] > 0 and not math.isnan(r["hs"])
                    ]
                    if not pts:
                        continue
                    color, marker = _STYLE[method]
                    alpha = 0.9 if len(labels) == 1 else 0.4 + 0.5 * (i + 1) / len(labels)
                    marker = marker if len(labels) == 1 else "DPX"[i % 3]
                    ax.scatter(
                        [h for h, _ in pts],
                        [c for _, c in pts],
                        c=color,
                        marker=marker,
                        alpha=alpha,
                        label=f"{label} (n={len(pts)})",
                        edgecolors="k",
                        linewidths=0.3,
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.axvline(hs_floor, color="gray", linestyle=":", linewidth=0.8)
            ax.set_xlabel(f"hallucination score (0 drawn at {hs_floor:g})")
            ax.set_ylabel(title)
            ax.set_title(f"{model_name}: {title} vs HS")
            ax.grid(True, which="both", alpha=0.2)
        axes[1].legend(fontsize=7, loc="best")
        fig.tight_layout()
        png = Path(out) / f"figure4_{model_name}.png"
        fig.savefig(png, dpi=110)
        plt.close(fig)
        paths.append(png)
    return paths


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write Figure 4 rows as a CSV with the columns :data:`FIELDS`."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in FIELDS})
    return path
