"""Small models and images with a known answer, for tests of explainers and metrics.

:class:`RegionModel` is a classifier whose output depends only on a known box of the image, so a
faithful explanation must put its mass in that box and a faithful metric must rank a map that
points at the box above a random one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .models import Classifier

__all__ = [
    "RegionModel",
    "region_model",
    "region_images",
    "REGION",
    "REGION_B",
    "ConvRegionModel",
    "conv_region_model",
    "conv_region_model3",
    "TokenRegionModel",
    "token_region_model",
]

#: The box the model looks at, as fractions (top, left, bottom, right) of the image.
REGION = (0.25, 0.25, 0.5, 0.5)

#: The second box of :class:`ConvRegionModel` (class 0's evidence).
REGION_B = (0.5, 0.5, 0.75, 0.75)


def region_box(
    height: int, width: int, region: tuple[float, ...] = REGION
) -> tuple[int, int, int, int]:
    """The model's box in pixels (top, left, bottom, right) for an image of this size."""
    t, left, b, r = region
    return round(t * height), round(left * width), round(b * height), round(r * width)


def region_mask(height: int, width: int, region: tuple[float, ...] = REGION) -> Tensor:
    """(1, 1, H, W) boolean mask of the model's box (or of ``region``)."""
    t, left, b, r = region_box(height, width, region)
    m = torch.zeros(1, 1, height, width, dtype=torch.bool)
    m[..., t:b, left:r] = True
    return m


class RegionModel(nn.Module):
    """Two-class toy network: class 1's logit grows with the redness of the box, class 0 falls.

    ``logit_1 = gain * (mean over the box of (red - (green + blue) / 2) - 0.25)`` and
    ``logit_0 = -logit_1``; nothing outside the box matters. Differentiable, with parameters.
    """

    def __init__(self, gain: float = 4.0, classes: int = 2) -> None:
        super().__init__()
        if classes not in (2, 3):
            raise ValueError(f"classes: expected 2 or 3, got {classes!r}")
        self.classes = classes
        self.weight = nn.Parameter(torch.tensor([1.0, -0.5, -0.5]) * gain)
        self.bias = nn.Parameter(torch.tensor(-0.25 * gain))

    def forward(self, x: Tensor) -> Tensor:
        t, left, b, r = region_box(*x.shape[-2:])
        box = x[..., t:b, left:r].mean(dim=(-2, -1))  # (B, 3)
        z = box @ self.weight + self.bias
        if self.classes == 3:  # a third class that also likes the red box, half as much
            return torch.stack([-z, z, z / 2], dim=1)
        return torch.stack([-z, z], dim=1)


def region_model(classes: int = 2) -> Classifier:
    """:class:`RegionModel` wrapped as a Classifier (no normalisation, any input size).

    With ``classes=3`` a third class, "reddish", has logit z / 2: the set {red box, reddish}
    is a cluster that the box decides, for tests of set targets.
    """
    names = ["not red", "red box", "reddish"][:classes]
    return Classifier(
        RegionModel(classes=classes),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=names,
        name=f"region{classes if classes != 2 else ''}",
    )


def region_images(batch: int = 2, size: int = 32, seed: int = 0) -> Tensor:
    """(B, 3, size, size) random images whose model box is bright red (class 1 wins clearly)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=gen) * 0.6 + 0.2
    t, left, b, r = region_box(size, size)
    x[:, 0, t:b, left:r] = 0.95
    x[:, 1:, t:b, left:r] = 0.1 + 0.1 * torch.rand(batch, 2, b - t, r - left, generator=gen)
    return x


class _RegionGate(nn.Module):
    """Keeps feature channel 0 inside :data:`REGION` and channel 1 inside :data:`REGION_B`."""

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        gate = torch.cat([region_mask(h, w, REGION), region_mask(h, w, REGION_B)], dim=1)
        return x * gate.to(x.dtype)


class ConvRegionModel(nn.Module):
    """Two-class convolutional toy network with a spatial feature layer ``features``.

    ``features`` (B, 2, H/4, W/4) = a 1x1 convolution (channel 0: redness ``r - (g + b)/2 - 0.1``,
    channel 1: blueness ``b - (r + g)/2 - 0.1``), ReLU, 4x4 average pooling, then channel 0 kept
    only inside :data:`REGION` and channel 1 only inside :data:`REGION_B`; global average pooling
    and a linear head give ``logit_1 = 64 * pooled_0 - 1`` (red in the first box) and
    ``logit_0 = 64 * pooled_1 - 1`` (blue in the second box). Each class depends on its own box
    only, through non-negative weights, so layer methods (CAMs, excitation backprop) and
    gradients have a known answer. Use images whose side is a multiple of 16. With
    ``classes=3`` a third class, "reddish", has half of class 1's logit: {red box, reddish} is a
    cluster that the first box decides.
    """

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        if classes not in (2, 3):
            raise ValueError(f"classes: expected 2 or 3, got {classes!r}")
        conv = nn.Conv2d(3, 2, kernel_size=1)
        head = nn.Linear(2, classes)
        with torch.no_grad():
            conv.weight.copy_(
                torch.tensor([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0]])[:, :, None, None]
            )
            conv.bias.fill_(-0.1)  # type: ignore[union-attr]  # Conv2d(bias=True)
            head.weight.copy_(torch.tensor([[0.0, 64.0], [64.0, 0.0], [32.0, 0.0]][:classes]))
            head.bias.copy_(torch.tensor([-1.0, -1.0, -0.5][:classes]))
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4), _RegionGate())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def conv_region_model(classes: int = 2) -> Classifier:
    """:class:`ConvRegionModel` as a Classifier whose feature layer is ``"features"``."""
    names = ["blue box B", "red box", "reddish"][:classes]
    return Classifier(
        ConvRegionModel(classes),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=names,
        name=f"conv-region{classes if classes != 2 else ''}",
        feature_layer="features",
    ).eval()


def conv_region_model3() -> Classifier:
    """``conv_region_model(3)``, for configs that name a factory without arguments
    (``[model] name = "unmask.testing:conv_region_model3"`` in a benchmark)."""
    return conv_region_model(3)


class _TokenEmbed(nn.Module):
    """4 × 4 patches -> tokens (B, 1 + N, 4): [redness, blueness, in REGION, is the class token]."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 2, kernel_size=4, stride=4)
        with torch.no_grad():
            colour = torch.tensor([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0]]) / 16
            self.proj.weight.copy_(colour[:, :, None, None].expand(2, 3, 4, 4))
            bias = self.proj.bias
            assert bias is not None
            bias.fill_(-0.1)

    def forward(self, x: Tensor) -> Tensor:
        colour = torch.relu(self.proj(x))  # (B, 2, h, w)
        b, _, h, w = colour.shape
        inside = region_mask(h, w).to(x.dtype).expand(b, 1, h, w)
        patches = torch.cat([colour, inside, torch.zeros_like(inside)], dim=1)
        cls = x.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(b, 1, 4)
        return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)


