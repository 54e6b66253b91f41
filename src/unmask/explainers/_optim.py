"""Pieces shared by the optimisation-based explainers (MP, MP2, Extremal Perturbations, FIDO).

These methods differentiate the model's score with respect to a mask, so they call the model
under autograd (the one exception to "every evaluation goes through the Scorer"), and they need
a removal whose result is differentiable with respect to the mask.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_choice
from ..models import Classifier
from ..removal import blend
from ..scoring import SCORES, select_scores

__all__ = ["bind_differentiable", "is_differentiable", "model_scores", "OBJECTIVES"]

#: Scores an optimisation method can differentiate: the Scorer's, plus the log-odds of FIDO.
OBJECTIVES = (*SCORES, "log_odds")


def is_differentiable(removal: object) -> bool:
    """True when ``removal(x, mask)`` is differentiable with respect to ``mask``."""
    return bool(getattr(removal, "differentiable", False))


def require_differentiable(removal: object, method: str) -> None:
    """Raise a ValueError naming ``removal`` when it cannot be differentiated."""
    if not is_differentiable(removal):
        raise ValueError(
            f"removal: {method} optimises its mask by gradient descent and needs a removal that is "
            f"differentiable with respect to the mask (Constant, Blur, Noise, or any removal with "
            f"differentiable = True); got {removal!r}, which is not"
        )


def bind_differentiable(removal: Callable, x: Tensor) -> Callable[[Tensor, Tensor | None], Tensor]:
    """Bind a differentiable removal to images ``x`` (B, C, H, W) for repeated use under autograd.

    Returns ``apply(mask, index=None)``: ``x[index] * (1 - mask) + fill * mask`` for masks
    (N, 1, H, W), gradients flowing to ``mask``. Fixed fills (``removal.fill``) are computed once.
    """
    fill_fn = getattr(removal, "fill", None)
    if fill_fn is not None:
        with torch.no_grad():
            fill = fill_fn(x).detach()

        def apply_fixed(mask: Tensor, index: Tensor | None = None) -> Tensor:
            if index is None:
                return blend(x, fill, mask)
            return blend(x[index], fill[index], mask)

        return apply_fixed

    def apply(mask: Tensor, index: Tensor | None = None) -> Tensor:
        return removal(x if index is None else x[index], mask)

    return apply


def check_objective(score: object) -> str:
    return check_choice(score, "score", OBJECTIVES)


def select_objective(logits: Tensor, target: Tensor, score: str) -> Tensor:
    """The differentiable ``score`` (N,) of class ``target`` (N,) from ``logits`` (N, K).

    ``"log_odds"`` is ``log p_c - log(1 - p_c)`` = ``logit_c - logsumexp_{k != c} logit_k``
    (FIDO's objective), computed stably.
    """
    if score != "log_odds":
        return select_scores(logits, target, score)
    target = target.reshape(-1, 1).to(logits.device)
    own = logits.gather(1, target).squeeze(1)
    others = logits.scatter(1, target, float("-inf"))
    return own - torch.logsumexp(others, dim=1)


def model_scores(model: Classifier, images: Tensor, target: Tensor, score: str) -> Tensor:
    """Scores (N,) of ``images`` (N, C, H, W) for ``target`` (N,), differentiable."""
    with torch.enable_grad():
        return select_objective(model(images).float(), target, score)
