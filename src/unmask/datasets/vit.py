"""The small vision transformer of the synthetic benchmark, in plain torch.

:class:`SyntheticViT` is a ViT (Dosovitskiy et al. 2021) sized for the 64 × 64 shapes of
:mod:`unmask.datasets.synthetic`: 8 × 8 patches embedded by a strided convolution (an 8 × 8 grid
of tokens), a learned class token and position embeddings, four pre-norm encoder blocks (width 64,
4 heads, MLP 128, GELU), a final layer norm and a linear head on the class token. Its attention
calls :func:`torch.nn.functional.scaled_dot_product_attention` (the fused kernel), as timm's and
Hugging Face's ViTs do by default, so its probabilities are never materialised by the model
itself: :mod:`unmask.attention` computes them explicitly when an explainer reads them.

Module names follow timm's ViT (``patch_embed.proj``, ``blocks.3.norm1``, ``blocks.3.attn.qkv``,
``norm``, ``head``); the default layer of CAMs is the last block's pre-attention norm
``blocks.3.norm1`` (:data:`FEATURE_LAYER`). It is trained by the package's one training loop,
:func:`unmask.datasets.cnn.fit` (``architecture="vit"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import synthetic

__all__ = ["SyntheticViT", "PatchEmbed", "Attention", "Block", "FEATURE_LAYER"]


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, C) tokens, through the fused kernel.

    One ``qkv`` linear layer makes queries, keys and values; ``num_heads`` heads of width
    ``C / num_heads``; the heads' outputs are concatenated and projected by ``proj``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads: {num_heads} does not divide the width {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch`` × ``patch`` patches -> tokens (B, N, dim), in raster order."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Block(nn.Module):
    """A pre-norm encoder block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SyntheticViT(nn.Module):
    """Patch embedding -> class token + position embedding -> blocks -> norm -> head.

    Args:
        num_classes: outputs of the head.
        size: the (square) image side; a multiple of ``patch``.
        patch: the patch side (8: an 8 × 8 grid at 64²).
        dim: token width.
        depth: encoder blocks.
        num_heads: attention heads per block.
        mlp: hidden width of each block's MLP.

    Shapes:
        forward: normalised images (B, 3, size, size) -> logits (B, num_classes); every block's
        input and output: (B, 1 + (size / patch)², dim), the class token first.

    Example:
        >>> net = SyntheticViT()
        >>> net(torch.zeros(2, 3, 64, 64)).shape, sum(p.numel() for p in net.parameters())
        (torch.Size([2, 6]), 150982)
    """

    def __init__(
        self,
        num_classes: int = len(synthetic.CLASSES),
        size: int = synthetic.DEFAULT_SIZE,
        patch: int = 8,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp: int = 128,
    ) -> None:
        super().__init__()
        if size % patch:
            raise ValueError(f"size: {size} is not a multiple of the patch side {patch}")
        self.patch = patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (size // patch) ** 2, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x)  # (B, N, dim)
        if tokens.shape[1] + 1 != self.pos_embed.shape[1]:
            raise ValueError(
                f"x: expected {self.pos_embed.shape[1] - 1} patches, got {tokens.shape[1]} "
                f"(images of {x.shape[-2]}x{x.shape[-1]})"
            )
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h)[:, 0])


#: The default layer of CAMs: the last block's pre-attention norm (tokens (B, 65, 64) at 64²).
FEATURE_LAYER = "blocks.3.norm1"
