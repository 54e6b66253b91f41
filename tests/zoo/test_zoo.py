"""The model-zoo contract: real architectures from torchvision, timm and Hugging Face, random
weights (nothing downloads), through the loaders users call and every applicable method.

Runs in the zoo side venv (torch 2.14, torchvision 0.29, timm, transformers, pytorch-grad-cam;
see :mod:`_venv`), started by ``test_zoo_venv.py`` (``pytest -m zoo``); in the project's venv,
where torchvision does not import, this module skips. Each model of :data:`ZOO` is saved the
way its users have it (a state dict file, a ``save_pretrained`` directory) and loaded back with
:func:`unmask.load_model`, so the loaders are what is tested. To add a model, add a row; to add
a check, add a test over ``ZOO`` (the ViT-specific checks of the ``reshape=`` work go here too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import unmask
from unmask.registry import METHODS

pytestmark = pytest.mark.zoo

tv = pytest.importorskip("torchvision.models", reason="torchvision (the zoo side venv)")
timm = pytest.importorskip("timm", reason="timm (the zoo side venv)")
transformers = pytest.importorskip("transformers", reason="transformers (the zoo side venv)")


def _tv(arch: str) -> Callable[[Path], unmask.Classifier]:
    def build(tmp: Path) -> unmask.Classifier:
        torch.manual_seed(0)
        path = tmp / f"{arch}.pt"
        torch.save(getattr(tv, arch)(weights=None).state_dict(), path)
        return unmask.load_model(f"tv:{arch}", weights=path, execution="eager")

    return build


def _timm(arch: str, classes: int = 1000) -> Callable[[Path], unmask.Classifier]:
    def build(tmp: Path) -> unmask.Classifier:
        torch.manual_seed(0)
        path = tmp / f"{arch}.pt"
        net = timm.create_model(arch, pretrained=False, num_classes=classes)
        torch.save(net.state_dict(), path)
        return unmask.load_model(f"timm:{arch}", weights=path, execution="eager")

    return build


def _hf_vit(tmp: Path) -> unmask.Classifier:
    """A small ViTForImageClassification (4 blocks, 64 wide, 16x16 patches at 224), 10 labels."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=224,
        patch_size=16,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=10,
        id2label={i: f"label {i}" for i in range(10)},
        label2id={f"label {i}": i for i in range(10)},
    )
    transformers.ViTForImageClassification(config).save_pretrained(tmp / "vit")
    return unmask.load_model(f"hf:{tmp / 'vit'}", execution="eager")


@dataclass(frozen=True)
class Zoo:
    """A model of the contract: how to build it, the layers of its layer methods (None: the
    layer methods do not apply yet), and methods that do not apply with the reason."""

    build: Callable[[Path], unmask.Classifier]
    layer: str | None = None
    #: a layer with few channels for the per-channel methods (Score-CAM, Ablation-CAM: one
    #: forward pass per channel)
    channel_layer: str | None = None
    skip: dict[str, str] = field(default_factory=dict)


NO_TOKEN_LAYERS = "token layers (B, N, C) need the reshape= of layer methods"
#: The attention explainers read global self-attention: not a CNN's, not Swin's windows.
NO_ATTENTION = {
    m: "no global self-attention (a CNN, or Swin's windowed attention)"
    for m in ("rollout", "chefer")
}
ZOO: dict[str, Zoo] = {
    "tv:resnet50": Zoo(
        _tv("resnet50"), layer="layer4", channel_layer="layer1.0.conv1", skip=NO_ATTENTION
    ),
    "tv:swin_t": Zoo(_tv("swin_t"), layer=None, skip=NO_ATTENTION),
    "timm:vit_tiny_patch16_224": Zoo(_timm("vit_tiny_patch16_224")),
    "timm:deit_tiny_distilled_patch16_224": Zoo(_timm("deit_tiny_distilled_patch16_224")),
    "hf:vit": Zoo(_hf_vit),
}

#: The cheapest settings that still run each method's whole algorithm (one 64x64 image).
SETTINGS: dict[str, dict] = {
    "occlusion": {"patch_size": 32, "stride": 32},
    "sp-g": {"patch_size": 32, "stride": 32},
    "lime": {"samples": 16, "n_segments": 8},
    "lime-g": {"samples": 16, "n_segments": 8},
    "rise": {"masks": 8, "s": 4},
    "mp": {"steps": 2, "mask_size": 8},
    "mp2": {"mask_size": 16, "max_iterations": 2},
    "mp2-g": {"mask_size": 16, "max_iterations": 2},
    "extremal": {"areas": [0.1], "steps": 2, "step": 4, "sigma": 6},
    "fido": {"mask_size": 16, "steps": 2, "samples": 1},
    "shearletx": {
        "steps": 2,
        "noise_bs": 1,
        "representation": "shearlets:scales=2,directions=[4,4]",
    },
    "waveletx": {"steps": 2, "noise_bs": 1, "representation": "wavelets:levels=3"},
    "cartoonx": {"steps": 2, "noise_bs": 1, "representation": "wavelets:levels=3"},
    "pixelmask": {"steps": 2, "noise_bs": 1},
    "gradient": {},
    "input_x_gradient": {},
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 2},
    "rollout": {},
    "chefer": {},
}
#: One forward pass per channel of their layer: run at ``Zoo.channel_layer``.
CHANNEL_METHODS = {"scorecam", "ablationcam"}
#: Every other method that reads a layer (CAMs, excitation backprop): run at ``Zoo.layer``.
LAYER_METHODS = {e.name for e in METHODS if "layer" in e.parameters()} - CHANNEL_METHODS
SIZE = 64