class _TokenAttention(nn.Module):
    """Two heads of width 2 (timm's layout: ``qkv``, ``num_heads``, ``proj``; the fused kernel):
    the class token attends to the patches in :data:`REGION` (both heads), head 0 carries their
    redness and head 1 their blueness; patch tokens attend uniformly."""

    def __init__(self, sharpness: float = 20.0) -> None:
        super().__init__()
        self.num_heads = 2
        self.qkv = nn.Linear(4, 12)
        self.proj = nn.Linear(4, 4)
        with torch.no_grad():
            w = torch.zeros(12, 4)
            w[0, 3] = w[2, 3] = sharpness  # queries of both heads: the class-token flag
            w[4, 2] = w[6, 2] = 1.0  # keys of both heads: inside the region
            w[8, 0] = 1.0  # head 0's value: redness
            w[10, 1] = 1.0  # head 1's value: blueness
            self.qkv.weight.copy_(w)
            self.qkv.bias.zero_()
            p = torch.zeros(4, 4)
            p[0, 0] = p[1, 2] = 1.0
            self.proj.weight.copy_(p)
            self.proj.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, 2, 2).permute(2, 0, 3, 1, 4)
        out = torch.nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TokenRegionModel(nn.Module):
    """A one-block vision transformer with a known answer, for token layers and attention.

    ``embed`` turns 4 × 4 patches into tokens (B, 1 + N, 4) (a class token first); one
    attention layer ``attn`` (fused ``scaled_dot_product_attention``) lets the class token read
    the mean redness (head 0) and blueness (head 1) of the patches inside :data:`REGION`; a
    residual connection and a linear ``head`` on the class token give ``logit_1 = 64 · red - 1``
    (red box) and ``logit_0 = 64 · blue - 1`` (the box is blue). Both classes depend on the box
    only; rollout, attention relevance and CAMs on ``embed`` have the box as their answer. Use
    images whose side is a multiple of 16. With ``classes=3`` a third class, "reddish", has half
    of class 1's logit.
    """

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        if classes not in (2, 3):
            raise ValueError(f"classes: expected 2 or 3, got {classes!r}")
        self.embed = _TokenEmbed()
        self.attn = _TokenAttention()
        self.head = nn.Linear(4, classes)
        with torch.no_grad():
            head = torch.tensor([[0.0, 64.0, 0.0, 0.0], [64.0, 0.0, 0.0, 0.0], [32.0, 0, 0, 0]])
            self.head.weight.copy_(head[:classes])
            self.head.bias.copy_(torch.tensor([-1.0, -1.0, -0.5][:classes]))

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x)
        tokens = tokens + self.attn(tokens)
        return self.head(tokens[:, 0])


def token_region_model(classes: int = 2) -> Classifier:
    """:class:`TokenRegionModel` as a Classifier whose feature layer is the token layer
    ``"embed"`` (B, 1 + N, 4)."""
    names = ["blue box", "red box", "reddish"][:classes]
    return Classifier(
        TokenRegionModel(classes),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=names,
        name=f"token-region{classes if classes != 2 else ''}",
        feature_layer="embed",
    ).eval()
