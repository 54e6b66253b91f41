"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko, BMVC 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import check_positive, check_probability, check_seed
from .._limits import check_memory
from .._types import Model, Target
from ..explanation import Explanation
from ..params import BatchSize, Count, Patience, RemovalArg, Score, Seed, Side
from ..registry import METHODS
from ..removal import Constant
from ..scoring import Scorer
from ._common import as_model, check_side, finish, prepare_many, resolve_removal
from .converge import Convergence, check_stopping

__all__ = ["Rise", "RiseMasks", "sample_rise_masks"]


@dataclass(frozen=True)
class RiseMasks:
    """A replayable set of RISE masks: the random draws, and how to render them.

    Sampling (:func:`sample_rise_masks`) is separate from rendering (:meth:`render`), so masks
    can be rendered chunk by chunk, twice, identically, without holding N full-size masks.

    Attributes:
        grids: (N, s, s) float, the binary low-resolution grids (1 = kept).
        shifts: (N, 2) long, the (row, column) offsets of the crops, each in [0, cell).
        size: (H, W) of the images.
        cell: (cell_h, cell_w) = (ceil(H / s), ceil(W / s)).
    """

    grids: Tensor
    shifts: Tensor
    size: tuple[int, int]
    cell: tuple[int, int]

    def __len__(self) -> int:
        return int(self.grids.shape[0])

    def render(
        self, start: int = 0, stop: int | None = None, device: torch.device | str = "cpu"
    ) -> Tensor:
        """The KEEP masks ``start..stop-1`` (n, 1, H, W) in [0, 1] (1 = pixel kept).

        Each grid is upsampled bilinearly to ``((s + 1)·cell_h, (s + 1)·cell_w)`` and cropped to
        (H, W) at its shift, exactly as the RISE reference code does with scikit-image's
        ``resize(order=1, mode="reflect")`` (half-pixel centres, mirror boundary). Bilinear
        upsampling is separable, so the cropped mask is ``R_rows @ grid @ R_cols.T`` with the
        crop's rows of the 1-D interpolation matrices: the (s+1)·cell image is never formed.
        """
        stop = len(self) if stop is None else stop
        grids = self.grids[start:stop].to(device)
        shifts = self.shifts[start:stop].to(device)
        s_h, s_w = grids.shape[-2:]
        (h, w), (ch, cw) = self.size, self.cell
        rows = _interpolation_matrix(s_h, (s_h + 1) * ch, device)  # (U_h, s)
        cols = _interpolation_matrix(s_w, (s_w + 1) * cw, device)  # (U_w, s)
        r = rows[shifts[:, 0, None] + torch.arange(h, device=device)]  # (n, H, s)
        c = cols[shifts[:, 1, None] + torch.arange(w, device=device)]  # (n, W, s)
        return (r @ grids @ c.transpose(1, 2))[:, None]


def _interpolation_matrix(n_in: int, n_out: int, device: torch.device | str) -> Tensor:
    """(n_out, n_in) linear interpolation with half-pixel centres and mirror boundary.

    Output pixel ``i`` samples the input at ``(i + 0.5)·n_in/n_out - 0.5``; positions outside
    [0, n_in - 1] are mirrored about the edge pixels (scikit-image ``mode="reflect"``).
    """
    pos = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    left = torch.floor(pos)
    frac = pos - left
    left = left.long()

    def mirror(i: Tensor) -> Tensor:
        if n_in == 1:
            return torch.zeros_like(i)
        i = i.abs()
        return torch.where(i > n_in - 1, 2 * (n_in - 1) - i, i)

    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    out = torch.arange(n_out)
    m.index_put_((out, mirror(left)), 1 - frac, accumulate=True)
    m.index_put_((out, mirror(left + 1)), frac, accumulate=True)
    return m.float().to(device)


