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
interact; every image draws its noise from its own generators (one per sample, seeded from
``(seed, sample)``), so a batch gives the same masks as one call per image (up to
floating-point reordering in the model).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_positive
from ..models import Classifier
from ..progress import track
from ..representations.base import (
    Representation,
    apply_mask,
    band_statistics,
    gray,
    modulated_inverse,
    ones_mask,
)
from ..scores import select_scores
from ._common import check_model_batch

__all__ = ["MaskOptimizer", "MaskResult", "NOISES", "Noise", "mask_explanation"]

#: Obfuscations of dropped coefficients: uniform on [mean - std, mean + std] (default),
#: Gaussian N(mean, std²), or zeros.
Noise = Literal["uniform", "gaussian", "zeros"]
NOISES: tuple[str, ...] = get_args(Noise)


@dataclass
class MaskResult:
    """What :meth:`MaskOptimizer.optimize` returns.

    Attributes:
        mask: the coefficient mask, one tensor (B, 1, K_g, h_g, w_g) per band group.
        image: the explanation image x̂ = clamp(T⁻¹(m ⊙ T(x)), 0, 1), (B, C, H, W).
        coefficients: m ⊙ T(x), per band group (B, C, K_g, h_g, w_g).
        history: per-step losses, each (steps, B): ``distortion``, ``l1``, ``spatial`` and
            their weighted sum ``loss``, the objective.
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

    def __init__(
        self,
        model: Classifier,
        representation: Representation,
        *,
        l1: float,
        spatial: float,
        steps: int,
        lr: float,
        noise_bs: int,
        noise: str = "uniform",
        noise_source: str = "gray",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        check_positive(l1, "l1", allow_zero=True)
        check_positive(spatial, "spatial", allow_zero=True)
        check_positive(steps, "steps", integer=True)
        check_positive(lr, "lr")
        check_positive(noise_bs, "noise_bs", integer=True)
        check_choice(noise, "noise", NOISES)
        check_choice(noise_source, "noise_source", ("gray", "color"))
        if not isinstance(representation, Representation):
            raise TypeError(
                f"representation: expected a Representation (forward/inverse), got "
                f"{type(representation).__name__}"
            )
        check_model_batch(model, noise_bs, "noise_bs", grad=True)
        self.model, self.representation = model, representation
        self.l1, self.spatial, self.steps, self.lr = float(l1), float(spatial), steps, float(lr)
        self.noise_bs, self.noise, self.noise_source = noise_bs, noise, noise_source
        self.seed, self.progress = seed, progress

    # -- noise ----------------------------------------------------------------------------------

    def _generators(self, batch: int, device: torch.device) -> list[list[Any]]:
        """One random stream per image and noise sample; sample ``s`` is seeded from ``(seed, s)``.

        On CPU a NumPy PCG64 generator (its float32 fills run ~2.4x faster than torch's CPU
        generator), elsewhere a torch generator on the device. Independent streams let the draws
        run in parallel threads and keep every image's noise independent of its batch.
        """
        seqs = [np.random.SeedSequence([self.seed, s]) for s in range(self.noise_bs)]
        if device.type == "cpu":
            return [[np.random.Generator(np.random.PCG64(q)) for q in seqs] for _ in range(batch)]
        seeds = [int(q.generate_state(1, np.uint64)[0]) for q in seqs]
        return [
            [torch.Generator(device=device).manual_seed(sd) for sd in seeds] for _ in range(batch)
        ]

    def _unit(
        self,
        shapes: list[tuple[int, ...]],
        gens: list[list[Any]],
        like: Tensor,
        out: list[Tensor] | None = None,
    ) -> list[Tensor]:
        """Unit draws z per group, (B, S, *shape): U[0, 1) or N(0, 1); [b, s] from ``gens[b][s]``.

        Each stream is sequential, so on CPU the (image, sample) streams are filled by a pool of
        ``torch.get_num_threads()`` threads (NumPy releases the GIL while filling). ``out``:
        buffers to refill (the optimiser reuses them across steps: a fresh 150 MB tensor per
        step costs ~40 ms of page faults).
        """
        if out is None:
            out = [like.new_empty((len(gens), len(gens[0]), *shape)) for shape in shapes]
        uniform = self.noise == "uniform"

        def fill(job: tuple[int, int]) -> None:
            b, s = job
            gen = gens[b][s]
            for z in out:
                if isinstance(gen, np.random.Generator):
                    view = z[b, s].numpy()
                    if uniform:
                        gen.random(out=view, dtype=view.dtype)
                    else:
                        gen.standard_normal(out=view, dtype=view.dtype)
                elif uniform:
                    z[b, s].uniform_(generator=gen)
                else:
                    z[b, s].normal_(generator=gen)

        jobs = [(b, s) for b in range(len(gens)) for s in range(len(gens[0]))]
        workers = min(torch.get_num_threads(), len(jobs)) if like.device.type == "cpu" else 1
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fill, jobs))
        else:
            for job in jobs:
                fill(job)
        return out

    def _affine(self, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        """``(offset, scale)`` with ``v = offset + scale · z`` the obfuscation of a unit draw z.

        Uniform: ``offset = mean - std``, ``scale = 2 std`` (U[mean - std, mean + std]);
        Gaussian: ``offset = mean``, ``scale = std``.
        """
        return (mean - std, 2 * std) if self.noise == "uniform" else (mean, std)

    # -- optimisation ---------------------------------------------------------------------------

    def optimize(self, x: Tensor, target: Tensor) -> MaskResult:
        """Optimise masks for images ``x`` (B, C, H, W) and classes ``target`` (B,).

        Per step, by linearity of ``T⁻¹``, the obfuscated images are
        ``T⁻¹(m ⊙ c) + T⁻¹((1 - m) ⊙ offset) + T⁻¹((1 - m) ⊙ scale ⊙ z_s)``, with
        ``T⁻¹((1 - m) ⊙ offset) = T⁻¹(offset) - T⁻¹(m ⊙ offset)``: one modulated synthesis of
        the C + Cn signals ``[c, offset]`` by ``m`` per image (which also gives the kept image
        ``T⁻¹(m ⊙ c)`` of the spatial penalty) and one of the S noise draws by
        ``(1 - m) ⊙ scale`` (see :func:`~unmask.representations.base.modulated_inverse`).
        """
        rep, size = self.representation, (x.shape[-2], x.shape[-1])
        b, channels = x.shape[:2]
        target = target.to(x.device)
        noisy = self.noise != "zeros"
        with torch.no_grad():
            coeffs = rep.forward(x)
            source = rep.forward(gray(x)) if self.noise_source == "gray" else coeffs
            affine = [self._affine(*st) for st in band_statistics(source)]  # (B, Cn, K_g, 1, 1)
            signals = coeffs
            if noisy:  # the offset is one more signal, and T⁻¹(offset) a constant image
                offsets = [off.expand_as(src) for (off, _), src in zip(affine, source, strict=True)]
                signals = [torch.cat([c, o], 1) for c, o in zip(coeffs, offsets, strict=True)]
                offset_image = rep.inverse(offsets, size)  # (B, Cn, H, W)
            signals = [sig.unsqueeze(2) for sig in signals]  # (B, C [+ Cn], 1, K_g, h_g, w_g)
        shapes = [tuple(c.shape[1:]) for c in source]  # (Cn, K_g, h_g, w_g)
        masks = [m.requires_grad_(True) for m in ones_mask(coeffs)]
        count = sum(m[0].numel() for m in masks)
        opt = torch.optim.Adam(masks, lr=self.lr)
        gens = self._generators(b, x.device) if noisy else []
        z: list[Tensor] | None = None  # noise buffers, refilled every step
        samples = self.noise_bs if noisy else 1
        hist: dict[str, list[Tensor]] = {"distortion": [], "l1": [], "spatial": [], "loss": []}
        steps = track(range(self.steps), self.steps, self.progress, f"mask ({rep.name})")
        for _ in steps:
            both = modulated_inverse(rep, masks, signals, size)[:, :, 0]  # (B, C [+ Cn], H, W)
            kept = both[:, :channels]  # T⁻¹(m ⊙ c), unclamped
            if noisy:
                z = self._unit(shapes, gens, x, z)
                scaled = [(1 - m) * sc for m, (_, sc) in zip(masks, affine, strict=True)]
                noise = modulated_inverse(rep, scaled, z, size)  # (B, S, Cn, H, W)
                base = kept + (offset_image - both[:, channels:])  # gray offset broadcasts over RGB
                obfuscated = base.unsqueeze(1) + noise  # (B, S, C, H, W)
            else:
                obfuscated = kept.unsqueeze(1)
            images = obfuscated.clamp(0, 1).flatten(0, 1)
            logits = self.model(images).float()
            prob = select_scores(logits, target.repeat_interleave(samples, dim=0), "prob")
            distortion = (1 - prob.reshape(b, samples)).pow(2).mean(1)
            sparsity = cast(Tensor, sum(m.abs().flatten(1).sum(1) for m in masks)) / count
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
            hist["loss"].append(loss_terms.detach())
        with torch.no_grad():
            mask = [m.detach() for m in masks]
            masked = apply_mask(coeffs, mask)
            image = rep.inverse(masked, size).clamp(0, 1)
        return MaskResult(mask, image, masked, {k: torch.stack(v) for k, v in hist.items()})


def mask_explanation(result: MaskResult) -> tuple[Tensor, dict[str, Any]]:
    """The saliency map and extras of an optimised mask.

    The saliency map is the gray explanation image ``mean_c x̂`` (B, 1, H, W): what the mask
    keeps of the image, at pixel resolution, as the papers display it (for pixel masks,
    ``m · gray(x)``). ``extras``: ``image`` x̂ (B, 3, H, W) in [0, 1]; ``keep_mask`` the
    coefficient mask (B, 1, K, h, w) for single-group representations (pixels, shearlets) or a
    list of such tensors, one per band group (wavelets: low-pass, then levels coarse to fine);
    ``coefficients`` m ⊙ T(x) in the same layout; ``history`` per-step losses (steps, B).
    """
    single = len(result.mask) == 1
    keep: Tensor | list[Tensor] = result.mask[0] if single else result.mask
    coeffs: Tensor | list[Tensor] = result.coefficients[0] if single else result.coefficients
    return gray(result.image), {
        "image": result.image,
        "keep_mask": keep,
        "coefficients": coeffs,
        "history": result.history,
    }
