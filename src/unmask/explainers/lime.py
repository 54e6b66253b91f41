"""LIME for images (Ribeiro et al. 2016), as run by Agarwal & Nguyen 2020 ("LIME", "LIME-G")."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_positive, check_seed
from .._limits import check_at_most, check_memory, max_size
from .._types import Model, Target
from ..explanation import Explanation
from ..params import BatchSize, Bounds, Count, Patience, RemovalArg, Score, Seed
from ..registry import METHODS
from ..removal import Constant, Inpaint
from ..scoring import Scorer
from ..segments import relabel, slic_segments
from ._common import as_model, finish, prepare_many, resolve_removal
from .converge import Convergence, check_stopping

__all__ = [
    "Lime",
    "slic_segments",
    "relabel",
    "sample_on_off",
    "lime_kernel",
    "weighted_ridge",
    "segment_masks",
]

SegmentSource = Tensor | np.ndarray | Callable[[Tensor], Any] | None


def sample_on_off(num_samples: int, num_segments: int, generator: torch.Generator) -> Tensor:
    """LIME's random perturbations: (N, S) bool, each segment on with probability 1/2.

    The first sample keeps every segment (the unperturbed image), as LIME does.
    """
    z = torch.randint(0, 2, (num_samples, num_segments), generator=generator, dtype=torch.int64)
    z[0] = 1
    return z.bool()


def lime_kernel(z: Tensor, valid: Tensor, width: float) -> Tensor:
    """Sample weights from the cosine distance of each sample to the all-on vector.

    ``d = 1 - cos(z, 1)`` (1 for the all-off sample, as scikit-learn's ``pairwise_distances``
    gives), weight ``sqrt(exp(-d² / width²)) = exp(-d² / (2 width²))`` — the kernel of LIME's
    reference code (``lime_image.LimeImageExplainer``) and of captum.

    Args:
        z: (B, N, S) bool samples (padded segments must be False).
        valid: (B, S) bool, True for the segments an image has.
        width: the kernel width (LIME: 0.25).

    Returns:
        (B, N) float64 weights.
    """
    on = z.double().sum(-1)
    total = valid.double().sum(-1, keepdim=True)
    norms = (on.sqrt() * total.sqrt()).clamp(min=1e-300)
    cos = torch.where(on > 0, on / norms, torch.zeros_like(on))
    d = 1 - cos
    if width**2 == 0:  # a width so small its square underflows: the limit, the all-on sample
        return (d == 0).double()
    return torch.sqrt(torch.exp(-(d**2) / width**2))


def weighted_ridge(
    features: Tensor, y: Tensor, weights: Tensor, alpha: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted ridge regression with an unpenalised intercept, for a batch of problems.

    Minimises ``Σ_n w_n (y_n - b - f_n·β)² + alpha ‖β‖²`` per problem, as scikit-learn's
    ``Ridge(alpha, fit_intercept=True).fit(f, y, sample_weight=w)`` does. A feature column that
    is all zero gets coefficient 0.

    Args:
        features: (B, N, S) design matrices.
        y: (B, N) targets.
        weights: (B, N) non-negative sample weights.
        alpha: the ridge penalty.

    Returns:
        ``coef`` (B, S), ``intercept`` (B,), ``r2`` (B,): the weighted R² of the fit
        (scikit-learn's ``score(f, y, sample_weight=w)``; 1 for a perfect fit of constant y).
    """
    f, y, w = features.double(), y.double(), weights.double()
    wsum = w.sum(-1, keepdim=True)
    f_mean = (w[..., None] * f).sum(1, keepdim=True) / wsum[..., None]
    y_mean = (w * y).sum(-1, keepdim=True) / wsum
    fc, yc = f - f_mean, y - y_mean
    gram = torch.einsum("bns,bn,bnt->bst", fc, w, fc)
    gram = gram + alpha * torch.eye(f.shape[-1], dtype=f.dtype)
    rhs = torch.einsum("bns,bn,bn->bs", fc, w, yc)
    coef = torch.linalg.solve(gram, rhs)
    intercept = y_mean[:, 0] - (f_mean[:, 0] * coef).sum(-1)
    pred = intercept[:, None] + torch.einsum("bns,bs->bn", f, coef)
    ss_res = (w * (y - pred) ** 2).sum(-1)
    ss_tot = (w * yc**2).sum(-1)
    r2 = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp(min=1e-300), (ss_res <= 1e-12).double())
    return coef, intercept, r2


def segment_masks(off: Tensor, segments: Tensor) -> Tensor:
    """Removal masks (N, 1, H, W) from per-sample "off" segments (N, S) and labels (N, H, W).

    Pixel ``p`` of mask ``n`` is 1 (removed) when its segment ``segments[n, p]`` is off.
    """
    n, h, w = segments.shape
    return off.float().gather(1, segments.reshape(n, h * w)).reshape(n, 1, h, w)


