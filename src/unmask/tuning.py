"""The fastest batch size of a model's scoring path, measured once and cached.

``Scorer(model, batch_size="auto")`` (and every black-box explainer that passes its
``batch_size`` to the scorer: occlusion, RISE, LIME...) asks :func:`best_batch_size` at its first
scoring call. The search times :meth:`unmask.Classifier.infer` on gray images of the model's
input size at each candidate batch size (in the model's execution mode; under ``"compiled"``
the channels-last copy stands in, so that the search compiles nothing) and keeps the smallest
candidate whose per-image time is within ``tolerance`` of the fastest one (less memory for the
same speed, robust to timing noise). Candidates above the memory budget
(``UNMASK_MAX_MEMORY``) are not tried.

The answer is cached in memory per (model, device, execution, input shape, torch threads) for
the life of the process and, when a cache directory is given (``cache_dir=`` or the environment
variable ``UNMASK_CACHE_DIR``), in ``<dir>/batch_sizes.json``, keyed by the model's name,
parameter count, device, execution, input shape, threads, torch version and CPU: a later
process skips the search. Nothing is written to disk otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

import torch

from . import onnx_engine
from ._checks import check_positive

__all__ = ["CANDIDATES", "best_batch_size", "batch_size_key"]

#: Batch sizes tried by :func:`best_batch_size`.
CANDIDATES = (1, 2, 4, 8, 16, 32, 64)

# Per classifier: {key: batch size}; weak, so a dropped model drops its entries.
_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def batch_size_key(model, shape: tuple[int, int, int]) -> str:
    """The on-disk cache key of ``model`` scoring images of ``shape`` (C, H, W) here."""
    params = sum(p.numel() for p in model.parameters())
    return "|".join(
        str(v)
        for v in (
            model.name,
            params,
            model.device,
            # the engine "auto" runs now (a cached ONNX graph or channels_last)
            onnx_engine.engine_for(model, 0) if model.execution == "auto" else model.execution,
            "x".join(map(str, shape)),
            torch.get_num_threads(),
            torch.__version__,
            _cpu(),
        )
    )


def _cache_file(cache_dir: str | Path | None) -> Path | None:
    where = cache_dir if cache_dir is not None else os.environ.get("UNMASK_CACHE_DIR")
    return Path(where) / "batch_sizes.json" if where else None


def _time(model, batch: int, shape: tuple[int, int, int], repeats: int) -> float:
    """Best per-image seconds of ``model.infer`` on ``batch`` gray images (after a warm-up)."""
    x = torch.full((batch, *shape), 0.5, device=model.device)
    best = float("inf")
    with torch.inference_mode():
        model.infer(x)  # warm-up: the copy, a trace, allocator growth
        for _ in range(repeats):
            start = time.perf_counter()
            model.infer(x)
            best = min(best, time.perf_counter() - start)
    return best / batch


def best_batch_size(
    model,
    shape: Sequence[int] | None = None,
    *,
    candidates: Sequence[int] = CANDIDATES,
    tolerance: float = 0.05,
    repeats: int = 2,
    cache_dir: str | Path | None = None,
) -> int:
    """The fastest batch size of ``model``'s scoring path on this machine (cached).

    Args:
        model: a :class:`unmask.Classifier`.
        shape: (C, H, W) of the images; default ``(3, *model.input_size)`` (224 x 224 when the
            model takes any size).
        candidates: batch sizes to try.
        tolerance: keep the smallest candidate within this fraction of the fastest per-image
            time.
        repeats: timed calls per candidate (the best is kept), after one warm-up call.
        cache_dir: also cache the answer in ``<cache_dir>/batch_sizes.json`` (default: the
            environment variable ``UNMASK_CACHE_DIR``; unset: memory only).

    Returns:
        The batch size (one of ``candidates``).

    Example:
        >>> from unmask.testing import region_model
        >>> model = region_model()
        >>> best_batch_size(model, (3, 32, 32), candidates=(1, 4)) in (1, 4)
        True
    """
    from ._limits import batch_bytes, memory_budget

    if not candidates:
        raise ValueError("candidates: expected at least one batch size, got none")
    for c in candidates:
        check_positive(c, "candidates", integer=True)
    check_positive(tolerance, "tolerance", allow_zero=True)
    check_positive(repeats, "repeats", integer=True)
    if shape is None:
        shape = (3, *(model.input_size or (224, 224)))
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3:
        raise ValueError(f"shape: expected (C, H, W), got {shape}")
    key = batch_size_key(model, shape)
    memo = _MEMO.setdefault(model, {})
    stamp = (key, tuple(candidates), float(tolerance))
    if stamp in memo:
        return memo[stamp]
    path = _cache_file(cache_dir)
    disk_key = f"{key}|{','.join(map(str, candidates))}|{tolerance:g}"
    stored: dict = {}
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        if isinstance(stored.get(disk_key), int):
            memo[stamp] = stored[disk_key]
            return memo[stamp]
    fits = [
        c
        for c in sorted(set(candidates))
        if batch_bytes(c, *shape, model.input_size) <= memory_budget()
    ] or [min(candidates)]
    previous = model.execution
    if previous == "compiled":
        model.execution = "channels_last"  # a stand-in: each candidate would compile
    try:
        times = {c: _time(model, c, shape, repeats) for c in fits}
    finally:
        model.execution = previous
    fastest = min(times.values())
    best = next(c for c in fits if times[c] <= fastest * (1 + tolerance))
    memo[stamp] = best
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stored[disk_key] = best
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored, indent=1, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache directory: memory only
    return best
