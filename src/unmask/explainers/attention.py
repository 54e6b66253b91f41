"""Attention explainers for vision transformers: attention rollout and Chefer et al.'s relevance.

Both read every self-attention layer's probabilities ``A_l`` (B, heads, N, N) through
:func:`unmask.attention.record_attention` (timm, Hugging Face and torchvision ViTs, fused
attention included), chain them from the first layer to the last into a token-to-token matrix
``R`` (B, N, N), and read the row of the token the head classifies from: the class token when
the model has leading non-patch tokens (the first of them: the class token of timm, Hugging
Face and torchvision ViTs), else the mean of the patch tokens' rows (a globally pooled model).
Its entries on the patch tokens, on the patch grid inferred from N and the network's input
size (:func:`unmask.tokens.token_grid`), are ``extras["layer_map"]`` (B, 1, h, w);
``saliency`` is that map upsampled bilinearly to the input. Windowed attention (Swin) has no
token-to-token matrix across layers and is refused.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import check_choice
from ..attention import record_attention
from ..explanation import Explanation
from ..gradients import grad_session
from ..params import Score
from ..registry import METHODS
from ..scores import SCORES, select_scores
from ..tokens import network_size, token_grid
from ._common import as_model, finish, prepare, upsample

__all__ = ["AttentionRollout", "AttentionRelevance", "HEAD_FUSIONS", "rollout", "relevance"]

#: How rollout combines the heads of a layer.
HeadFusion = Literal["mean", "max", "min"]
HEAD_FUSIONS: tuple[str, ...] = typing.get_args(HeadFusion)


def _stack(store: dict[str, Tensor]) -> list[Tensor]:
    maps = list(store.values())
    sizes = {tuple(a.shape[-2:]) for a in maps}
    if len(sizes) != 1 or any(a.ndim != 4 or a.shape[-1] != a.shape[-2] for a in maps):
        raise ValueError(
            "model: its attention layers give probabilities of shapes "
            f"{sorted({tuple(a.shape) for a in maps})}; attention explainers need global "
            "self-attention over the same tokens in every layer (B, heads, N, N), not windowed "
            "attention such as Swin's"
        )
    return maps


def rollout(
    attentions: list[Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020) of per-layer probabilities -> (B, N, N).

    Per layer: the heads fused (``mean``, ``max`` or ``min``), optionally the lowest
    ``discard_ratio`` of each image's entries set to 0 (as jacobgil's vit-explain; never the
    first token's attention to itself), the identity added for the residual connection and the
    rows renormalised, ``Â = (A + I) / rowsum(A + I)``; then ``R = Â_L ⋯ Â_2 Â_1``.
    """
    rolled: Tensor | None = None
    for a in attentions:
        a = a.double()
        fused = {"mean": a.mean(1), "max": a.amax(1), "min": a.amin(1)}[head_fusion]
        k = int(fused.shape[-1] ** 2 * discard_ratio)
        if k:
            flat = fused.flatten(1).clone()
            first = flat[:, 0].clone()
            flat.scatter_(1, flat.topk(k, dim=1, largest=False).indices, 0.0)
            flat[:, 0] = first
            fused = flat.reshape(fused.shape)
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        hat = fused + eye
        hat = hat / hat.sum(dim=-1, keepdim=True)
        rolled = hat if rolled is None else hat @ rolled
    assert rolled is not None
    return rolled


def relevance(attentions: list[Tensor], gradients: list[Tensor]) -> Tensor:
    """Chefer, Gur & Wolf (2021)'s self-attention rule -> (B, N, N).

    ``R = I``; per layer, first to last: ``Ā = mean_heads((∇A ⊙ A)⁺)``, ``R = R + Ā R``.
    """
    n = attentions[0].shape[-1]
    r = torch.eye(n, dtype=torch.float64, device=attentions[0].device)
    r = r.expand(attentions[0].shape[0], n, n)
    for a, g in zip(attentions, gradients, strict=True):
        bar = (g.double() * a.double()).clamp(min=0).mean(dim=1)
        r = r + bar @ r
    return r


def _token_map(r: Tensor, size: tuple[int, int]) -> Tensor:
    """The classified token's row of ``r`` (B, N, N) on the patch grid -> (B, 1, h, w)."""
    p, h, w = token_grid(r.shape[-1], size)
    row = r[:, 0] if p else r[:, p:].mean(dim=1)
    return row[:, p:].reshape(r.shape[0], 1, h, w)