#: Most superpixels LIME accepts (the ridge fit solves an S x S system per image).
MAX_SEGMENTS = 10_000


def _fit_bytes(b: int, n: int, s: int) -> float:
    """Working memory of LIME's samples and weighted ridge fit, float64: a few (B, N, S)
    design matrices and the (B, S, S) Gram matrix."""
    return 8.0 * b * (4 * n * s + 2 * s * s)


@METHODS.register(
    "lime",
    family="perturbation",
    passes="scoring",
    cost=lambda p, size: p["samples"],
    test={"samples": 150, "n_segments": 64, "sigma": 1.0, "batch_size": 64},
)
class Lime:
    """LIME: a weighted linear model of the score on random superpixel on/off patterns.

    Each image is cut into superpixels (SLIC). ``N`` random on/off patterns ``z`` (each
    superpixel on with probability 1/2, the first pattern all on) are turned into images by
    removing the "off" superpixels with the removal strategy and scored by the model. A ridge
    regression (``alpha=1``, intercept) of the scores on ``z``, weighted by
    ``exp(-d² / (2·width²))`` with ``d`` the cosine distance of ``z`` to the all-on pattern,
    gives one weight per superpixel; the map paints each superpixel with its weight.

    References: Ribeiro, Singh & Guestrin, "Why should I trust you?", KDD 2016; settings of
    Agarwal & Nguyen, "Explaining image classifiers by removing input features using generative
    models", ACCV 2020: SLIC (n_segments=50, compactness=30, sigma=3), 1000 samples, kernel
    width 0.25 on the cosine distance, ``Ridge(alpha=1)``, fill = the ImageNet mean colour;
    LIME-G is the same with an inpainter as the fill.

    The kernel is that of LIME's reference code, ``sqrt(exp(-d²/width²))``; the final model is
    the reference code's ``Ridge(alpha=1)`` fit on every superpixel (its default
    ``num_features=100000`` keeps them all).

    Args:
        model: the classifier.
        removal: how "off" superpixels are removed (default ``Constant("mean")``, the ImageNet
            mean colour); ``"lime-g"`` defaults to ``Inpaint("telea")``.
        n_segments, compactness, sigma: SLIC settings.
        segments: optional label maps instead of SLIC: a (B, H, W) or (H, W) integer tensor /
            array, or a function ``segments(x) -> (B, H, W)``. :meth:`explain` also takes
            ``segments=`` for one call.
        samples: number of on/off samples N per image (including the all-on one).
        kernel_width: LIME's kernel width on the cosine distance.
        alpha: ridge penalty.
        score: ``"prob"`` (default, as LIME explains class probabilities), ``"logit"``,
            ``"log_prob"``.
        batch_size: perturbed images per forward pass.
        seed: random seed of the on/off samples (the same for every image, so an image's
            result does not depend on the other images of the batch).
        progress: show a progress bar.
        tolerance: early stopping (:mod:`unmask.explainers.converge`); None (default) = all N
            samples. Else the samples are scored ``check_every`` at a time, the ridge model is
            refitted on each image's samples so far, and an image stops once ``1 - Pearson``
            between its successive maps is ``<= tolerance`` for ``patience`` checks in a row;
            its map is the fit on its first ``samples_used`` samples.
        check_every: samples per block between two checks.
        patience: successive checks below ``tolerance`` needed to stop.

    Extras:
        ``segments`` (B, H, W) long labels 0..S_b-1; ``weights`` (B, S_max) float, the
        superpixel weights, padded with 0 after each image's ``num_segments`` (B,) S_b;
        ``intercept`` (B,); ``score`` (B,) the weighted R² of the fit; ``samples`` (B, N, S_max)
        bool on/off patterns (padding False); ``sample_scores`` (B, N) the model scores. With
        ``tolerance`` set, ``samples`` and ``sample_scores`` stop at the largest
        ``samples_used`` (scores NaN after an image's own), plus ``samples_used`` (B,) long,
        ``converged`` (B,) bool (True: stopped by the tolerance; False: the N samples ran out)
        and ``changes`` (B, C) the change at each check (NaN-padded).

    Example:
        >>> import torch, unmask
        >>> from unmask.testing import region_model, region_images
        >>> e = Lime(region_model(), n_segments=16, samples=50).explain(region_images(1))
        >>> e.saliency.shape, e.extras["weights"].shape[0]
        (torch.Size([1, 1, 32, 32]), 1)
    """

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        n_segments: Annotated[int, Bounds(1, 2_000)] = 50,
        compactness: float = 30.0,
        sigma: float = 3.0,
        segments: SegmentSource = None,
        samples: Count = 1000,
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        seed: Seed = 0,
        progress: bool = False,
        tolerance: float | None = None,
        check_every: Patience = 100,
        patience: Patience = 2,
    ) -> None:
        self.model = as_model(model)
        self.removal = resolve_removal(removal, lambda: Constant("mean"))
        check_stopping(tolerance, check_every, patience)
        self.tolerance, self.check_every, self.patience = tolerance, check_every, patience
        check_positive(n_segments, "n_segments", integer=True)
        check_at_most(
            n_segments,
            "n_segments",
            MAX_SEGMENTS,
            "superpixels; the linear fit holds an S x S matrix",
        )
        check_positive(compactness, "compactness")
        check_positive(sigma, "sigma", allow_zero=True)
        check_at_most(sigma, "sigma", max_size(), "the image side limit, UNMASK_MAX_SIZE")
        check_positive(samples, "samples", integer=True)
        if samples < 2:
            raise ValueError(
                f"samples: expected at least 2 (the first sample is the unperturbed "
                f"image, so one sample fits nothing), got {samples}"
            )
        check_memory(
            _fit_bytes(1, samples, n_segments),
            "samples",
            f"the linear fit of {samples} samples x {n_segments} superpixels",
        )
        check_positive(kernel_width, "kernel_width")
        check_positive(alpha, "alpha", allow_zero=True)
        if (
            segments is not None
            and not callable(segments)
            and not isinstance(segments, Tensor | np.ndarray)
        ):
            raise TypeError(
                "segments: expected None, a (B, H, W) integer tensor/array or a "
                f"function x -> (B, H, W), got {type(segments).__name__}"
            )
        self.n_segments, self.compactness, self.sigma = n_segments, float(compactness), float(sigma)
        self.segments = segments
        self.samples, self.kernel_width, self.alpha = samples, float(kernel_width), float(alpha)
        self.seed = check_seed(seed)
        self.scorer = Scorer(self.model, batch_size=batch_size, score=score, progress=progress)

    def _segments(self, x: Tensor, segments: SegmentSource) -> Tensor:
        b, _, h, w = x.shape
        if segments is None:
            return slic_segments(x, self.n_segments, self.compactness, self.sigma)
        if callable(segments) and not isinstance(segments, Tensor | np.ndarray):
            segments = segments(x)
        if isinstance(segments, np.ndarray):
            segments = torch.from_numpy(segments)
        if not isinstance(segments, Tensor):
            raise TypeError(
                f"segments: expected a (B, H, W) integer tensor, got {type(segments).__name__}"
            )
        if segments.is_floating_point() or segments.dtype == torch.bool:
            raise TypeError(f"segments: expected an integer tensor, got dtype {segments.dtype}")
        if segments.ndim == 2:
            segments = segments[None].expand(b, h, w)
        if segments.ndim != 3 or tuple(segments.shape) != (b, h, w):
            raise ValueError(
                f"segments: expected shape ({b}, {h}, {w}) matching the images "
                f"{tuple(x.shape)}, got {tuple(segments.shape)}"
            )
        return relabel(segments.cpu())

    def explain(
        self, x: Tensor, target: Target = None, segments: SegmentSource = None
    ) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set of
        classes, or one per image).

        ``segments`` overrides the constructor's segmentation for this call.
        """
        return self.explain_each(x, [target], segments)[0]

    def explain_each(
        self, x: Tensor, targets: list[Any], segments: SegmentSource = None
    ) -> list[Explanation]:
        """One explanation per target of ``targets``, from one pass over the samples."""
        x, resolved, target = prepare_many(self.model, x, targets, self.scorer)
        b, _, h, w = x.shape
        seg = self._segments(x, segments if segments is not None else self.segments)
        counts = seg.reshape(b, -1).amax(1) + 1  # (B,) S_b
        s_max, n = int(counts.max()), self.samples
        check_memory(
            _fit_bytes(b, n, s_max),
            "segments" if segments is not None or self.segments is not None else "n_segments",
            f"the linear fit of {b} image(s) x {n} samples x {s_max} superpixels",
        )
        if n <= s_max:
            warnings.warn(
                f"samples: {n} samples for up to {s_max} superpixels: the linear fit is "
                "underdetermined and the weights mostly reflect the ridge penalty; use "
                "more samples than superpixels",
                stacklevel=3,
            )
        valid = torch.arange(s_max)[None] < counts[:, None]  # (B, S_max)
        z = torch.zeros(b, n, s_max, dtype=torch.bool)
        for i, s_b in enumerate(counts.tolist()):  # per image, so batches equal single calls
            gen = torch.Generator().manual_seed(self.seed)
            z[i, :, :s_b] = sample_on_off(n, s_b, gen)
        off = ~z & valid[:, None]
        kernel = lime_kernel(z, valid, self.kernel_width)
        if self.tolerance is not None:
            return self._explain_converging(x, resolved, target, seg, counts, z, off, kernel)
        off_flat = off.reshape(b * n, s_max)
        seg_dev = seg.to(x.device)
        index = torch.arange(b).repeat_interleave(n)

        def masks(start: int, stop: int) -> Tensor:
            return segment_masks(off_flat[start:stop].to(x.device), seg_dev[index[start:stop]])

        all_scores = self.scorer.perturbed(
            x, masks, target, self.removal, index=index, count=b * n
        ).reshape(b, n, len(resolved))
        out = []
        for i, t in enumerate(resolved):
            scores = all_scores[..., i]
            coef, intercept, r2 = weighted_ridge(z.double(), scores.double(), kernel, self.alpha)
            weights = (coef * valid).float()
            saliency = weights.gather(1, seg.reshape(b, -1)).reshape(b, 1, h, w)
            out.append(
                finish(
                    self,
                    saliency,
                    t,
                    segments=seg,
                    weights=weights,
                    num_segments=counts,
                    intercept=intercept.float(),
                    score=r2.float(),
                    samples=z,
                    sample_scores=scores,
                )
            )
        return out

    def _explain_converging(
        self,
        x: Tensor,
        resolved: list[Tensor],
        target: Tensor,
        seg: Tensor,
        counts: Tensor,
        z: Tensor,
        off: Tensor,
        kernel: Tensor,
    ) -> list[Explanation]:
        """Blocks of ``check_every`` samples for the images still running; refit, stop per image."""
        b, _, h, w = x.shape
        n, n_t, s_max = z.shape[1], len(resolved), z.shape[2]
        valid = torch.arange(s_max)[None] < counts[:, None]
        scores = torch.full((b, n, n_t), float("nan"))
        used = torch.full((b,), n, dtype=torch.long)
        assert self.tolerance is not None  # the early-stopping path only
        rule = Convergence(self.tolerance, self.patience, b)
        seg_dev, flat = seg.to(x.device), seg.reshape(b, 1, -1)

        def fit(images: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
            """Ridge fits (a, T, ...) of ``images`` on their first ``m`` samples."""
            zz, kk = z[images, :m].double(), kernel[images, :m]
            fits = [
                weighted_ridge(zz, scores[images, :m, i].double(), kk, self.alpha)
                for i in range(n_t)
            ]
            return tuple(torch.stack(parts, 1) for parts in zip(*fits, strict=True))  # type: ignore[return-value]

        active = torch.arange(b)
        for start in range(0, n, self.check_every):
            stop, a = min(start + self.check_every, n), len(active)
            # Perturbation j of the block: sample start + j % (stop - start) of its image.
            index = active.repeat_interleave(stop - start)
            off_block = off[active, start:stop].reshape(a * (stop - start), s_max)

            def masks(
                s0: int, s1: int, off_block: Tensor = off_block, index: Tensor = index
            ) -> Tensor:
                return segment_masks(off_block[s0:s1].to(x.device), seg_dev[index[s0:s1]])

            block = self.scorer.perturbed(
                x, masks, target, self.removal, index=index, count=a * (stop - start)
            )
            scores[active, start:stop] = block.reshape(a, stop - start, n_t)
            if stop == n:
                break
            coef = fit(active, stop)[0] * valid[active, None]  # (a, T, S)
            maps = coef.gather(2, flat[active].expand(-1, n_t, -1))
            done = rule.update(active, maps)
            used[active[done]] = stop
            active = active[~done]
            if len(active) == 0:
                break
        parts = [fit(torch.tensor([i]), int(used[i])) for i in range(b)]
        coef, intercept, r2 = (torch.cat(p) for p in zip(*parts, strict=True))  # (B, T, ...)
        last = int(used.max())
        extras = {"samples_used": used, "converged": used < n, "changes": rule.history()}
        out = []
        for i, t in enumerate(resolved):
            weights = (coef[:, i] * valid).float()
            saliency = weights.gather(1, seg.reshape(b, -1)).reshape(b, 1, h, w)
            out.append(
                finish(
                    self,
                    saliency,
                    t,
                    segments=seg,
                    weights=weights,
                    num_segments=counts,
                    intercept=intercept[:, i].float(),
                    score=r2[:, i].float(),
                    samples=z[:, :last].clone(),
                    sample_scores=scores[:, :last, i].clone(),
                    **extras,
                )
            )
        return out


METHODS.add(
    "lime-g",
    Lime,
    defaults={"removal": lambda: Inpaint("telea")},
    summary="LIME with the removed superpixels inpainted (LIME-G; classical inpainter by default).",
)
