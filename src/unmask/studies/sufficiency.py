"""Sufficiency of explanations over a set of images (Dasgupta, Frost & Moshkovitz, "Framework for
evaluating faithfulness of local explanations", ICML 2022; quantus ``Sufficiency``).

Local sufficiency of image i's explanation is the probability that another input to which the
same explanation applies gets i's prediction; sufficiency is its mean. As in quantus, an
explanation applies to image j when the two maps are close: each map is ``|s| / max |s|``, the
pairwise distances of the maps (standardised Euclidean by default) are divided by their largest
value, and maps within ``threshold`` (0.6) of each other apply to each other. Per image i, the
share of the other images j within the threshold whose predicted class equals i's; NaN when no
other image is within it (quantus returns 0 there, which reads as "insufficient" where there is
no evidence). Like consistency, one image's value depends on the other images of the batch, so
this is a study over the batch, not a per-image metric. The standardised distance divides each
map pixel's squared difference by that pixel's variance over the batch (``ddof=1``, as
``scipy.spatial.distance.cdist(..., "seuclidean")``); pixels equal in every map (variance 0)
are left out, where scipy (hence quantus) returns NaN distances for the whole batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_choice
from .._types import Model, SaliencyLike
from ..metrics._prepare import check_saliency
from ..models import as_classifier, check_model_input
from ..scoring import Scorer

__all__ = ["sufficiency", "map_distances", "DISTANCES"]

DISTANCES = ("seuclidean", "euclidean")


def map_distances(saliency: SaliencyLike, distance: str = "seuclidean") -> Tensor:
    """Pairwise distances (B, B) float64 of the maps ``|s| / max |s|``, divided by the largest.

    Example:
        >>> s = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).reshape(3, 1, 1, 2)
        >>> map_distances(s, "euclidean").round(decimals=4).tolist()
        [[0.0, 1.0, 0.7071], [1.0, 0.0, 0.7071], [0.7071, 0.7071, 0.0]]
    """
    check_choice(distance, "distance", DISTANCES)
    a = check_saliency(saliency).flatten(1).double().abs()
    a = a / a.max(dim=1, keepdim=True).values.clamp(min=torch.finfo(torch.float64).tiny)
    if distance == "seuclidean" and a.shape[0] > 1:
        var = a.var(dim=0, correction=1)
        keep = var > 0
        a = a[:, keep] / var[keep].sqrt()
    d = torch.cdist(a, a)
    d.fill_diagonal_(0.0)
    top = d.max()
    return d / top if top > 0 else d


def sufficiency(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    *,
    threshold: float = 0.6,
    distance: str = "seuclidean",
    batch_size: int = 16,
) -> Tensor:
    """Sufficiency (Dasgupta et al. 2022) of each image within the batch (B,) float64; higher
    is better.

    Args:
        model: an :class:`unmask.Classifier` (its top-1 class is the prediction).
        x: images (B, 3, H, W) in [0, 1]: the set of inputs.
        saliency: maps (B, 1, h, w) or an Explanation.
        threshold: normalised distance at or below which an explanation applies to another
            image (quantus: 0.6), in [0, 1].
        distance: ``"seuclidean"`` (default, quantus) or ``"euclidean"``.
        batch_size: images per forward pass.

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> s = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> sufficiency(region_model(), region_images(3, 16), s, threshold=1.0).tolist()
        [1.0, 1.0, 1.0]
    """
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        raise ValueError(f"threshold: expected a number in [0, 1], got {threshold!r}")
    model = as_classifier(model, "model")
    x = check_model_input(model, x, "x")
    d = map_distances(check_saliency(saliency, x.shape[0]), distance)
    close = d <= threshold
    close.fill_diagonal_(False)
    predicted = Scorer(model, batch_size=batch_size).top1(x)
    same = predicted[None, :] == predicted[:, None]
    counts = close.sum(1).double()
    hits = (close & same).sum(1).double()
    return torch.where(counts > 0, hits / counts.clamp(min=1), math.nan)
