"""Perturbation faithfulness of the quantus catalogue: correlation, estimate, monotonicity,
pixel flipping and region perturbation.

Every map is read at its own resolution (h, w): features are map pixels, and a removal mask
built on the map is upsampled to the image by nearest neighbour, as the deletion curves'
``rule="seed"``. All perturbations go through :meth:`unmask.scoring.Scorer.perturbed`.

- **faithfulness_correlation** (Bhatt et al., "Evaluating and aggregating feature-based model
  explanations", IJCAI 2020): ``runs`` random subsets of ``subset_size`` features (default
  quantus' share, 224 of 224·224, so 224 on a 224² map and 1 on a 7² map) are removed
  (black by default); per image, the Pearson correlation between the sum of the map over each
  subset and the score drop ``s_0 - s_S``. The subsets are drawn from ``seed``, the same for
  every image. Higher is better.
- **faithfulness_estimate** (Alvarez-Melis & Jaakkola, "Towards robust interpretability with
  self-explaining neural networks", NeurIPS 2018): removing one block of features at a time
  (non-cumulative), the correlation of each block's attribution with the score drop. This *is*
  the deletion correlation DC with ``cumulative=False`` (the seed package's variant), so it is
  registered as :class:`~unmask.metrics.DeletionCorrelation` with quantus' logit score.
- **pixel_flipping** (Bach et al., "On pixel-wise explanations ... by layer-wise relevance
  propagation", PLOS ONE 2015): flip the most relevant pixels first to the baseline; the curve
  is the deletion curve, and its area DAUC: registered as :class:`~unmask.metrics.Deletion`.
- **region_perturbation** (Samek et al., "Evaluating the visualization of what a deep neural
  network has learned", IEEE TNNLS 2016): the map is summed over ``patch`` × ``patch`` regions,
  the ``regions`` most relevant regions removed one more per step (MoRF, cumulative) by
  uniform noise, and the score is the AOPC ``1/(L+1) Σ_{k=0}^{L} (s_0 - s_k)``. Higher is better.
- **monotonicity** (Arya et al., "One explanation does not fit all", 2019): start from the
  baseline (black) and reveal the features in **ascending** order of ``|s|``, one block per
  step; 1.0 when the score never decreases from one step to the next, else 0.0. Higher is
  better.
- **monotonicity_correlation** (Nguyen & Martínez, "On quantitative aspects of model
  interpretability", 2020): for each block of features (ascending ``|s|``), ``samples`` draws of
  uniform noise replace it; the block's variance ``mean_k (s_k - s_0)² / s_0²`` (``s_0²`` left
  out when ``|s_0| < 1e-5``), and the Spearman correlation of the blocks' ``Σ |s|`` with it.
  Higher is better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_positive, check_seed
from .._limits import check_at_most
from .._types import Model, SaliencyLike, Target
from ..models import as_classifier, check_model_input
from ..numerics import pearson, spearman_rows
from ..params import Area, BatchSize, Count, RemovalArg, Score, Seed, Side
from ..progress import Progress
from ..registry import METRICS
from ..removal import Constant, Noise, resolve_removal
from ..removal.base import FixedFill
from ..scores import SCORES
from ._prepare import check_saliency, prepare_inputs
from .deletion import (
    Curve,
    Deletion,
    DeletionCorrelation,
    curve_masks,
    curve_steps,
    insertion_curve,
    pixel_ranks,
    plan_steps,
)

__all__ = [
    "faithfulness_correlation",
    "region_perturbation",
    "region_curve",
    "selectivity",
    "sensitivity_n",
    "sensitivity_n_curve",
    "sensitivity_n_sizes",
    "SENSITIVITY_N_FRACTIONS",
    "SensitivityN",
    "monotonicity",
    "monotonicity_correlation",
    "FaithfulnessCorrelation",
    "RegionPerturbation",
    "Monotonicity",
    "MonotonicityCorrelation",
    "Selectivity",
]


def _check_int(value: object, name: str) -> int:
    check_positive(value, name, integer=True)
    assert isinstance(value, int)  # checked above
    return int(value)


def _upsample(m: Tensor, size: tuple[int, int]) -> Tensor:
    return m if tuple(m.shape[-2:]) == size else F.interpolate(m, size=size, mode="nearest")


def faithfulness_correlation(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    subset_size: int | None = None,
    runs: int = 100,
    seed: int = 0,
    removal: Any = None,
    score: str = "logit",
    batch_size: int = 16,
    progress: object = False,
) -> Tensor:
    """Faithfulness correlation (Bhatt et al. 2020) per image (B,) float64.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: maps (B, 1, h, w) (features = map pixels) or an Explanation.
        target: None (top-1), a class or a set of classes per image.
        subset_size: features removed per run, fewer than h·w; None = quantus' share, 224 of
            224·224 features: ``max(1, round(h·w / 224))``.
        runs: random subsets (quantus ``nr_runs``: 100).
        seed: seed of the subsets (the same subsets for every image).
        removal: the baseline (default black, as quantus).
        score: ``"logit"`` (default, quantus' ``softmax=False``), ``"prob"``, ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar (bool) or callback ``(done, total)``.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> m = region_mask(16, 16).float()
        >>> r = faithfulness_correlation(region_model(), region_images(1, 16), m, subset_size=32)
        >>> float(r) > 0.9
        True
    """
    runs = _check_int(runs, "runs")
    seed = check_seed(seed)
    if subset_size is not None:
        subset_size = _check_int(subset_size, "subset_size")
    removal = resolve_removal(removal, lambda: Constant("black"))
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score, "progress": progress}
    )
    n = s.shape[-2] * s.shape[-1]
    if subset_size is None:
        subset_size = max(1, round(n / 224))
    return _subset_correlations(x, s, t, base, scorer, [subset_size], runs, seed, removal)[:, 0]


def _subset_correlations(
    x: Tensor,
    s: Tensor,
    t: Tensor,
    base: Tensor,
    scorer: Any,
    sizes: list[int],
    runs: int,
    seed: int,
    removal: Any,
) -> Tensor:
    """Per image and subset size, the Pearson correlation over ``runs`` random subsets of map
    pixels between the map's sum over the subset and the score drop when it is removed.

    The subsets of size ``sizes[k]`` are the first ``sizes[k]`` entries of ``runs`` random
    permutations, drawn from ``seed`` size after size; the same for every image. All
    ``B · len(sizes) · runs`` perturbations go through one :meth:`Scorer.perturbed`.
    Returns (B, len(sizes)) float64.
    """
    b, _, height, width = x.shape
    h, w = s.shape[-2:]
    n = h * w
    for size in sizes:
        if size >= n:
            raise ValueError(
                f"subset_size: expected fewer than the {n} map pixels ({h}x{w}), got {size}"
            )
    gen = torch.Generator().manual_seed(seed)
    subsets = torch.zeros(len(sizes) * runs, n, dtype=torch.bool)
    for k, size in enumerate(sizes):
        chosen = torch.rand(runs, n, generator=gen).argsort(dim=1)[:, :size]
        subsets[k * runs : (k + 1) * runs].scatter_(1, chosen, True)
    per_image = subsets.shape[0]

    def masks(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop)
        m = subsets[j % per_image].reshape(-1, 1, h, w).float()
        return _upsample(m, (height, width))

    index = torch.arange(b).repeat_interleave(per_image)
    after = scorer.perturbed(x, masks, t, removal, index=index, count=b * per_image)
    drops = base.double()[:, None] - after.double().reshape(b, per_image)
    flat = s.flatten(1).double()
    sums = torch.cat(
        [
            flat @ subsets[k * runs : (k + 1) * runs].double().T  # one size at a time:
            for k in range(len(sizes))
        ],
        dim=1,
    )  # (B, sizes · runs), bounded memory
    return pearson(sums.reshape(b * len(sizes), runs), drops.reshape(b * len(sizes), runs)).reshape(
        b, len(sizes)
    )


#: Sensitivity-n's default subset sizes, as fractions of the map's pixels.
SENSITIVITY_N_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)


def _check_fractions(fractions: object) -> tuple[float, ...]:
    if isinstance(fractions, str) or not hasattr(fractions, "__iter__"):
        raise TypeError(
            f"fractions: expected a sequence of numbers in (0, 1), got {type(fractions).__name__}"
        )
    out = tuple(fractions)
    if not out or any(
        isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1 for f in out
    ):
        raise ValueError(
            f"fractions: expected a non-empty sequence of numbers in (0, 1), got {fractions!r}"
        )
    return tuple(float(f) for f in out)


def sensitivity_n_sizes(n_features: int, fractions: Any = SENSITIVITY_N_FRACTIONS) -> list[int]:
    """The subset sizes n of sensitivity-n on ``n_features`` map pixels: ``max(1, round(f·N))``
    for each fraction, at most ``N - 1``, duplicates dropped, ascending.

    Example:
        >>> sensitivity_n_sizes(49)
        [1, 2, 5, 10, 20, 29, 39]
    """
    fractions = _check_fractions(fractions)
    return sorted({min(n_features - 1, max(1, round(f * n_features))) for f in fractions})


def sensitivity_n_curve(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    fractions: Any = SENSITIVITY_N_FRACTIONS,
    runs: int = 100,
    seed: int = 0,
    removal: Any = None,
    score: str = "logit",
    batch_size: int = 16,
    progress: object = False,
) -> tuple[list[int], Tensor]:
    """Sensitivity-n (Ancona et al. 2018) for each subset size n: ``(sizes, (B, len(sizes)))``.

    Per image and n, the Pearson correlation over ``runs`` random subsets S of n map pixels
    between ``Σ_{i∈S} s_i`` and the score drop ``s(x) - s(x_[S removed])``. Arguments as
    :func:`sensitivity_n`.
    """
    runs = _check_int(runs, "runs")
    check_seed(seed)
    fractions = _check_fractions(fractions)
    removal = resolve_removal(removal, lambda: Constant("black"))
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score, "progress": progress}
    )
    n = s.shape[-2] * s.shape[-1]
    if n < 2:
        raise ValueError(f"saliency: expected maps of at least 2 pixels, got {tuple(s.shape)}")
    sizes = sensitivity_n_sizes(n, fractions)
    return sizes, _subset_correlations(x, s, t, base, scorer, sizes, runs, seed, removal)


def sensitivity_n(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    fractions: Any = SENSITIVITY_N_FRACTIONS,
    runs: int = 100,
    seed: int = 0,
    removal: Any = None,
    score: str = "logit",
    batch_size: int = 16,
    progress: object = False,
) -> Tensor:
    """Sensitivity-n (Ancona et al. 2018) averaged over the subset sizes, per image (B,)
    float64; higher is better.

    A map satisfies sensitivity-n when the sum of its values over any n features equals the
    score drop when those features are removed; the paper measures it, for each n, by the
    Pearson correlation of the two over random subsets (:func:`sensitivity_n_curve`, which
    gives the curve over n). This is the mean of that curve over the sizes.

    Args:
        model, x, saliency, target: as :func:`faithfulness_correlation` (features = map pixels).
        fractions: the subset sizes as fractions of the map's pixels (default 1 % to 80 %;
            quantus ``n_max_percentage``: 0.8); see :func:`sensitivity_n_sizes`.
        runs: random subsets per size.
        seed: seed of the subsets (the same subsets for every image).
        removal: the baseline (default black: the paper sets the features to zero).
        score: ``"logit"`` (default), ``"prob"``, ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar (bool) or callback ``(done, total)``.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> m = region_mask(16, 16).float()
        >>> r = sensitivity_n(region_model(), region_images(1, 16), m, runs=20)
        >>> float(r) > 0.9
        True
    """
    return sensitivity_n_curve(
        model,
        x,
        saliency,
        target,
        fractions=fractions,
        runs=runs,
        seed=seed,
        removal=removal,
        score=score,
        batch_size=batch_size,
        progress=progress,
    )[1].mean(1)


def region_curve(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    patch: int = 8,
    regions: int | None = 100,
    removal: Any = None,
    score: str = "prob",
    batch_size: int = 16,
    progress: object = False,
) -> Curve:
    """The MoRF region curve shared by region perturbation and selectivity.

    The map is summed over ``patch`` × ``patch`` regions of map pixels (maps whose side is not
    a multiple have a last, smaller row / column of regions); the regions are ranked by that
    sum (descending, ties by the lower row-major index) and removed one more per step.

    Args:
        model, x, saliency, target: as :func:`faithfulness_correlation`.
        patch: region side in map pixels.
        regions: regions removed (at most the number of regions); None = all of them.
        removal: default uniform noise U(0, 1), seeded (``uniform-noise``).
        score: ``"prob"`` (default), ``"logit"`` or ``"log_prob"``.

    Returns:
        A :class:`~unmask.metrics.Curve` (mode ``"deletion"``): scores (B, T + 1) with the
        clean image at step 0, the mean map value of the region removed at each step (B, T),
        the fraction of the regions removed after each step (T + 1,).

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> c = region_curve(region_model(), region_images(1, 16), region_mask(16, 16).float(),
        ...                  patch=4, regions=None)
        >>> c.scores.shape
        torch.Size([1, 17])
    """
    patch = _check_int(patch, "patch")
    if regions is not None:
        regions = _check_int(regions, "regions")
    removal = resolve_removal(removal, lambda: Noise("uniform"))
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score, "progress": progress}
    )
    b, _, height, width = x.shape
    h, w = s.shape[-2:]
    gh, gw = math.ceil(h / patch), math.ceil(w / patch)
    pad = F.pad(s.double(), (0, gw * patch - w, 0, gh * patch - h))
    summed = F.avg_pool2d(pad, patch, divisor_override=1)  # (B, 1, gh, gw): sum per region
    ranks = pixel_ranks(summed)
    steps = gh * gw if regions is None else min(regions, gh * gw)
    region_of = torch.arange(gh * gw).reshape(1, 1, gh, gw).float()
    region_of = F.interpolate(region_of, scale_factor=patch, mode="nearest")[..., :h, :w]
    region_of = region_of.long().flatten()

    def masks(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop)
        m = curve_masks(
            ranks, j // steps, j % steps + 1, pixels_per_step=1, grid=(gh, gw), size=(gh, gw)
        )  # (N, 1, gh, gw) regions removed
        m = m.flatten(1)[:, region_of].reshape(-1, 1, h, w)
        return _upsample(m, (height, width))

    index = torch.arange(b).repeat_interleave(steps)
    after = scorer.perturbed(x, masks, t, removal, index=index, count=b * steps).reshape(b, steps)
    scores = torch.cat([base[:, None].to(after.dtype), after], dim=1)
    sizes = torch.bincount(region_of, minlength=gh * gw).double()  # map pixels per region
    order = torch.sort(ranks, dim=1).indices[:, :steps]  # the region removed at each step
    mean_s = summed.flatten(1).gather(1, order) / sizes[order]
    fractions = torch.arange(steps + 1, dtype=torch.float64) / (gh * gw)  # of the regions
    return Curve(scores, mean_s, fractions, t, "deletion")


def region_perturbation(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    patch: int = 8,
    regions: int = 100,
    removal: Any = None,
    score: str = "prob",
    batch_size: int = 16,
    progress: object = False,
) -> Tensor:
    """Region perturbation AOPC (Samek et al. 2016) per image (B,) float64.

    Args:
        model, x, saliency, target: as :func:`faithfulness_correlation`.
        patch: region side in map pixels (quantus ``patch_size``: 8); maps whose side is not a
            multiple have a last, smaller row / column of regions.
        regions: regions removed, one more per step (quantus ``regions_evaluation``: 100; at
            most the number of regions).
        removal: default uniform noise U(0, 1), seeded (``uniform-noise``; quantus: "uniform").
        score: ``"prob"`` (default), ``"logit"`` or ``"log_prob"``.
    """
    curve = region_curve(
        model,
        x,
        saliency,
        target,
        patch=patch,
        regions=regions,
        removal=removal,
        score=score,
        batch_size=batch_size,
        progress=progress,
    )
    y = curve.scores.double()
    drops = y[:, :1] - y[:, 1:]
    return drops.sum(1) / y.shape[1]  # the k = 0 drop is 0


def selectivity(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    patch: int = 8,
    removal: Any = None,
    score: str = "prob",
    batch_size: int = 16,
    progress: object = False,
) -> Tensor:
    """Selectivity (Montavon et al. 2018) per image (B,) float64; lower is better.

    Every ``patch`` × ``patch`` region of map pixels is removed, most relevant (largest sum of
    the map) first, one more per step, until none is left; the value is the area under the
    curve of the target's score (the clean image at x = 0, all regions removed at x = 1,
    equally spaced points, trapezoid rule: :func:`~unmask.metrics.curve_auc`). A map whose
    first regions carry the evidence makes the score fall at once: a small area.

    Args:
        model, x, saliency, target: as :func:`faithfulness_correlation`.
        patch: region side in map pixels (quantus ``patch_size``: 8).
        removal: default black (quantus ``perturb_baseline="black"``).
        score: ``"prob"`` (default, quantus' ``softmax=True``), ``"logit"``, ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar (bool) or callback ``(done, total)``.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> x, m = region_images(1, 16), region_mask(16, 16).float()
        >>> bool(selectivity(region_model(), x, m, patch=4) < 0.3)
        True
    """
    removal = resolve_removal(removal, lambda: Constant("black"))
    return region_curve(
        model,
        x,
        saliency,
        target,
        patch=patch,
        regions=None,
        removal=removal,
        score=score,
        batch_size=batch_size,
        progress=progress,
    ).auc()


def monotonicity(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    max_steps: int | None = 196,
    pixels_per_step: int | None = None,
    removal: Any = None,
    score: str = "prob",
    batch_size: int = 16,
    progress: Progress = False,
) -> Tensor:
    """Monotonicity (Arya et al. 2019) per image (B,) float64: 1.0 or 0.0.

    The insertion curve from the baseline (default black) with the features revealed in
    ascending ``|s|`` (ties: the lower row-major index first); 1.0 when its steps 1..T never
    decrease (quantus compares the revealed steps, not the baseline image).
    Steps as the deletion curves' seed rule (``max_steps``, ``pixels_per_step``; quantus:
    ``features_in_step=1``, one pixel per step, i.e. ``max_steps=None``).
    """
    x = check_model_input(as_classifier(model, "model"), x, "x")
    s = check_saliency(saliency, x.shape[0], size=(x.shape[-2], x.shape[-1]))
    curve = insertion_curve(
        model,
        x,
        -s.abs(),
        _target_of(saliency, target),
        removal=resolve_removal(removal, lambda: Constant("black")),
        max_steps=max_steps,
        pixels_per_step=pixels_per_step,
        score=score,
        batch_size=batch_size,
        progress=progress,
    )
    steps = curve.scores[:, 1:].double()
    return (steps.diff(dim=1) >= 0).all(dim=1).double()


def _target_of(saliency: SaliencyLike, target: Target) -> Any:
    from ..explanation import Explanation

    return saliency.target if target is None and isinstance(saliency, Explanation) else target


class _DrawnNoise(FixedFill):
    """Row ``j`` of a batch gets uniform-noise draw ``j % draws`` (seeded): ``draws`` fills."""

    def __init__(self, draws: int, seed: int) -> None:
        self.draws, self.seed = draws, seed

    @property
    def spec(self) -> str:
        return f"drawn-uniform-noise:draws={self.draws},seed={self.seed}"

    def fill(self, x: Tensor) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.rand(self.draws, *x.shape[1:], generator=gen, dtype=torch.float64)
        rows = torch.arange(x.shape[0]) % self.draws
        return noise[rows].to(device=x.device, dtype=x.dtype)


def monotonicity_correlation(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    max_steps: int | None = 196,
    pixels_per_step: int | None = None,
    samples: int = 10,
    seed: int = 0,
    score: str = "prob",
    batch_size: int = 16,
    progress: object = False,
) -> Tensor:
    """Monotonicity correlation (Nguyen & Martínez 2020) per image (B,) float64.

    Args:
        model, x, saliency, target: as :func:`faithfulness_correlation`.
        max_steps, pixels_per_step: the blocks of features, as the deletion curves' seed rule
            (quantus: one pixel per block, ``max_steps=None``).
        samples: uniform-noise draws per block (quantus ``nr_samples``: 100).
        seed: seed of the draws (the same draws for every image and block).
        score: ``"prob"`` (default, quantus' ``softmax=True``), ``"logit"``, ``"log_prob"``.
    """
    samples = _check_int(samples, "samples")
    seed = check_seed(seed)
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score, "progress": progress}
    )
    b, _, height, width = x.shape
    h, w = s.shape[-2:]
    a = s.abs().double()
    per, steps = plan_steps(h * w, max_steps=max_steps, pixels_per_step=pixels_per_step)
    ranks = pixel_ranks(-a)  # ascending |s|
    block = (ranks // per).clamp(max=steps - 1)  # (B, h·w)
    sums = torch.zeros(b, steps, dtype=torch.float64).scatter_add_(1, block, a.flatten(1))
    xs = x.repeat_interleave(samples, dim=0)  # image i, draw k at row i·samples + k
    targets = t.repeat_interleave(samples, dim=0)
    per_image = steps * samples

    def masks(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop)
        img, step = j // per_image, (j % per_image) // samples
        m = (block[img] == step[:, None]).reshape(-1, 1, h, w).float()
        return _upsample(m, (height, width))

    rows = torch.arange(b * per_image)
    index = (rows // per_image) * samples + rows % samples
    after = (
        scorer.perturbed(
            xs, masks, targets, _DrawnNoise(samples, seed), index=index, count=b * per_image
        )
        .reshape(b, steps, samples)
        .double()
    )
    y = base.double()
    inv = torch.where(y.abs() >= 1e-5, 1 / y.abs().clamp(min=1e-5), torch.ones_like(y)) ** 2
    variance = ((after - y[:, None, None]) ** 2).mean(2) * inv[:, None]
    return spearman_rows(sums, variance)


class _Metric:
    kind = "faithfulness"
    higher_is_better = True
    function: Any = None

    def __init__(self, **params: Any) -> None:
        self._params = params

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        """Per-image values (B,) for images (B, 3, H, W) and maps (B, 1, h, w)."""
        return type(self).function(model, x, saliency, target, **self._params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items() if k != "progress")
        return f"{type(self).__name__}({args})"


def _checked_score(score: str, batch_size: int) -> None:
    check_choice(score, "score", SCORES)
    check_positive(batch_size, "batch_size", integer=True)


@METRICS.register("faithfulness_correlation", cost=lambda p, size: p["runs"] + 1)
class FaithfulnessCorrelation(_Metric):
    """Faithfulness correlation (Bhatt et al. 2020): subset attribution vs drop; higher is better.

    Arguments as :func:`faithfulness_correlation` (defaults: quantus' share of features, 224
    of 224², 100 runs, seed 0, black, logit).
    """

    function = staticmethod(faithfulness_correlation)

    def __init__(
        self,
        subset_size: Area | None = None,
        runs: Count = 100,
        seed: Seed = 0,
        *,
        removal: RemovalArg = None,
        score: Score = "logit",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        if subset_size is not None:
            _check_int(subset_size, "subset_size")
        _check_int(runs, "runs")
        _checked_score(score, batch_size)
        self.removal = resolve_removal(removal, lambda: Constant("black"))
        super().__init__(
            subset_size=subset_size,
            runs=runs,
            seed=seed,
            removal=self.removal,
            score=score,
            batch_size=batch_size,
            progress=progress,
        )


@METRICS.register(
    "region_perturbation",
    aliases=("aopc",),
    cost=lambda p, size: min(p["regions"], (size // p["patch"]) ** 2) + 1,
)
class RegionPerturbation(_Metric):
    """Region perturbation (Samek et al. 2016): AOPC of the MoRF region curve; higher is better.

    Arguments as :func:`region_perturbation` (defaults: 8×8 regions, 100 regions, uniform
    noise, prob).
    """

    function = staticmethod(region_perturbation)

    def __init__(
        self,
        patch: Side = 8,
        regions: Count = 100,
        *,
        removal: RemovalArg = None,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        _check_int(patch, "patch"), _check_int(regions, "regions")
        _checked_score(score, batch_size)
        self.removal = resolve_removal(removal, lambda: Noise("uniform"))
        super().__init__(
            patch=patch,
            regions=regions,
            removal=self.removal,
            score=score,
            batch_size=batch_size,
            progress=progress,
        )


@METRICS.register("selectivity", cost=lambda p, size: (size // p["patch"]) ** 2 + 1)
class Selectivity(_Metric):
    """Selectivity (Montavon et al. 2018): area under the region-removal curve; lower is better.

    Arguments as :func:`selectivity` (defaults: 8×8 regions, all removed, black, prob).
    """

    higher_is_better = False
    function = staticmethod(selectivity)

    def __init__(
        self,
        patch: Side = 8,
        *,
        removal: RemovalArg = None,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        _check_int(patch, "patch")
        _checked_score(score, batch_size)
        self.removal = resolve_removal(removal, lambda: Constant("black"))
        super().__init__(
            patch=patch, removal=self.removal, score=score, batch_size=batch_size, progress=progress
        )


@METRICS.register("sensitivity_n", cost=lambda p, size: len(p["fractions"]) * p["runs"] + 1)
class SensitivityN(_Metric):
    """Sensitivity-n (Ancona et al. 2018): subset sum vs drop, averaged over n; higher is better.

    Arguments as :func:`sensitivity_n` (defaults: n from 1 % to 80 % of the map's pixels,
    100 subsets per n, seed 0, black, logit).
    """

    function = staticmethod(sensitivity_n)

    def __init__(
        self,
        fractions: Sequence[float] = SENSITIVITY_N_FRACTIONS,
        runs: Count = 100,
        seed: Seed = 0,
        *,
        removal: RemovalArg = None,
        score: Score = "logit",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        fractions = _check_fractions(fractions)
        _check_int(runs, "runs")
        check_seed(seed)
        _checked_score(score, batch_size)
        self.removal = resolve_removal(removal, lambda: Constant("black"))
        super().__init__(
            fractions=fractions,
            runs=runs,
            seed=seed,
            removal=self.removal,
            score=score,
            batch_size=batch_size,
            progress=progress,
        )


@METRICS.register("monotonicity", cost=lambda p, size: curve_steps({**p, "rule": "seed"}, size) + 2)
class Monotonicity(_Metric):
    """Monotonicity (Arya et al. 2019): 1 when revealing ascending |s| never lowers the score.

    Arguments as :func:`monotonicity` (defaults: 196 steps, black, prob).
    """

    function = staticmethod(monotonicity)

    def __init__(
        self,
        max_steps: Count | None = 196,
        pixels_per_step: Area | None = None,
        *,
        removal: RemovalArg = None,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        _checked_score(score, batch_size)
        plan_steps(1, max_steps=max_steps, pixels_per_step=pixels_per_step)  # checks them
        self.removal = resolve_removal(removal, lambda: Constant("black"))
        super().__init__(
            max_steps=max_steps,
            pixels_per_step=pixels_per_step,
            removal=self.removal,
            score=score,
            batch_size=batch_size,
            progress=progress,
        )


@METRICS.register(
    "monotonicity_correlation",
    cost=lambda p, size: curve_steps({**p, "rule": "seed"}, size) * p["samples"] + 1,
)
class MonotonicityCorrelation(_Metric):
    """Monotonicity correlation (Nguyen & Martínez 2020): Spearman of |s|, score variance.

    Higher is better.

    Arguments as :func:`monotonicity_correlation` (defaults: 196 blocks, 10 draws, seed 0,
    prob).
    """

    function = staticmethod(monotonicity_correlation)

    def __init__(
        self,
        max_steps: Count | None = 196,
        pixels_per_step: Area | None = None,
        samples: Count = 10,
        seed: Seed = 0,
        *,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        _checked_score(score, batch_size)
        plan_steps(1, max_steps=max_steps, pixels_per_step=pixels_per_step)
        _check_int(samples, "samples")
        check_at_most(samples, "samples", 100_000, "noise draws")
        super().__init__(
            max_steps=max_steps,
            pixels_per_step=pixels_per_step,
            samples=samples,
            seed=seed,
            score=score,
            batch_size=batch_size,
            progress=progress,
        )


METRICS.add(
    "faithfulness_estimate",
    DeletionCorrelation,
    defaults={"cumulative": False, "score": "logit"},
    summary="Faithfulness estimate (Alvarez-Melis & Jaakkola 2018): non-cumulative "
    "deletion correlation (DC, cumulative=False), logit score; higher is better.",
)
METRICS.add(
    "pixel_flipping",
    Deletion,
    summary="Pixel flipping (Bach et al. 2015): the deletion curve's area (DAUC), most "
    "relevant pixels to black first; lower is better.",
)
