"""Occlusion / sliding patch (Zeiler & Fergus 2014; "SP" in Agarwal & Nguyen 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..explanation import Explanation
from ..registry import METHODS
from ..removal import Constant, Inpaint
from ..scoring import Scorer
from ._common import as_model, check_pair, finish, prepare_many, resolve_removal

__all__ = ["Occlusion"]


def _positions(size: int, patch: int, stride: int) -> Tensor:
    """Start offsets of the patches along one axis: 0, stride, ... with the patch inside."""
    return torch.arange(0, size - patch + 1, stride)


def _indicator(starts: Tensor, patch: int, size: int) -> Tensor:
    """(P, size) float: row p is 1 on [starts[p], starts[p] + patch)."""
    pixels = torch.arange(size)
    return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + patch)).float()


@METHODS.register("occlusion", aliases=("sp",))
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

    Extras:
        ``grid``: (B, rows, cols) the raw A_k per patch position; ``base_score``: (B,) s_c(x).

    Example:
        >>> import torch, unmask
        >>> net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
        >>> model = unmask.Classifier.wrap(net, mean=(0.,) * 3, std=(1.,) * 3, input_size=None, class_names=["a", "b"])
        >>> e = Occlusion(model, patch_size=4, stride=4).explain(torch.rand(1, 3, 16, 16), target=1)
        >>> e.saliency.shape, e.extras["grid"].shape
        (torch.Size([1, 1, 16, 16]), torch.Size([1, 4, 4]))
    """

    def __init__(self, model: Any, removal: Any = None, *, patch_size: int | tuple[int, int] = 29,
                 stride: int | tuple[int, int] = 3, score: str = "prob", batch_size: int = 16,
                 progress: bool = False) -> None:
        self.model = as_model(model)
        self.removal = resolve_removal(removal, lambda: Constant("mean"))
        self.patch = check_pair(patch_size, "patch_size")
        self.stride = check_pair(stride, "stride")
        self.scorer = Scorer(self.model, batch_size=batch_size, score=score, progress=progress)

    def explain(self, x: Tensor, target: Any = None) -> Explanation:
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

        def masks(start: int, stop: int) -> Tensor:
            k = torch.arange(start, stop) % per_image
            return (rows[k // n_c][:, :, None] * cols[k % n_c][:, None, :])[:, None]

        index = torch.arange(b).repeat_interleave(per_image)
        n_t = len(resolved)
        base = self.scorer(x, target).cpu().reshape(b, n_t)
        perturbed = self.scorer.perturbed(x, masks, target, self.removal, index=index,
                                          count=b * per_image).reshape(b, n_r, n_c, n_t)
        count = rows.sum(0)[:, None] * cols.sum(0)[None, :]
        out = []
        for i, t in enumerate(resolved):
            grid = base[:, i, None, None] - perturbed[..., i]
            total = torch.einsum("rh,brc,cw->bhw", rows, grid, cols)
            saliency = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
            out.append(finish(self, saliency[:, None], t, grid=grid, base_score=base[:, i]))
        return out


METHODS.add("sp-g", Occlusion, defaults={"removal": lambda: Inpaint("telea")},
            summary="Sliding patch with the removed patch inpainted (SP-G; classical inpainter by default).")
