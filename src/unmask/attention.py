"""Reading the attention probabilities of vision transformers (timm, Hugging Face, torchvision).

Attention explainers (rollout, Chefer et al.'s relevance) need every self-attention layer's
probabilities ``A = softmax(q kᵀ · scale + mask)`` (B, heads, N, N), and for gradient rules
their gradient. Modern ViTs never materialise them: timm's and Hugging Face's attention call the
fused :func:`torch.nn.functional.scaled_dot_product_attention`, torchvision's
``nn.MultiheadAttention`` its fast path. :func:`record_attention` makes them explicit for the
duration of a call, without touching the weights or the model's code:

- **attention modules** are found by structure (:func:`attention_layers`): an
  ``nn.MultiheadAttention`` (torchvision's ViT), or a module with an integer ``num_heads`` /
  ``num_attention_heads`` and a linear child (timm's ``Attention`` with ``qkv``, Hugging Face's
  ``ViTAttention`` with ``q_proj``/``k_proj``/``v_proj`` or the older ``ViTSelfAttention``);
- while such a module runs, a ``scaled_dot_product_attention`` call is computed explicitly
  (``softmax(q kᵀ · scale + mask) v``, the same function up to round-off) and a softmax over
  the last axis (the eager paths of timm and Hugging Face) is recorded as it is;
  ``nn.MultiheadAttention``'s self-attention is computed explicitly the same way (its fast path
  is switched off for the call);
- the recorded probabilities are the tensors the forward pass goes on with, so gradients of a
  score with respect to them are the gradients at the attention (Chefer et al.'s ``∇A``).

Hooks and the function mode are removed when the block ends; nothing stays on the model.

Example:
    >>> import torch
    >>> from unmask.datasets.vit import SyntheticViT
    >>> net = SyntheticViT().eval()
    >>> with record_attention(net) as probs, torch.no_grad():
    ...     logits = net(torch.zeros(2, 3, 64, 64))
    >>> list(probs)[:2], probs["blocks.0.attn"].shape
    (['blocks.0.attn', 'blocks.1.attn'], torch.Size([2, 4, 65, 65]))
    >>> torch.allclose(probs["blocks.0.attn"].sum(-1), torch.ones(2, 4, 65))
    True
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "is_attention",
    "attention_layers",
    "transformer_feature_layer",
    "record_attention",
    "explicit_attention",
]


def is_attention(module: nn.Module) -> bool:
    """Whether ``module`` is a self-attention layer whose probabilities can be recorded."""
    if isinstance(module, nn.MultiheadAttention):
        return True
    heads = getattr(module, "num_heads", getattr(module, "num_attention_heads", None))
    return (
        isinstance(heads, int)
        and not isinstance(heads, bool)
        and any(isinstance(c, nn.Linear) for c in module.children())
    )


def attention_layers(model: nn.Module) -> list[str]:
    """Names (paths in ``model.net.named_modules()``, or ``model``'s own for a bare network) of
    the attention layers, in the order ``named_modules()`` lists them."""
    net = getattr(model, "net", model)
    return [name for name, m in net.named_modules() if name and is_attention(m)]


def transformer_feature_layer(model: nn.Module) -> str | None:
    """The default layer of CAMs on a transformer: the last block's pre-attention norm.

    The block is the nearest parent of the last attention layer (:func:`attention_layers`)
    that has a normalisation child (a module whose type name contains "Norm"); its first such
    child is the layer: timm's ``blocks.11.norm1``, Hugging Face's ``vit.layers.11.layernorm_
    before`` (``vit.encoder.layer.11.layernorm_before`` in transformers 4), torchvision's
    ``encoder.layers.encoder_layer_11.ln_1``, as pytorch-grad-cam documents for ViTs (the class
    token reads the patches in that block's attention; after it only the class token matters,
    so the patch tokens' gradients vanish). None when the network has no such layer.
    """
    names = attention_layers(model)
    if not names:
        return None
    net = getattr(model, "net", model)
    modules = dict(net.named_modules())
    parts = names[-1].split(".")
    for depth in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:depth])
        for child, m in modules[parent].named_children():
            if "norm" in type(m).__name__.lower():
                return f"{parent}.{child}"
    return None


def explicit_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[Tensor, Tensor]:
    """``scaled_dot_product_attention`` computed step by step: ``(output, probabilities)``.

    Shapes: q (..., L, E), k (..., S, E), v (..., S, Ev) -> output (..., L, Ev), probabilities
    (..., L, S). A boolean ``attn_mask`` keeps the True positions; a float one is added to the
    scores (as the fused kernel does).
    """
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if is_causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    probs = scores.softmax(dim=-1)
    if dropout_p > 0:
        probs = F.dropout(probs, dropout_p)
    return probs @ v, probs


def _sdpa_arguments(args: tuple, kwargs: dict) -> dict[str, Any]:
    names = ("q", "k", "v", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    bound = dict(zip(names, args, strict=False))
    renamed = {"query": "q", "key": "k", "value": "v"}
    bound.update({renamed.get(k, k): v for k, v in kwargs.items()})
    return bound


def _mha(args: tuple, kwargs: dict) -> tuple[tuple[Tensor, Tensor | None], Tensor]:
    """``F.multi_head_attention_forward`` for self-attention, explicitly: (its result, probs)."""
    bound = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    x = a["query"]
    unsupported = [
        n
        for n in ("bias_k", "bias_v", "key_padding_mask", "attn_mask", "static_k", "static_v")
        if a.get(n) is not None
    ]
    if a.get("is_causal"):
        unsupported.append("is_causal")
    if a.get("add_zero_attn") or a.get("use_separate_proj_weight"):
        unsupported.append("add_zero_attn / separate projections")
    if a["key"] is not x or a["value"] is not x:
        unsupported.append("cross-attention")
    if unsupported:
        raise ValueError(
            "model: nn.MultiheadAttention with " + ", ".join(unsupported) + " is not supported "
            "by attention explainers (self-attention without masks only)"
        )
    length, batch, dim = x.shape  # (L, B, E): the module transposes batch_first inputs
    heads = int(a["num_heads"])
    qkv = F.linear(x, a["in_proj_weight"], a["in_proj_bias"])
    q, k, v = (
        t.reshape(length, batch * heads, dim // heads).transpose(0, 1) for t in qkv.chunk(3, -1)
    )
    p = float(a["dropout_p"]) if a.get("training") else 0.0
    out, probs = explicit_attention(q, k, v, dropout_p=p)
    out = out.transpose(0, 1).reshape(length, batch, dim)
    out = F.linear(out, a["out_proj_weight"], a["out_proj_bias"])
    probs = probs.reshape(batch, heads, length, length)
    weights = None
    if a.get("need_weights", True):
        weights = probs.mean(dim=1) if a.get("average_attn_weights", True) else probs
    return (out, weights), probs


_SOFTMAX = {F.softmax, torch.softmax, Tensor.softmax, torch.nn.functional.softmax}


class _AttentionMode(TorchFunctionMode):
    """Inside an attention module: explicit ``scaled_dot_product_attention`` and multi-head
    attention, recorded softmaxes."""

    def __init__(self, state: dict) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        stack = self.state["stack"]
        if not stack:
            return func(*args, **kwargs)
        name = stack[-1]
        if func is F.scaled_dot_product_attention:
            out, probs = explicit_attention(**_sdpa_arguments(args, kwargs))
            self.state["store"][name] = probs
            return out
        if func is F.multi_head_attention_forward:
            result, probs = _mha(args, kwargs)
            self.state["store"][name] = probs
            return result
        out = func(*args, **kwargs)
        if func in _SOFTMAX and isinstance(out, Tensor) and out.ndim == 4:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if dim in (-1, 3) and out.shape[-1] == out.shape[-2]:
                self.state["store"][name] = out
        return out


@contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Record the attention probabilities of every attention layer during the block.

    Yields a dict layer name -> probabilities (B, heads, N, N) of the layer's last call (each
    row sums to 1), in the order the layers ran. See the module docstring for how they are
    obtained.

    Raises:
        ValueError: when the model has no attention layer (see :func:`attention_layers`).
    """
    net = getattr(model, "net", model)
    modules = {name: m for name, m in net.named_modules() if name and is_attention(m)}
    if not modules:
        name = getattr(model, "name", type(model).__name__)
        raise ValueError(
            f"model: {name!r} has no attention layers (nn.MultiheadAttention, or modules with "
            "num_heads and a linear child such as timm's Attention or Hugging Face's "
            "ViTAttention); attention explainers need a vision transformer"
        )
    state: dict = {"stack": [], "store": {}}
    handles = []

    def enter(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple) -> None:
            state["stack"].append(name)
            state["store"].pop(name, None)  # keep the call order of the last pass

        return hook

    def leave(module: nn.Module, inputs: tuple, output: object) -> None:
        state["stack"].pop()

    fast = torch.backends.mha.get_fastpath_enabled()
    try:
        for name, m in modules.items():
            handles.append(m.register_forward_pre_hook(enter(name)))
            handles.append(m.register_forward_hook(leave, always_call=True))
        torch.backends.mha.set_fastpath_enabled(False)
        with _AttentionMode(state):
            yield state["store"]
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        for h in handles:
            h.remove()
