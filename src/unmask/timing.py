"""How fast a model runs here: seconds per image of its scoring path and of its autograd path,
measured once and cached.

The one timer of unmask: the command line's cost line (:mod:`unmask.cli._cost`), the
explorer's job budget (:mod:`unmask.serve.costs`) and the batch-size search
(:func:`unmask.tuning.best_batch_size`) read it.

- :func:`scoring_seconds` times :meth:`unmask.Classifier.infer` under
  ``torch.inference_mode()``: the engine the scoring path runs (ONNX Runtime, the channels-last
  copy, ... :meth:`unmask.Classifier.fast`), on gray images in batches of the job's size; one
  warm-up call (it builds copies, loads a cached graph), then the best of ``repeats`` calls.
- :func:`autograd_seconds` times a forward and a backward pass to the input (``model(x)`` with
  gradients, in the model's ``autograd=`` mode), as gradient methods and mask optimisations
  run; the best of ``repeats``.

A measurement is kept per classifier for the life of the process, under a key of what changes
the time: the model's name and parameter count, the device, the engine (``"auto"`` resolved to
the engine it runs now: a graph exported later is timed again), the input shape, the batch
size, torch's thread count, the torch version and the CPU. With a cache directory
(``cache_dir=``, or the environment variable ``UNMASK_CACHE_DIR``) it is also written to
``<dir>/model_times.json``: a later process pays no forward pass for it. Nothing is written to
disk otherwise (the rule of :mod:`unmask.tuning`'s batch sizes, which share the key).
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import onnx_engine
from ._checks import check_positive

if TYPE_CHECKING:
    from .models import Classifier

__all__ = [
    "AUTOGRAD_BATCH",
    "ModelTime",
    "autograd_seconds",
    "cache_file",
    "measure",
    "model_key",
    "read_cache",
    "scoring_engine",
    "scoring_seconds",
    "write_cache",
]

#: Images per timed forward and backward pass (:func:`measure`): gradient methods explain one
#: image at a time, mask optimisations a few noise samples.
AUTOGRAD_BATCH = 4

# Per classifier: {key: seconds per image}; weak, so a dropped model drops its entries.
_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ModelTime:
    """Measured seconds per image of one model at one input side.

    Attributes:
        forward: a forward pass on the scoring path (no gradients, the model's engine).
        backward: a forward and a backward pass to the input (gradient methods, optimisers).
    """

    forward: float
    backward: float


@functools.cache
def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def scoring_engine(model: Classifier) -> str:
    """The engine ``model``'s scoring path runs now: its execution, ``"auto"`` resolved to
    ``"onnx"`` (a graph of these weights is cached) or ``"channels_last"``."""
    if model.execution == "auto":
        return onnx_engine.engine_for(model, 0)
    return model.execution


def model_key(model: Classifier, shape: Sequence[int], engine: str) -> str:
    """The cache key of ``model`` running ``engine`` on images of ``shape`` (C, H, W) here:
    name, parameter count, device, engine, shape, threads, torch version and CPU.

    Example:
        >>> from unmask.testing import region_model
        >>> model_key(region_model(), (3, 32, 32), "eager").split("|")[3:5]
        ['eager', '3x32x32']
    """
    params = sum(p.numel() for p in model.parameters())
    return "|".join(
        str(v)
        for v in (
            model.name,
            params,
            model.device,
            engine,
            "x".join(map(str, shape)),
            torch.get_num_threads(),
            torch.__version__,
            _cpu(),
        )
    )


def cache_file(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """``<cache_dir>/name`` (default directory: ``UNMASK_CACHE_DIR``), or None when neither is
    set (memory only)."""
    where = cache_dir if cache_dir is not None else os.environ.get("UNMASK_CACHE_DIR")
    return Path(where) / name if where else None


def read_cache(path: Path | None) -> dict:
    """The JSON object stored at ``path`` ({} when there is none or it is unreadable)."""
    if path is None or not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def write_cache(path: Path | None, key: str, value: object) -> None:
    """Store ``key: value`` in the JSON object at ``path`` (replaced atomically; a read-only
    or full cache directory keeps the value in memory only)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = read_cache(path)
        stored[key] = value
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stored, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass


def _seconds(
    model: Classifier,
    shape: Sequence[int] | None,
    batch: int,
    repeats: int,
    cache_dir: str | Path | None,
    engine: str,
    step: Callable[[Tensor], None],
    warm_up: bool,
) -> float:
    """Seconds per image of ``step`` on gray images (batch, *shape): remembered (memory, then
    the cache file), else measured now: a warm-up call when asked, the best of ``repeats``."""
    check_positive(batch, "batch", integer=True)
    check_positive(repeats, "repeats", integer=True)
    shape = _shape(model, shape)
    key = f"{model_key(model, shape, engine)}|{batch}"
    memo = _MEMO.setdefault(model, {})
    if key in memo:
        return memo[key]
    path = cache_file("model_times.json", cache_dir)
    stored = read_cache(path).get(key)
    if isinstance(stored, float) and stored > 0:
        memo[key] = stored
        return stored
    x = torch.full((batch, *shape), 0.5, device=model.device)
    if warm_up:
        step(x)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        step(x)
        best = min(best, time.perf_counter() - start)
    memo[key] = seconds = best / batch
    write_cache(path, key, seconds)
    return seconds


def _shape(model: Classifier, shape: Sequence[int] | None) -> tuple[int, int, int]:
    if shape is None:
        shape = (3, *(model.input_size or (224, 224)))
    out = tuple(int(v) for v in shape)
    if len(out) != 3:
        raise ValueError(f"shape: expected (C, H, W), got {out}")
    return out


def scoring_seconds(
    model: Classifier,
    shape: Sequence[int] | None = None,
    batch: int = 16,
    *,
    repeats: int = 2,
    cache_dir: str | Path | None = None,
) -> float:
    """Seconds per image of ``model``'s scoring path (:meth:`~unmask.Classifier.infer`, its
    engine) on batches of ``batch`` images of ``shape`` (C, H, W); measured once, then cached.

    Args:
        model: a :class:`unmask.Classifier`.
        shape: (C, H, W) of the images; default ``(3, *model.input_size)`` (224 x 224 when the
            model takes any size).
        batch: images per call: the job's batch size (the per-image time depends on it).
        repeats: timed calls after one warm-up call; the fastest is kept.
        cache_dir: also cache in ``<cache_dir>/model_times.json`` (default:
            ``UNMASK_CACHE_DIR``; unset: memory only).

    Example:
        >>> from unmask.testing import region_model
        >>> scoring_seconds(region_model(), (3, 32, 32), batch=4) > 0
        True
    """

    def score(x: Tensor) -> None:
        with torch.inference_mode():
            model.infer(x)

    # a warm-up call first: it builds the copy, a trace, a graph's session, allocator growth
    engine = scoring_engine(model)
    return _seconds(model, shape, batch, repeats, cache_dir, engine, score, warm_up=True)


def autograd_seconds(
    model: Classifier,
    shape: Sequence[int] | None = None,
    batch: int = AUTOGRAD_BATCH,
    *,
    repeats: int = 2,
    cache_dir: str | Path | None = None,
) -> float:
    """Seconds per image of a forward and a backward pass to the input (``model(x)`` with
    gradients, in the model's ``autograd=`` mode) on batches of ``batch`` images of ``shape``;
    measured once (the best of ``repeats``), then cached as :func:`scoring_seconds`.

    Example:
        >>> from unmask.testing import region_model
        >>> autograd_seconds(region_model(), (3, 32, 32), batch=2) > 0
        True
    """

    def differentiate(x: Tensor) -> None:
        with torch.inference_mode(False), torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(model(xg).sum(), xg)

    engine = f"autograd-{getattr(model, 'autograd', 'eager')}"
    return _seconds(model, shape, batch, repeats, cache_dir, engine, differentiate, warm_up=False)


def measure(
    model: Classifier,
    side: int,
    batch: int = 16,
    *,
    autograd_batch: int = AUTOGRAD_BATCH,
    cache_dir: str | Path | None = None,
) -> ModelTime:
    """Both times of ``model`` on square images of ``side``: the scoring path at ``batch``
    (:func:`scoring_seconds`) and forward + backward at ``autograd_batch``
    (:func:`autograd_seconds`; never below the forward time).

    Example:
        >>> from unmask.testing import conv_region_model
        >>> t = measure(conv_region_model(), 32, batch=4)
        >>> 0 < t.forward <= t.backward
        True
    """
    shape = (3, int(side), int(side))
    forward = scoring_seconds(model, shape, batch, cache_dir=cache_dir)
    backward = autograd_seconds(model, shape, autograd_batch, cache_dir=cache_dir)
    return ModelTime(forward, max(forward, backward))
