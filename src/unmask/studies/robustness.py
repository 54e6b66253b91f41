"""Robustness of an explainer: how much its maps change across hyperparameters or seeds.

Seed 001 (Agarwal & Nguyen 2020, Sec. 4.4, Table S1): run one explainer under several
hyperparameter settings (e.g. SP over patch sizes 5..53) or random seeds (LIME over 5 seeds),
always for the same target class, and report the mean similarity over every pair of runs, per
image, with the measures of :mod:`unmask.metrics.similarity`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._types import ExplainerFactory, Model, Target
from ..api import explain
from ..explanation import Explanation
from ..inputs import check_explainer, prepare
from ..metrics._prepare import check_saliency
from ..metrics.similarity import similarity_function
from ..registry import METHODS

__all__ = ["robustness", "RobustnessResult", "run_explainer"]


def run_explainer(
    model: Model, x: Tensor, method: str | ExplainerFactory, target: Tensor, **kwargs: Any
) -> Tensor:
    """Saliency (B, 1, H, W) of ``method``: a registered name, or a factory
    ``make(model, **kwargs)`` returning an explainer (:data:`unmask._types.ExplainerFactory`)."""
    if callable(method):
        out = check_explainer(method(model, **kwargs), "method(model, ...)")(x, target)
    else:
        out = explain(model, x, method=method, target=target, **kwargs)
    maps = out.saliency if isinstance(out, Explanation) else out
    maps = check_saliency(maps, name="explainer output")
    if maps.shape[0] != x.shape[0]:
        raise ValueError(f"explainer output: expected {x.shape[0]} maps, got {maps.shape[0]}")
    return maps.cpu()


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


def robustness(
    model: Model,
    x: Tensor,
    method: str | Callable[..., Any] = "occlusion",
    settings: Sequence[dict[str, Any]] | None = None,
    seeds: Sequence[int] | None = None,
    similarity: str | Sequence[str] = "ssim",
    target: Target = None,
    **common: Any,
) -> RobustnessResult:
    """How much an explainer's maps change across hyperparameter settings or random seeds.

    Runs ``method`` once per setting (``unmask.explain(model, x, method, **common, **setting)``)
    or once per seed (``seed=s``), all for the same target class, and averages the similarity
    over every pair of runs, per image -- seed 001's robustness study (Sec. 4.4, Table S1: e.g.
    SP over patch sizes 5..53, LIME over 5 seeds).

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        method: a registered method name, or a factory ``make(model, **kwargs)`` returning an
            explainer for ``model`` (an object with ``explain(x, target)``, or a function
            ``fn(x, target)`` returning an Explanation or maps (B, 1, H, W)).
        settings: hyperparameter dicts, one per run (give this or ``seeds``).
        seeds: random seeds, one per run.
        similarity: ``"ssim"``, ``"hog"``, ``"spearman"``, ``"spearman_abs"`` or a list of them.
        target: class per image; None = the model's top-1 class, fixed for every run.
        **common: hyperparameters shared by all runs.

    Returns:
        A :class:`RobustnessResult`; ``result.scores["ssim"]`` is (B,).
    """
    if (settings is None) == (seeds is None):
        raise ValueError(
            "settings, seeds: give exactly one of them "
            "(a list of hyperparameter dicts, or of seeds)"
        )
    if settings is not None:
        runs = [dict(s) for s in settings]
        if not all(isinstance(s, dict) for s in settings):
            raise TypeError("settings: expected a list of dicts of hyperparameters")
    else:
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):  # type: ignore[union-attr]
            raise TypeError(f"seeds: expected a list of ints, got {seeds!r}")
        runs = [{"seed": s} for s in seeds]  # type: ignore[union-attr]
        if isinstance(method, str):
            if not METHODS.get(method).accepts("seed"):
                raise ValueError(
                    f"seeds: method {method!r} is deterministic (takes no seed); "
                    "vary settings instead"
                )
    if len(runs) < 2:
        raise ValueError(f"settings/seeds: need at least 2 runs to compare, got {len(runs)}")
    names = [similarity] if isinstance(similarity, str) else list(similarity)
    functions = {n: similarity_function(n) for n in names}
    model, x, t = prepare(model, x, target)
    maps = torch.stack([run_explainer(model, x, method, t, **{**common, **run}) for run in runs])
    pairs = list(itertools.combinations(range(len(runs)), 2))
    pairwise = {
        n: torch.stack([fn(maps[i], maps[j]) for i, j in pairs]) for n, fn in functions.items()
    }
    scores = {n: torch.nanmean(v, dim=0) for n, v in pairwise.items()}
    return RobustnessResult(scores, pairwise, pairs, runs, maps)