def sample_rise_masks(
    num_masks: int,
    size: tuple[int, int],
    s: int = 7,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> RiseMasks:
    """Draw RISE's random grids and shifts.

    Args:
        num_masks: N.
        size: the image size (H, W).
        s: grid side (the grid is s×s).
        p: probability that a grid cell is kept.
        generator: the random source (CPU).

    Returns:
        :class:`RiseMasks`; render them with :meth:`RiseMasks.render`.
    """
    h, w = size
    cell = (math.ceil(h / s), math.ceil(w / s))
    grids = (torch.rand(num_masks, s, s, generator=generator) < p).float()
    shifts = torch.stack(
        [
            torch.randint(0, cell[0], (num_masks,), generator=generator),
            torch.randint(0, cell[1], (num_masks,), generator=generator),
        ],
        dim=1,
    )
    return RiseMasks(grids, shifts, (h, w), cell)


@METHODS.register(
    "rise",
    family="perturbation",
    passes="scoring",
    cost=lambda p, size: p["masks"],
    test={"masks": 500, "s": 7, "batch_size": 100},
)
class Rise:
    """RISE: the expected score when random smooth masks keep each pixel.

    ``S(λ) = Σ_n score(x ⊙ M_n) · M_n(λ) / (N · p)`` over N random masks ``M_n`` (1 = kept):
    binary s×s grids with keep probability ``p``, upsampled bilinearly to
    ``(s + 1)·cell`` (cell = ceil(H / s)) and cropped at a random shift in [0, cell).

    The removal strategy receives ``1 - M_n`` (unmask masks mark what is *removed*); fixed
    fills blend with the soft mask, ``x·M + fill·(1 - M)``. Default fill: the ImageNet mean
    colour, ``Constant("mean")``, because the RISE reference code multiplies the *normalised*
    image by the mask, which is a blend towards the mean colour (a black fill would instead
    correspond to multiplying the [0, 1] image).

    Defaults from the paper: N=4000, s=7, p=0.5, softmax probability.

    Args:
        model: the classifier.
        removal: how the masked part is removed (default ``Constant("mean")``).
        masks: N, the number of random masks.
        s: grid side.
        p: keep probability of a grid cell.
        score: ``"prob"`` (default), ``"logit"``, ``"log_prob"``.
        batch_size: perturbed images per forward pass.
        seed: random seed; every image of a batch uses the same N masks.
        progress: show a progress bar.
        tolerance: early stopping (:mod:`unmask.explainers.converge`); None (default) = all N
            masks, the paper's estimator. Else the masks are scored ``check_every`` at a time
            and an image stops once ``1 - Pearson`` between its successive partial maps is
            ``<= tolerance`` for ``patience`` checks in a row; its map is then the estimate
            from its first ``samples_used`` masks (the sum divided by ``samples_used · p``).
        check_every: masks per block between two checks.
        patience: successive checks below ``tolerance`` needed to stop.

    Extras:
        ``masks``: the :class:`RiseMasks` used (replayable; ``render()`` gives keep masks);
        ``mask_scores``: (B, N) the score of each masked image. With ``tolerance`` set, the
        masks and scores stop at the largest ``samples_used`` (scores NaN after an image's
        own), plus ``samples_used`` (B,) long, ``converged`` (B,) bool (True: stopped by the
        tolerance; False: the N masks ran out) and ``changes`` (B, C) the change at each
        check (NaN-padded).

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> e = Rise(region_model(), masks=100, s=4).explain(region_images(2))
        >>> e.saliency.shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        masks: Count = 4000,
        s: Side = 7,
        p: float = 0.5,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        seed: Seed = 0,
        progress: bool = False,
        tolerance: float | None = None,
        check_every: Patience = 250,
        patience: Patience = 2,
    ) -> None:
        self.model = as_model(model)
        self.removal = resolve_removal(removal, lambda: Constant("mean"))
        check_positive(masks, "masks", integer=True)
        check_stopping(tolerance, check_every, patience)
        self.tolerance, self.check_every, self.patience = tolerance, check_every, patience
        check_side(s, "s")
        check_memory(4.0 * masks * (s * s + 4), "masks", f"{masks} RISE grids of {s}x{s}")
        check_probability(p, "p", open_low=True)
        self.num_masks, self.s, self.p = masks, s, float(p)
        self.seed = check_seed(seed)
        self.scorer = Scorer(self.model, batch_size=batch_size, score=score, progress=progress)

    def sample(self, size: tuple[int, int]) -> RiseMasks:
        """The masks this explainer uses for images of ``size`` (H, W) (seeded)."""
        gen = torch.Generator().manual_seed(self.seed)
        return sample_rise_masks(self.num_masks, size, self.s, self.p, gen)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set of
        classes, or one per image)."""
        return self.explain_each(x, [target])[0]

    def explain_each(self, x: Tensor, targets: list[Any]) -> list[Explanation]:
        """One explanation per target of ``targets``, from one pass over the masked images."""
        x, resolved, target = prepare_many(self.model, x, targets, self.scorer)
        b, _, h, w = x.shape
        if self.s > min(h, w):
            raise ValueError(f"s: grid side {self.s} is larger than the images ({h}, {w})")
        rise = self.sample((h, w))
        if self.tolerance is not None:
            return self._explain_converging(x, resolved, target, rise)
        n, device = len(rise), x.device
        # Perturbation j removes mask j // B from image j % B: each mask is rendered once per chunk.
        index = torch.arange(b).repeat(n)

        def removal_masks(start: int, stop: int) -> Tensor:
            first, last = start // b, (stop - 1) // b + 1
            keep = rise.render(first, last, device)
            return 1 - keep[torch.arange(start, stop, device=device) // b - first]

        n_t = len(resolved)
        scores = (
            self.scorer.perturbed(x, removal_masks, target, self.removal, index=index, count=n * b)
            .reshape(n, b, n_t)
            .permute(2, 1, 0)
            .contiguous()
        )
        saliency = torch.zeros(n_t, b, h * w, dtype=torch.float64)
        chunk = max(1, 2**22 // (h * w))  # ~16 MB of float32 masks at a time
        for start in range(0, n, chunk):
            keep = rise.render(start, min(start + chunk, n)).reshape(-1, h * w).double()
            saliency += scores[..., start : start + chunk].double() @ keep
        saliency = (saliency / (n * self.p)).float().reshape(n_t, b, 1, h, w)
        return [
            finish(self, saliency[i], t, masks=rise, mask_scores=scores[i])
            for i, t in enumerate(resolved)
        ]

    def _explain_converging(
        self, x: Tensor, resolved: list[Tensor], target: Tensor, rise: RiseMasks
    ) -> list[Explanation]:
        """Blocks of ``check_every`` masks for the images still running; stop per image."""
        b, _, h, w = x.shape
        n, n_t, device = len(rise), len(resolved), x.device
        sums = torch.zeros(b, n_t, h * w, dtype=torch.float64)
        scores = torch.full((b, n_t, n), float("nan"))
        used = torch.full((b,), n, dtype=torch.long)
        assert self.tolerance is not None  # the early-stopping path only
        rule = Convergence(self.tolerance, self.patience, b)
        active = torch.arange(b)
        chunk = max(1, 2**22 // (h * w))
        for start in range(0, n, self.check_every):
            stop, a = min(start + self.check_every, n), len(active)
            # Perturbation j of the block: mask start + j // a on image active[j % a].
            index = active.repeat(stop - start)

            def removal_masks(s0: int, s1: int, start: int = start, a: int = a) -> Tensor:
                first, last = start + s0 // a, start + (s1 - 1) // a + 1
                keep = rise.render(first, last, device)
                return 1 - keep[torch.arange(s0, s1, device=device) // a + start - first]

            block = self.scorer.perturbed(
                x, removal_masks, target, self.removal, index=index, count=(stop - start) * a
            ).reshape(stop - start, a, n_t)
            block = block.permute(1, 2, 0).contiguous()  # (a, T, masks)
            scores[active, :, start:stop] = block
            for c0 in range(start, stop, chunk):
                c1 = min(c0 + chunk, stop)
                keep = rise.render(c0, c1).reshape(-1, h * w).double()
                sums[active] += block[..., c0 - start : c1 - start].double() @ keep
            if stop == n:
                break
            done = rule.update(active, sums[active] / (stop * self.p))
            used[active[done]] = stop
            active = active[~done]
            if len(active) == 0:
                break
        saliency = (sums / (used[:, None, None] * self.p)).float()
        saliency = saliency.permute(1, 0, 2).reshape(n_t, b, 1, h, w)
        last = int(used.max())
        kept = RiseMasks(rise.grids[:last], rise.shifts[:last], rise.size, rise.cell)
        extras = {"samples_used": used, "converged": used < n, "changes": rule.history()}
        return [
            finish(
                self, saliency[i], t, masks=kept, mask_scores=scores[:, i, :last].clone(), **extras
            )
            for i, t in enumerate(resolved)
        ]
