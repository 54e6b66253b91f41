"""Similarity of two saliency maps, and the robustness study built on it.

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
* **Spearman rank correlation** -- ``scipy.stats.spearmanr`` of the flattened maps (optionally
  of their absolute values, as in Adebayo et al.'s sanity checks).

All return one value per image (B,); 1 means identical (up to the invariance of the measure);
higher is better. A correlation is undefined when a map is constant: the value is then NaN
(scipy's convention), never a made-up number.

:func:`robustness` runs one explainer under several hyperparameter settings or seeds and
reports the mean pairwise similarity per image (seed 001's robustness study).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_positive, check_targets
from ..explanation import Explanation
from ..models import as_classifier, check_model_input
from ..registry import METRICS
from ..scoring import Scorer
from .localisation import check_saliency

__all__ = [
    "minmax_normalise",
    "ssim",
    "hog_pearson",
    "spearman",
    "similarity_function",
    "SIMILARITIES",
    "SSIM",
    "HOGPearson",
    "Spearman",
    "robustness",
    "RobustnessResult",
]


def _pair(a: object, b: object) -> tuple[Tensor, Tensor]:
    a, b = check_saliency(a, "a"), check_saliency(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    return a, b


def minmax_normalise(maps: Tensor) -> Tensor:
    """Rescale each map (B, 1, H, W) to [0, 1] on its own; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)
    span = (hi - lo).reshape(-1, 1, 1, 1)
    out = (maps - lo.reshape(-1, 1, 1, 1)) / span.clamp(min=torch.finfo(maps.dtype).tiny)
    return torch.where(span > 0, out, torch.zeros_like(maps))


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
    if win_size % 2 == 0 or win_size > min(a.shape[-2:]):
        raise ValueError(f"win_size: expected an odd number <= {min(a.shape[-2:])} (the map size), got {win_size}")
    na, nb = _numpy(minmax_normalise(a)), _numpy(minmax_normalise(b))
    values = [structural_similarity(p, q, win_size=win_size, data_range=1.0) for p, q in zip(na, nb, strict=True)]
    return torch.tensor(values, dtype=torch.float32)


