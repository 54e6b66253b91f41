"""One mask optimiser over any image representation (ShearletX, WaveletX, CartoonX, PixelMask).

Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image Representation",
CVPR 2023; Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022.

For images ``x`` with coefficients ``c = T(x)`` (see :mod:`unmask.representations`), a mask
``m ∈ [0, 1]`` with one value per coefficient position, shared over R, G, B, is found by
projected gradient descent on

    L(m) = E_v[(1 - p_t(clamp(T⁻¹(m ⊙ c + (1 - m) ⊙ v), 0, 1)))²]   (distortion)
           + λ₁ · mean(|m|)                                           (sparsity)
           + λ₂ · mean(|clamp(T⁻¹(m ⊙ T(gray(x))), 0, 1)|)            (spatial energy)

with ``p_t`` the softmax probability of the target class (the "maximise label" distortion used
in all the papers' experiments), ``v`` noise drawn per band and step, Adam, the mask
initialised to ones and clamped to [0, 1] after every step. The explanation image is
``x̂ = clamp(T⁻¹(m ⊙ c), 0, 1)``. Pixels are clamped, never coefficients (the original
code clamps the shearlet coefficients to [0, 1], which distorts even an all-ones mask).

Batches: the loss is the sum of per-image losses and Adam is element-wise, so images do not
interact; every image draws its noise from its own generator seeded with ``seed``, so a batch
gives the same masks as one call per image (up to floating-point reordering in the model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_positive
from ..explanation import Explanation
from ..models import Classifier
from ..representations.base import Representation, apply_mask, band_statistics, gray, ones_mask
from ._common import prepare

__all__ = ["MaskOptimizer", "MaskResult", "NOISES", "explain_with"]

#: Obfuscations of dropped coefficients: uniform on [mean - std, mean + std] (default),
#: Gaussian N(mean, std²), or zeros.
NOISES = ("uniform", "gaussian", "zeros")


@dataclass
class MaskResult:
    """What :meth:`MaskOptimizer.optimize` returns.

    Attributes:
        mask: the coefficient mask, one tensor (B, 1, K_g, h_g, w_g) per band group.
        image: the explanation image x̂ = clamp(T⁻¹(m ⊙ T(x)), 0, 1), (B, C, H, W).
        coefficients: m ⊙ T(x), per band group (B, C, K_g, h_g, w_g).
        history: per-step losses, each (steps, B): ``distortion``, ``l1``, ``spatial``.
    """

    mask: list[Tensor]
    image: Tensor
    coefficients: list[Tensor]
    history: dict[str, Tensor] = field(default_factory=dict)


class MaskOptimizer:
    """Projected-gradient mask optimisation on the coefficients of a representation.

    Args:
        model: the classifier (images in [0, 1]).
        representation: an :class:`unmask.representations.Representation`.
        l1: λ₁, weight of ``mean |m|``.
        spatial: λ₂, weight of the spatial ℓ1 energy of the gray explanation image (0: none).
        steps: optimisation steps.
        lr: Adam learning rate.
        noise_bs: noise samples per step.
        noise: ``"uniform"``, ``"gaussian"`` or ``"zeros"`` (see :data:`NOISES`).
        noise_source: ``"gray"``: band statistics of the gray image's coefficients and one noise
            draw shared by R, G, B (the ShearletX code); ``"color"``: statistics per channel
            and an independent draw per channel.
        seed: seed of every image's noise generator.
        progress: show a progress bar over steps.
    """

    def __init__(self, model: Classifier, representation: Representation, *, l1: float, spatial: float,
                 steps: int, lr: float, noise_bs: int, noise: str = "uniform", noise_source: str = "gray",
                 seed: int = 0, progress: bool = False) -> None:
        check_positive(l1, "l1", allow_zero=True)
        check_positive(spatial, "spatial", allow_zero=True)
        check_positive(steps, "steps", integer=True)
        check_positive(lr, "lr")
        check_positive(noise_bs, "noise_bs", integer=True)
        check_choice(noise, "noise", NOISES)
        check_choice(noise_source, "noise_source", ("gray", "color"))
        if not isinstance(representation, Representation):
            raise TypeError(f"representation: expected a Representation (forward/inverse), got "
                            f"{type(representation).__name__}")
        self.model, self.representation = model, representation
        self.l1, self.spatial, self.steps, self.lr = float(l1), float(spatial), steps, float(lr)
        self.noise_bs, self.noise, self.noise_source = noise_bs, noise, noise_source
        self.seed, self.progress = seed, progress

    # -- noise ----------------------------------------------------------------------------------

    def _unit(self, shape: tuple[int, ...], gens: list[torch.Generator], samples: int,
              like: Tensor) -> Tensor:
        """Unit draws z (B, S, *shape), U[0, 1) or N(0, 1), from each image's own generator."""
        draw = torch.rand if self.noise == "uniform" else torch.randn
        z = [draw((samples, *shape), generator=g, device=like.device, dtype=like.dtype)
             for g in gens]
        return z[0].unsqueeze(0) if len(z) == 1 else torch.stack(z)

    def _affine(self, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        """``(offset, scale)`` with ``v = offset + scale · z`` the obfuscation of a unit draw z."""
        return (mean - std, 2 * std) if self.noise == "uniform" else (mean, std)

    def _draw(self, stats: list[tuple[Tensor, Tensor]], shapes: list[tuple[int, ...]],
              gens: list[torch.Generator], samples: int) -> list[Tensor]:
        """Noise per group, (B, S, Cn, K_g, h_g, w_g), from each image's own generator."""
        out = []
        for (mean, std), shape in zip(stats, shapes, strict=True):
            offset, scale = self._affine(mean, std)
            z = self._unit(shape, gens, samples, mean)
            out.append(torch.addcmul(offset.unsqueeze(1), scale.unsqueeze(1), z))
        return out

    def _dropped(self, masks: list[Tensor], stats: list[tuple[Tensor, Tensor]],
                 shapes: list[tuple[int, ...]], gens: list[torch.Generator],
                 samples: int) -> list[Tensor]:
        """``(1 - m) ⊙ v`` per group, (B * S, Cn, K_g, h_g, w_g), noise from each image's generator.

        ``v = offset + scale · z`` with ``z`` U[0, 1) (``offset = mean - std``, ``scale = 2 std``:
        U[mean - std, mean + std]) or N(0, 1) (``offset = mean``, ``scale = std``), so
        ``(1 - m) ⊙ v = (1 - m) ⊙ offset + ((1 - m) ⊙ scale) · z``: one fused pass over the
        (B, S, ...) draws; the small per-image factors carry the gradient.
        """
        out = []
        for m, (mean, std), shape in zip(masks, stats, shapes, strict=True):
            z = self._unit(shape, gens, samples, mean)  # (B, S, Cn, K_g, h_g, w_g)
            offset, scale = self._affine(mean, std)
            keep = 1 - m  # (B, 1, K_g, h_g, w_g), broadcasts over Cn
            dropped = torch.addcmul((keep * offset).unsqueeze(1), (keep * scale).unsqueeze(1), z)
            out.append(dropped.flatten(0, 1))
        return out

    # -- optimisation ---------------------------------------------------------------------------

    def optimize(self, x: Tensor, target: Tensor) -> MaskResult:
        """Optimise masks for images ``x`` (B, C, H, W) and classes ``target`` (B,)."""
        rep, size = self.representation, (x.shape[-2], x.shape[-1])
        b = x.shape[0]
        target = target.to(x.device)
        with torch.no_grad():
            coeffs = rep.forward(x)
            source = rep.forward(gray(x)) if self.noise_source == "gray" else coeffs
            stats = band_statistics(source)
        shapes = [tuple(c.shape[1:]) for c in source]  # (Cn, K_g, h_g, w_g)
        masks = [m.requires_grad_(True) for m in ones_mask(coeffs)]
        count = sum(m[0].numel() for m in masks)
        opt = torch.optim.Adam(masks, lr=self.lr)
        gens = [torch.Generator(device=x.device).manual_seed(self.seed) for _ in range(b)]
        samples = 1 if self.noise == "zeros" else self.noise_bs
        hist: dict[str, list[Tensor]] = {"distortion": [], "l1": [], "spatial": []}
        steps = range(self.steps)
        if self.progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=f"mask ({rep.name})", leave=False)
        for _ in steps:
            kept = rep.inverse(apply_mask(coeffs, masks), size)  # (B, C, H, W), unclamped
            obfuscated = kept.unsqueeze(1)  # (B, 1, C, H, W)
            if self.noise != "zeros":
                dropped = self._dropped(masks, stats, shapes, gens, samples)
                # by linearity T⁻¹(m⊙c + (1-m)⊙v) = T⁻¹(m⊙c) + T⁻¹((1-m)⊙v); gray noise broadcasts over RGB
                obfuscated = obfuscated + rep.inverse(dropped, size).unflatten(0, (b, samples))
            images = obfuscated.expand(b, samples, *kept.shape[1:]).clamp(0, 1).flatten(0, 1)
            logits = self.model(images).float()
            prob = torch.softmax(logits, dim=1).gather(1, target.repeat_interleave(samples)[:, None])
            distortion = (1 - prob.reshape(b, samples)).pow(2).mean(1)
            sparsity = sum(m.abs().flatten(1).sum(1) for m in masks) / count
            loss_terms = distortion + self.l1 * sparsity
            if self.spatial > 0:
                energy = gray(kept).clamp(0, 1).abs().flatten(1).mean(1)
                loss_terms = loss_terms + self.spatial * energy
            else:
                energy = torch.zeros_like(distortion)
            opt.zero_grad(set_to_none=True)
            loss_terms.sum().backward()
            opt.step()
            with torch.no_grad():
                for m in masks:
                    m.clamp_(0, 1)
            hist["distortion"].append(distortion.detach())
            hist["l1"].append(sparsity.detach())
            hist["spatial"].append(energy.detach())
        with torch.no_grad():
            mask = [m.detach() for m in masks]
            masked = apply_mask(coeffs, mask)
            image = rep.inverse(masked, size).clamp(0, 1)
        return MaskResult(mask, image, masked, {k: torch.stack(v) for k, v in hist.items()})

    def describe(self) -> dict[str, Any]:
        """The hyperparameters, JSON-friendly."""
        return {"representation": repr(self.representation), "l1": self.l1, "spatial": self.spatial,
                "steps": self.steps, "lr": self.lr, "noise_bs": self.noise_bs, "noise": self.noise,
                "noise_source": self.noise_source, "seed": self.seed}


def explain_with(optimizer: MaskOptimizer, x: Any, target: Any, method: str,
                 params: dict[str, Any]) -> Explanation:
    """Run ``optimizer`` on checked inputs and package an :class:`Explanation`.

    The saliency map is the gray explanation image ``mean_c x̂`` (B, 1, H, W): what the mask
    keeps of the image, at pixel resolution, as the papers display it (for pixel masks,
    ``m · gray(x)``). ``extras``: ``image`` x̂ (B, 3, H, W) in [0, 1]; ``mask`` the coefficient
    mask (B, 1, K, h, w) for single-group representations (pixels, shearlets) or a list of
    such tensors, one per band group (wavelets: low-pass, then levels coarse to fine);
    ``history`` per-step losses (steps, B).
    """
    x, target = prepare(optimizer.model, x, target)
    result = optimizer.optimize(x, target)
    mask: Tensor | list[Tensor] = result.mask[0] if len(result.mask) == 1 else result.mask
    extras = {"image": result.image, "mask": mask, "history": result.history}
    return Explanation(gray(result.image), target, method, dict(params), extras)
