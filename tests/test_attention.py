"""Attention probabilities of ViTs and the attention explainers (issue 24, item 3).

Recording is checked against each model's own explicit attention (Hugging Face's eager
``output_attentions``, timm's non-fused path, ``nn.MultiheadAttention(need_weights=True)``);
rollout (Abnar & Zuidema 2020) and Chefer et al.'s (2021) relevance against their papers'
formulas written naively here, one image at a time, from Hugging Face's eager attentions and
their gradients (``retain_grad``), with plain loops over layers.
"""

from __future__ import annotations

import pytest
import torch
from _vit_lookalikes import HFLogits, TimmViT, TorchvisionViT
from torch import nn

import unmask
from unmask.attention import attention_layers, record_attention, transformer_feature_layer
from unmask.datasets.vit import SyntheticViT
from unmask.testing import conv_region_model

transformers = pytest.importorskip("transformers")


def _hf(impl: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        attn_implementation=impl,
    )
    return transformers.ViTForImageClassification(config).eval()


def _classifier(net: nn.Module, size: int = 32) -> unmask.Classifier:
    return unmask.Classifier.wrap(
        net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=size, class_names=["a", "b", "c"]
    )


def _x(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


# --- recording ---------------------------------------------------------------------------------


def test_hugging_face_sdpa_and_eager_are_recorded_exactly():
    sdpa, eager = _hf("sdpa"), _hf("eager")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = eager(x, output_attentions=True)
        for net in (sdpa, eager):
            with record_attention(net) as probs:
                logits = net(x).logits
            torch.testing.assert_close(logits, reference.logits)  # the forward is unchanged
            assert list(probs) == [f"vit.layers.{i}.attention" for i in range(3)]
            for got, want in zip(probs.values(), reference.attentions, strict=True):
                torch.testing.assert_close(got, want)
    assert transformer_feature_layer(sdpa) == "vit.layers.2.layernorm_before"


def test_timm_fused_and_explicit_attention_are_the_same():
    torch.manual_seed(0)
    fused = TimmViT(fused=True).eval()
    explicit = TimmViT(fused=False).eval()
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        with record_attention(fused) as a:
            out_fused = fused(x)
        with record_attention(explicit) as b:
            out_explicit = explicit(x)
        plain = fused(x)
    torch.testing.assert_close(out_fused, plain)
    torch.testing.assert_close(out_fused, out_explicit)
    assert list(a) == list(b) == ["blocks.0.attn", "blocks.1.attn"]
    for name in a:
        assert a[name].shape == (2, 2, 17, 17)
        torch.testing.assert_close(a[name], b[name])
    assert transformer_feature_layer(fused) == "blocks.1.norm1"


def test_torchvision_multihead_attention_is_recorded():
    torch.manual_seed(0)
    net = TorchvisionViT().eval()
    x = torch.randn(2, 3, 32, 32)
    inputs = {}
    hooks = [
        block.ln_1.register_forward_hook(lambda m, i, o, n=name: inputs.__setitem__(n, o))
        for name, block in net.encoder.layers.named_children()
    ]
    with torch.no_grad():
        plain = net(x)  # fast path on
        with record_attention(net) as probs:
            recorded = net(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(recorded, plain)
    assert attention_layers(net) == [
        "encoder.layers.encoder_layer_0.self_attention",
        "encoder.layers.encoder_layer_1.self_attention",
    ]
    for name, block in net.encoder.layers.named_children():
        h = inputs[name]
        with torch.no_grad():
            _, want = block.self_attention(h, h, h, need_weights=True, average_attn_weights=False)
        torch.testing.assert_close(probs[f"encoder.layers.{name}.self_attention"], want)
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    assert transformer_feature_layer(net) == "encoder.layers.encoder_layer_1.ln_1"


def test_no_attention_is_refused():
    with pytest.raises(ValueError, match=r"^model: 'conv-region' has no attention layers"):
        unmask.explain(conv_region_model(), torch.rand(1, 3, 32, 32), "rollout")


def test_windowed_attention_is_refused():
    class Windows(nn.Module):  # two layers over different token counts (as Swin's stages)
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.MultiheadAttention(4, 1, batch_first=True)
            self.b = nn.MultiheadAttention(4, 1, batch_first=True)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)[..., :4].repeat(1, 1, 1)  # (B, 16, 3)
            t = torch.cat([t, t[..., :1]], dim=-1)  # (B, 16, 4)
            t = self.a(t, t, t, need_weights=False)[0][:, :8]
            t = self.b(t, t, t, need_weights=False)[0]
            return self.head(t.mean(1))

    model = _classifier(Windows().eval(), size=4)
    with pytest.raises(ValueError, match=r"^model: its attention layers give probabilities"):
        unmask.explain(model, torch.rand(1, 3, 4, 4), "rollout")


# --- the papers' formulas, naively, one image at a time ----------------------------------------


def _eager_attentions(net, x, target=None):
    """Per-layer (heads, N, N) attentions of one image and, with a target, their gradients."""
    x = x.clone().requires_grad_(target is not None)
    out = net(pixel_values=x[None], output_attentions=True)
    attentions = list(out.attentions)
    if target is None:
        return [a[0].detach() for a in attentions], None
    for a in attentions:
        a.retain_grad()
    logits = out.logits[0]
    score = logits[target] if isinstance(target, int) else torch.logsumexp(logits[target], 0)
    score.backward()
    return [a[0].detach() for a in attentions], [a.grad[0] for a in attentions]


def _naive_rollout(attentions):
    n = attentions[0].shape[-1]
    rolled = None
    for a in attentions:
        hat = 0.5 * a.double().mean(0) + 0.5 * torch.eye(n, dtype=torch.float64)
        rolled = hat if rolled is None else hat @ rolled
    return rolled[0, 1:]


def _naive_chefer(attentions, grads):
    n = attentions[0].shape[-1]
    r = torch.eye(n, dtype=torch.float64)
    for a, g in zip(attentions, grads, strict=True):
        cam = (g.double() * a.double()).clamp(min=0).mean(0)
        r = r + cam @ r
    return r[0, 1:]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_rollout_is_the_papers_formula(impl):
    net = _hf(impl)
    model = _classifier(HFLogits(net))
    x = _x()
    e = unmask.explain(model, x, "rollout")
    reference = _hf("eager")
    z = model.preprocess(x)
    for i in range(3):
        with torch.no_grad():
            attentions, _ = _eager_attentions(reference, z[i])
        want = _naive_rollout(attentions).reshape(4, 4).float()
        torch.testing.assert_close(e.extras["layer_map"][i, 0], want, rtol=1e-5, atol=1e-7)
    assert e.saliency.shape == (3, 1, 32, 32)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_chefer_is_the_papers_formula(impl):
    net = _hf(impl)
    model = _classifier(HFLogits(net))
    x = _x()
    reference = _hf("eager")
    z = model.preprocess(x)
    targets = [2, 0, [0, 1]]  # two classes, and a set: its generalised logit log Σ exp z_c
    e = unmask.explain(model, x, "chefer", target=[[2], [0], [0, 1]])
    for i, t in enumerate(targets):
        attentions, grads = _eager_attentions(reference, z[i], t)
        want = _naive_chefer(attentions, grads).reshape(4, 4).float()
        torch.testing.assert_close(e.extras["layer_map"][i, 0], want, rtol=1e-4, atol=1e-7)
    single = unmask.explain(model, x[:1], "chefer", target=2)
    torch.testing.assert_close(single.saliency, e.saliency[:1])


def test_rollout_options_and_checks():
    model = _classifier(HFLogits(_hf("sdpa")))
    x = _x(1)
    plain = unmask.explain(model, x, "rollout")
    assert plain.params == {"head_fusion": "mean", "discard_ratio": 0.0}
    fused_max = unmask.explain(model, x, "rollout", head_fusion="max", discard_ratio=0.5)
    assert not torch.allclose(plain.saliency, fused_max.saliency)
    with pytest.raises(ValueError, match=r"^head_fusion: "):
        unmask.make_explainer(model, "rollout", head_fusion="median")
    with pytest.raises(ValueError, match=r"^discard_ratio: expected a number in \[0, 1\)"):
        unmask.make_explainer(model, "rollout", discard_ratio=1.0)


def test_rollout_discard_ratio_by_hand():
    """jacobgil's rule: the lowest k entries are zeroed, except the first token's to itself."""
    from unmask.explainers.attention import rollout

    a = torch.tensor([[[[0.05, 0.55, 0.4], [0.12, 0.08, 0.8], [0.25, 0.6, 0.15]]]])
    got = rollout([a], discard_ratio=0.34)  # k = 3: 0.05 at [0, 0] (kept), 0.08 and 0.12
    fused = torch.tensor([[0.05, 0.55, 0.4], [0.0, 0.0, 0.8], [0.25, 0.6, 0.15]])
    hat = fused.double() + torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(got[0], hat / hat.sum(-1, keepdim=True))


def test_timm_and_torchvision_lookalikes_run_every_attention_method():
    torch.manual_seed(0)
    for net in (TimmViT(), TimmViT(fused=False), TimmViT(extra_tokens=1), TorchvisionViT()):
        model = _classifier(net.eval())
        for name in ("rollout", "chefer", "gradcam", "scorecam"):
            e = unmask.explain(model, _x(2), name, target=1)
            assert e.saliency.shape == (2, 1, 32, 32) and bool(torch.isfinite(e.saliency).all())
    # the distilled look-alike: 2 leading tokens, the map is still on the 4 x 4 grid
    e = unmask.explain(_classifier(TimmViT(extra_tokens=1).eval()), _x(1), "gradcam")
    assert e.extras["cam"].shape == (1, 1, 4, 4)


def test_synthetic_vit_architecture_attention():
    torch.manual_seed(0)
    net = SyntheticViT().eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad(), record_attention(net) as probs:
        net(x)
    assert list(probs) == [f"blocks.{i}.attn" for i in range(4)]
    # explicitly: softmax(q k^T / sqrt(d)) from the block's own qkv
    tokens = {}
    handle = net.blocks[0].norm1.register_forward_hook(lambda m, i, o: tokens.setdefault("h", o))
    with torch.no_grad():
        net(x)
    handle.remove()
    attn = net.blocks[0].attn
    qkv = attn.qkv(tokens["h"]).reshape(2, 65, 3, 4, 16).permute(2, 0, 3, 1, 4)
    want = ((qkv[0] @ qkv[1].transpose(-2, -1)) * 16**-0.5).softmax(-1)
    torch.testing.assert_close(probs["blocks.0.attn"], want)
