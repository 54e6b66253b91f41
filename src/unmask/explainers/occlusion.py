"""Occlusion / sliding patch (Zeiler & Fergus 2014; "SP" in Agarwal & Nguyen 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._types import Model, Target
from ..explanation import Explanation
from ..params import BatchSize, Patience, RemovalArg, Score, Side
from ..registry import METHODS
from ..removal import Constant, Inpaint
from ..scoring import Scorer
from ._common import as_model, check_pair, finish, prepare_many, resolve_removal
from .converge import Convergence, check_stopping

__all__ = ["Occlusion", "patch_positions"]


def _positions(size: int, patch: int, stride: int) -> Tensor:
    """Start offsets of the patches along one axis: 0, stride, ... with the patch inside."""
    return torch.arange(0, size - patch + 1, stride)


def patch_positions(
    size: int, patch_size: int | tuple[int, int], stride: int | tuple[int, int]
) -> int:
    """The number of patch positions on a ``size`` x ``size`` image (patches fully inside).

    Example:
        >>> patch_positions(224, 32, 16)
        169
    """
    (ph, pw), (sh, sw) = check_pair(patch_size, "patch_size"), check_pair(stride, "stride")
    return max(0, (size - ph) // sh + 1) * max(0, (size - pw) // sw + 1)


def _indicator(starts: Tensor, patch: int, size: int) -> Tensor:
    """(P, size) float: row p is 1 on [starts[p], starts[p] + patch)."""
    pixels = torch.arange(size)
    return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + patch)).float()


def coarse_step(patch: tuple[int, int], stride: tuple[int, int], positions: tuple[int, int]) -> int:
    """The coarsest level's step M (a power of two, in positions) of the coarse-to-fine order.

    The largest M with ``M·stride <= patch`` on both axes (so the patches of every level still
    overlap and cover the image) and ``M < positions`` on both axes (so a level has more than
    one position per axis); 1 when no coarser level exists.
    """
    m = 1
    axes = list(zip(stride, patch, positions, strict=True))
    while all(2 * m * s <= p and 2 * m < n for s, p, n in axes):
        m *= 2
    return m


def level_order(n_r: int, n_c: int, coarsest: int) -> list[Tensor]:
    """The positions (flat indices ``r·n_c + c``) added at each level, coarse to fine.

    Level 0 has the positions whose row and column are multiples of ``coarsest``; level k adds
    those that are multiples of ``coarsest / 2^k`` and not of the previous step. The union of
    levels 0..k is exactly the lattice of stride ``stride · coarsest / 2^k``.
    """
    r, c = torch.meshgrid(torch.arange(n_r), torch.arange(n_c), indexing="ij")
    r, c = r.flatten(), c.flatten()
    levels, step, seen = [], coarsest, torch.zeros(n_r * n_c, dtype=torch.bool)
    while step >= 1:
        on = (r % step == 0) & (c % step == 0)
        levels.append((on & ~seen).nonzero().flatten())
        seen |= on
        step //= 2
    return levels


@METHODS.register(
    "occlusion",
    aliases=("sp",),
    family="perturbation",
    passes="scoring",
    cost=lambda p, size: patch_positions(size, p["patch_size"], p["stride"]) + 1,
    # 32x32 patches at stride 16 are 13 x 13 = 169 forward passes at 224 x 224 (the paper's
    # 29 / 3 setting: 4,356): the first CLI run takes seconds on a CPU
    cli={"patch_size": 32, "stride": 16},
    test={"patch_size": 8, "stride": 4, "batch_size": 64},
)
class Occlusion:
    """Sliding-patch occlusion: how much the score drops when a patch is removed.

    For every patch position ``k`` the map value is ``A_k = s_c(x) - s_c(x̄_k)`` where ``x̄_k``
    is ``x`` with the patch removed. Convention for pixels: each pixel gets the **average of
    A_k over the patches that cover it** (the convention of captum's ``Occlusion``); patches lie
    fully inside the image, at offsets 0, stride, 2·stride...; a pixel that no patch covers (when
    ``(H - patch) % stride != 0``) gets 0.

    Paper defaults (Agarwal & Nguyen 2020, SP): 29×29 gray patches (the ImageNet mean colour),
    stride 3 (a 66×66 grid at 224²), score = softmax probability.

    Args:
        model: the classifier.
        removal: how a patch is removed (default ``Constant("mean")``); an inpainter gives SP-G.
        patch_size: patch side (int) or (height, width).
        stride: step between patches (int) or (vertical, horizontal).
        score: ``"prob"`` (default), ``"logit"`` or ``"log_prob"``.
        batch_size: perturbed images per forward pass.
        progress: show a progress bar.
        tolerance: early stopping, coarse to fine (:mod:`unmask.explainers.converge`); None
            (default) = every position. Else the positions are scored in levels: the lattice
            of stride ``stride·M`` (M the largest power of two with ``M·stride <= patch_size``,
            :func:`coarse_step`), then ``stride·M/2``, ... down to ``stride``; each level's map
            is exactly the occlusion map at that level's stride. An image stops once
            ``1 - Pearson`` between successive levels' maps is ``<= tolerance`` for
            ``patience`` levels in a row; its map is then the map at the coarser stride.
        patience: successive level checks below ``tolerance`` needed to stop.

    Extras:
        ``grid``: (B, rows, cols) the raw A_k per patch position; ``base_score``: (B,) s_c(x).
        With ``tolerance`` set, ``grid`` is NaN at the positions an image did not evaluate,
        plus ``samples_used`` (B,) long (positions evaluated), ``stride_used`` (B, 2) long,
        ``converged`` (B,) bool (True: stopped by the tolerance; False: reached ``stride``) and
        ``changes`` (B, C) the change at each check (NaN-padded).

    Example:
        >>> import torch, unmask
        >>> net = torch.nn.Sequential(
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
        >>> model = unmask.Classifier.wrap(
        ...     net, mean=(0.,) * 3, std=(1.,) * 3, input_size=None, class_names=["a", "b"])
        >>> e = Occlusion(model, patch_size=4, stride=4).explain(torch.rand(1, 3, 16, 16), target=1)
        >>> e.saliency.shape, e.extras["grid"].shape
        (torch.Size([1, 1, 16, 16]), torch.Size([1, 4, 4]))
    """

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        patch_size: Side | tuple[Side, Side] = 29,
        stride: Side | tuple[Side, Side] = 3,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: bool = False,
        tolerance: float | None = None,
        patience: Patience = 1,
    ) -> None:
        self.model = as_model(model)
        check_stopping(tolerance, None, patience)
        self.tolerance, self.patience = tolerance, patience
        self.removal = resolve_removal(removal, lambda: Constant("mean"))
        self.patch = check_pair(patch_size, "patch_size")
        self.stride = check_pair(stride, "stride")
        self.scorer = Scorer(self.model, batch_size=batch_size, score=score, progress=progress)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set of
        classes, or one per image)."""
        return self.explain_each(x, [target])[0]

    def explain_each(self, x: Tensor, targets: list[Any]) -> list[Explanation]:
        """One explanation per target of ``targets``, from one pass over the perturbations."""
        x, resolved, target = prepare_many(self.model, x, targets, self.scorer)
        b, _, h, w = x.shape
        (ph, pw), (sh, sw) = self.patch, self.stride
        if ph > h or pw > w:
            raise ValueError(f"patch_size: {self.patch} is larger than the images ({h}, {w})")
        rows = _indicator(_positions(h, ph, sh), ph, h)  # (R, H)
        cols = _indicator(_positions(w, pw, sw), pw, w)  # (C, W)
        n_r, n_c = rows.shape[0], cols.shape[0]
        per_image = n_r * n_c
        if self.tolerance is not None:
            return self._explain_converging(x, resolved, target, rows, cols)

        def masks(start: int, stop: int) -> Tensor:
            k = torch.arange(start, stop) % per_image
            return (rows[k // n_c][:, :, None] * cols[k % n_c][:, None, :])[:, None]

        index = torch.arange(b).repeat_interleave(per_image)
        n_t = len(resolved)
        base = self.scorer(x, target).cpu().reshape(b, n_t)
        perturbed = self.scorer.perturbed(
            x, masks, target, self.removal, index=index, count=b * per_image
        ).reshape(b, n_r, n_c, n_t)
        count = rows.sum(0)[:, None] * cols.sum(0)[None, :]
        out = []
        for i, t in enumerate(resolved):
            grid = base[:, i, None, None] - perturbed[..., i]
            total = torch.einsum("rh,brc,cw->bhw", rows, grid, cols)
            saliency = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
            out.append(finish(self, saliency[:, None], t, grid=grid, base_score=base[:, i]))
        return out

    def _explain_converging(
        self, x: Tensor, resolved: list[Tensor], target: Tensor, rows: Tensor, cols: Tensor
    ) -> list[Explanation]:
        """Coarse-to-fine levels for the images still running; stop per image."""
        b, n_t = x.shape[0], len(resolved)
        n_r, n_c = rows.shape[0], cols.shape[0]
        coarsest = coarse_step(self.patch, self.stride, (n_r, n_c))
        levels = level_order(n_r, n_c, coarsest)
        base = self.scorer(x, target).cpu().reshape(b, n_t)
        grid = torch.full((b, n_t, n_r * n_c), float("nan"))
        step_used = torch.ones(b, dtype=torch.long)
        assert self.tolerance is not None  # the early-stopping path only
        rule = Convergence(self.tolerance, self.patience, b)

        def level_map(g: Tensor, step: int) -> Tensor:
            """Maps (a, T, H·W) of the lattice of ``step`` (exactly occlusion at that stride)."""
            r, c = rows[::step], cols[::step]
            g = g.reshape(-1, n_t, n_r, n_c)[:, :, ::step, ::step]
            total = torch.einsum("rh,btrc,cw->bthw", r, g, c)
            count = r.sum(0)[:, None] * c.sum(0)[None, :]
            return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))

        active = torch.arange(b)
        for k, new in enumerate(levels):
            step, a, m = coarsest >> k, len(active), len(new)
            index = active.repeat_interleave(m)

            def masks(s0: int, s1: int, new: Tensor = new, m: int = m) -> Tensor:
                pos = new[torch.arange(s0, s1) % m]
                return (rows[pos // n_c][:, :, None] * cols[pos % n_c][:, None, :])[:, None]

            scores = self.scorer.perturbed(
                x, masks, target, self.removal, index=index, count=a * m
            ).reshape(a, m, n_t)
            grid[active[:, None], :, new[None, :]] = base[active, None, :] - scores
            if step == 1:
                break
            done = rule.update(active, level_map(grid[active], step).flatten(2))
            step_used[active[done]] = step
            active = active[~done]
            if len(active) == 0:
                break
        grids = grid.reshape(b, n_t, n_r, n_c)
        saliency = torch.cat(
            [level_map(grids[i : i + 1], int(step_used[i])) for i in range(b)]
        )  # (B, T, H, W)
        sh, sw = self.stride
        lattice = [
            (torch.arange(n_r) % s == 0)[:, None] & (torch.arange(n_c) % s == 0)[None]
            for s in step_used.tolist()
        ]
        used = torch.stack([on.sum() for on in lattice]).long()
        extras = {
            "samples_used": used,
            "stride_used": torch.stack([step_used * sh, step_used * sw], 1),
            "converged": step_used > 1,
            "changes": rule.history(),
        }
        return [
            finish(
                self,
                saliency[:, i, None],
                t,
                grid=grids[:, i].clone(),
                base_score=base[:, i],
                **extras,
            )
            for i, t in enumerate(resolved)
        ]


METHODS.add(
    "sp-g",
    Occlusion,
    defaults={"removal": lambda: Inpaint("telea")},
    summary=(
        "Sliding patch with the removed patch inpainted (SP-G; classical inpainter by default)."
    ),
)
