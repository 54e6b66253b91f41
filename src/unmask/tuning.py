"""The fastest batch size of a model's scoring path, measured once and cached.

``Scorer(model, batch_size="auto")`` (and every black-box explainer that passes its
``batch_size`` to the scorer: occlusion, RISE, LIME...) asks :func:`best_batch_size` at its first
scoring call. The search times the scoring path at each candidate batch size with
:func:`unmask.timing.scoring_seconds` (gray images of the model's input size, in the model's
execution mode; under ``"compiled"`` the channels-last copy stands in, so that the search
compiles nothing; each time is kept there, so a later cost estimate at one of these batch sizes
measures nothing) and keeps the smallest candidate whose per-image time is within
``tolerance`` of the fastest one (less memory for the same speed, robust to timing noise).
Candidates above the memory budget (``UNMASK_MAX_MEMORY``) are not tried.

The answer is cached in memory per (model, device, execution, input shape, torch threads) for
the life of the process and, when a cache directory is given (``cache_dir=`` or the environment
variable ``UNMASK_CACHE_DIR``), in ``<dir>/batch_sizes.json``, keyed by the model's name,
parameter count, device, execution, input shape, threads, torch version and CPU: a later
process skips the search. Nothing is written to disk otherwise.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path

from . import timing
from ._checks import check_positive

__all__ = ["CANDIDATES", "best_batch_size", "batch_size_key"]

#: Batch sizes tried by :func:`best_batch_size`.
CANDIDATES = (1, 2, 4, 8, 16, 32, 64)

# Per classifier: {key: batch size}; weak, so a dropped model drops its entries.
_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def batch_size_key(model, shape: tuple[int, int, int]) -> str:
    """The on-disk cache key of ``model`` scoring images of ``shape`` (C, H, W) here
    (:func:`unmask.timing.model_key` of the engine its scoring path runs now)."""
    return timing.model_key(model, shape, timing.scoring_engine(model))


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
    path = timing.cache_file("batch_sizes.json", cache_dir)
    disk_key = f"{key}|{','.join(map(str, candidates))}|{tolerance:g}"
    stored = timing.read_cache(path).get(disk_key)
    if isinstance(stored, int):
        memo[stamp] = stored
        return stored
    fits = [
        c
        for c in sorted(set(candidates))
        if batch_bytes(c, *shape, model.input_size) <= memory_budget()
    ] or [min(candidates)]
    previous = model.execution
    if previous == "compiled":
        model.execution = "channels_last"  # a stand-in: each candidate would compile
    try:
        times = {
            c: timing.scoring_seconds(model, shape, c, repeats=repeats, cache_dir=cache_dir)
            for c in fits
        }
    finally:
        model.execution = previous
    fastest = min(times.values())
    best = next(c for c in fits if times[c] <= fastest * (1 + tolerance))
    memo[stamp] = best
    timing.write_cache(path, disk_key, best)
    return best
