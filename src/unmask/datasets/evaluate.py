"""Localisation with ground truth: seed 001's Table 2 protocol on the synthetic benchmark.

For each method the saliency maps of the **label object's class** are computed on
``n_heldout`` images of split ``"val"`` and ``n_test`` images of split ``"test"`` (neither was
trained on). ``alpha`` is chosen per method on the held-out maps
(:func:`unmask.metrics.select_alpha`, ``alpha ∈ {0, 0.05, …, 0.95}``, the box around all kept
pixels); on the test maps the benchmark reports

* the **localisation error** at that ``alpha`` (IoU < 0.5 with the object's box; lower is
  better; :func:`unmask.metrics.localisation_error`),
* the **pointing game** with the exact object mask and a tolerance of ``tolerance`` pixels
  (default 4 px: Zhang et al.'s 15 px at 224² scaled to 64²; higher is better),
* the **energy pointing game** (share of the positive saliency mass on the object mask).

Methods are names of :data:`unmask.registry.METHODS` (run through :func:`unmask.explain` with
the 64²-sized hyperparameters of :data:`SETTINGS`; a method without an entry runs with its
defaults) or one of the baselines of :data:`BASELINES`: ``random`` (i.i.d. uniform noise),
``centre`` (a Gaussian bump at the image centre) and ``whole_image`` (a blank map: the box is
the whole image, seed 001's "whole image" baseline).

Example:
    >>> from unmask.datasets import cnn
    >>> rows = localisation_benchmark(cnn.load(), ["random", "whole_image"], n_test=4, n_heldout=4)
    >>> [r.method for r in rows], rows[1].localisation_error
    (['random', 'whole_image'], 1.0)
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive
from .._types import Model
from ..metrics.localisation import (
    energy_pointing_game,
    localisation_error,
    pointing_game,
    select_alpha,
)
from ..progress import Progress, track
from . import synthetic

__all__ = [
    "METHODS",
    "SETTINGS",
    "BASELINES",
    "LocalisationRow",
    "check_methods",
    "saliency_maps",
    "localisation_benchmark",
    "format_table",
    "write_csv",
]

#: The methods of the table in docs/synthetic-benchmark.md. Adding a registered method is
#: adding its name.
METHODS: tuple[str, ...] = (
    "gradcam",
    "gradcam++",
    "occlusion",
    "rise",
    "lime",
    "extremal",
    "random",
    "centre",
    "whole_image",
)

#: Hyperparameters for 64² images (the paper's are for 224²); the rest are each method's defaults
#: (layer methods: the model's default layer, ``features`` (16 × 16) of the CNN and the last
#: block's pre-attention norm ``blocks.3.norm1`` (8 × 8 patch tokens) of the ViT).
SETTINGS: dict[str, dict[str, Any]] = {
    "occlusion": {"patch_size": 12, "stride": 3},  # the paper's 29 px at 224², scaled
    "rise": {"masks": 1000, "s": 8},
    "lime": {"n_segments": 50, "samples": 500},
    "extremal": {"areas": 0.12, "steps": 200, "step": 4, "sigma": 6.0},
}


def _random(x: Tensor, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(x.shape[0], 1, *x.shape[-2:], generator=gen)


def _centre(x: Tensor, seed: int) -> Tensor:
    h, w = x.shape[-2:]
    ys = (torch.arange(h, dtype=torch.float32) + 0.5 - h / 2) / (h / 4)
    xs = (torch.arange(w, dtype=torch.float32) + 0.5 - w / 2) / (w / 4)
    bump = torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    return bump.expand(x.shape[0], 1, h, w).clone()


def _whole_image(x: Tensor, seed: int) -> Tensor:
    return torch.zeros(x.shape[0], 1, *x.shape[-2:])


#: Baseline maps ``fn(x, seed) -> (B, 1, H, W)`` that look at no model.
BASELINES: dict[str, Callable[[Tensor, int], Tensor]] = {
    "random": _random,
    "centre": _centre,
    "whole_image": _whole_image,
}


@dataclass(frozen=True)
class LocalisationRow:
    """One method's line of the table (errors and hits are fractions of the test images)."""

    method: str
    alpha: float
    localisation_error: float
    pointing_game: float
    energy_pointing_game: float
    heldout_error: float
    n_test: int
    n_heldout: int
    seconds: float


def check_methods(methods: str | Sequence[str]) -> list[str]:
    """The method names as a list; a ValueError names any that is neither registered nor a
    baseline."""
    from ..registry import METHODS as REGISTERED

    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise ValueError("methods: expected at least one method name")
    for m in names:
        if m not in BASELINES and m not in REGISTERED.names(aliases=True):
            raise ValueError(
                f"methods: unknown method {m!r}; expected registered methods "
                f"({', '.join(REGISTERED.names())}) or baselines "
                f"({', '.join(BASELINES)})"
            )
    return names


