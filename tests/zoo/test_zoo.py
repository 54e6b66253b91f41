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

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import unmask
from unmask.registry import METHODS

pytestmark = pytest.mark.zoo

tv = pytest.importorskip("torchvision.models", reason="torchvision (the zoo side venv)")
timm = pytest.importorskip("timm", reason="timm (the zoo side venv)")
transformers = pytest.importorskip("transformers", reason="transformers (the zoo side venv)")


#: How a model of the contract is saved the way its users have it: ``save(folder)`` writes it
#: there and returns the :func:`unmask.load_model` arguments that load it, ``(name, weights)``.
Save = Callable[[Path], tuple[str, Path | None]]


def _tv(arch: str) -> Save:
    def save(tmp: Path) -> tuple[str, Path | None]:
        torch.manual_seed(0)
        path = tmp / f"{arch}.pt"
        net = getattr(tv, arch)(weights=None)
        for p in net.parameters():  # torchvision's ViT starts with a zero head: every logit 0,
            if p.ndim == 2 and not p.any():  # every gradient 0, every gradient map 0
                nn.init.normal_(p, std=0.02)
        torch.save(net.state_dict(), path)
        return f"tv:{arch}", path

    return save


def _timm(arch: str, classes: int = 1000) -> Save:
    def save(tmp: Path) -> tuple[str, Path | None]:
        torch.manual_seed(0)
        path = tmp / f"{arch}.pt"
        net = timm.create_model(arch, pretrained=False, num_classes=classes)
        torch.save(net.state_dict(), path)
        return f"timm:{arch}", path

    return save


def _hf_vit(tmp: Path) -> tuple[str, Path | None]:
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
    return f"hf:{tmp / 'vit'}", None


def _hf_layer(block: int) -> str:
    """Hugging Face ViT's pre-attention norm of ``block`` (``vit.layers`` since transformers 5,
    ``vit.encoder.layer`` before)."""
    major = int(transformers.__version__.split(".")[0])
    return f"vit.{'layers' if major >= 5 else 'encoder.layer'}.{block}.layernorm_before"


def _patch_tokens(leading: int, side: int) -> Callable[[Tensor], Tensor]:
    """pytorch-grad-cam's documented ViT ``reshape_transform``, written here from its
    description: drop the ``leading`` non-patch tokens, lay the others out on a ``side`` x
    ``side`` grid, channels first: (B, N, C) -> (B, C, side, side)."""

    def reshape(tokens: Tensor) -> Tensor:
        grid = tokens[:, leading:].unflatten(1, (side, side))  # (B, side, side, C)
        return grid.permute(0, 3, 1, 2)

    return reshape


def _channels_first(maps: Tensor) -> Tensor:
    """Swin's (B, H, W, C) stage output as (B, C, H, W) (pytorch-grad-cam's Swin transform for
    a stage that is already a grid)."""
    return maps.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Zoo:
    """A model of the contract: how to save it, where its layer methods read, and methods that
    do not apply with the reason.

    A transformer's layer methods run at its default layer (no ``layer=``, ``reshape="auto"``):
    ``default_layer`` is the layer the loader or the transformer rule must pick (the last
    block's pre-attention norm) and ``layout`` how ``unmask layers`` shows it; ``peer_reshape``
    is the reshape transform pytorch-grad-cam is given there. A CNN names no default layer
    here: its layer methods run at ``layer``.
    """

    save: Save
    default_layer: str | None = None
    layout: str | None = None
    peer_reshape: Callable[[Tensor], Tensor] | None = None
    #: the layer of the layer methods when the model has no default one (a torchvision CNN)
    layer: str | None = None
    #: a layer with few channels for the per-channel methods (Score-CAM, Ablation-CAM: one
    #: forward pass per channel); None: the default layer
    channel_layer: str | None = None
    skip: dict[str, str] = field(default_factory=dict)


