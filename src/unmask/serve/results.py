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

__all__ = ["StoredResult", "ResultStore", "colourise", "encode_map", "map_info", "FORMATS"]

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


class ResultStore:
    """Results by key, least recently used dropped beyond ``max_results`` (thread-safe)."""

    def __init__(self, max_results: int = 64) -> None:
        if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
            raise ValueError(f"max_results: expected a positive int, got {max_results!r}")
        self.max_results = max_results
        self._items: OrderedDict[str, StoredResult] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, result: StoredResult) -> StoredResult:
        with self._lock:
            self._items[result.key] = result
            self._items.move_to_end(result.key)
            while len(self._items) > self.max_results:
                self._items.popitem(last=False)
        return result

    def get(self, key: str) -> StoredResult:
        """The result stored under ``key``; KeyError when there is none (or it was dropped)."""
        with self._lock:
            result = self._items[key]
            self._items.move_to_end(key)
            return result

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
