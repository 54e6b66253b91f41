"""Extremal Perturbations (Fong, Patrick & Vedaldi, ICCV 2019): smooth masks of a fixed area."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_positive, check_probability
from .._limits import check_at_most, check_memory
from .._types import Model, Target
from ..explanation import Explanation
from ..params import Bounds, RemovalArg, ScoreOrOdds, Side, Steps
from ..progress import track
from ..registry import METHODS
from ..removal import bind, gaussian_blur, make_removal
from ..removal.fills import MAX_SIGMA
from ._common import as_model, check_model_batch, check_side, finish, prepare
from ._optim import (
    check_converging,
    check_lr,
    check_objective,
    record_convergence,
    require_differentiable,
    select_objective,
)

#: The smallest mask smoothing, pixels: below it the smooth-max kernel is a point.
MIN_SIGMA = 0.1

__all__ = ["ExtremalPerturbation", "SmoothMask", "BlurPyramid", "area_loss", "area_reference"]

Variant = Literal["preserve", "delete", "dual"]
VARIANTS: tuple[str, ...] = get_args(Variant)


class SmoothMask:
    """Smooth masks from a coarse parameter grid by a smooth-max convolution (Fong et al. 2019).

    Parameter ``p`` lives on a grid of cells ``step`` pixels apart; cell ``(i, j)`` sits at pixel
    ``(i * step, j * step)``, ``ceil(H / step) × ceil(W / step)`` cells, zeros beyond. The mask
    is ``m(u) = smax_i k(|u - u_i| / sigma) * p_i`` over the cells within ``ceil(sigma / step) +
    1`` cells of ``u``, with the kernel ``k(z) = exp(-2 * max(z - 1/2, 0)^2)`` (flat within
    sigma/2, then Gaussian: the kernel of TorchRay's reference implementation) and the smooth max
    ``smax(a) = sum_i a_i softmax(T a)_i``, temperature ``T = 20``; clamped to [0, 1].

    The mask is defined beyond the image too. :meth:`generate` also returns it on the **padded
    frame**: rows ``-margin .. max(step * (h - 1) + margin, H - 1)`` (and the same for columns),
    ``margin`` pixels beyond the outermost cells on every side, ``h`` the number of cell rows.
    Fong et al.'s area constraint is measured on this frame (TorchRay's ``shape_out``): a cell
    near the border then counts at least as many mask pixels as one in the middle, so the area
    term does not favour the border (on the image crop a corner cell counts about a third). With
    ``sigma`` a multiple of ``step`` (TorchRay's 7 / 21) the frame and its values are exactly
    TorchRay's.

    Args:
        size: the image size (H, W).
        step: grid spacing in pixels.
        sigma: kernel scale in pixels.
        temperature: the smooth-max temperature.
        margin: the padded frame's margin in pixels (``None``: ``round(sigma)``, TorchRay's).

    Example:
        >>> import torch
        >>> gen = SmoothMask((32, 32), step=4, sigma=8.0)
        >>> gen.grid, gen.shape_out
        ((8, 8), (45, 45))
        >>> mask, padded = gen.generate(torch.ones(1, 1, 8, 8))
        >>> mask.shape, padded.shape
        (torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 45, 45]))
        >>> bool((padded[..., 8:40, 8:40] == mask).all())
        True
    """

    def __init__(
        self,
        size: tuple[int, int],
        step: int,
        sigma: float,
        temperature: float = 20.0,
        margin: int | None = None,
    ) -> None:
        h, w = size
        self.size, self.step, self.sigma, self.temperature = size, step, float(sigma), temperature
        self.margin = round(self.sigma) if margin is None else int(margin)
        if self.margin < 0:
            raise ValueError(f"margin: expected a non-negative number of pixels, got {margin}")
        self.grid = (math.ceil(h / step), math.ceil(w / step))
        self.radius = math.ceil(sigma / step) + 1
        # Zero cells added on each side so that the padded frame lies inside the computed grid.
        self.extra = math.ceil(self.margin / step)
        self.shape_out = tuple(
            max(step * (g - 1) + self.margin, n - 1) + self.margin + 1
            for g, n in zip(self.grid, size, strict=True)
        )
        k = 2 * self.radius + 1
        # Pixel (cell i, sub-row a) lies a pixels below the centre of cell i, and (ky - r) * step
        # + a pixels below the centre of the cell at offset ky - r: one (K, step) table per axis.
        within = torch.arange(step, dtype=torch.float32)
        offsets = (torch.arange(k, dtype=torch.float32) - self.radius) * step
        d1 = within[None, :] - offsets[:, None]  # (K, step)
        dist = torch.sqrt(
            d1[:, None, :, None] ** 2 + d1[None, :, None, :] ** 2
        )  # (K, K, step, step)
        weight = torch.exp(-2 * (dist / self.sigma - 0.5).clamp(min=0) ** 2)
        # Layout (K*K, 1, step, 1, step): broadcast against cell values (N, K*K, gh, 1, gw, 1).
        self.weight = weight.reshape(k * k, 1, step, 1, step)

    def __call__(self, params: Tensor) -> Tensor:
        """Masks (N, 1, H, W) from parameters (N, 1, h, w)."""
        return self.generate(params)[0]

    def generate(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """The masks on the image (N, 1, H, W) and on the padded frame (N, 1, *shape_out)."""
        n = params.shape[0]
        e, r, s = self.extra, self.radius, self.step
        gh, gw = (g + 2 * e for g in self.grid)
        h, w = self.size
        k = 2 * r + 1
        # Cell values around each cell: channel ky * K + kx holds cell (i + ky - r, j + kx - r),
        # the grid carrying e zero cells on each side (as far as the padded frame reaches).
        around = F.unfold(params, k, padding=r + e).reshape(n, k * k, gh, gw)
        # Every pixel of cell (i, j) sees the same neighbouring cells, at its own distances.
        values = around[:, :, :, None, :, None] * self.weight.to(params)  # (N, K*K, gh, s, gw, s)
        pooled = (values * torch.softmax(self.temperature * values, dim=1)).sum(1, keepdim=True)
        pooled = pooled.reshape(n, 1, gh * s, gw * s).clamp(0, 1)
        o = e * s - self.margin  # where the padded frame starts in the computed grid
        padded = pooled[..., o : o + self.shape_out[0], o : o + self.shape_out[1]]
        m = self.margin
        return padded[..., m : m + h, m : m + w], padded


class BlurPyramid:
    """TorchRay's "blur" perturbation: a stack of increasingly blurred copies of the image.

    Level ``l`` of ``L`` is ``x`` blurred with ``sigma_l = max_blur * (1 - l / (L - 1))``; level
    ``L - 1`` is ``x`` itself. A keep-mask value ``m`` in [0, 1] selects level ``m * (L - 1)``,
    interpolating linearly between the two nearest levels: ``m = 1`` keeps the pixel, ``m = 0``
    blurs it the most. Blur uses reflect padding (TorchRay pads with zeros, which darkens the
    border of the strongest levels).

    Args:
        x: images (B, C, H, W).
        levels: number of levels L (TorchRay 8).
        max_blur: sigma of the most blurred level (TorchRay 20).
    """

    def __init__(self, x: Tensor, levels: int = 8, max_blur: float = 20.0) -> None:
        with torch.no_grad():
            sigmas = [max_blur * (1 - lvl / (levels - 1)) for lvl in range(levels)]
            stack = [gaussian_blur(x, s) if s > 0 else x for s in sigmas]
        self.pyramid = torch.stack(stack, dim=1).detach()  # (B, L, C, H, W)
        self.levels = levels

    def __call__(self, keep: Tensor, index: Tensor) -> Tensor:
        """Perturbed images (N, C, H, W) of images ``index`` (N,) under keep masks (N, 1, H, W)."""
        pyr = self.pyramid[index]  # (N, L, C, H, W)
        pos = keep * (self.levels - 1)
        low = pos.detach().floor().clamp(max=self.levels - 2)
        frac = pos - low
        low = low.long()[:, :, None].expand(-1, 1, pyr.shape[2], -1, -1)  # (N, 1, C, H, W)
        y0 = pyr.gather(1, low)[:, 0]
        y1 = pyr.gather(1, low + 1)[:, 0]
        return y0 * (1 - frac) + y1 * frac


def area_reference(area: float, n: int) -> Tensor:
    """The sorted target vector for a mask of ``n`` pixels and relative area ``area``: (n,)."""
    ref = torch.ones(n)
    ref[: int(n * (1 - area))] = 0
    return ref


def area_loss(masks: Tensor, reference: Tensor) -> Tensor:
    """Fong et al.'s area constraint: mean squared gap between the sorted mask and the reference.

    Args:
        masks: (N, 1, H', W'): the masks on the frame the area is measured on (the explainer
            passes the padded frame of :meth:`SmoothMask.generate`, not the image crop).
        reference: (N, H'*W') sorted target vectors (see :func:`area_reference`).

    Returns:
        (N,) ``mean((sort(m) - reference)^2)``.
    """
    ordered = masks.flatten(1).sort(dim=1).values
    return ((ordered - reference) ** 2).mean(1)


@METHODS.register(
    "extremal",
    aliases=("smoothmask", "extremal-perturbation"),
    family="mask optimisation",
    passes="autograd",
    # per area: the steps (both masks for "dual"), the first and the final score
    cost=lambda p, size: (
        len(_areas(p["areas"])) * (p["steps"] * (2 if p["variant"] == "dual" else 1) + 2)
    ),
    # no flip jitter (the region model is not mirror-symmetric); faster area schedule and lr;
    # area 0.04 of the 41x41 padded frame the constraint is measured on = 67 pixels (box: 64)
    test={
        "areas": [0.04],
        "step": 4,
        "sigma": 6,
        "steps": 60,
        "jitter": False,
        "area_weight": 10,
        "area_growth": 1.06,
        "lr": 0.1,
    },
)
class ExtremalPerturbation:
    """Extremal Perturbations: the smooth mask of a given area that best keeps (or deletes) a class.

    For each requested area ``a`` the method finds a smooth mask ``m`` (1 = the region) of area
    ``a`` (Fong, Patrick & Vedaldi, ICCV 2019):

    - ``preserve``: maximise ``s_c(P(x; m))``, only the region kept;
    - ``delete``: minimise ``s_c(P(x; 1 - m))``, the region removed;
    - ``dual``: maximise ``s_c(P(x; m)) - s_c(P(x; 1 - m))``;

    where ``P(x; k)`` is the blur-pyramid perturbation with keep mask ``k`` (default, as TorchRay)
    or ``x * k + f * (1 - k)`` for a differentiable ``removal``. The area is imposed by the
    ranking loss ``lambda * mean((sort(m) - r_a)^2)``, ``r_a`` a vector of ``(1 - a) N`` zeros
    then ones; ``lambda`` starts at 300 and grows by 1.0035 per iteration (TorchRay). The mask is
    a :class:`SmoothMask` of a parameter grid (initialised to ones), optimised by SGD with
    momentum 0.9 (dampening 0.9), lr 0.01, 800 iterations, parameters clamped to [0, 1]; on the
    even iterations, the first included, the perturbed image is flipped horizontally
    (TorchRay's jitter). As in TorchRay, the ranking loss sorts the mask on its **padded frame**
    (:meth:`SmoothMask.generate`: ``sigma`` pixels beyond the outermost cells on every side,
    TorchRay's ``shape_out``), ``N`` being that frame's pixel count. Measured on the image
    instead, a cell near the border touches fewer counted pixels than a central one, the area
    term pushes it down less, and the masks drift to the border (this package did so before
    issue 19). The mask's mean over the image (``extras["area"]``) is therefore larger than
    ``a``, by as much as TorchRay's.

    The score is the logit by default (TorchRay's reward is the raw model output); ``score=
    "prob"`` etc. are available. With several areas the saliency is the **sum** of the masks (the
    nested regions add up: pixels in the smallest region rank highest); each mask is in
    ``extras["keep_masks"]``.

    Deterministic (no random draws). Images of a batch are optimised together, per-image losses
    summed, so a batch equals single calls.

    Args:
        model: the classifier.
        removal: ``None`` for the blur pyramid, or a differentiable removal.
        areas: one area in (0, 1] or a sequence of them (TorchRay default 0.1).
        variant: ``"preserve"`` (default), ``"delete"`` or ``"dual"``.
        steps: iterations (TorchRay ``max_iter`` 800).
        lr: SGD learning rate (TorchRay 0.01).
        momentum: SGD momentum and dampening (TorchRay 0.9).
        step: parameter grid spacing in pixels (TorchRay 7, for 224² images).
        sigma: mask smoothing in pixels (TorchRay 21).
        area_weight: initial lambda (TorchRay 300).
        area_growth: lambda's growth per iteration (TorchRay 1.0035).
        levels, max_blur: blur pyramid (TorchRay 8 levels, sigma up to 20).
        jitter: flip horizontally on the even iterations (TorchRay's schedule).
        score: ``"logit"`` (default), ``"prob"``, ``"log_prob"`` or ``"log_odds"``.
        progress: show a progress bar.

    Extras:
        ``masks``: (B, A, H, W) one mask per area; ``areas``: (A,); ``params``: (B, A, h, w) the
        optimised grid; ``area``: (B, A) achieved mean of each mask over the image (the
        constraint holds on the padded frame, rebuilt by ``SmoothMask.generate(params)``);
        ``preserve_score`` and ``delete_score``: (B, A) the score with only the region kept /
        with the region removed.

    Example:
        >>> import torch
        >>> from unmask.testing import region_model, region_images
        >>> e = ExtremalPerturbation(region_model(), areas=0.1, steps=5, step=4, sigma=8)
        >>> e = e.explain(region_images(1))
        >>> e.saliency.shape, e.extras["keep_masks"].shape
        (torch.Size([1, 1, 32, 32]), torch.Size([1, 1, 32, 32]))
    """

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        areas: float | Sequence[float] = 0.1,
        variant: Variant = "preserve",
        steps: Steps = 800,
        lr: float = 0.01,
        momentum: float = 0.9,
        step: Side = 7,
        sigma: float = 21.0,
        area_weight: float = 300.0,
        area_growth: float = 1.0035,
        levels: Annotated[int, Bounds(1, 64)] = 8,
        max_blur: float = 20.0,
        jitter: bool = True,
        score: ScoreOrOdds = "logit",
        progress: bool = False,
    ) -> None:
        self.model = as_model(model)
        self.removal = None if removal is None else make_removal(removal)
        if self.removal is not None:
            require_differentiable(self.removal, "extremal")
        self.areas = _areas(areas)
        check_model_batch(self.model, len(self.areas), "areas", grad=True)  # one mask per area
        self.variant = check_choice(variant, "variant", VARIANTS)
        check_positive(steps, "steps", integer=True)
        check_lr(lr)
        check_probability(momentum, "momentum", open_high=True)
        check_side(step, "step")
        check_positive(sigma, "sigma")
        check_at_most(sigma, "sigma", MAX_SIGMA, "pixels")
        if sigma < MIN_SIGMA:
            raise ValueError(f"sigma: expected at least {MIN_SIGMA} pixels, got {sigma!r}")
        check_positive(area_weight, "area_weight", allow_zero=True)
        check_positive(area_growth, "area_growth")
        check_positive(levels, "levels", integer=True)
        if levels < 2:
            raise ValueError(f"levels: expected at least 2, got {levels}")
        check_at_most(levels, "levels", 64, "each level is a blurred copy of the images")
        check_positive(max_blur, "max_blur")
        check_at_most(max_blur, "max_blur", MAX_SIGMA, "pixels")
        self.steps, self.lr, self.momentum, self.step, self.sigma = steps, lr, momentum, step, sigma
        self.area_weight, self.area_growth = area_weight, area_growth
        self.levels, self.max_blur, self.jitter = levels, max_blur, bool(jitter)
        self.score = check_objective(score)
        self.progress = progress

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, int, or (B,))."""
        x, target = prepare(self.model, x, target)
        b, _, h, w = x.shape
        n_areas = len(self.areas)
        n = b * n_areas
        device = x.device
        k = 2 * (math.ceil(self.sigma / self.step) + 1) + 1  # the smooth-max neighbourhood
        margin = round(self.sigma)  # the padded frame the masks are computed on (SmoothMask)
        fh, fw = h + 2 * margin + self.step, w + 2 * margin + self.step
        check_memory(
            6.0 * 4 * n * k * k * fh * fw,
            "sigma",
            f"the smooth masks of {n} images on a {fh}x{fw} padded frame "
            f"(sigma {self.sigma:g} / step {self.step}: {k}x{k} neighbouring cells per pixel)",
        )
        check_memory(
            4.0 * b * self.levels * x[0].numel() + 4.0 * n * self.levels * x[0].numel(),
            "levels",
            f"a blur pyramid of {self.levels} levels",
        )
        generator = SmoothMask((h, w), self.step, self.sigma)
        index = torch.arange(b, device=device).repeat_interleave(n_areas)  # mask k -> image
        tgt = target.to(device)[index]
        if self.removal is None:
            pyramid = BlurPyramid(x, self.levels, self.max_blur)

            def perturb(keep: Tensor) -> Tensor:
                return pyramid(keep, index)
        else:
            apply = bind(self.removal, x, grad=True)

            def perturb(keep: Tensor) -> Tensor:
                return apply(1 - keep, index)

        # The area is measured on the padded frame (TorchRay's shape_out), not on the image.
        frame = generator.shape_out[0] * generator.shape_out[1]
        reference = torch.stack([area_reference(a, frame) for a in self.areas]).to(device)
        reference = reference.repeat(b, 1)  # (N, frame), row k for area k % A
        params = torch.ones(n, 1, *generator.grid, device=device, requires_grad=True)
        optimizer = torch.optim.SGD(
            [params], lr=self.lr, momentum=self.momentum, dampening=self.momentum
        )
        weight = self.area_weight
        losses = []  # the loss per step, summed over each image's masks
        steps = track(range(self.steps), self.steps, self.progress, "extremal", "step")
        for t in steps:
            with torch.enable_grad():
                mask, padded = generator.generate(params)
                reward = self._reward(perturb, mask, tgt, flip=self.jitter and t % 2 == 0)
                energy = reward - weight * area_loss(padded, reference)
                check_converging(energy, t, "lr, area_weight, area_growth")
                (grad,) = torch.autograd.grad(-energy.sum(), [params])
            losses.append(-energy.detach().reshape(b, n_areas).sum(1))
            params.grad = grad
            optimizer.step()
            with torch.no_grad():
                params.clamp_(0, 1)
            weight *= self.area_growth
        with torch.no_grad():
            mask = generator(params.detach())
            kept = select_objective(self.model(perturb(mask)).float(), tgt, self.score)
            deleted = select_objective(self.model(perturb(1 - mask)).float(), tgt, self.score)
        masks = mask.reshape(b, n_areas, h, w).cpu()
        extras = {
            "keep_masks": masks,
            "areas": torch.tensor(self.areas),
            "params": params.detach().reshape(b, n_areas, *generator.grid).cpu(),
            "area": masks.mean((-2, -1)),
            "preserve_score": kept.reshape(b, n_areas).cpu(),
            "delete_score": deleted.reshape(b, n_areas).cpu(),
        }
        e = finish(self, masks.sum(1, keepdim=True), target, **extras)
        return record_convergence(e, torch.stack(losses, 1))

    def _reward(self, perturb: Any, mask: Tensor, target: Tensor, flip: bool) -> Tensor:
        def score(images: Tensor, classes: Tensor) -> Tensor:
            if flip:
                images = images.flip(-1)
            return select_objective(self.model(images).float(), classes, self.score)

        if self.variant == "preserve":
            return score(perturb(mask), target)
        if self.variant == "delete":
            return -score(perturb(1 - mask), target)
        both = score(torch.cat([perturb(mask), perturb(1 - mask)]), torch.cat([target, target]))
        return both[: mask.shape[0]] - both[mask.shape[0] :]


def _areas(areas: float | Sequence[float]) -> tuple[float, ...]:
    values = (areas,) if isinstance(areas, int | float) and not isinstance(areas, bool) else areas
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) == 0:
        raise TypeError(
            f"areas: expected a number or a non-empty sequence of numbers, got {areas!r}"
        )
    for a in values:
        check_probability(a, "areas", open_low=True)
    return tuple(float(a) for a in values)
