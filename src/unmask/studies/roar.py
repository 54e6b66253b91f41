"""ROAR and KAR (Hooker et al. 2019): retrain the synthetic CNN on images ablated by each map.

"A Benchmark for Interpretability Methods in Deep Neural Networks" asks whether the pixels an
explanation ranks highest carry the information the task needs, without the distribution shift
of scoring ablated images with the model that saw only whole images: for every method and every
``k`` the study

1. computes the method's maps with the trained ``model`` on the training *and* test images
   (for each image's label class),
2. **ROAR** (RemOve And Retrain) replaces the top-``k`` % pixels of each map by the per-channel
   mean of the training images; **KAR** (Keep And Retrain) replaces all but the top-``k`` %,
3. trains a fresh :class:`~unmask.datasets.cnn.SyntheticCNN` on the modified training images
   with the package's own loop (:func:`unmask.datasets.cnn.fit`, same budget and seed for
   every run),
4. reports its accuracy on the modified test images.

A good map makes ROAR accuracy fall fast with ``k`` (what it removes is what the task needs)
and keeps KAR accuracy high at small ``k``; the **random** map (i.i.d. noise) is the control a
method has to beat. ``oracle`` ranks the label object's ground-truth mask first and the other
pixels by their distance to it (nearest first), a sanity row only the synthetic data can give.
Retraining on ablated images is feasible on a CPU only because the model is small (61 k
parameters, 64² images): each point of a curve is one training run.

Example:
    >>> from unmask.datasets import cnn
    >>> r = roar(cnn.load(), ["random", "oracle"], ks=(50,), n_train=64, n_test=32, epochs=1)
    >>> sorted(r.accuracy["roar"]), list(r.accuracy["kar"]["oracle"])
    (['oracle', 'random'], [50])
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_positive, check_seed
from .._types import Model
from ..progress import Progress, check_progress, track

__all__ = [
    "roar",
    "RoarResult",
    "KS",
    "MODES",
    "METHODS",
    "SETTINGS",
    "oracle_maps",
    "pixel_ranks",
    "ablate",
    "check_ks",
]

#: The paper's grid of percentages.
KS: tuple[int, ...] = (10, 30, 50, 70, 90)
#: ``roar`` removes the top-k % pixels, ``kar`` keeps only them.
MODES: tuple[str, ...] = ("roar", "kar")
#: The default rows: the two controls and the cheap methods.
METHODS: tuple[str, ...] = ("random", "oracle", "gradient", "gradcam", "integrated_gradients")
#: Hyperparameters for 64² images (the rest: :data:`unmask.datasets.evaluate.SETTINGS`, then
#: each method's defaults).
SETTINGS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 16},
    "occlusion": {"patch_size": 12, "stride": 6},
}
#: Maps that need the ground-truth masks (not only the images).
_ORACLES = ("oracle",)


@dataclass
class RoarResult:
    """Test accuracy after retraining, per mode, method and ``k``.

    Attributes:
        accuracy: mode (``"roar"`` / ``"kar"``) -> method -> k -> accuracy (the mean over the
            ``repeats`` training runs), a fraction in [0, 1].
        runs: the same keys -> the accuracy of each training run.
        unmodified: the mean accuracy of the same training budget on the unablated images (k = 0
            for ROAR, k = 100 for KAR).
        unmodified_runs: its value per training run.
        model_accuracy: the explained ``model``'s own accuracy on the unablated test images.
        ks, methods, modes: the grid, in order.
        settings: the study's arguments (sizes, budget, seed, removal spec).
        seconds: ``"maps"`` -> method -> seconds; ``"retrain"`` -> seconds of each training run
            with its evaluation, in the order run; ``"total"``.
    """

    accuracy: dict[str, dict[str, dict[int, float]]]
    runs: dict[str, dict[str, dict[int, list[float]]]]
    unmodified: float
    unmodified_runs: list[float]
    model_accuracy: float
    ks: tuple[int, ...]
    methods: tuple[str, ...]
    modes: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per (mode, method, k) plus the unmodified row (mode ``"none"``, k = 0)."""
        out = [
            {
                "mode": "none",
                "method": "unmodified",
                "k": 0,
                "accuracy": self.unmodified,
                "runs": list(self.unmodified_runs),
            }
        ]
        for mode in self.modes:
            for m in self.methods:
                for k in self.ks:
                    out.append(
                        {
                            "mode": mode,
                            "method": m,
                            "k": k,
                            "accuracy": self.accuracy[mode][m][k],
                            "runs": list(self.runs[mode][m][k]),
                        }
                    )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``k`` keys as strings)."""
        return {
            "study": "roar",
            "settings": self.settings,
            "ks": list(self.ks),
            "methods": list(self.methods),
            "modes": list(self.modes),
            "unmodified": self.unmodified,
            "unmodified_runs": list(self.unmodified_runs),
            "model_accuracy": self.model_accuracy,
            "accuracy": {
                mode: {m: {str(k): v for k, v in ks.items()} for m, ks in ms.items()}
                for mode, ms in self.accuracy.items()
            },
            "runs": {
                mode: {m: {str(k): list(v) for k, v in ks.items()} for m, ks in ms.items()}
                for mode, ms in self.runs.items()
            },
            "seconds": self.seconds,
        }

    def format_table(self) -> str:
        """Markdown: one table row per (mode, method), accuracy % per k."""
        head = "| mode | method | " + " | ".join(f"k = {k} %" for k in self.ks) + " |"
        lines = [head, "|---|---|" + "---|" * len(self.ks)]
        for mode in self.modes:
            for m in self.methods:
                cells = " | ".join(f"{100 * self.accuracy[mode][m][k]:.1f}" for k in self.ks)
                lines.append(f"| {mode.upper()} | {m} | {cells} |")
        lines.append(
            f"\nunmodified (same budget, no ablation): {100 * self.unmodified:.1f} %; "
            f"the explained model on the same test images: "
            f"{100 * self.model_accuracy:.1f} %"
        )
        return "\n".join(lines)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def write_csv(self, path: str | Path) -> Path:
        """Write :meth:`rows` as CSV (``mode,method,k,accuracy,runs``; runs joined by ``;``)."""
        path = Path(path)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["mode", "method", "k", "accuracy", "runs"])
            for r in self.rows():
                w.writerow(
                    [
                        r["mode"],
                        r["method"],
                        r["k"],
                        f"{r['accuracy']:.6f}",
                        ";".join(f"{v:.6f}" for v in r["runs"]),
                    ]
                )
        return path


def check_ks(ks: object, name: str = "ks") -> tuple[int, ...]:
    """The percentages as a tuple of distinct ints in 1..99, in the order given."""
    if isinstance(ks, (int, float)) and not isinstance(ks, bool):
        ks = (ks,)
    if not isinstance(ks, (list, tuple)) or not ks:
        raise TypeError(f"{name}: expected a non-empty sequence of percentages, got {ks!r}")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 < k < 100:
            raise ValueError(f"{name}: expected integer percentages in 1..99, got {k!r}")
        if k in out:
            raise ValueError(f"{name}: {k} given twice")
        out.append(k)
    return tuple(out)


def _check_methods(methods: object) -> tuple[str, ...]:
    from ..datasets.evaluate import check_methods

    names = [methods] if isinstance(methods, str) else methods
    if not isinstance(names, (list, tuple)):
        raise TypeError(f"methods: expected method names, got {type(methods).__name__}")
    for m in names:
        if not isinstance(m, str):
            raise TypeError(f"methods: expected method names (str), got {m!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"methods: a method is given twice in {list(names)}")
    others = [m for m in names if m not in _ORACLES]
    if others:
        check_methods(others)
    elif not names:
        raise ValueError("methods: expected at least one method name")
    return tuple(names)


def oracle_maps(masks: Tensor) -> Tensor:
    """The ground-truth map: 1 on the object mask, minus the distance (px) to it elsewhere.

    Args:
        masks: (B, 1, H, W), > 0.5 = the object.

    Returns:
        (B, 1, H, W) float: the object's pixels rank first, the others nearest first.

    Example:
        >>> m = torch.zeros(1, 1, 1, 5); m[..., 0] = 1
        >>> oracle_maps(m).flatten().tolist()
        [1.0, -1.0, -2.0, -3.0, -4.0]
    """
    from scipy.ndimage import distance_transform_edt

    obj = (masks > 0.5).numpy()
    out = np.empty(obj.shape, dtype=np.float32)
    for i in range(obj.shape[0]):
        o = obj[i, 0]
        out[i, 0] = 1.0 if o.all() else np.where(o, 1.0, -distance_transform_edt(~o))
    return torch.from_numpy(out)


def pixel_ranks(maps: Tensor, seed: int = 0) -> Tensor:
    """Each pixel's rank in its map (0 = the highest value), ties broken at random.

    Args:
        maps: (B, 1, H, W).
        seed: the seed of the tie-breaking order (one random order per image).

    Returns:
        (B, 1, H, W) long: a permutation of ``0 .. H·W - 1`` per image.

    Example:
        >>> pixel_ranks(torch.tensor([[[[0.2, 0.9, 0.5]]]])).flatten().tolist()
        [2, 0, 1]
    """
    b = maps.shape[0]
    flat = maps.reshape(b, -1).float()
    gen = torch.Generator().manual_seed(seed)
    shuffle = torch.argsort(torch.rand(flat.shape, generator=gen), dim=1)
    order = shuffle.gather(
        1, torch.argsort(flat.gather(1, shuffle), dim=1, descending=True, stable=True)
    )
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand(b, -1).contiguous())
    return ranks.reshape(maps.shape)


def ablate(x: Tensor, ranks: Tensor, k: int, mode: str, removal: Any, chunk: int = 256) -> Tensor:
    """``x`` with the top-``k`` % pixels (ROAR) or all others (KAR) removed by ``removal``.

    Args:
        x: (N, C, H, W) images.
        ranks: (N, 1, H, W) from :func:`pixel_ranks`.
        k: the percentage, 1..99; ``round(k · H·W / 100)`` pixels are the top.
        mode: ``"roar"`` or ``"kar"``.
        removal: a removal ``removal(x, removal_mask) -> x`` (:mod:`unmask.removal`).
        chunk: images per call of the removal.
    """
    n_top = round(k * ranks[0].numel() / 100)
    out = torch.empty_like(x)
    for i in range(0, x.shape[0], chunk):
        top = ranks[i : i + chunk] < n_top
        removal_mask = (top if mode == "roar" else ~top).to(x.dtype)
        out[i : i + chunk] = removal(x[i : i + chunk], removal_mask)
    return out


def _maps(
    model: Model,
    batch: Any,
    method: str,
    seed: int,
    chunk: int,
    settings: dict[str, Any] | None,
    progress: Progress,
    desc: str,
) -> Tensor:
    from ..datasets.evaluate import _maps as evaluate_maps

    if method == "oracle":
        return oracle_maps(batch.masks)
    own = {**SETTINGS.get(method, {}), **(settings or {})}
    return evaluate_maps(model, batch, method, seed, chunk, own, progress, desc)


def _settings_of(method: str, settings: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    from ..datasets.evaluate import BASELINES
    from ..datasets.evaluate import SETTINGS as LOCALISATION

    if method in BASELINES or method in _ORACLES:
        return {}
    return {
        **LOCALISATION.get(method, {}),
        **SETTINGS.get(method, {}),
        **(settings or {}).get(method, {}),
    }


def _removal(removal: Any, train_images: Tensor) -> tuple[Any, str]:
    """The removal and its spec; None / ``"dataset_mean"``: the training images' channel mean."""
    from ..removal import Constant, resolve_removal

    if removal is None or removal == "dataset_mean":
        mean = tuple(float(v) for v in train_images.mean(dim=(0, 2, 3)))
        return Constant(mean), "dataset_mean"
    r = resolve_removal(removal)
    return r, str(getattr(r, "spec", repr(r)))


