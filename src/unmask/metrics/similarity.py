"""Similarity of two saliency maps.

Seed 001 (Agarwal & Nguyen 2020, Sec. 4.4, Table S1), following Bansal et al. 2020 (SAM) and
Adebayo et al. 2018, compares heatmaps with three scikit-image / scipy measures, after
upsampling every map to the image size:

* **SSIM** -- ``skimage.metrics.structural_similarity`` with ``win_size=5`` on maps min-max
  normalised to [0, 1] one by one, so ``data_range=1`` (the paper gives the window; the
  per-map normalisation is what makes maps of different methods and scales comparable).
* **Pearson correlation of HOG features** -- ``skimage.feature.hog`` with
  ``pixels_per_cell=(16, 16)`` and otherwise scikit-image's defaults (9 orientations, 3×3
  cells per block, L2-Hys) on the normalised maps, then ``scipy.stats.pearsonr``. A map smaller
  than 3 cells a side (e.g. 32×32) uses blocks as large as it has cells.
* **Spearman rank correlation** -- of the flattened maps (optionally of their absolute values,
  as in Adebayo et al.'s sanity checks), with average ranks for ties as ``scipy.stats.spearmanr``
  (:func:`unmask.numerics.spearman_rows`; equal to scipy's value in float32).

All return one value per image (B,); 1 means identical (up to the invariance of the measure);
higher is better. A correlation is undefined when a map is constant: the value is then NaN
(scipy's convention), never a made-up number.

The robustness study and the sanity checks built on these measures live in
:mod:`unmask.studies` (they run explainers; metrics never do).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .._checks import check_positive
from ..numerics import minmax_normalise, spearman_rows
from ..params import Side
from ..registry import METRICS
from ._prepare import check_saliency

__all__ = [
    "ssim",
    "hog_pearson",
    "spearman",
    "similarity_function",
    "SIMILARITIES",
    "Similarity",
    "SSIM",
    "HOGPearson",
    "Spearman",
]


def _pair(a: object, b: object) -> tuple[Tensor, Tensor]:
    a, b = check_saliency(a, name="a"), check_saliency(b, name="b")
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    return a, b


def _numpy(maps: Tensor) -> np.ndarray:
    return maps[:, 0].detach().cpu().double().numpy()


def ssim(a: Tensor, b: Tensor, win_size: int = 5) -> Tensor:
    """SSIM (B,) of min-max normalised maps, ``structural_similarity(win_size=5, data_range=1)``.

    Args:
        a, b: maps (B, 1, H, W) of the same shape (H, W >= win_size).
        win_size: odd side of the uniform SSIM window (seed 001: 5).

    Example:
        >>> a = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim(a, 3 * a + 1).tolist()
        [1.0, 1.0]
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    check_positive(win_size, "win_size", integer=True)
    if win_size % 2 == 0 or not 3 <= win_size <= min(a.shape[-2:]):
        raise ValueError(
            f"win_size: expected an odd number in [3, {min(a.shape[-2:])}] (the map size), "
            f"got {win_size}"
        )
    na, nb = _numpy(minmax_normalise(a)), _numpy(minmax_normalise(b))
    values = [
        structural_similarity(p, q, win_size=win_size, data_range=1.0)
        for p, q in zip(na, nb, strict=True)
    ]
    return torch.tensor(values, dtype=torch.float32)


