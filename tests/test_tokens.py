"""Token layers for layer methods (issue 24, item 2): grids, layouts and CAMs on tokens.

The references are written naively here: pytorch-grad-cam's recipe for ViTs (drop the class
token, reshape the patch tokens to the grid, channels first) applied by hand to activations and
gradients taken with plain autograd, and Ablation-CAM as a loop that zeroes one channel at a time.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import unmask
from unmask.testing import region_images, region_mask, token_region_model
from unmask.tokens import check_reshape, layout, token_grid


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [
        (197, (224, 224), (1, 14, 14)),  # ViT-B/16: class token
        (198, (224, 224), (2, 14, 14)),  # DeiT distilled: class + distillation tokens
        (1 + 4 + 196, (224, 224), (5, 14, 14)),  # class + 4 registers
        (196, (224, 224), (0, 14, 14)),  # global pooling, no class token
        (65, (64, 64), (1, 8, 8)),  # synthetic_vit
        (1 + 14 * 20, (224, 320), (1, 14, 20)),  # a non-square input
        (1 + 20 * 14, (320, 224), (1, 20, 14)),  # and its transpose
        (1 + 15 * 19, (230, 300), (1, 15, 19)),  # sides not multiples of the patch (16, floor)
        (1 + 8 * 10, (60, 75), (1, 8, 10)),  # padded patches (8: ceil)
    ],
)
def test_token_grid(n, size, expected):
    assert token_grid(n, size) == expected


def test_token_grid_refuses_what_is_no_grid():
    with pytest.raises(ValueError, match=r"1000 tokens do not form a patch grid of a 64x64 input"):
        token_grid(1000, (64, 64))  # 984..1000 patches: none is h x w of one patch side


def test_layouts():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 + 2 x 2
    form = layout(tokens, (32, 32))
    assert (form.kind, form.grid, form.channel_axis) == ("tokens", (1, 2, 2), 2)
    assert torch.equal(form.spatial(tokens), tokens[:, 1:].reshape(2, 2, 2, 3).permute(0, 3, 1, 2))
    swin = torch.randn(2, 7, 7, 768)  # (B, h, w, C)
    form = layout(swin, (224, 224))
    assert form.kind == "channels_last" and torch.equal(
        form.spatial(swin), swin.permute(0, 3, 1, 2)
    )
    for conv in (torch.randn(2, 768, 7, 7), torch.randn(2, 64, 16, 16), torch.randn(1, 7, 7, 7)):
        assert layout(conv, (224, 224)).kind == "spatial"  # as before; ambiguous -> channels first
    assert layout(torch.randn(2, 7, 7, 768), (224, 224), "none").kind == "spatial"


def test_reshape_is_checked():
    with pytest.raises(ValueError, match=r"^reshape: expected 'auto', 'none' or a callable"):
        check_reshape("tokens")
    with pytest.raises(TypeError, match=r"^reshape: "):
        check_reshape(3)
    with pytest.raises(ValueError, match=r"^reshape: "):
        unmask.make_explainer(token_region_model(), "gradcam", reshape="grid")
    x = region_images(1)
    with pytest.raises(ValueError, match=r"^layer: 'embed' outputs shape \(1, 65, 4\).*'auto'"):
        unmask.explain(token_region_model(), x, "gradcam", reshape="none")
    with pytest.raises(ValueError, match=r"^reshape: expected the callable to turn 'embed'"):
        unmask.explain(token_region_model(), x, "gradcam", reshape=lambda t: t)


def _naive_gradcam(model, x, target, layer_module):
    """pytorch-grad-cam's recipe by hand: hook the tokens, drop the class token, reshape."""
    store = {}
    handle = layer_module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        xx = x.clone().requires_grad_(True)
        logits = model(xx)
        a = store["a"]
        (g,) = torch.autograd.grad(logits[torch.arange(len(target)), target].sum(), a)
    finally:
        handle.remove()
    b, n, c = a.shape
    side = int((n - 1) ** 0.5)

    def grid(t):
        return t[:, 1:, :].reshape(b, side, side, c).permute(0, 3, 1, 2)

    a, g = grid(a.detach()), grid(g)
    cam = torch.relu((g.mean(dim=(2, 3))[:, :, None, None] * a).sum(1, keepdim=True))
    return cam


