"""Small look-alikes of timm's and torchvision's vision transformers, for tests.

torchvision does not import beside torch 2.13 here and timm pulls another torch, so their ViTs
are rebuilt by structure (module names, attribute names and the calls their forward passes
make: timm's ``Attention`` with ``qkv``, ``num_heads`` and the fused kernel or an explicit
softmax; torchvision's ``EncoderBlock`` around ``nn.MultiheadAttention(batch_first=True)``
called with ``need_weights=False``). The real ones are checked in the side environment's model
zoo contract.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TimmAttention(nn.Module):
    """timm's ``Attention``: fused (``F.scaled_dot_product_attention``) or explicit softmax."""

    def __init__(self, dim: int, num_heads: int, fused: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class TimmBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, fused: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TimmAttention(dim, num_heads, fused)
        self.ls1 = nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.ls2 = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class TimmViT(nn.Module):
    """timm's ``VisionTransformer`` layout: class token (+ optional distillation and register
    tokens after it), ``blocks``, ``norm``, ``head`` on the class token."""

    def __init__(
        self,
        size: int = 32,
        patch: int = 8,
        dim: int = 16,
        depth: int = 2,
        heads: int = 2,
        classes: int = 3,
        fused: bool = True,
        extra_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1 + extra_tokens, dim) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, (size // patch) ** 2, dim) * 0.5)
        self.blocks = nn.Sequential(*(TimmBlock(dim, heads, fused) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        prefix = self.cls_token.expand(x.shape[0], -1, -1)
        h = self.norm(self.blocks(torch.cat([prefix, tokens], dim=1)))
        return self.head(h[:, 0])


class TorchvisionEncoderBlock(nn.Module):
    """torchvision's ``EncoderBlock``: ``nn.MultiheadAttention`` called with need_weights=False."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, inputs: Tensor) -> Tensor:
        x = self.ln_1(inputs)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + inputs
        return x + self.mlp(self.ln_2(x))


class TorchvisionViT(nn.Module):
    """torchvision's ``VisionTransformer`` layout: ``conv_proj``, ``class_token``,
    ``encoder.layers.encoder_layer_i``, ``encoder.ln``, ``heads.head``."""

    def __init__(
        self, size: int = 32, patch: int = 8, dim: int = 16, depth: int = 2, heads: int = 2
    ) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.class_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.encoder = nn.Module()
        self.encoder.pos_embedding = nn.Parameter(torch.randn(1, 1 + (size // patch) ** 2, dim))
        self.encoder.layers = nn.Sequential(
            OrderedDict(
                (f"encoder_layer_{i}", TorchvisionEncoderBlock(dim, heads)) for i in range(depth)
            )
        )
        self.encoder.ln = nn.LayerNorm(dim, eps=1e-6)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, 3)))

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        tokens = self.conv_proj(x).reshape(n, self.conv_proj.out_channels, -1).permute(0, 2, 1)
        h = torch.cat([self.class_token.expand(n, -1, -1), tokens], dim=1)
        h = self.encoder.ln(self.encoder.layers(h + self.encoder.pos_embedding))
        return self.heads(h[:, 0])


class HFLogits(nn.Module):
    """A Hugging Face image classifier's ``.logits`` (the issue's ``output=`` lands elsewhere)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(pixel_values=x).logits
