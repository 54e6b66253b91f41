"""FIDO-CA (Chang, Creager, Goldenberg & Duvenaud, ICLR 2019) as Agarwal & Nguyen (2020) ran it."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .._checks import check_choice, check_positive, check_probability, check_seed
from .._types import Model, Target
from ..explanation import Explanation
from ..params import Count, RemovalArg, ScoreOrOdds, Seed, Side, Steps
from ..progress import track
from ..registry import METHODS
from ..removal import Inpaint, bind, is_differentiable
from ._common import (
    as_model,
    check_model_batch,
    check_pair,
    finish,
    prepare,
    resolve_removal,
    upsample,
)
from ._optim import (
    check_converging,
    check_lr,
    check_objective,
    record_convergence,
    select_objective,
)

__all__ = ["FIDO", "concrete_keep"]


def concrete_keep(keep_prob: Tensor, noise: Tensor, temperature: float) -> Tensor:
    """Relaxed Bernoulli (concrete) sample of the keep mask.

    ``z = sigmoid((logit(q) + log u - log(1 - u)) / t)`` for keep probabilities ``q`` and uniform
    noise ``u`` of the same shape (broadcast); ``z -> Bernoulli(q)`` as ``t -> 0``.
    """
    eps = 1e-6
    q = keep_prob.clamp(eps, 1 - eps)
    u = noise.clamp(eps, 1 - eps)
    logits = torch.log(q) - torch.log1p(-q) + torch.log(u) - torch.log1p(-u)
    return torch.sigmoid(logits / temperature)


@METHODS.register(
    "fido",
    aliases=("fido-ca",),
    family="mask optimisation",
    passes="autograd",
    cost=lambda p, size: p["steps"] * p["samples"] + 2,  # and the first and final scores
    # telea fill as FIDO-CA; reg raised for 32x32 images (the penalty sums over pixels)
    test={"mask_size": 8, "steps": 40, "reg": 1e-2, "samples": 2},
)
class FIDO:
    """FIDO: a Bernoulli mask over pixels learned so that in-filled images keep (or lose) the class.

    Chang et al. (2019) learn per-cell keep probabilities ``q = sigmoid(theta)`` on a coarse grid
    (56×56, upsampled bilinearly to the image), sample relaxed-Bernoulli (concrete) keep masks
    ``z`` per pixel, and in-fill the dropped pixels: ``x̄ = x * z + f * (1 - z)``. Objectives:

    - ``"ssr"`` (smallest sufficient region, the *preservation* game; FIDO-CA as in Agarwal &
      Nguyen 2020): minimise ``-E_z[s_c(x̄)] + reg * sum_pixels q``;
    - ``"sdr"`` (smallest destroying region, deletion): minimise
      ``E_z[s_c(x̄)] + reg * sum_pixels (1 - q)``.

    ``s_c`` is the log-odds of the target class by default (FIDO's code), the expectation an
    average over ``samples`` concrete draws per step, the regulariser summed over the upsampled
    pixels (as in FIDO's code) with a weight ramped linearly from 0 to 1 over the first
    ``anneal`` fraction of the steps (FIDO anneals it over 30 of 50 epochs).

    **The fill.** With a fixed differentiable fill (Blur, Constant, Noise) ``f`` is that fill and
    the gradient is exact. With an inpainter (the default, ``Inpaint("telea")``: the paper's
    DeepFill-v1 weights are not available; plug a learned inpainter with
    :class:`unmask.removal.TorchScriptInpainter`), every step and every sample the inpainter fills
    the hole ``z < 0.5`` (the binarised sample), and its output is held constant in the blend
    ``x * z + G(x, z < 0.5) * (1 - z)``: gradients reach ``theta`` through the blend, not
    through the inpainter (what FIDO's code does: the background is computed on ``z.round()``
    with the gradient cut). Pixels currently kept then get no classifier gradient (the
    inpainter returns ``x`` there); the concrete noise makes every pixel dropped in some
    samples, which is where the classifier signal comes from.

    Saliency: the keep probability ``q`` (upsampled) for ``"ssr"``, the drop probability
    ``1 - q`` for ``"sdr"``. Defaults from Agarwal & Nguyen 2020, Appendix A1: Adam lr 0.05,
    reg 1e-3, 56×56 mask; initial ``q = 0.5`` (FIDO ``ard_init = 0``); concrete temperature 0.1;
    4 samples per step; 300 steps (FIDO counts epochs of a data loader; we count steps).

    Args:
        model: the classifier.
        removal: the fill (default ``Inpaint("telea")``); any removal works (see above).
        objective: ``"ssr"`` (default) or ``"sdr"``.
        mask_size: side of the parameter grid (int) or (height, width).
        steps: optimisation steps.
        lr: Adam learning rate.
        reg: weight of the area regulariser.
        samples: concrete samples per step.
        temperature: concrete temperature.
        anneal: fraction of the steps over which the regulariser weight ramps from 0 to 1.
        score: ``"log_odds"`` (default), ``"prob"``, ``"logit"`` or ``"log_prob"``.
        seed: seed of the concrete noise (the same draws for every image of a batch).
        progress: show a progress bar.

    Extras:
        ``keep``: (B, 1, h, w) keep probabilities q; ``mask``: (B, 1, h, w) ``1 - q``, the drop
        probability (unmask's removal convention); ``score``: (B,) the target score with the
        binarised mask (``q > 0.5`` kept) in-filled; ``base_score``: (B,).

    Example:
        >>> import torch
        >>> from unmask.removal import Blur
        >>> from unmask.testing import region_model, region_images
        >>> e = FIDO(region_model(), Blur(5), mask_size=8, steps=5).explain(region_images(1))
        >>> e.saliency.shape, e.extras["keep_mask"].shape
        (torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 8, 8]))
    """

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        objective: Literal["ssr", "sdr"] = "ssr",
        mask_size: Side | tuple[Side, Side] = 56,
        steps: Steps = 300,
        lr: float = 0.05,
        reg: float = 1e-3,
        samples: Count = 4,
        temperature: float = 0.1,
        anneal: float = 0.6,
        score: ScoreOrOdds = "log_odds",
        seed: Seed = 0,
        progress: bool = False,
    ) -> None:
        self.model = as_model(model)
        self.removal = resolve_removal(removal, lambda: Inpaint("telea"))
        self.objective = check_choice(objective, "objective", ("ssr", "sdr"))
        self.mask_size = check_pair(mask_size, "mask_size")
        check_positive(steps, "steps", integer=True)
        check_lr(lr)
        check_positive(reg, "reg", allow_zero=True)
        check_positive(samples, "samples", integer=True)
        check_model_batch(self.model, samples, "samples", grad=True)
        check_positive(temperature, "temperature")
        check_probability(anneal, "anneal")
        self.steps, self.lr, self.reg, self.samples = steps, lr, reg, samples
        self.temperature, self.anneal = temperature, anneal
        self.score = check_objective(score)
        self.seed = check_seed(seed)
        self.progress = progress

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, int, or (B,))."""
        x, target = prepare(self.model, x, target)
        b, c, h, w = x.shape
        s = self.samples
        device = x.device
        tgt = target.to(device).repeat_interleave(s, dim=0)  # (B*S,) or (B*S, K), image-major
        index = torch.arange(b, device=device).repeat_interleave(s)
        differentiable = is_differentiable(self.removal)
        apply = bind(self.removal, x, grad=True) if differentiable else None
        gen = torch.Generator().manual_seed(self.seed)
        theta = torch.zeros(b, 1, *self.mask_size, device=device, requires_grad=True)
        optimizer = torch.optim.Adam([theta], lr=self.lr)
        ramp = max(1, round(self.anneal * self.steps))
        sign = -1.0 if self.objective == "ssr" else 1.0
        losses = []
        steps = track(range(self.steps), self.steps, self.progress, "fido", "step")
        for t in steps:
            noise = torch.rand((1, s, h, w), generator=gen).to(device)
            with torch.enable_grad():
                keep_prob = upsample(torch.sigmoid(theta), (h, w))  # (B, 1, H, W)
                z = concrete_keep(keep_prob, noise, self.temperature).reshape(b * s, 1, h, w)
                if apply is not None:  # differentiable
                    perturbed = apply(1 - z, index)
                else:
                    with torch.no_grad():
                        filled = self.removal(x[index], (z.detach() < 0.5).to(x.dtype))
                    perturbed = x[index] * z + filled * (1 - z)
                scores = select_objective(self.model(perturbed).float(), tgt, self.score)
                fidelity = sign * scores.reshape(b, s).mean(1)
                area = keep_prob.flatten(1).sum(1)
                penalty = area if self.objective == "ssr" else h * w - area
                weight = min(1.0, t / ramp) if self.anneal > 0 else 1.0
                loss = fidelity + weight * self.reg * penalty
                check_converging(loss, t, "lr, reg")
                (grad,) = torch.autograd.grad(loss.sum(), [theta])
            losses.append(loss.detach())
            theta.grad = grad
            optimizer.step()
        with torch.no_grad():
            keep = torch.sigmoid(theta.detach())
            keep_up = upsample(keep, (h, w))
            hole = (keep_up <= 0.5).to(x.dtype)
            final = select_objective(
                self.model(self.removal(x, hole)).float(), target.to(device), self.score
            )
            base = select_objective(self.model(x).float(), target.to(device), self.score)
        saliency = keep_up if self.objective == "ssr" else 1 - keep_up
        e = finish(
            self,
            saliency.cpu(),
            target,
            keep_mask=keep.cpu(),
            removal_mask=(1 - keep).cpu(),
            score=final.cpu(),
            base_score=base.cpu(),
        )
        return record_convergence(e, torch.stack(losses, 1))
