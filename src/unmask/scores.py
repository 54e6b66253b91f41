"""What a method explains: the score of each image's target (a class or a set of classes).

The leaf under the scoring engine, the gradient engine and every method and metric: the three
scores (:data:`SCORES`) and :func:`select_scores`, which reads them off a batch of logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import ScoreTarget

__all__ = ["SCORES", "select_scores"]

#: What a method can explain: the softmax probability, the logit, or the log-probability.
SCORES = ("prob", "logit", "log_prob")


def select_scores(logits: Tensor, target: Tensor, score: str = "prob") -> Tensor:
    """The ``score`` of each row's target: (N, K) logits -> (N,) or (N, T).

    ``target`` is one of:

    - (N,) long: one class per row;
    - (N, K) bool: one set of classes per row (a cluster), scored as a whole: ``"logit"`` gives
      the generalised logit ``log Σ_{c∈C} exp(z_c)``, ``"prob"`` gives ``Σ_{c∈C} p_c`` and
      ``"log_prob"`` gives ``log Σ_{c∈C} p_c``; a one-class set gives that class's score;
    - (N, T, K) bool: T sets per row (several targets at once), giving (N, T);
    - a :class:`unmask._checks.ScoreTarget` (score functions of the logits): their scores
      (N,), whatever ``score`` says.

    Example:
        >>> z = torch.tensor([[0.0, 1.0, 2.0]])
        >>> select_scores(z, torch.tensor([2]), "logit")
        tensor([2.])
        >>> select_scores(z, torch.tensor([[False, True, True]]), "logit")  # log(e + e²)
        tensor([2.3133])
    """
    if isinstance(target, ScoreTarget):
        return target.scores(logits)
    target = target.to(logits.device)
    if target.dtype != torch.bool:
        if score == "logit":
            out = logits
        elif score == "prob":
            out = torch.softmax(logits, dim=1)
        else:
            out = torch.log_softmax(logits, dim=1)
        return out.gather(1, target.reshape(-1, 1)).squeeze(1)
    rows = logits if target.ndim == 2 else logits[:, None, :]
    if score == "prob":
        p = torch.softmax(logits, dim=1)
        return (p if target.ndim == 2 else p[:, None, :]).masked_fill(~target, 0).sum(-1)
    if score == "log_prob":
        rows = torch.log_softmax(logits, dim=1)
        rows = rows if target.ndim == 2 else rows[:, None, :]
    return rows.masked_fill(~target, float("-inf")).logsumexp(-1)
