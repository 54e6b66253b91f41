"""Infidelity (Yeh et al., "On the (in)fidelity and sensitivity of explanations", NeurIPS 2019;
quantus ``Infidelity``).

For perturbations ``I = x - x̃`` of the image, a faithful map predicts the change of the
target's score from the perturbation: ``INFD = E_I[(Iᵀs - (f(x) - f(x̃)))²]``; lower is better,
0 when ``Iᵀs`` is the score change for every perturbation. Here x̃ removes a random square of
``patch`` × ``patch`` map pixels with ``removal`` (the paper's "square removal", black by
default), ``samples`` squares drawn from ``seed`` (the same for every image), or any given
removal masks; ``Iᵀs = Σ_p s_p Σ_{c, q ∈ p} I_{c,q}``, the map's value of each map pixel p times
the change of the image over its pixels and channels (the map upsampled to the image by nearest
neighbour, broadcast over the channels, as quantus broadcasts it). With ``normalise=True``
(default, as the paper's code) the map is first scaled by the least-squares factor
``β = Σ_k (Iᵀs)_k Δf_k / Σ_k (Iᵀs)_k²`` per image, so that infidelity does not depend on the
map's scale (captum's ``normalize=True``); quantus does not scale (``normalise=False``).
The score is the logit by default (quantus ``softmax=False``). The perturbed images are read
from the scoring engine's chunks (:meth:`Scorer.perturbed`'s ``observe``), so every removal,
also one that depends on the mask (ROAD), is applied once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_positive, check_seed
from .._limits import check_at_most
from .._types import Model, SaliencyLike, Target
from ..params import BatchSize, Count, RemovalArg, Score, Seed, Side
from ..registry import METRICS
from ..removal import Constant, resolve_removal
from ..scores import SCORES
from ._prepare import prepare_inputs
from .faithfulness import _upsample

__all__ = ["infidelity", "square_masks", "Infidelity"]


def square_masks(samples: int, size: tuple[int, int], patch: int, seed: int = 0) -> Tensor:
    """``samples`` masks (samples, 1, h, w) of one random ``patch`` × ``patch`` square each.

    The top-left corners are uniform over the positions that keep the square inside, drawn from
    ``seed`` (rows first, then columns).

    Example:
        >>> m = square_masks(3, (8, 8), 2, seed=0)
        >>> m.shape, m.sum(dim=(1, 2, 3)).tolist()
        (torch.Size([3, 1, 8, 8]), [4.0, 4.0, 4.0])
    """
    check_positive(samples, "samples", integer=True)
    check_positive(patch, "patch", integer=True)
    check_seed(seed)
    h, w = size
    if patch > min(h, w):
        raise ValueError(
            f"patch: expected at most the map's side {min(h, w)} ({h}x{w}), got {patch}"
        )
    gen = torch.Generator().manual_seed(seed)
    tops = torch.randint(0, h - patch + 1, (samples,), generator=gen)
    lefts = torch.randint(0, w - patch + 1, (samples,), generator=gen)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    inside = (
        (rows >= tops[:, None, None])
        & (rows < tops[:, None, None] + patch)
        & (cols >= lefts[:, None, None])
        & (cols < lefts[:, None, None] + patch)
    )
    return inside[:, None].float()


def _check_masks(masks: object, size: tuple[int, int]) -> Tensor:
    if not isinstance(masks, Tensor):
        raise TypeError(
            f"masks: expected a tensor (K, 1, h, w) of removal masks, got {type(masks).__name__}"
        )
    m = masks.detach().cpu()
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != tuple(size) or m.shape[0] == 0:
        raise ValueError(
            f"masks: expected shape (K, 1, {size[0]}, {size[1]}) matching the maps, "
            f"got {tuple(masks.shape)}"
        )
    m = m.float()
    if not bool(((m >= 0) & (m <= 1)).all()):
        raise ValueError("masks: expected values in [0, 1] (1 = removed)")
    return m


def _check_settings(
    samples: object,
    patch: object,
    seed: object,
    score: object,
    batch_size: object,
    normalise: object,
) -> None:
    if not isinstance(normalise, bool):
        raise TypeError(f"normalise: expected a bool, got {type(normalise).__name__}")
    check_positive(samples, "samples", integer=True)
    check_at_most(samples, "samples", 100_000, "perturbations per image")  # type: ignore[arg-type]
    if patch is not None:
        check_positive(patch, "patch", integer=True)
    check_seed(seed)
    check_choice(score, "score", SCORES)
    check_positive(batch_size, "batch_size", integer=True)


def infidelity(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    samples: int = 100,
    patch: int | None = None,
    masks: Tensor | None = None,
    removal: Any = None,
    normalise: bool = True,
    seed: int = 0,
    score: str = "logit",
    batch_size: int = 16,
    progress: object = False,
) -> Tensor:
    """Infidelity (Yeh et al. 2019) per image (B,) float64; lower is better.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: maps (B, 1, h, w) (features = map pixels) or an Explanation.
        target: None (top-1), a class or a set of classes per image.
        samples: random squares per image (ignored when ``masks`` is given).
        patch: the squares' side in map pixels; None = ``max(1, round(min(h, w) / 14))``
            (16 pixels on a 224² map, about 14 × 14 squares fit).
        masks: instead of random squares, the removal masks (K, 1, h, w) in [0, 1] at the
            map's resolution, the same for every image.
        removal: what fills the removed pixels (default black).
        normalise: scale the map by the per-image least-squares factor β first (the paper's
            code); False = the raw map (quantus).
        seed: seed of the squares.
        score: ``"logit"`` (default), ``"prob"``, ``"log_prob"``.
        batch_size: images per forward pass.
        progress: progress bar (bool) or callback ``(done, total)``.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> x, m = region_images(1, 16), region_mask(16, 16).float()
        >>> bool(infidelity(region_model(), x, m, samples=20) < 1e-3)
        True
    """
    _check_settings(samples, patch, seed, score, batch_size, normalise)
    removal = resolve_removal(removal, lambda: Constant("black"))
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score, "progress": progress}
    )
    b, _, height, width = x.shape
    h, w = s.shape[-2:]
    if masks is not None:
        feature_masks = _check_masks(masks, (h, w))
    else:
        side = max(1, round(min(h, w) / 14)) if patch is None else patch
        feature_masks = square_masks(samples, (h, w), side, seed)
    k = feature_masks.shape[0]
    weights = _upsample(s.double(), (height, width)).to(x.device)  # (B, 1, H, W)
    index = torch.arange(b).repeat_interleave(k)
    dots = torch.empty(b * k, dtype=torch.float64)

    def chunk_masks(start: int, stop: int) -> Tensor:
        return _upsample(feature_masks[torch.arange(start, stop) % k], (height, width))

    def observe(start: int, stop: int, images: Tensor) -> None:
        idx = index[start:stop].to(x.device)
        change = (x[idx] - images).double().sum(1, keepdim=True)  # I summed over channels
        dots[start:stop] = (change * weights[idx]).flatten(1).sum(1).cpu()

    after = scorer.perturbed(x, chunk_masks, t, removal, index=index, count=b * k, observe=observe)
    drops = base.double()[:, None] - after.double().reshape(b, k)
    dots = dots.reshape(b, k)
    if normalise:
        beta = (dots * drops).sum(1, keepdim=True) / (dots * dots).sum(1, keepdim=True)
        dots = dots * beta
    return ((dots - drops) ** 2).mean(1)


@METRICS.register("infidelity", cost=lambda p, size: p["samples"] + 1)
class Infidelity:
    """Infidelity (Yeh et al. 2019): squared error of Iᵀs against the score drop; lower is better.

    Arguments as :func:`infidelity` (defaults: 100 random squares of about 1/14 of the map's
    side, black, normalised map, seed 0, logit).
    """

    kind = "faithfulness"
    higher_is_better = False

    def __init__(
        self,
        samples: Count = 100,
        patch: Side | None = None,
        *,
        masks: Tensor | None = None,
        removal: RemovalArg = None,
        normalise: bool = True,
        seed: Seed = 0,
        score: Score = "logit",
        batch_size: BatchSize = 16,
        progress: object = False,
    ) -> None:
        _check_settings(samples, patch, seed, score, batch_size, normalise)
        self.removal = resolve_removal(removal, lambda: Constant("black"))
        self._params: dict[str, Any] = {
            "samples": samples,
            "patch": patch,
            "masks": masks,
            "removal": self.removal,
            "normalise": normalise,
            "seed": seed,
            "score": score,
            "batch_size": batch_size,
            "progress": progress,
        }

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        """Per-image values (B,) for images (B, 3, H, W) and maps (B, 1, h, w)."""
        return infidelity(model, x, saliency, target, **self._params)

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}" for k, v in self._params.items() if k not in ("progress", "masks")
        )
        return f"Infidelity({args})"
