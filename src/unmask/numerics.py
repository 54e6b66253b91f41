"""One home for the small numerical helpers that maps and metrics share.

Normalisation of maps (min-max to [0, 1], or by the largest absolute value to [-1, 1]) and
row-wise correlations (Pearson; Spearman with average ranks for ties, as
``scipy.stats.spearmanr``). Each works on a batch at once, one map or one row per leading index,
and leaves what it cannot define (a constant map, a constant row) as zeros or NaN, as stated.

Example:
    >>> import torch
    >>> minmax_normalise(torch.tensor([[[[1.0, 3.0], [2.0, 5.0]]]])).flatten().tolist()
    [0.0, 0.5, 0.25, 1.0]
    >>> spearman_rows(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 8.0, 27.0]])).item()
    1.0
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["average_ranks", "maxabs_normalise", "minmax_normalise", "pearson", "spearman_rows"]


def _per_map(values: Tensor, like: Tensor) -> Tensor:
    """(B,) per-map values shaped to broadcast against maps ``like`` (B, ...)."""
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


def minmax_normalise(maps: Tensor) -> Tensor:
    """Rescale each map (B, ...) to [0, 1] on its own; a constant map becomes all zeros.

    The range is taken over everything but the first dimension; the dtype is kept.

    Example:
        >>> minmax_normalise(torch.full((1, 1, 2, 2), 7.0)).flatten().tolist()
        [0.0, 0.0, 0.0, 0.0]
    """
    flat = maps.flatten(1)
    lo = _per_map(flat.amin(1), maps)
    span = _per_map(flat.amax(1), maps) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (maps - lo) / safe, torch.zeros_like(maps))


def maxabs_normalise(maps: Tensor) -> Tensor:
    """Divide each map (B, ...) by its largest absolute value: [-1, 1], 0 stays 0.

    An all-zero map stays all zeros; the dtype is kept.

    Example:
        >>> maxabs_normalise(torch.tensor([[[[-2.0, 1.0]]]])).flatten().tolist()
        [-1.0, 0.5]
    """
    peak = _per_map(maps.flatten(1).abs().amax(1), maps)
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return torch.where(peak > 0, maps / safe, torch.zeros_like(maps))


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation (B, N), (B, N) -> (B,) float64; NaN for a constant row.

    Example:
        >>> pearson(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 4.0, 7.0]])).item()
        0.9933992677987828
    """
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    return ((a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1))).clamp(-1, 1)


def average_ranks(v: Tensor) -> Tensor:
    """Ranks 1..N per row (B, N), ties given their average rank (``scipy.stats.rankdata``).

    Example:
        >>> average_ranks(torch.tensor([[10.0, 30.0, 20.0, 20.0]])).tolist()
        [[1.0, 4.0, 2.5, 2.5]]
    """
    v = v.double()
    order = torch.sort(v, dim=1, stable=True)
    sorted_v = order.values
    ranks = torch.empty_like(v)
    for i in range(v.shape[0]):  # tie groups differ per row
        _, inverse, counts = torch.unique_consecutive(
            sorted_v[i], return_inverse=True, return_counts=True
        )
        ends = torch.cumsum(counts, 0).double()
        mean_rank = ends - (counts.double() - 1) / 2
        ranks[i, order.indices[i]] = mean_rank[inverse]
    return ranks


def spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Spearman correlation (B, N), (B, N) -> (B,) float64, average ranks for ties;
    NaN for a constant row."""
    return pearson(average_ranks(a), average_ranks(b))
