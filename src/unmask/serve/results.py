"""Finished results of the explorer: their maps (arrays) and numbers (JSON), by result key.

A result is stored under its key (:func:`unmask.explanation.result_key`, the benchmark store's
key) with its maps as float32 arrays; the HTTP API serves each map as a PNG (a colour map, or
the image itself for (H, W, 3) arrays), as NPY and as raw little-endian float32 (``.f32``,
row-major) for the page, which re-thresholds CWOX maps in the browser.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "StoredResult",
    "ResultStore",
    "result_bytes",
    "colourise",
    "encode_map",
    "map_info",
    "FORMATS",
]

#: The formats a map is served in.
FORMATS = ("png", "npy", "f32")


def colourise(values: np.ndarray) -> np.ndarray:
    """A map (H, W) as an RGB image (H, W, 3) uint8 by unmask.viz's colour rule.

    Its own scale anchored at 0 (viridis for a non-negative map, RdBu_r for a signed one,
    :func:`unmask.viz.heatmap`); the page draws its canvases by the same rule from the same
    tables (``static/draw.js``, ``static/colours.js``).

    Example:
        >>> colourise(np.array([[0.0, 1.0]]))[0].tolist()
        [[68, 1, 84], [253, 231, 37]]
    """
    import torch

    from ..viz import heatmap

    v = torch.from_numpy(np.asarray(values, dtype=np.float32))
    rgb = heatmap(v.reshape(1, 1, *v.shape[-2:]))[0].permute(1, 2, 0).numpy()
    return np.round(rgb * 255).astype(np.uint8)


def encode_map(values: np.ndarray, fmt: str) -> tuple[bytes, str]:
    """One map as ``fmt`` (``png``, ``npy`` or ``f32``): (the bytes, the media type)."""
    a = np.ascontiguousarray(values, dtype=np.float32)
    if fmt == "f32":
        return a.astype("<f4").tobytes(), "application/octet-stream"
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, a)
        return buf.getvalue(), "application/octet-stream"
    if fmt != "png":
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if a.ndim == 3:  # an image (H, W, 3) in [0, 1]
        rgb = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
    else:
        rgb = colourise(a)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def map_info(key: str, name: str, values: np.ndarray, **extra: Any) -> dict[str, Any]:
    """The JSON entry of a map: name, shape, value range and its URLs."""
    base = f"/api/results/{key}/{name}"
    return {
        "name": name,
        "shape": list(values.shape),
        "min": float(values.min()),
        "max": float(values.max()),
        "png": base + ".png",
        "npy": base + ".npy",
        "f32": base + ".f32",
        **extra,
    }


@dataclass
class StoredResult:
    """A finished result: its JSON (``data``) and its maps by name (float32 arrays)."""

    key: str
    data: dict[str, Any]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    #: per map, the target it explains (a class or a list of classes), for metrics
    targets: dict[str, Any] = field(default_factory=dict)


def result_bytes(result: StoredResult) -> int:
    """The memory a stored result holds, bytes: its maps, and its JSON's text (an estimate).

    Example:
        >>> result_bytes(StoredResult("k", {}, {"m": np.zeros((4, 4), np.float32)}))
        66
    """
    return sum(int(np.asarray(m).nbytes) for m in result.maps.values()) + len(repr(result.data))


class ResultStore:
    """Results by key, least recently used dropped beyond ``max_results`` results or
    ``max_bytes`` bytes of maps (:func:`result_bytes`); the newest result is always kept.
    Thread-safe.

    Example:
        >>> store = ResultStore(max_results=8, max_bytes=1000)
        >>> for k in "abc":
        ...     _ = store.put(StoredResult(k, {}, {"m": np.zeros(100, np.float32)}))
        >>> len(store), store.nbytes, "c" in store
        (2, 804, True)
    """

    def __init__(self, max_results: int = 64, max_bytes: int = 256 * 1024**2) -> None:
        for name, value in (("max_results", max_results), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.max_results, self.max_bytes = max_results, max_bytes
        self._items: OrderedDict[str, tuple[StoredResult, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held (:func:`result_bytes` of every stored result)."""
        with self._lock:
            return self._bytes

    def put(self, result: StoredResult) -> StoredResult:
        """Store ``result`` under its key (replacing one of the same key)."""
        size = result_bytes(result)
        with self._lock:
            old = self._items.pop(result.key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[result.key] = (result, size)
            self._bytes += size
            while len(self._items) > 1 and (
                len(self._items) > self.max_results or self._bytes > self.max_bytes
            ):
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
        return result

    def get(self, key: str) -> StoredResult:
        """The result stored under ``key``; KeyError when there is none (or it was dropped)."""
        with self._lock:
            result, _ = self._items[key]
            self._items.move_to_end(key)
            return result

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
