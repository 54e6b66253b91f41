"""Early stopping for the sample-count methods: stop when successive partial maps agree.

RISE, LIME and occlusion cost one model evaluation per sample (mask, on/off pattern, patch
position). With ``tolerance`` set, they score their samples in blocks (``check_every`` samples;
for occlusion, one coarse-to-fine level), form the partial map after each block, and stop an
image when the **change** between two successive partial maps,

    change = 1 - Pearson(previous map, current map)      (over the pixels, per target)

stays below ``tolerance`` for ``patience`` checks in a row. An image with several targets
(``explain_each``) stops when all its targets have converged (they share the perturbations);
the images of a batch stop independently, so a batch gives the maps of one call per image.
The blocks run through the batched engine; the check is between blocks, never per sample.

Correlation is scale free: a partial RISE sum and its normalised estimate have the same change.
Equal maps have change 0; a constant map has change 1 against any other map.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_positive

__all__ = ["Convergence", "map_change", "check_stopping"]


def check_stopping(tolerance: object, check_every: object, patience: object) -> None:
    """Check the early-stopping arguments (``tolerance=None`` turns early stopping off).

    Raises:
        TypeError / ValueError naming the argument: ``tolerance`` not None or a positive finite
        number; ``check_every`` or ``patience`` not a positive int.
    """
    if tolerance is not None:
        check_positive(tolerance, "tolerance")
    if check_every is not None:
        check_positive(check_every, "check_every", integer=True)
    check_positive(patience, "patience", integer=True)


def map_change(previous: Tensor, current: Tensor) -> Tensor:
    """``1 - Pearson correlation`` of each pair of maps, over the last dimension.

    Args:
        previous, current: maps (..., P) (e.g. (B, T, H·W)).

    Returns:
        (...) float64 changes in [0, 2]; 0 for equal maps; 1 when one map has zero variance
        and they differ.

    Example:
        >>> a = torch.tensor([[0., 1., 2.], [1., 1., 1.]])
        >>> b = torch.tensor([[0., 2., 4.], [1., 1., 1.]])
        >>> [round(v, 6) for v in map_change(a, b).tolist()]
        [0.0, 0.0]
    """
    a, b = previous.double(), current.double()
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    flat = (na == 0) | (nb == 0)
    r = (a * b).sum(-1) / (na * nb).clamp(min=1e-300)
    same = (previous.double() == current.double()).all(-1)
    change = torch.where(flat, torch.ones_like(r), (1 - r).clamp(0, 2))
    return torch.where(same, torch.zeros_like(r), change)


class Convergence:
    """The stopping rule over a batch: per image, ``patience`` checks in a row below tolerance.

    Call :meth:`update` after each block with the partial maps of the images still running;
    it returns which of them stop now.

    Args:
        tolerance: the largest change counted as converged.
        patience: the number of successive checks that must be below ``tolerance``.
        images: the batch size B.

    Attributes:
        changes: per image, the change at each of its checks (the first block has none).

    Example:
        >>> rule = Convergence(0.01, 1, images=1)
        >>> m = torch.rand(1, 1, 16)
        >>> first = rule.update(torch.tensor([0]), m)  # nothing to compare with yet
        >>> first.tolist(), rule.update(torch.tensor([0]), 2 * m).tolist()
        ([False], [True])
    """

    def __init__(self, tolerance: float, patience: int, images: int) -> None:
        self.tolerance, self.patience = float(tolerance), int(patience)
        self.previous: list[Tensor | None] = [None] * images
        self.streak = [0] * images
        self.changes: list[list[float]] = [[] for _ in range(images)]

    def update(self, active: Tensor, maps: Tensor) -> Tensor:
        """Record the partial maps (A, T, P) of the images ``active`` (A,); (A,) bool: stop now."""
        stop = torch.zeros(len(active), dtype=torch.bool)
        for k, i in enumerate(active.tolist()):
            prev, self.previous[i] = self.previous[i], maps[k].clone()
            if prev is None:
                continue
            change = float(map_change(prev, maps[k]).max())  # all targets of the image
            self.changes[i].append(change)
            self.streak[i] = self.streak[i] + 1 if change <= self.tolerance else 0
            stop[k] = self.streak[i] >= self.patience
        return stop

    def history(self) -> Tensor:
        """(B, C) float32 the changes of each image's checks, NaN-padded to the longest."""
        width = max((len(c) for c in self.changes), default=0)
        out = torch.full((len(self.changes), width), math.nan)
        for i, c in enumerate(self.changes):
            out[i, : len(c)] = torch.tensor(c, dtype=torch.float32)
        return out