@METHODS.register(
    "rollout",
    aliases=("attention_rollout",),
    family="attention",
    passes="forward",  # hooks record the attention maps
    cost=lambda p, size: 1,
    test={},
)
class AttentionRollout:
    """Attention rollout (Abnar & Zuidema 2020): attention chained through the layers.

    The class token's row of ``Â_L ⋯ Â_1`` (see :func:`rollout`) on the patches. It depends on
    the image only, not on the target (recorded; top-1 when None).

    Args:
        model: a vision transformer (see :mod:`unmask.attention` for what is recognised).
        head_fusion: ``"mean"`` (default, the paper), ``"max"`` or ``"min"`` over the heads.
        discard_ratio: share in [0, 1) of each layer's lowest fused attentions set to 0 before
            the identity is added (0, the default, is the paper; jacobgil's vit-explain uses
            0.9 with ``"max"``).

    Extras:
        ``layer_map`` (B, 1, h, w) the map on the patch grid.

    Example:
        >>> from unmask.testing import token_region_model, region_images
        >>> e = AttentionRollout(token_region_model()).explain(region_images(2))
        >>> e.saliency.shape, e.extras["layer_map"].shape
        (torch.Size([2, 1, 32, 32]), torch.Size([2, 1, 8, 8]))
    """

    def __init__(
        self, model: Any, *, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0
    ) -> None:
        self.model = as_model(model)
        self.head_fusion = check_choice(head_fusion, "head_fusion", HEAD_FUSIONS)
        if (
            isinstance(discard_ratio, bool)
            or not isinstance(discard_ratio, int | float)
            or not 0 <= discard_ratio < 1
        ):
            raise ValueError(f"discard_ratio: expected a number in [0, 1), got {discard_ratio!r}")
        self.discard_ratio = float(discard_ratio)

    def explain(self, x: Tensor, target: Any = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W); ``target`` is recorded (top-1 when None)."""
        x, t = prepare(self.model, x, target)
        with grad_session(self.model), record_attention(self.model) as store:
            with torch.inference_mode():
                self.model(x)
        r = rollout(_stack(store), self.head_fusion, self.discard_ratio)
        maps = _token_map(r, network_size(self.model, x)).float()
        saliency = upsample(maps, (x.shape[-2], x.shape[-1]))
        return finish(self, saliency, t, layer_map=maps)


@METHODS.register(
    "chefer",
    aliases=("attention_relevance", "transformer_attribution"),
    family="attention",
    passes="autograd",
    cost=lambda p, size: 1,  # one forward and backward pass
    test={},
)
class AttentionRelevance:
    """Gradient-weighted attention relevance (Chefer, Gur & Wolf 2021, "Generic
    Attention-model Explainability"), the self-attention rule.

    The class token's row of ``R`` (see :func:`relevance`) on the patches, where ``∇A`` is the
    gradient of the target's score with respect to each layer's attention probabilities (a set
    of classes through its generalised logit, as the gradient methods).

    Args:
        model: a vision transformer (see :mod:`unmask.attention` for what is recognised).
        score: the differentiated score: ``"logit"`` (default, the paper), ``"prob"`` or
            ``"log_prob"``.

    Extras:
        ``layer_map`` (B, 1, h, w) the map on the patch grid.

    Example:
        >>> from unmask.testing import token_region_model, region_images
        >>> e = AttentionRelevance(token_region_model()).explain(region_images(2), target=1)
        >>> e.extras["layer_map"].shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, model: Any, *, score: Score = "logit") -> None:
        self.model = as_model(model)
        self.score = check_choice(score, "score", SCORES)

    def explain(self, x: Tensor, target: Any = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set)."""
        x, t = prepare(self.model, x, target)
        with grad_session(self.model), record_attention(self.model) as store:
            with torch.enable_grad():
                logits = self.model(x.detach().clone().requires_grad_(True))
                attentions = _stack(store)
                s = select_scores(logits, t.to(logits.device), self.score)
                raw = torch.autograd.grad(s.sum(), attentions, allow_unused=True)
        grads = [
            torch.zeros_like(a) if g is None else g for g, a in zip(raw, attentions, strict=True)
        ]
        r = relevance([a.detach() for a in attentions], [g.detach() for g in grads])
        maps = _token_map(r, network_size(self.model, x)).float()
        saliency = upsample(maps, (x.shape[-2], x.shape[-1]))
        return finish(self, saliency, t, layer_map=maps)