#: The attention explainers read global self-attention: not a CNN's, not Swin's windows.
NO_ATTENTION = {
    m: "no global self-attention (a CNN, or Swin's windowed attention)"
    for m in ("rollout", "chefer")
}
#: ViT-B/16's token layers are 768 wide: 768 forward passes of an 86M-parameter network per
#: image (the tiny ViTs run them at their default layer).
TOO_MANY_CHANNELS = {
    m: "one forward pass of ViT-B/16 per channel (768) is too slow for the contract"
    for m in ("scorecam", "ablationcam")
}
ZOO: dict[str, Zoo] = {
    "tv:resnet50": Zoo(
        _tv("resnet50"), layer="layer4", channel_layer="layer1.0.conv1", skip=NO_ATTENTION
    ),
    "tv:swin_t": Zoo(
        _tv("swin_t"),
        default_layer="features.7.1.norm1",
        layout="channels-last 7x7",
        peer_reshape=_channels_first,
        channel_layer="features.1.1.norm1",  # 96 channels (the default layer has 768)
        skip=NO_ATTENTION,
    ),
    "tv:vit_b_16": Zoo(
        _tv("vit_b_16"),
        default_layer="encoder.layers.encoder_layer_11.ln_1",
        layout="tokens: 1 + 14x14",
        peer_reshape=_patch_tokens(1, 14),
        skip=TOO_MANY_CHANNELS,
    ),
    "timm:vit_tiny_patch16_224": Zoo(
        _timm("vit_tiny_patch16_224"),
        default_layer="blocks.11.norm1",
        layout="tokens: 1 + 14x14",
        peer_reshape=_patch_tokens(1, 14),
    ),
    "timm:deit_tiny_distilled_patch16_224": Zoo(
        _timm("deit_tiny_distilled_patch16_224"),
        default_layer="blocks.11.norm1",
        layout="tokens: 2 + 14x14",
        peer_reshape=_patch_tokens(2, 14),
    ),
    "hf:vit": Zoo(
        _hf_vit,
        default_layer=_hf_layer(3),
        layout="tokens: 1 + 14x14",
        peer_reshape=_patch_tokens(1, 14),
    ),
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


_SAVED: dict[str, tuple[str, Path | None]] = {}
_BUILT: dict[str, unmask.Classifier] = {}


def _saved(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path | None]:
    """``ZOO[name]`` saved once per session: the ``load_model`` name and weights."""
    if name not in _SAVED:
        _SAVED[name] = ZOO[name].save(tmp_path_factory.mktemp(name.replace(":", "-")))
    return _SAVED[name]


def _model(name: str, tmp_path_factory: pytest.TempPathFactory) -> unmask.Classifier:
    """``ZOO[name]`` loaded with :func:`unmask.load_model` once per session."""
    if name not in _BUILT:
        model, weights = _saved(name, tmp_path_factory)
        _BUILT[name] = unmask.load_model(model, weights=weights, execution="eager")
    return _BUILT[name]


def _settings(model: str, method: str) -> dict:
    row = ZOO[model]
    if method in row.skip:
        pytest.skip(row.skip[method])
    if method in SETTINGS:
        return dict(SETTINGS[method])
    if method in LAYER_METHODS:  # a transformer's default layer, read with reshape="auto"
        return {"layer": row.layer} if row.layer else {}
    if method in CHANNEL_METHODS:
        return {"batch_size": 32, **({"layer": row.channel_layer} if row.channel_layer else {})}
    raise AssertionError(f"no zoo settings for method {method!r}: add a row to SETTINGS")


@pytest.mark.parametrize("model,method", _cases())
def test_every_method_gives_finite_maps_of_the_input_size(model, method, tmp_path_factory):
    settings = _settings(model, method)
    m = _model(model, tmp_path_factory)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    e = unmask.explain(m, x, method=method, target=1, **settings)
    assert e.saliency.shape == (1, 1, SIZE, SIZE)
    assert bool(torch.isfinite(e.saliency).all())


#: The CAMs: a map ``extras["cam"]`` at the layer's resolution, ``relu=`` to keep it signed.
CAMS = sorted(m for m in LAYER_METHODS | CHANNEL_METHODS if METHODS.get(m).accepts("relu"))


@pytest.mark.parametrize("model", [m for m in ZOO if ZOO[m].default_layer])
@pytest.mark.parametrize("method", CAMS)
def test_cams_read_the_patch_grid_of_the_default_layer(model, method, tmp_path_factory):
    """On a transformer a CAM is computed on the default layer's patch grid (14 x 14 tokens,
    7 x 7 for Swin's last stage), and without its ReLU it is not 0 everywhere: the patch
    tokens still reach the logits from that layer (after the last block only the class token
    does, and every gradient CAM there is 0)."""
    settings = _settings(model, method)
    if "layer" in settings:
        pytest.skip("run at another layer than the default (fewer channels)")
    e = unmask.explain(
        _model(model, tmp_path_factory),
        torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)),
        method=method,
        target=1,
        relu=False,
        **settings,
    )
    side = int(str(ZOO[model].layout).split(" ")[-1].split("x")[0])
    assert e.extras["cam"].shape == (1, 1, side, side)
    assert bool(e.extras["cam"].abs().amax() > 0)