def _correlation(fn: Callable[..., Any], p: np.ndarray, q: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN
        if np.ptp(p) == 0 or np.ptp(q) == 0:
            return float("nan")
        return float(fn(p, q)[0])


def hog_features(
    maps: Tensor, pixels_per_cell: int = 16, orientations: int = 9, cells_per_block: int = 3
) -> list[np.ndarray]:
    """HOG feature vectors of min-max normalised maps (one per map), with scikit-image."""
    from skimage.feature import hog

    check_positive(pixels_per_cell, "pixels_per_cell", integer=True)
    h, w = maps.shape[-2:]
    cells = min(h // pixels_per_cell, w // pixels_per_cell)
    if cells < 1:
        raise ValueError(f"pixels_per_cell: {pixels_per_cell} is larger than the {h}x{w} maps")
    block = min(cells_per_block, cells)
    return [
        hog(
            m,
            orientations=orientations,
            pixels_per_cell=(pixels_per_cell, pixels_per_cell),
            cells_per_block=(block, block),
        )
        for m in _numpy(minmax_normalise(maps))
    ]


def hog_pearson(a: Tensor, b: Tensor, pixels_per_cell: int = 16) -> Tensor:
    """Pearson correlation (B,) of the HOG features of two maps (Bansal et al. 2020; seed 001).

    Example:
        >>> a = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> round(hog_pearson(a, a).item(), 6)
        1.0
    """
    from scipy.stats import pearsonr

    a, b = _pair(a, b)
    fa, fb = hog_features(a, pixels_per_cell), hog_features(b, pixels_per_cell)
    return torch.tensor(
        [_correlation(pearsonr, p, q) for p, q in zip(fa, fb, strict=True)], dtype=torch.float32
    )


def spearman(a: Tensor, b: Tensor, absolute: bool = False) -> Tensor:
    """Spearman rank correlation (B,) of the flattened maps (of their absolute values if asked).

    Example:
        >>> a = torch.arange(16.).reshape(1, 1, 4, 4)
        >>> spearman(a, a ** 3).item(), spearman(a, -a).item()
        (1.0, -1.0)
    """
    a, b = _pair(a, b)
    if absolute:
        a, b = a.abs(), b.abs()
    flat_a, flat_b = a.detach().cpu().flatten(1), b.detach().cpu().flatten(1)
    return spearman_rows(flat_a, flat_b).float()


#: Name -> function (a, b) -> (B,) of the similarity measures.
#: The names of :data:`SIMILARITIES`.
Similarity = Literal["ssim", "hog", "spearman", "spearman_abs"]
SIMILARITIES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ssim": ssim,
    "hog": hog_pearson,
    "spearman": spearman,
    "spearman_abs": lambda a, b: spearman(a, b, absolute=True),
}


def similarity_function(
    name: str | Callable[[Tensor, Tensor], Tensor],
) -> Callable[[Tensor, Tensor], Tensor]:
    """A similarity function by name (ssim, hog, spearman, spearman_abs), or a function as is."""
    if callable(name):
        return name
    if name not in SIMILARITIES:
        raise ValueError(
            f"similarity: expected one of {', '.join(map(repr, SIMILARITIES))} or a function, "
            f"got {name!r}"
        )
    return SIMILARITIES[name]


# ----------------------------------------------------------------------------- registered metrics
@METRICS.register("ssim", aliases=("map_ssim",))
class SSIM:
    """SSIM of two saliency maps (scikit-image, window 5, per-map min-max normalisation).

    Call: ``metric(a (B, 1, H, W), b (B, 1, H, W)) -> (B,)``; 1 = identical. Higher is better.
    """

    kind = "similarity"
    higher_is_better = True

    def __init__(self, win_size: Side = 5) -> None:
        check_positive(win_size, "win_size", integer=True)
        if win_size % 2 == 0:
            raise ValueError(f"win_size: expected an odd number, got {win_size}")
        self.win_size = win_size

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return ssim(a, b, self.win_size)


@METRICS.register("hog_pearson", aliases=("hog",))
class HOGPearson:
    """Pearson correlation of the HOG features of two maps (scikit-image ``hog``, 16 px cells).

    Call: ``metric(a (B, 1, H, W), b (B, 1, H, W)) -> (B,)`` in [-1, 1]. Higher is better.
    """

    kind = "similarity"
    higher_is_better = True

    def __init__(self, pixels_per_cell: Side = 16) -> None:
        check_positive(pixels_per_cell, "pixels_per_cell", integer=True)
        self.pixels_per_cell = pixels_per_cell

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return hog_pearson(a, b, self.pixels_per_cell)


@METRICS.register("spearman", aliases=("rank_correlation",))
class Spearman:
    """Spearman rank correlation of two maps, of absolute values when ``absolute``.

    Call: ``metric(a (B, 1, H, W), b (B, 1, H, W)) -> (B,)`` in [-1, 1]. Higher is better.
    """

    kind = "similarity"
    higher_is_better = True

    def __init__(self, absolute: bool = False) -> None:
        if not isinstance(absolute, bool):
            raise TypeError(f"absolute: expected a bool, got {absolute!r}")
        self.absolute = absolute

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return spearman(a, b, self.absolute)


METRICS.add(
    "spearman_abs",
    Spearman,
    defaults={"absolute": True},
    summary="Spearman rank correlation of the absolute values of two maps (Adebayo et al. 2018).",
)
