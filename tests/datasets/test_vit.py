"""The synthetic benchmark's ViT: architecture, seeded training, weights files, CLI."""

from __future__ import annotations

import pytest
import torch

import unmask
from unmask.cli import main
from unmask.datasets import cnn, synthetic
from unmask.datasets.vit import SyntheticViT


def test_architecture_shapes_and_size():
    net = SyntheticViT()
    tokens = {}
    net.blocks[-1].norm1.register_forward_hook(lambda m, i, o: tokens.setdefault("t", o))
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 6)
    assert tokens["t"].shape == (2, 65, 64)  # class token + 8 x 8 patches
    assert sum(p.numel() for p in net.parameters()) * 4 < 1_000_000  # float32 weights < 1 MB
    with pytest.raises(ValueError, match=r"^x: expected 64 patches, got 16"):
        net(torch.zeros(1, 3, 32, 32))


def test_training_is_seeded_and_deterministic(tmp_path):
    kw = dict(n_train=16, epochs=1, seed=3, batch_size=8, n_val=4, architecture="vit")
    a, info = cnn.train(**kw)
    b, _ = cnn.train(**kw)
    assert info["architecture"] == "vit" and a.name == "synthetic_vit"
    assert a.feature_layer == "blocks.3.norm1"
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    path = cnn.save(a, tmp_path / "vit.pt", info)
    back = cnn.load(path, architecture="vit")
    x = synthetic.generate(2, seed=0, split="test").images
    torch.testing.assert_close(back(x), a(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^weights: .* is not a synthetic_cnn weights file"):
        cnn.load(path)  # a ViT file read as the CNN
    with pytest.raises(ValueError, match=r"^architecture: expected one of cnn, vit"):
        cnn.load(path, architecture="resnet")


def test_shipped_model_loads_and_explains():
    model = unmask.load_model("synthetic_vit")
    assert model.input_size == (64, 64) and model.class_names == list(synthetic.CLASSES)
    batch = synthetic.generate(2, seed=0, split="test")
    for name in ("gradcam", "rollout", "chefer"):
        e = unmask.explain(model, batch.images, name, target=batch.labels)
        assert e.saliency.shape == (2, 1, 64, 64) and bool(torch.isfinite(e.saliency).all())


def test_cli_trains_a_tiny_vit(tmp_path, capsys):
    out = tmp_path / "v.pt"
    argv = ["datasets", "train-synthetic", "--architecture", "vit", "--out", str(out)]
    argv += ["--n-train", "8", "--epochs", "1", "--n-val", "4", "--n-test", "4"]
    assert main(argv) == 0
    assert "epoch 1/1" in capsys.readouterr().out
    assert cnn.load(out, architecture="vit").name == "synthetic_vit"
    assert main(["datasets", "train-synthetic", "--out", str(out), "--lr", "0"]) == 2
    assert "--lr: expected a positive number" in capsys.readouterr().err