def _correlation(fn: Callable[..., Any], p: np.ndarray, q: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN
        if np.ptp(p) == 0 or np.ptp(q) == 0:
            return float("nan")
        return float(fn(p, q)[0])


def hog_features(maps: Tensor, pixels_per_cell: int = 16, orientations: int = 9,
                 cells_per_block: int = 3) -> list[np.ndarray]:
    """HOG feature vectors of min-max normalised maps (one per map), with scikit-image."""
    from skimage.feature import hog

    check_positive(pixels_per_cell, "pixels_per_cell", integer=True)
    h, w = maps.shape[-2:]
    cells = min(h // pixels_per_cell, w // pixels_per_cell)
    if cells < 1:
        raise ValueError(f"pixels_per_cell: {pixels_per_cell} is larger than the {h}x{w} maps")
    block = min(cells_per_block, cells)
    return [hog(m, orientations=orientations, pixels_per_cell=(pixels_per_cell, pixels_per_cell),
                cells_per_block=(block, block)) for m in _numpy(minmax_normalise(maps))]


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
    return torch.tensor([_correlation(pearsonr, p, q) for p, q in zip(fa, fb, strict=True)], dtype=torch.float32)


def spearman(a: Tensor, b: Tensor, absolute: bool = False) -> Tensor:
    """Spearman rank correlation (B,) of the flattened maps (of their absolute values if asked).

    Example:
        >>> a = torch.arange(16.).reshape(1, 1, 4, 4)
        >>> spearman(a, a ** 3).item(), spearman(a, -a).item()
        (1.0, -1.0)
    """
    from scipy.stats import spearmanr

    a, b = _pair(a, b)
    if absolute:
        a, b = a.abs(), b.abs()
    fa, fb = _numpy(a).reshape(a.shape[0], -1), _numpy(b).reshape(b.shape[0], -1)
    return torch.tensor([_correlation(spearmanr, p, q) for p, q in zip(fa, fb, strict=True)], dtype=torch.float32)


#: Name -> function (a, b) -> (B,) of the similarity measures.
SIMILARITIES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ssim": ssim,
    "hog": hog_pearson,
    "spearman": spearman,
    "spearman_abs": lambda a, b: spearman(a, b, absolute=True),
}


def similarity_function(name: str | Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """A similarity function by name (``ssim``, ``hog``, ``spearman``, ``spearman_abs``) or itself."""
    if callable(name):
        return name
    if name not in SIMILARITIES:
        raise ValueError(f"similarity: expected one of {', '.join(map(repr, SIMILARITIES))} or a function, got {name!r}")
    return SIMILARITIES[name]


# ----------------------------------------------------------------------------- registered metrics
@METRICS.register("ssim", aliases=("map_ssim",))
class SSIM:
    """SSIM of two saliency maps (scikit-image, window 5, per-map min-max normalisation).

    Call: ``metric(a (B, 1, H, W), b (B, 1, H, W)) -> (B,)``; 1 = identical. Higher is better.
    """

    kind = "similarity"
    higher_is_better = True

    def __init__(self, win_size: int = 5) -> None:
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

    def __init__(self, pixels_per_cell: int = 16) -> None:
        check_positive(pixels_per_cell, "pixels_per_cell", integer=True)
        self.pixels_per_cell = pixels_per_cell

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return hog_pearson(a, b, self.pixels_per_cell)


@METRICS.register("spearman", aliases=("rank_correlation",))
class Spearman:
    """Spearman rank correlation of two maps (scipy), of absolute values when ``absolute``.

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


METRICS.add("spearman_abs", Spearman, defaults={"absolute": True},
            summary="Spearman rank correlation of the absolute values of two maps (Adebayo et al. 2018).")


# ----------------------------------------------------------------------------- robustness study
def run_explainer(model: Any, x: Tensor, method: str | Callable[..., Any], target: Tensor,
                  **kwargs: Any) -> Tensor:
    """Saliency (B, 1, H, W) of ``method`` (a registered name or ``fn(model, x, target, **kw)``)."""
    if callable(method):
        out = method(model, x, target, **kwargs)
    else:
        from ..api import explain

        out = explain(model, x, method=method, target=target, **kwargs)
    maps = out.saliency if isinstance(out, Explanation) else out
    maps = check_saliency(maps, "explainer output")
    if maps.shape[0] != x.shape[0]:
        raise ValueError(f"explainer output: expected {x.shape[0]} maps, got {maps.shape[0]}")
    return maps.cpu()


def fixed_target(model: Any, x: Tensor, target: Any) -> tuple[Any, Tensor, Tensor]:
    """Checked model, images and a target tensor (B,) (the top-1 class when ``target`` is None)."""
    model = as_classifier(model, "model")
    x = check_model_input(model, x, "x")
    t = check_targets(target, x.shape[0], model.num_classes, "target")
    if t is None:
        t = Scorer(model).top1(x)
    return model, x, t


@dataclass
class RobustnessResult:
    """Mean pairwise similarity of the maps of several runs of one explainer.

    Attributes:
        scores: similarity name -> (B,) mean over the pairs of runs, per image (pairs whose
            similarity is undefined, NaN, are left out of the mean).
        pairwise: similarity name -> (P, B) the value of every pair of runs.
        pairs: the P pairs of run indices (i, j), i < j.
        runs: the hyperparameters of every run (a setting, or ``{"seed": s}``).
        maps: (R, B, 1, H, W) the maps of the R runs.
    """

    scores: dict[str, Tensor]
    pairwise: dict[str, Tensor]
    pairs: list[tuple[int, int]]
    runs: list[dict[str, Any]]
    maps: Tensor = field(repr=False)

    def mean(self, name: str | None = None) -> float:
        """The mean over images of :attr:`scores` (of the only or the named similarity)."""
        key = name if name is not None else next(iter(self.scores))
        return float(torch.nanmean(self.scores[key]))


def robustness(model: Any, x: Tensor, method: str | Callable[..., Any] = "occlusion",
               settings: Sequence[dict[str, Any]] | None = None, seeds: Sequence[int] | None = None,
               similarity: str | Sequence[str] = "ssim", target: Any = None,
               **common: Any) -> RobustnessResult:
    """How much an explainer's maps change across hyperparameter settings or random seeds.

    Runs ``method`` once per setting (``unmask.explain(model, x, method, **common, **setting)``)
    or once per seed (``seed=s``), all for the same target class, and averages the similarity
    over every pair of runs, per image -- seed 001's robustness study (Sec. 4.4, Table S1: e.g.
    SP over patch sizes 5..53, LIME over 5 seeds).

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        method: a registered method name, or a function ``fn(model, x, target, **kwargs)``
            returning an Explanation or maps (B, 1, H, W).
        settings: hyperparameter dicts, one per run (give this or ``seeds``).
        seeds: random seeds, one per run.
        similarity: ``"ssim"``, ``"hog"``, ``"spearman"``, ``"spearman_abs"`` or a list of them.
        target: class per image; None = the model's top-1 class, fixed for every run.
        **common: hyperparameters shared by all runs.

    Returns:
        A :class:`RobustnessResult`; ``result.scores["ssim"]`` is (B,).
    """
    if (settings is None) == (seeds is None):
        raise ValueError("settings, seeds: give exactly one of them (a list of hyperparameter dicts, or of seeds)")
    if settings is not None:
        runs = [dict(s) for s in settings]
        if not all(isinstance(s, dict) for s in settings):
            raise TypeError("settings: expected a list of dicts of hyperparameters")
    else:
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):  # type: ignore[union-attr]
            raise TypeError(f"seeds: expected a list of ints, got {seeds!r}")
        runs = [{"seed": s} for s in seeds]  # type: ignore[union-attr]
        if isinstance(method, str):
            from .. import api  # noqa: F401  (registers every method)
            from ..registry import METHODS

            if not METHODS.get(method).accepts("seed"):
                raise ValueError(f"seeds: method {method!r} is deterministic (takes no seed); vary settings instead")
    if len(runs) < 2:
        raise ValueError(f"settings/seeds: need at least 2 runs to compare, got {len(runs)}")
    names = [similarity] if isinstance(similarity, str) else list(similarity)
    functions = {n: similarity_function(n) for n in names}
    model, x, t = fixed_target(model, x, target)
    maps = torch.stack([run_explainer(model, x, method, t, **{**common, **run}) for run in runs])
    pairs = list(itertools.combinations(range(len(runs)), 2))
    pairwise = {n: torch.stack([fn(maps[i], maps[j]) for i, j in pairs]) for n, fn in functions.items()}
    scores = {n: torch.nanmean(v, dim=0) for n, v in pairwise.items()}
    return RobustnessResult(scores, pairwise, pairs, runs, maps)
