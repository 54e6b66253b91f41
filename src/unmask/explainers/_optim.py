"""Pieces shared by the optimisation-based explainers (MP, MP2, Extremal Perturbations, FIDO).

These methods differentiate the model's score with respect to a mask, so they call the model
under autograd (the one exception to "every evaluation goes through the Scorer"), and they need
a removal whose result is differentiable with respect to the mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_choice
from ..models import Classifier
from ..removal import is_differentiable
from ..scores import SCORES, select_scores

__all__ = ["model_scores", "require_differentiable", "select_objective", "OBJECTIVES"]

#: Scores an optimisation method can differentiate: the Scorer's, plus the log-odds of FIDO.
OBJECTIVES = (*SCORES, "log_odds")


def require_differentiable(removal: object, method: str) -> None:
    """Raise a ValueError naming ``removal`` when it cannot be differentiated."""
    if not is_differentiable(removal):
        raise ValueError(
            f"removal: {method} optimises its mask by gradient descent and needs a removal that is "
            f"differentiable with respect to the mask (Constant, Blur, Noise, or any removal with "
            f"differentiable = True); got {removal!r}, which is not"
        )


def check_objective(score: object) -> str:
    return check_choice(score, "score", OBJECTIVES)


def select_objective(logits: Tensor, target: Tensor, score: str) -> Tensor:
    """The differentiable ``score`` (N,) of ``target`` ((N,) classes or (N, K) sets).

    ``"log_odds"`` is ``log p_c - log(1 - p_c)`` = ``logit_c - logsumexp_{k != c} logit_k``
    (FIDO's objective), computed stably.
    """
    if score != "log_odds":
        return select_scores(logits, target, score)
    target = target.to(logits.device)
    if target.dtype == torch.bool:  # a set C: log P(C) - log(1 - P(C))
        inside = logits.masked_fill(~target, float("-inf")).logsumexp(1)
        return inside - logits.masked_fill(target, float("-inf")).logsumexp(1)
    target = target.reshape(-1, 1)
    own = logits.gather(1, target).squeeze(1)
    others = logits.scatter(1, target, float("-inf"))
    return own - torch.logsumexp(others, dim=1)


def model_scores(model: Classifier, images: Tensor, target: Tensor, score: str) -> Tensor:
    """Scores (N,) of ``images`` (N, C, H, W) for ``target`` (N,), differentiable."""
    with torch.enable_grad():
        return select_objective(model(images).float(), target, score)
