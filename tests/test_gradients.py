"""The gradients room: per-call hooks, restored model state, layer names, rules, the CLI."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

import unmask
from unmask.cli import main
from unmask.gradients import backward_rules, capture, gradients, layer_table, resolve_layer
from unmask.testing import conv_region_model, region_images

METHODS = [
    "gradient",
    "integrated_gradients",
    "smoothgrad",
    "gradcam",
    "eigencam",
    "scorecam",
    "ablationcam",
    "mwp",
    "c-mwp",
]
FAST = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2}}


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("name", METHODS)
def test_no_hooks_left_state_restored_picklable(name):
    model = conv_region_model()
    model.train()
    model.net.head.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    e = unmask.explain(model, region_images(2), name, target=[1, 0], **FAST.get(name, {}))
    assert _hooks(model) == 0
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    pickle.loads(pickle.dumps(model))
    assert e.saliency.shape == (2, 1, 32, 32)


def test_hooks_removed_after_an_error():
    model = conv_region_model()
    with pytest.raises(ValueError, match=r"^layer: 'head' outputs shape"):
        unmask.explain(model, region_images(1), "gradcam", layer="head")
    assert _hooks(model) == 0 and not model.training


def test_model_without_gradients_says_so():
    class Frozen(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            with torch.no_grad():
                return self.lin(x.mean(dim=(2, 3)))

    model = unmask.Classifier.wrap(Frozen(), input_size=None, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"^model: .*does not depend differentiably"):
        unmask.explain(model, torch.rand(1, 3, 8, 8), "gradient", target=0)


def test_unknown_layer_lists_the_closest_names():
    model = conv_region_model()
    with pytest.raises(ValueError, match=r"^layer: no layer 'feature.3'.*closest: features.3"):
        resolve_layer(model, "feature.3")
    with pytest.raises(TypeError, match=r"^layer: "):
        resolve_layer(model, 3)
    with pytest.raises(ValueError, match=r"^feature_layer: no layer 'nope'"):
        unmask.Classifier.wrap(
            nn.Sequential(nn.Flatten(), nn.Linear(3, 2)),
            input_size=None,
            class_names=["a", "b"],
            feature_layer="nope",
        )


def test_layer_table_and_feature_layer():
    model = conv_region_model()
    rows = {n: (kind, shape) for n, kind, shape in model.layers(torch.rand(1, 3, 32, 32))}
    assert rows["features"] == ("Sequential", (1, 2, 8, 8))
    assert rows["head"] == ("Linear", (1, 2))
    assert model.feature_layer == "features"
    first = layer_table(model, torch.rand(2, 3, 16, 16))[0]
    assert first == ("features", "Sequential", (2, 2, 4, 4))


def test_capture_is_safe_from_inplace_operations():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    model = unmask.Classifier.wrap(net, input_size=None, class_names=["a", "b"])
    g = gradients(model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), layers=["0"])
    assert float(g.activations["0"].min()) < 0  # the convolution's output, not the ReLU's
    # the gradient at the convolution's output: zero where the ReLU is off
    assert bool((g.layer["0"][g.activations["0"] < 0] == 0).all())


def test_layer_gradients_match_autograd():
    model = conv_region_model()
    x = region_images(2)
    g = gradients(model, x, torch.tensor([1, 0]), score="prob", layers=["features"])
    feats = model.net.features(x).detach().requires_grad_(True)
    p = torch.softmax(model.net.head(model.net.pool(feats).flatten(1)), 1)
    (ref,) = torch.autograd.grad(p[0, 1] + p[1, 0], feats)
    torch.testing.assert_close(g.layer["features"], ref)


def test_backward_rules_are_per_call():
    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    x = torch.full((1, 2), 3.0, requires_grad=True)
    with backward_rules(net, {nn.Tanh: lambda m, x, y, g: g * 0}):
        (g,) = torch.autograd.grad(net(x).sum(), x)
    assert float(g.abs().sum()) == 0 and _hooks(net) == 0
    (g,) = torch.autograd.grad(net(x).sum(), x)
    assert float(g.abs().sum()) > 0


def test_capture_records_layers():
    model = conv_region_model()
    with capture(model, ["features.0", "pool"]) as acts:
        model(region_images(1))
    assert acts["features.0"].shape == (1, 2, 32, 32) and acts["pool"].shape == (1, 2, 1, 1)
    assert _hooks(model) == 0


@pytest.mark.slow
def test_efficientnet_feature_layer_keeps_the_logits():
    model = unmask.load_model()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ours = model(x)
        model.net._bn1.__class__ = nn.BatchNorm2d  # the network as published
        try:
            plain = model(x)
        finally:
            model.net._bn1.__class__ = type(model.net._bn1)  # no-op; the model is discarded
    torch.testing.assert_close(ours, plain)
    assert model.feature_layer == "_bn1"


def test_cli_layers_and_explain_layer(monkeypatch, capsys, tmp_path):
    model = conv_region_model()
    monkeypatch.setattr(unmask.models, "load_model", lambda name="x", **kw: model)
    assert main(["layers", "--model", "conv", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["feature_layer"] == "features"
    assert {"name": "features", "type": "Sequential", "shape": [1, 2, 56, 56]} in out["layers"]
    assert main(["layers", "--depth", "0"]) == 0
    assert "* features" in capsys.readouterr().out
    assert (
        main(
            [
                "explain",
                "--example",
                "chelsea",
                "--method",
                "gradcam",
                "--layer",
                "featurs",
                "--size",
                "64",
            ]
        )
        == 2
    )
    assert "closest: features" in capsys.readouterr().err
    assert (
        main(
            [
                "explain",
                "--example",
                "chelsea",
                "--method",
                "occlusion",
                "--layer",
                "features",
                "--size",
                "64",
            ]
        )
        == 2
    )
    assert "--layer: method 'occlusion' takes no layer" in capsys.readouterr().err
    png = tmp_path / "g.png"
    assert (
        main(
            [
                "explain",
                "--example",
                "chelsea",
                "--method",
                "gradcam",
                "--layer",
                "features.0",
                "--size",
                "64",
                "--out",
                str(png),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["params"]["layer"] == "features.0"
    assert png.is_file()