@pytest.mark.parametrize("model", list(ZOO))
def test_default_layer_is_the_last_blocks_pre_attention_norm(model, tmp_path_factory, capsys):
    """``unmask layers`` marks the row's default layer (None for a torchvision CNN) and shows
    how layer methods read it (tokens: leading + grid; Swin's channels-last grid)."""
    from unmask.cli import main

    name, weights = _saved(model, tmp_path_factory)
    argv = ["layers", "--model", name, "--json", *(["--weights", str(weights)] if weights else [])]
    assert main(argv) == 0
    listing = json.loads(capsys.readouterr().out)
    row = ZOO[model]
    assert listing["feature_layer"] == row.default_layer
    layouts = {r["name"]: r.get("layout") for r in listing["layers"]}
    if row.default_layer:
        assert layouts[row.default_layer] == row.layout
    from unmask.gradients import resolve_layer

    assert resolve_layer(_model(model, tmp_path_factory), row.layer) == (
        row.layer or row.default_layer
    )


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


class _Logits(nn.Module):
    """The bare network with its logits picked from a Hugging Face output (pytorch-grad-cam
    indexes the model's output with the class)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        return out.logits if hasattr(out, "logits") else out


def _minmax(maps: Tensor) -> Tensor:
    """Each map (B, H, W) rescaled to [0, 1] (none of these is constant: checked)."""
    lo, hi = maps.amin((1, 2), keepdim=True), maps.amax((1, 2), keepdim=True)
    assert bool((hi > lo).all()), "a constant Grad-CAM map: nothing to compare"
    return (maps - lo) / (hi - lo)


@pytest.mark.parametrize("model", list(ZOO))
def test_gradcam_equals_pytorch_grad_cam(model, tmp_path_factory):
    """Grad-CAM equals pytorch-grad-cam's ``GradCAM`` up to its per-image min-max scaling (an
    affine map: both upsample bilinearly with half-pixel centres), at the row's layer (a CNN)
    or at the default layer with ``reshape="auto"``, which pytorch-grad-cam is given with its
    documented reshape transform (a transformer: patch tokens, Swin's channels-last grid)."""
    cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    row = ZOO[model]
    m = _model(model, tmp_path_factory)
    x = torch.rand(2, 3, *m.input_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # high-scoring classes: a random network's other maps may be all 0
        top = m(x).topk(2).indices
    classes = [int(top[0, 0]), int(top[1, 1])]
    layer = {"layer": row.layer} if row.layer else {}
    ours = unmask.explain(m, x, "gradcam", target=classes, **layer).saliency
    module = dict(m.net.named_modules())[row.layer or row.default_layer]
    with cam.GradCAM(
        model=_Logits(m.net), target_layers=[module], reshape_transform=row.peer_reshape
    ) as peer:
        theirs = peer(
            input_tensor=m.preprocess(x),
            targets=[ClassifierOutputTarget(c) for c in classes],
        )
    a = ours[:, 0].detach().double()
    b = torch.from_numpy(theirs).double()
    assert a.shape == b.shape
    a, b = _minmax(a), _minmax(b)
    print(f"{model}: Grad-CAM max |unmask - pytorch-grad-cam| = {float((a - b).abs().max()):.2e}")
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)  # measured: at most 2.2e-6 (resnet50)


def test_timm_loader_fits_the_classifier_and_reads_tagged_names(tmp_path):
    name, weights = _timm("resnet18", classes=5)(tmp_path)  # a 5-class head in the state dict
    model = unmask.load_model(name, weights=weights)
    assert model.num_classes == 5 and model.class_names[0] == "class 0"
    assert model.feature_layer == "layer4" and model.input_size == (224, 224)
    tagged = unmask.load_model("timm:resnet18.a1_in1k", weights=weights)
    assert tagged.num_classes == 5
    with pytest.raises(ValueError, match="timm has no architecture 'resnet_18'; closest: resnet18"):
        unmask.load_model("timm:resnet_18", weights=weights)
