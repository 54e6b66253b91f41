"""Pieces shared by the optimisation-based explainers (MP, MP2, Extremal Perturbations, FIDO,
and the mask optimiser of ShearletX, WaveletX, CartoonX, PixelMask).

These methods differentiate the model's score with respect to a mask, so they call the model
under autograd (the one exception to "every evaluation goes through the Scorer"), and they need
a removal whose result is differentiable with respect to the mask.

**Convergence.** Each records its loss per image and step in ``extras["loss"]`` (B, steps) and
says whether it converged (:func:`convergence`): with ``k = max(1, round(0.1 · steps))``, the
mean loss of the last ``k`` steps is compared with the mean of the ``k`` steps before them; the
run has converged when that change is below 2 % of the loss's whole range over the run
(``extras["loss_change"]``, ``extras["converged"]``). A run that stops before it settles (40
steps of extremal instead of 800) therefore fails, a loss that has flattened passes, whatever
its scale or offset, and stochastic losses (noise samples, jitter) are compared by window
means. When some image has not converged, one :class:`ConvergenceWarning` names the method and
the images; the maps themselves do not change.
"""

from __future__ import annotations

import warnings
from math import inf

import torch
from torch import Tensor

from .._checks import ScoreTarget, check_choice, check_positive
from .._limits import check_at_most
from ..explanation import Explanation
from ..models import Classifier
from ..removal import is_differentiable
from ..scores import SCORES, select_scores

__all__ = [
    "model_scores",
    "require_differentiable",
    "select_objective",
    "OBJECTIVES",
    "ConvergenceWarning",
    "convergence",
    "record_convergence",
    "CONVERGENCE_WINDOW",
    "CONVERGENCE_TOLERANCE",
    "MAX_LR",
    "check_lr",
    "check_converging",
]

#: The largest learning rate: the optimisers multiply float32 gradients by it.
MAX_LR = 1e30


def check_lr(lr: object, name: str = "lr") -> None:
    """A learning rate: a number in (0, :data:`MAX_LR`]."""
    check_positive(lr, name)
    check_at_most(lr, name, MAX_LR, "a float32 step")  # type: ignore[arg-type]


def check_converging(objective: Tensor, step: int, names: str) -> None:
    """Refuse an optimisation whose objective is no longer finite (it diverged): a ValueError
    naming the hyperparameters ``names`` that set its scale, instead of NaN masks.

    Example:
        >>> check_converging(torch.tensor([float("inf")]), 3, "lr, reg")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: lr, reg: the optimisation diverged at step 3 (a non-finite objective); ...
    """
    if not bool(torch.isfinite(objective.detach()).all()):
        raise ValueError(
            f"{names}: the optimisation diverged at step {step} (a non-finite objective); "
            "use smaller values"
        )


#: The share of the steps in each compared window (the last 10 %, and the 10 % before them).
CONVERGENCE_WINDOW = 0.1
#: Converged: the windows' mean losses differ by less than this share of the loss's range.
CONVERGENCE_TOLERANCE = 0.02


class ConvergenceWarning(UserWarning):
    """A mask optimisation stopped before its loss settled (see :func:`convergence`)."""


def convergence(
    losses: Tensor,
    window: float = CONVERGENCE_WINDOW,
    tolerance: float = CONVERGENCE_TOLERANCE,
) -> tuple[Tensor, Tensor]:
    """Whether each run's loss has settled: (converged (B,) bool, change (B,) float).

    Args:
        losses: (B, steps) the loss of each image at each step.
        window: the share of the steps in each of the two compared windows.
        tolerance: the largest change, as a share of the loss's range, of a converged run.

    Returns:
        ``change = |mean(last k) - mean(the k before)| / (max - min)`` over the run (0 for a
        flat loss; ``inf`` when there are fewer than 2 steps), and ``change < tolerance``.

    Example:
        >>> t = torch.arange(100.0)[:, None]
        >>> converged, change = convergence(torch.cat([torch.exp(-t / 5), 1 - t / 100], 1).T)
        >>> converged.tolist(), [round(v, 3) for v in change.tolist()]
        ([True, False], [0.0, 0.101])
    """
    b, steps = losses.shape
    if steps < 2:
        return torch.zeros(b, dtype=torch.bool), torch.full((b,), inf)
    k = max(1, min(round(window * steps), steps // 2))
    v = losses.double().T
    last, before = v[-k:].mean(0), v[-2 * k : -k].mean(0)
    span = v.amax(0) - v.amin(0)
    change = torch.where(span > 0, (last - before).abs() / span.clamp(min=1e-300), 0.0)
    return change < tolerance, change.float()


def record_convergence(
    explanation: Explanation, losses: Tensor, reached: Tensor | None = None
) -> Explanation:
    """Add ``loss`` (B, steps), ``converged`` (B,) and ``loss_change`` (B,) to the extras of
    ``explanation`` (its map is untouched); warn once (:class:`ConvergenceWarning`) when some
    image has not converged. Returns the explanation.

    ``reached`` (B,) bool: a method with its own stopping rule (MP2: the class probability fell
    to the threshold) gives it, and it is ``converged`` instead of :func:`convergence`.
    """
    losses = losses.detach().float().cpu()
    converged, change = convergence(losses)
    if reached is not None:
        converged = reached.detach().cpu().bool()
        bad = (~converged).nonzero().flatten().tolist()
        if bad:
            warnings.warn(
                f"{explanation.method}: the optimisation stopped before reaching its goal for "
                f"image(s) {bad} (extras['loss'] holds the curve)",
                ConvergenceWarning,
                stacklevel=3,
            )
    explanation.extras.update(loss=losses, converged=converged, loss_change=change)
    if reached is None and not bool(converged.all()):
        bad = (~converged).nonzero().flatten().tolist()
        warnings.warn(
            f"{explanation.method}: the mask optimisation has not converged for image(s) {bad} "
            f"(loss still changing by {float(change.max()):.1%} of its range over the last "
            f"{CONVERGENCE_WINDOW:.0%} of the steps, tolerance {CONVERGENCE_TOLERANCE:.0%}); "
            "raise steps (extras['loss'] holds the curve)",
            ConvergenceWarning,
            stacklevel=3,
        )
    return explanation


#: Scores an optimisation method can differentiate: the Scorer's, plus the log-odds of FIDO.
OBJECTIVES = (*SCORES, "log_odds")


def require_differentiable(removal: object, method: str, name: str = "removal") -> None:
    """Raise a ValueError naming the argument ``name`` when ``removal`` cannot be differentiated."""
    if not is_differentiable(removal):
        raise ValueError(
            f"{name}: {method} optimises its mask by gradient descent and needs a removal that is "
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
    if score != "log_odds" or isinstance(target, ScoreTarget):  # a function: its own score
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