def saliency_maps(
    model: Model,
    x: Tensor,
    target: Tensor,
    method: str,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
) -> Tensor:
    """Maps (B, 1, H, W) of ``method`` (a registered name or a baseline) for ``target`` (B,).

    ``settings`` overrides :data:`SETTINGS` for this method. Maps coarser than the images are
    upsampled bilinearly to them.
    """
    if method in BASELINES:
        return BASELINES[method](x, seed)
    from ..api import explain

    params = {**SETTINGS.get(method, {}), **(settings or {})}
    e = explain(model, x, method, target=target, seed=seed, **params)
    s = e.saliency.detach().float().cpu()
    if s.shape[-2:] != x.shape[-2:]:
        s = F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return s


def _maps(
    model: Model,
    batch: synthetic.SyntheticBatch,
    method: str,
    seed: int,
    chunk: int,
    settings: dict[str, Any] | None,
    progress: Progress,
    desc: str,
) -> Tensor:
    n = batch.images.shape[0]
    starts = range(0, n, chunk)
    out = []
    for i in track(starts, math.ceil(n / chunk), progress, desc=desc):
        x, t = batch.images[i : i + chunk], batch.labels[i : i + chunk]
        out.append(saliency_maps(model, x, t, method, seed=seed + i, settings=settings))
    return torch.cat(out)


def localisation_benchmark(
    model: Model,
    methods: Sequence[str] = METHODS,
    n_test: int = 200,
    n_heldout: int = 100,
    seed: int = 0,
    tolerance: float = 4.0,
    chunk: int = 20,
    settings: dict[str, dict[str, Any]] | None = None,
    progress: Progress = False,
) -> list[LocalisationRow]:
    """Run the localisation benchmark: one :class:`LocalisationRow` per method.

    Args:
        model: the classifier (e.g. ``unmask.load_model("synthetic_cnn")``).
        methods: registered method names and/or baseline names.
        n_test: test images (split ``"test"``, images 0 .. n_test - 1).
        n_heldout: held-out images for choosing alpha (split ``"val"``).
        seed: the data set's seed (and the base seed of stochastic methods: image i's chunk
            uses ``seed + i``).
        tolerance: the pointing game's tolerance in pixels.
        chunk: images per explainer call.
        settings: per-method hyperparameters overriding :data:`SETTINGS`.
        progress: bool or a callback (done, total) per chunk.
    """
    methods = check_methods(methods)
    check_positive(n_test, "n_test", integer=True)
    check_positive(n_heldout, "n_heldout", integer=True)
    check_positive(chunk, "chunk", integer=True)
    held = synthetic.generate(n_heldout, seed=seed, split="val")
    test = synthetic.generate(n_test, seed=seed, split="test")
    rows = []
    for m in methods:
        start = time.perf_counter()
        own = (settings or {}).get(m)
        maps_h = _maps(model, held, m, seed, chunk, own, progress, f"{m} held-out")
        maps_t = _maps(model, test, m, seed, chunk, own, progress, f"{m} test")
        choice = select_alpha(maps_h, held.masks)
        rows.append(
            LocalisationRow(
                method=m,
                alpha=choice.alpha,
                localisation_error=float(
                    localisation_error(maps_t, test.masks, choice.alpha).mean()
                ),
                pointing_game=float(pointing_game(maps_t, test.masks, tolerance).mean()),
                energy_pointing_game=float(energy_pointing_game(maps_t, test.masks).mean()),
                heldout_error=float(choice.errors.min()),
                n_test=n_test,
                n_heldout=n_heldout,
                seconds=round(time.perf_counter() - start, 1),
            )
        )
    return rows


def format_table(rows: Sequence[LocalisationRow]) -> str:
    """A Markdown table of the rows (percentages)."""
    lines = [
        "| method | alpha* (held-out) | localisation error % ↓ | pointing game % ↑ | "
        "energy pointing game % ↑ | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.method} | {r.alpha:.2f} | {100 * r.localisation_error:.1f} | "
            f"{100 * r.pointing_game:.1f} | {100 * r.energy_pointing_game:.1f} | "
            f"{r.seconds:.0f} |"
        )
    return "\n".join(lines)


def write_csv(rows: Sequence[LocalisationRow], path: str | Path) -> Path:
    """Write the rows as CSV (one line per method, the fields of :class:`LocalisationRow`)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(LocalisationRow.__dataclass_fields__))
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    return path