def _check_removal(removal: Any) -> None:
    if removal is not None and removal != "dataset_mean":
        from ..removal import resolve_removal

        resolve_removal(removal)


def roar(
    model: Model,
    methods: Sequence[str] = METHODS,
    ks: Sequence[int] = KS,
    *,
    modes: Sequence[str] = MODES,
    n_train: int = 3000,
    n_test: int = 500,
    epochs: int = 8,
    seed: int = 0,
    repeats: int = 1,
    batch_size: int = 64,
    lr: float = 3e-3,
    removal: Any = None,
    data_seed: int | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    chunk: int = 50,
    threads: int = 1,
    progress: Progress = False,
) -> RoarResult:
    """Run ROAR and/or KAR on the synthetic benchmark.

    Args:
        model: the classifier whose explanations are evaluated (the maps are its maps), e.g.
            ``unmask.load_model("synthetic_cnn")``.
        methods: registered method names, the baselines of
            :data:`unmask.datasets.evaluate.BASELINES` (``random``...) and ``oracle``.
        ks: percentages of pixels, each in 1..99 (the paper: 10, 30, 50, 70, 90).
        modes: ``"roar"`` and/or ``"kar"``.
        n_train: training images of the retrained models (split ``"train"``, images
            ``0 .. n_train - 1``).
        n_test: test images (split ``"test"``).
        epochs: passes of each retraining (:func:`unmask.datasets.cnn.fit`).
        seed: the seed of the retraining (initialisation, batch order, flips; run ``r`` of
            ``repeats`` uses ``seed + r``), of the random map and of the tie-breaking.
        repeats: training runs per point (the paper: 5); the accuracy is their mean.
        batch_size: images per training step.
        lr: the peak learning rate of the one-cycle schedule.
        removal: how pixels are removed: None / ``"dataset_mean"`` (the paper's per-channel
            mean of the training images) or any removal of :mod:`unmask.removal` (a spec such
            as ``"blur:sigma=4"`` or ``"road"``, or a removal object).
        data_seed: the synthetic data set's seed (None = 0, the data of the shipped model:
            its maps on split ``"train"`` are maps on the images it was trained on).
        settings: per-method hyperparameters overriding :data:`SETTINGS`.
        chunk: images per explainer call.
        threads: torch threads while training.
        progress: bool or a callback (done, total) over the training runs.

    Returns:
        a :class:`RoarResult`.
    """
    from ..datasets import cnn, synthetic
    from ..models import as_classifier

    model = as_classifier(model, "model")
    methods = _check_methods(methods)
    ks = check_ks(ks)
    if isinstance(modes, str):
        modes = (modes,)
    if not isinstance(modes, (list, tuple)) or not modes:
        raise TypeError(f"modes: expected 'roar', 'kar' or both, got {modes!r}")
    modes = tuple(check_choice(m, "modes", MODES) for m in modes)
    if len(set(modes)) != len(modes):
        raise ValueError(f"modes: a mode is given twice in {list(modes)}")
    for value, name in (
        (n_train, "n_train"),
        (n_test, "n_test"),
        (epochs, "epochs"),
        (repeats, "repeats"),
        (batch_size, "batch_size"),
        (chunk, "chunk"),
        (threads, "threads"),
    ):
        check_positive(value, name, integer=True)
    check_seed(seed)
    check_positive(lr, "lr")
    data_seed = 0 if data_seed is None else data_seed
    check_seed(data_seed, "data_seed")
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(
            f"settings: expected a dict method -> hyperparameters, got {type(settings).__name__}"
        )
    progress = check_progress(progress)
    _check_removal(removal)  # before generating the data
    size = int(model.input_size[0]) if model.input_size else synthetic.DEFAULT_SIZE

    start = time.perf_counter()
    train = synthetic.generate(n_train, seed=data_seed, split="train", size=size)
    test = synthetic.generate(n_test, seed=data_seed, split="test", size=size)
    remove, removal_spec = _removal(removal, train.images)
    model_accuracy = cnn.accuracy(model, test.images, test.labels)

    jobs = [("none", "unmodified", 0, r) for r in range(repeats)]
    jobs += [(mode, m, k, r) for m in methods for mode in modes for k in ks for r in range(repeats)]
    fit_seconds: list[float] = []

    def fit_and_test(x_train: Tensor, x_test: Tensor, run: int) -> float:
        t0 = time.perf_counter()
        net, _info = cnn.fit(
            x_train,
            train.labels,
            epochs=epochs,
            seed=seed + run,
            batch_size=batch_size,
            lr=lr,
            threads=threads,
            classes=list(synthetic.CLASSES),
        )
        acc = cnn.accuracy(net, x_test, test.labels)
        fit_seconds.append(round(time.perf_counter() - t0, 2))
        return acc

    runs: dict[str, dict[str, dict[int, list[float]]]] = {
        mode: {m: {k: [] for k in ks} for m in methods} for mode in modes
    }
    unmodified_runs: list[float] = []
    map_seconds: dict[str, float] = {}
    ranks: dict[str, tuple[Tensor, Tensor]] = {}
    for mode, m, k, r in track(jobs, len(jobs), progress, desc="roar", unit="fit"):
        if mode == "none":
            unmodified_runs.append(fit_and_test(train.images, test.images, r))
            continue
        if m not in ranks:
            ranks.clear()  # one method's maps at a time
            t0 = time.perf_counter()
            own = (settings or {}).get(m)
            maps_tr = _maps(model, train, m, seed, chunk, own, False, f"{m} train")
            maps_te = _maps(model, test, m, seed + 1, chunk, own, False, f"{m} test")
            ranks[m] = (pixel_ranks(maps_tr, seed), pixel_ranks(maps_te, seed + 1))
            map_seconds[m] = round(time.perf_counter() - t0, 2)
        r_tr, r_te = ranks[m]
        x_tr = ablate(train.images, r_tr, k, mode, remove)
        x_te = ablate(test.images, r_te, k, mode, remove)
        runs[mode][m][k].append(fit_and_test(x_tr, x_te, r))

    accuracy = {
        mode: {m: {k: float(np.mean(v)) for k, v in ks_.items()} for m, ks_ in ms.items()}
        for mode, ms in runs.items()
    }
    return RoarResult(
        accuracy=accuracy,
        runs=runs,
        unmodified=float(np.mean(unmodified_runs)),
        unmodified_runs=unmodified_runs,
        model_accuracy=model_accuracy,
        ks=ks,
        methods=methods,
        modes=modes,
        settings={
            "n_train": n_train,
            "n_test": n_test,
            "epochs": epochs,
            "seed": seed,
            "data_seed": data_seed,
            "repeats": repeats,
            "batch_size": batch_size,
            "lr": lr,
            "removal": removal_spec,
            "size": size,
            "threads": threads,
            "method_settings": {m: _settings_of(m, settings) for m in methods},
        },
        seconds={
            "maps": map_seconds,
            "retrain": fit_seconds,
            "total": round(time.perf_counter() - start, 1),
        },
    )