def _cases() -> list[tuple[str, str]]:
    return [(m, n) for m in ZOO for n in unmask.list_methods()]


_BUILT: dict[str, unmask.Classifier] = {}


def _model(name: str, tmp_path_factory: pytest.TempPathFactory) -> unmask.Classifier:
    """``ZOO[name]`` built once per session."""
    if name not in _BUILT:
        _BUILT[name] = ZOO[name].build(tmp_path_factory.mktemp(name.replace(":", "-")))
    return _BUILT[name]


def _settings(model: str, method: str) -> dict:
    row = ZOO[model]
    if method in row.skip:
        pytest.skip(row.skip[method])
    if method in SETTINGS:
        return dict(SETTINGS[method])
    if method in LAYER_METHODS:
        if row.layer is None:
            pytest.skip(NO_TOKEN_LAYERS)
        return {"layer": row.layer}
    if method in CHANNEL_METHODS:
        if row.channel_layer is None:
            pytest.skip(NO_TOKEN_LAYERS)
        return {"layer": row.channel_layer, "batch_size": 32}
    raise AssertionError(f"no zoo settings for method {method!r}: add a row to SETTINGS")


@pytest.mark.parametrize("model,method", _cases())
def test_every_method_gives_finite_maps_of_the_input_size(model, method, tmp_path_factory):
    settings = _settings(model, method)
    m = _model(model, tmp_path_factory)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    e = unmask.explain(m, x, method=method, target=1, **settings)
    assert e.saliency.shape == (1, 1, SIZE, SIZE)
    assert bool(torch.isfinite(e.saliency).all())


@pytest.mark.parametrize("model", list(ZOO))
def test_loaded_model_equals_the_network(model, tmp_path_factory):
    """The loader's Classifier gives the network's own logits on its normalised input."""
    m = _model(model, tmp_path_factory)
    x = torch.rand(2, 3, *m.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = m.net(m.preprocess(x))
        ref = out.logits if hasattr(out, "logits") else out
        torch.testing.assert_close(m(x), ref)
    assert len(m.class_names) == ref.shape[1]


@pytest.mark.parametrize("model", [m for m in ZOO if ZOO[m].layer is not None])
def test_gradcam_equals_pytorch_grad_cam(model, tmp_path_factory):
    """Grad-CAM at the row's layer equals pytorch-grad-cam's ``GradCAM`` up to its per-image
    min-max scaling (an affine map: both upsample bilinearly with half-pixel centres)."""
    cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m = _model(model, tmp_path_factory)
    x = torch.rand(2, 3, *m.input_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # high-scoring classes: a random network's other maps may be all 0
        top = m(x).topk(2).indices
    classes = [int(top[0, 0]), int(top[1, 1])]
    ours = unmask.explain(m, x, "gradcam", target=classes, layer=ZOO[model].layer).saliency
    layer = dict(m.net.named_modules())[ZOO[model].layer]
    with cam.GradCAM(model=m.net, target_layers=[layer]) as peer:
        theirs = peer(
            input_tensor=m.preprocess(x),
            targets=[ClassifierOutputTarget(c) for c in classes],
        )
    for a, b in zip(ours[:, 0].detach().double(), torch.from_numpy(theirs).double(), strict=True):
        a = (a - a.min()) / (a.max() - a.min())
        b = (b - b.min()) / (b.max() - b.min())
        torch.testing.assert_close(a, b, atol=2e-2, rtol=0)
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.999


def test_timm_loader_fits_the_classifier_and_reads_tagged_names(tmp_path):
    model = _timm("resnet18", classes=5)(tmp_path)  # a 5-class head in the state dict
    assert model.num_classes == 5 and model.class_names[0] == "class 0"
    assert model.feature_layer == "layer4" and model.input_size == (224, 224)
    tagged = unmask.load_model("timm:resnet18.a1_in1k", weights=tmp_path / "resnet18.pt")
    assert tagged.num_classes == 5
    with pytest.raises(ValueError, match="timm has no architecture 'resnet_18'; closest: resnet18"):
        unmask.load_model("timm:resnet_18", weights=tmp_path / "resnet18.pt")