def test_gradcam_on_tokens_is_pytorch_grad_cams_recipe():
    model = token_region_model()
    x = region_images(3)
    target = torch.tensor([1, 0, 1])
    e = unmask.explain(model, x, "gradcam", target=target)
    naive = _naive_gradcam(model, x, target, model.net.embed)
    torch.testing.assert_close(e.extras["cam"], naive)
    assert e.params["reshape"] == "auto"
    # a callable doing the same gives the same map; the map localises the box
    same = unmask.explain(
        model,
        x,
        "gradcam",
        target=target,
        reshape=lambda t: t[:, 1:].reshape(t.shape[0], 8, 8, -1).permute(0, 3, 1, 2),
    )
    torch.testing.assert_close(same.saliency, e.saliency)
    top = e.saliency[0, 0].flatten().topk(40).indices
    assert bool(region_mask(32, 32).flatten()[top].all())


def test_every_layer_method_reads_tokens():
    model = token_region_model()
    x = region_images(2)
    for name in ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam",
                 "scorecam", "ablationcam", "mwp", "c-mwp"):  # fmt: skip
        e = unmask.explain(model, x, name, target=1)
        layer_map = e.extras.get("cam", e.extras.get("layer_map"))
        assert layer_map.shape == (2, 1, 8, 8), name
        assert e.saliency.shape == (2, 1, 32, 32) and bool(torch.isfinite(e.saliency).all()), name
        assert e.saliency.abs().max() > 0, name


def test_ablationcam_on_tokens_equals_a_naive_loop():
    """Ablation-CAM: channel k zeroed in every token (class token included), one at a time."""
    model = token_region_model()
    x = region_images(2)
    target = torch.tensor([1, 1])
    e = unmask.explain(model, x, "ablationcam", target=target)
    net = model.net
    with torch.no_grad():
        tokens = net.embed(x)
        y = model(x)[torch.arange(2), target]
        weights = []
        for k in range(tokens.shape[2]):
            ablated = tokens.clone()
            ablated[:, :, k] = 0
            yk = net.head((ablated + net.attn(ablated))[:, 0])[torch.arange(2), target]
            weights.append((y - yk) / y)
        w = torch.stack(weights, dim=1)
        grid = tokens[:, 1:].reshape(2, 8, 8, 4).permute(0, 3, 1, 2)
        cam = torch.relu((w[:, :, None, None] * grid).sum(1, keepdim=True))
    torch.testing.assert_close(e.extras["weights"], w)
    torch.testing.assert_close(e.extras["cam"], cam)


class _ChannelsLast(nn.Module):
    """A conv layer whose output is handed on channels-last (B, h, w, C), as Swin's stages."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 4, stride=4)
        self.stage = nn.Identity()
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        h = self.stage(self.conv(x).permute(0, 2, 3, 1))  # (B, 8, 8, 5)
        return self.head(h.mean(dim=(1, 2)))


def test_channels_last_layer_equals_the_channels_first_one():
    torch.manual_seed(0)
    net = _ChannelsLast().eval()
    model = unmask.Classifier.wrap(net, input_size=None, class_names=["a", "b"])
    x = torch.rand(2, 3, 32, 32)
    swin = unmask.explain(model, x, "gradcam", layer="stage", target=1)
    conv = unmask.explain(model, x, "gradcam", layer="conv", target=1)  # the same activations
    torch.testing.assert_close(swin.saliency, conv.saliency)
    torch.testing.assert_close(swin.extras["weights"], conv.extras["weights"])


def test_transformer_default_layer_and_unmask_layers(monkeypatch, capsys):
    from unmask.cli import main
    from unmask.datasets.vit import SyntheticViT

    torch.manual_seed(0)
    model = unmask.Classifier.wrap(
        SyntheticViT(), mean=(0.5,) * 3, std=(0.5,) * 3, input_size=64, class_names=list("abcdef")
    )  # names no feature layer: the last block's pre-attention norm is the default
    assert model.feature_layer is None
    explainer = unmask.make_explainer(model, "gradcam")
    assert explainer.layer == "blocks.3.norm1"
    assert explainer.explain(torch.rand(1, 3, 64, 64)).extras["cam"].shape == (1, 1, 8, 8)
    monkeypatch.setattr(unmask.models, "load_model", lambda name="x", **kw: model)
    assert main(["layers", "--model", "vit", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "* blocks.3.norm1" in out and "tokens: 1 + 8x8" in out
    assert "* default feature layer: blocks.3.norm1" in out
