"""Consistency of explanations over a set of images (Dasgupta, Frost & Moshkovitz, "Framework for
evaluating faithfulness of local explanations", ICML 2022; quantus ``Consistency``).

Consistency is the probability that two inputs with the same (discretised) explanation get the
same prediction. It is defined over a set of inputs, so one image's value depends on the other
images: it is a study over the batch, not a per-image metric. Here an explanation is
discretised as the set of its ``top_n`` largest map pixels by ``|s|`` together with their signs
(ties broken by the lower index); per image i, the share of the other images j with the same
discretised explanation whose predicted class equals i's (NaN when no other image shares i's
explanation). quantus' ``top_n_sign`` takes the signs of the *first* n entries of the
flattened map (``np.sign(a)[:n]``), not of the n largest; this follows the paper's intent of a
coarse summary of the explanation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_positive
from .._types import Model, SaliencyLike
from ..metrics._prepare import check_saliency
from ..models import as_classifier, check_model_input
from ..scoring import Scorer

__all__ = ["consistency", "discretise_top_n"]


def discretise_top_n(saliency: SaliencyLike, top_n: int = 5) -> list[tuple[tuple[int, int], ...]]:
    """Per map, the sorted ``(index, sign)`` pairs of its ``top_n`` largest ``|s|`` pixels.

    Example:
        >>> s = torch.tensor([[[[0.0, -3.0], [2.0, 0.5]]]])
        >>> discretise_top_n(s, 2)
        [((1, -1), (2, 1))]
    """
    check_positive(top_n, "top_n", integer=True)
    s = check_saliency(saliency).flatten(1).double()
    if top_n > s.shape[1]:
        raise ValueError(f"top_n: expected at most the {s.shape[1]} map pixels, got {top_n}")
    order = torch.sort(-s.abs(), dim=1, stable=True).indices[:, :top_n]
    signs = torch.sign(torch.gather(s, 1, order)).long()
    return [
        tuple(sorted(zip(o.tolist(), g.tolist(), strict=True)))
        for o, g in zip(order, signs, strict=True)
    ]


def consistency(
    model: Model, x: Tensor, saliency: SaliencyLike, *, top_n: int = 5, batch_size: int = 16
) -> Tensor:
    """Consistency (Dasgupta et al. 2022) of each image within the batch (B,) float64; higher
    is better.

    Args:
        model: an :class:`unmask.Classifier` (its top-1 class is the prediction).
        x: images (B, 3, H, W) in [0, 1]: the set of inputs.
        saliency: maps (B, 1, h, w) or an Explanation.
        top_n: map pixels in the discretised explanation (quantus' default n: 5).
        batch_size: images per forward pass.

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> s = torch.zeros(3, 1, 4, 4); s[:, 0, 0, 0] = 1.0
        >>> consistency(region_model(), region_images(3, 16), s, top_n=1).tolist()
        [1.0, 1.0, 1.0]
    """
    model = as_classifier(model, "model")
    x = check_model_input(model, x, "x")
    keys = discretise_top_n(check_saliency(saliency, x.shape[0]), top_n)
    predicted = Scorer(model, batch_size=batch_size).top1(x).tolist()
    out = []
    for i, key in enumerate(keys):
        same = [
            predicted[j] == predicted[i] for j, other in enumerate(keys) if j != i and other == key
        ]
        out.append(sum(same) / len(same) if same else math.nan)
    return torch.tensor(out, dtype=torch.float64)
