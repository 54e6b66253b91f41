"""Size and memory limits: what unmask refuses before allocating.

Every size-like input is checked against one of three bounds, each set here and overridable
by an environment variable (read at each check, so a test or a shell can change it):

- :data:`MAX_PIXELS` (``UNMASK_MAX_PIXELS``): the largest decoded image, in pixels (width ×
  height), checked from the file header before decoding. Default 64 megapixels.
- :data:`MAX_SIZE` (``UNMASK_MAX_SIZE``): the largest side an image is loaded at (``size=`` of
  :func:`unmask.load_image`, ``--size``) and the largest grid / mask side of a method.
  Default 4096.
- :data:`MEMORY_BUDGET` (``UNMASK_MAX_MEMORY``, bytes or a number with K, M, G or T): the
  largest estimated working memory of one batch of perturbed images (images, masks and the
  model's activations) or of a method's own tensors. Default 8 GiB. A caller may lower it for
  the code it runs (:func:`memory_limit`: the explorer's memory for one job).

A refusal is a ValueError naming the argument, the estimate and the bound, and how to raise it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = [
    "MAX_PIXELS",
    "MAX_SIZE",
    "MEMORY_BUDGET",
    "max_pixels",
    "max_size",
    "memory_budget",
    "memory_limit",
    "check_memory",
    "check_at_most",
    "batch_bytes",
    "largest_batch",
    "format_bytes",
]

#: Largest decoded image (width × height) by default.
MAX_PIXELS = 64_000_000
#: Largest image side (and method grid side) by default.
MAX_SIZE = 4096
#: Largest estimated working memory of one batch, bytes, by default.
MEMORY_BUDGET = 8 * 1024**3

#: Model activations per input value (float32), measured on EfficientNet-Lite0 at 224² with
#: benchmarks/activation_memory.py: about
#: 17 MB per image without gradients and 90 MB with (150,528 input values).
_ACTIVATIONS = 30
_ACTIVATIONS_GRAD = 160
#: Copies of a perturbed image alive at once (image, fill, mask blend, resized model input).
_COPIES = 6

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _env_int(var: str, default: int, units: bool = False) -> int:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return default
    text = raw.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if units and text and text[-1] in _UNITS:
        scale, text = _UNITS[text[-1]], text[:-1]
    try:
        value = float(text) * scale
    except ValueError:
        raise ValueError(f"{var}: expected a positive number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{var}: expected a positive number, got {raw!r}")
    return int(value)


def max_pixels() -> int:
    """The decoded-image pixel limit in force (``UNMASK_MAX_PIXELS`` or :data:`MAX_PIXELS`)."""
    return _env_int("UNMASK_MAX_PIXELS", MAX_PIXELS)


def max_size() -> int:
    """The image side limit in force (``UNMASK_MAX_SIZE`` or :data:`MAX_SIZE`)."""
    return _env_int("UNMASK_MAX_SIZE", MAX_SIZE)


#: A lower budget for the code running in this context (:func:`memory_limit`), with how to
#: raise it.
_LIMIT: ContextVar[tuple[int, str] | None] = ContextVar("unmask_memory_limit", default=None)
_RAISE = (
    "raise the budget with the environment variable UNMASK_MAX_MEMORY (e.g. UNMASK_MAX_MEMORY=16G)"
)


def memory_budget() -> int:
    """The working-memory budget in force, bytes: ``UNMASK_MAX_MEMORY`` (else the default), or
    the lower one :func:`memory_limit` sets for the code it runs."""
    budget = _env_int("UNMASK_MAX_MEMORY", MEMORY_BUDGET, units=True)
    limit = _LIMIT.get()
    return budget if limit is None else min(budget, limit[0])


@contextmanager
def memory_limit(nbytes: int, how: str) -> Iterator[None]:
    """Lower the memory budget to ``nbytes`` for the code run inside (this thread or task only).

    ``how`` says, in a refusal, how to raise this limit. The explorer runs each job under its
    memory for one job, so that every check of the library (batch sizes with and without
    gradients, masks, noise samples) refuses what would pass it.

    Example:
        >>> before = memory_budget()
        >>> with memory_limit(1024**2, "a test's limit"):
        ...     memory_budget()
        1048576
        >>> memory_budget() == before  # restored on leaving
        True
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"nbytes: expected a positive int, got {nbytes!r}")
    token = _LIMIT.set((nbytes, how))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KB'`` (binary units)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PB"  # pragma: no cover


def check_memory(nbytes: float, name: str, what: str) -> None:
    """Refuse when an estimated allocation exceeds the memory budget.

    Args:
        nbytes: the estimate, bytes.
        name: the argument that sets it (``"batch_size"``, ``"--batch-size"``...).
        what: what is allocated, for the message (``"a batch of 16 perturbed 224x224 images"``).

    Example:
        >>> check_memory(1024, "batch_size", "one batch")   # far below the budget: accepted
    """
    budget = memory_budget()
    if nbytes > budget:
        limit = _LIMIT.get()
        how = limit[1] if limit is not None and limit[0] == budget else _RAISE
        raise ValueError(
            f"{name}: {what} needs about {format_bytes(nbytes)}, above the memory budget of "
            f"{format_bytes(budget)}; use a smaller {name}, or {how}"
        )


def check_at_most(value: int | float, name: str, bound: int | float, why: str = "") -> None:
    """Refuse ``value > bound``, naming ``name`` (``why``: where ``bound`` comes from)."""
    if value > bound:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name}: expected at most {bound}{reason}, got {value!r}")


def batch_bytes(
    n: int,
    channels: int,
    height: int,
    width: int,
    model_size: tuple[int, int] | None = None,
    grad: bool = False,
) -> int:
    """Estimated working memory of scoring ``n`` images (C, H, W) at once, bytes.

    Counts a few float32 copies of each image at its own size, and the model's activations at
    its input size ``model_size`` (the image's own size when None): about 30 bytes per input
    byte without gradients, 160 with (measured on EfficientNet-Lite0).
    """
    own = channels * height * width * 4 * _COPIES
    mh, mw = model_size if model_size is not None else (height, width)
    model = 3 * mh * mw * 4 * (_ACTIVATIONS_GRAD if grad else _ACTIVATIONS)
    return int(n) * (own + model)


def largest_batch(n: int, per_image: int) -> int:
    """The largest batch of at most ``n`` images of ``per_image`` bytes each (its
    :func:`batch_bytes` for one image) that fits the memory budget in force; at least 1 (one
    image is the least a model call takes).

    Example:
        >>> one = batch_bytes(1, 3, 224, 224, grad=True)  # ~100 MB with gradients
        >>> largest_batch(16, one)  # within the default 8 GiB
        16
        >>> with memory_limit(512 * 1024**2, "a test's limit"):
        ...     largest_batch(16, one)
        5
    """
    return max(1, min(int(n), memory_budget() // max(int(per_image), 1)))
