"""Meaningful Perturbation (Fong & Vedaldi, ICCV 2017), defaults of Agarwal & Nguyen 2020."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive, check_seed
from .._types import Model, Target
from ..explanation import Explanation
from ..params import Bounds, RemovalArg, ScoreOrOdds, Seed, Side, Steps
from ..progress import track
from ..registry import METHODS
from ..removal import Blur, bind
from ._common import (
    as_model,
    check_pair,
    check_side,
    finish,
    prepare,
    resolve_removal,
    upsample,
)
from ._optim import check_objective, model_scores, record_convergence, require_differentiable

__all__ = ["MeaningfulPerturbation", "tv_norm", "deletion_l1", "translate", "mp_loss"]


def tv_norm(m: Tensor, beta: float = 3.0) -> Tensor:
    """Total variation ``TV_beta(m) = sum |m[i+1, j] - m[i, j]|^beta + |m[i, j+1] - m[i, j]|^beta``.

    Args:
        m: masks (B, 1, h, w).
        beta: the exponent (MP: 3).

    Returns:
        (B,) one value per mask (sums over the grid, as in Fong & Vedaldi's and Agarwal &
        Nguyen's code).
    """
    rows = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta).flatten(1).sum(1)
    cols = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta).flatten(1).sum(1)
    return rows + cols


def deletion_l1(m: Tensor) -> Tensor:
    """``||1 - m||_1`` per mask (B,) for "keep" masks m (B, 1, h, w): the size of the deletion."""
    return (1 - m).abs().flatten(1).sum(1)


def translate(x: Tensor, dy: int, dx: int) -> Tensor:
    """Shift images (B, C, H, W) up by ``dy`` and left by ``dx`` pixels, replicating the border.

    This is MP's jitter operator Phi(x, tau):
    output[i, j] = x[min(i + dy, H - 1), min(j + dx, W - 1)].
    """
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, dx, 0, dy), mode="replicate")
    return padded[..., dy : dy + h, dx : dx + w]


def mp_loss(keep: Tensor, scores: Tensor, l1: float, tv: float, beta: float) -> Tensor:
    """MP's per-image objective ``l1 * ||1 - m||_1 + tv * TV_beta(m) + s_c(x̄)``, shape (B,)."""
    return l1 * deletion_l1(keep) + tv * tv_norm(keep, beta) + scores


@METHODS.register(
    "mp",
    aliases=("meaningful-perturbation",),
    family="mask optimisation",
    passes="autograd",
    cost=lambda p, size: p["steps"] + 2,  # the steps, the first and the final score
    # 2-pixel mask cells on 32x32 images: l1 raised so that the deletion shrinks within 30 steps
    test={"steps": 30, "mask_size": 16, "jitter": 1, "l1": 3e-3},
)
class MeaningfulPerturbation:
    """Meaningful Perturbation: the smallest smooth region whose removal kills the score.

    Optimises a low-resolution "keep" mask ``m`` in [0, 1] (1 = keep, as in the paper),
    upsampled bilinearly to the image, where ``x̄ = x * m + f * (1 - m)`` and ``f`` is the fill of
    the removal (Gaussian blur, sigma 10, by default). The objective (Fong & Vedaldi 2017, Eq. 3
    of Agarwal & Nguyen 2020) is::

        lambda1 * ||1 - m||_1 + lambda2 * TV_beta(m) + E_tau[ s_c(Phi(x̄, tau)) ]

    with ``TV_beta(m) = sum |grad m|^beta`` on the mask grid and ``Phi`` the jitter: the perturbed
    image translated by ``tau`` pixels, ``tau`` uniform on {0, ..., jitter} per axis, one draw per
    step. Adam, mask clamped to [0, 1] after every step; mask initialised U(0, 1).

    The saliency is the deletion region ``1 - m`` upsampled (high = important). In unmask's
    removal convention (1 = removed) that is exactly the mask that was removed.

    Several images are optimised at once: one parameter tensor (B, 1, h, w), per-image losses
    summed, so images do not interact (Adam is element-wise); the initial mask and the jitter
    draws come from a generator seeded with ``seed`` and are the same for every image, so a batch
    gives the same maps as one call per image.

    Defaults (Agarwal & Nguyen 2020, Sec. 3.5, following Fong & Vedaldi 2017): 28×28 mask, blur
    sigma 10, lambda1 = 1e-4, lambda2 = 1e-2, beta = 3, jitter 4, Adam lr 0.1, 300 steps, score =
    softmax probability.

    Args:
        model: the classifier.
        removal: a differentiable removal (default ``Blur(10)``); non-differentiable ones
            (inpainters) are rejected with a ValueError.
        mask_size: side of the mask grid (int) or (height, width).
        steps: optimisation steps.
        lr: Adam learning rate.
        l1: lambda1, weight of ``||1 - m||_1`` (summed over the grid).
        tv: lambda2, weight of ``TV_beta(m)`` (summed over the grid).
        beta: the TV exponent.
        jitter: maximal translation in pixels (0 disables it).
        score: ``"prob"`` (default, as the paper), ``"logit"``, ``"log_prob"`` or ``"log_odds"``.
        seed: random seed of the initial mask and the jitter.
        progress: show a progress bar over steps.

    Extras:
        ``mask``: (B, 1, h, w) the optimised mask in unmask's convention (1 = removed), i.e.
        ``1 - m``; ``score``: (B,) the target score of the final perturbed image (no jitter);
        ``base_score``: (B,) the score of the unperturbed image.

    Example:
        >>> import torch, unmask
        >>> from unmask.testing import region_model, region_images
        >>> e = MeaningfulPerturbation(region_model(), mask_size=8, steps=5, jitter=0)
        >>> e = e.explain(region_images(1))
        >>> e.saliency.shape, e.extras["removal_mask"].shape
        (torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 8, 8]))
    """

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        mask_size: Side | tuple[Side, Side] = 28,
        steps: Steps = 300,
        lr: float = 0.1,
        l1: float = 1e-4,
        tv: float = 1e-2,
        beta: float = 3.0,
        jitter: Annotated[int, Bounds(0, 64)] = 4,
        score: ScoreOrOdds = "prob",
        seed: Seed = 0,
        progress: bool = False,
    ) -> None:
        self.model = as_model(model)
        self.removal = resolve_removal(removal, lambda: Blur(10.0))
        require_differentiable(self.removal, "mp")
        self.mask_size = check_pair(mask_size, "mask_size")
        check_positive(steps, "steps", integer=True)
        check_positive(lr, "lr")
        check_positive(l1, "l1", allow_zero=True)
        check_positive(tv, "tv", allow_zero=True)
        check_positive(beta, "beta")
        check_side(jitter, "jitter", allow_zero=True)
        self.steps, self.lr, self.l1, self.tv, self.beta, self.jitter = (
            steps,
            lr,
            l1,
            tv,
            beta,
            jitter,
        )
        self.score = check_objective(score)
        self.seed = check_seed(seed)
        self.progress = progress

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, int, or (B,))."""
        x, target = prepare(self.model, x, target)
        b, _, h, w = x.shape
        dev_target = target.to(x.device)
        apply = bind(self.removal, x, grad=True)
        gen = torch.Generator().manual_seed(self.seed)
        init = torch.rand((1, 1, *self.mask_size), generator=gen)
        keep = init.expand(b, -1, -1, -1).clone().to(x.device).requires_grad_(True)
        optimizer = torch.optim.Adam([keep], lr=self.lr)
        losses = []
        steps = track(range(self.steps), self.steps, self.progress, "mp", "step")
        for _ in steps:
            dy, dx = (
                torch.randint(0, self.jitter + 1, (2,), generator=gen).tolist()
                if self.jitter
                else (0, 0)
            )
            with torch.enable_grad():
                removed = upsample(1 - keep, (h, w))
                perturbed = translate(apply(removed, None), dy, dx)
                scores = model_scores(self.model, perturbed, dev_target, self.score)
                loss = mp_loss(keep, scores, self.l1, self.tv, self.beta)
                (grad,) = torch.autograd.grad(loss.sum(), [keep])
            losses.append(loss.detach())
            keep.grad = grad
            optimizer.step()
            with torch.no_grad():
                keep.clamp_(0, 1)
        keep = keep.detach()
        with torch.no_grad():
            removed = upsample(1 - keep, (h, w))
            final = model_scores(self.model, apply(removed, None), dev_target, self.score).detach()
            base = model_scores(self.model, x, dev_target, self.score).detach()
        e = finish(
            self,
            removed.cpu(),
            target,
            removal_mask=(1 - keep).cpu(),
            score=final.cpu(),
            base_score=base.cpu(),
        )
        return record_convergence(e, torch.stack(losses, 1))
