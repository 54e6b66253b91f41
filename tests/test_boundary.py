"""Bad input at every public boundary: one clear error naming the argument, nothing large allocated.

Table-driven over the registries (``METHODS``, ``METRICS``, ``REMOVALS``), so a new method,
metric or removal is covered when it is registered. Each case checks the *refusal* (the
exception type and that its message names the argument), never a crash: the huge values are
far beyond any memory, so a method that tried to allocate them would fail with a torch or
Python error instead of the ValueError these tests expect. The loader's cases also record
every resampling to prove that no intermediate image above a stated size is formed.
"""

from __future__ import annotations

import importlib.util
import inspect
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _jpeg import cut_scan, jpeg
from PIL import Image

import unmask
import unmask.explainers  # noqa: F401  (registers every method)
import unmask.models
from unmask.cli import main
from unmask.images import load_image
from unmask.metrics import METRICS
from unmask.registry import METHODS
from unmask.removal import REMOVALS, Blur, Constant, Noise, make_removal
from unmask.removal.base import bind
from unmask.testing import region_images, region_model

HUGE = 10**30  # far beyond any memory: a method that tried to allocate it would crash
OVERFLOW = 2**70  # does not fit in int64


def _fast():
    path = Path(__file__).parent / "explainers" / "test_contract.py"
    spec = importlib.util.spec_from_file_location("_contract_fast", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CONTRACT = _fast()
FAST = _CONTRACT.FAST
MODEL = region_model()
X = region_images(batch=1, size=32)


def _raises(call, exc, *names):
    """``call()`` raises ``exc`` with one line that names every string of ``names``."""
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for n in names:
        assert n in message, (n, message)
    return message


# --------------------------------------------------------------------------- the loader


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (1-bit gray): a few bytes, a huge image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def resamplings(monkeypatch):
    """Every F.interpolate call of the loader: (input numel, output numel)."""
    calls: list[tuple[int, int]] = []
    real = F.interpolate

    def record(x, *args, **kwargs):
        out = real(x, *args, **kwargs)
        calls.append((x.numel(), out.numel()))
        return out

    monkeypatch.setattr(F, "interpolate", record)
    return calls


@pytest.mark.parametrize("side", [(20_000, 20_000), (12_000, 12_000), (100_000, 1_000)])
def test_huge_image_headers_are_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(*side))
    assert path.stat().st_size < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's raw DecompressionBombWarning must not leak
        _raises(lambda: load_image(path), ValueError, "image:", "pixels", "limit")


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setenv("UNMASK_MAX_PIXELS", "1000")
    _raises(lambda: load_image(path), ValueError, "40 x 30", "1,000", "UNMASK_MAX_PIXELS")
    _raises(
        lambda: load_image(np.zeros((30, 40), np.uint8)), ValueError, "image:", "UNMASK_MAX_PIXELS"
    )
    monkeypatch.setenv("UNMASK_MAX_PIXELS", "1200")
    assert load_image(path, size=8).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("shape", [(1, 5000), (1, 20_000), (1, 100_000), (100_000, 1)])
@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_thin_strips_never_grow(shape, mode, resamplings, tmp_path):
    """Crop before scale: a 1 x 100,000 strip is cut to its 1 x 1 centre, then scaled."""
    x = load_image(np.zeros(shape, np.uint8), size=224, mode=mode)
    assert x.shape == (1, 3, 224, 224)
    bound = 3 * max(224 * 224, shape[0] * shape[1])  # the output, or the strip itself
    assert resamplings and all(a <= bound and b <= 3 * 224 * 224 for a, b in resamplings)
    path = tmp_path / "strip.png"
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    assert load_image(path, size=64, mode=mode).shape == (1, 3, 64, 64)


def test_crop_mode_keeps_the_centre_square():
    arr = np.zeros((10, 30), np.uint8)
    arr[:, 10:20] = 255  # the centre square is white, the sides black
    assert torch.equal(load_image(arr, size=10), torch.ones(1, 3, 10, 10))


BAD_SOURCES = [
    (np.zeros((8, 8, 3), np.float32) + 255.0, ValueError, ["image:", "[0, 1]"]),
    (np.zeros((8, 8, 3), np.float32) - 0.5, ValueError, ["image:", "[0, 1]"]),
    (np.full((8, 8), np.nan, np.float32), ValueError, ["image:", "NaN"]),
    (np.full((8, 8), np.inf), ValueError, ["image:", "NaN or infinite"]),
    (np.zeros((8, 8), np.int64), TypeError, ["image:", "int64"]),
    (np.zeros((8, 8), np.complex64), TypeError, ["image:", "complex64"]),
    (np.zeros((2, 8, 8, 3), np.uint8), ValueError, ["image:", "shape"]),
    (np.zeros((8, 8, 2), np.uint8), ValueError, ["image:", "shape"]),
    (np.zeros((0, 8), np.uint8), ValueError, ["image:", "zero-size"]),
    (None, TypeError, ["image:"]),
    ([[0, 1]], TypeError, ["image:"]),
]


@pytest.mark.parametrize("source, exc, names", BAD_SOURCES)
def test_loader_bad_sources(source, exc, names):
    _raises(lambda: load_image(source), exc, *names)


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "224", HUGE, 100_000])
def test_loader_bad_sizes(size):
    _raises(lambda: load_image(np.zeros((8, 8), np.uint8), size=size), ValueError, "size:")


def test_loader_float64_and_size_limit_env(monkeypatch):
    x = load_image(np.full((8, 8, 3), 0.5, np.float64), size=None)
    assert x.dtype == torch.float32
    monkeypatch.setenv("UNMASK_MAX_SIZE", "64")
    _raises(lambda: load_image(np.zeros((8, 8), np.uint8), size=65), ValueError, "size:", "64")


# --------------------------------------------------------------------------- images at the model


BAD_IMAGES = [
    ("x255", lambda x: x * 255, ValueError, ["x:", "[0, 1]", "255"]),
    ("centred", lambda x: x - 0.5, ValueError, ["x:", "[0, 1]"]),
    (
        "nan",
        lambda x: x.masked_fill(torch.rand_like(x) < 0.01, float("nan")),
        ValueError,
        ["x:", "NaN"],
    ),
    (
        "inf",
        lambda x: x.masked_fill(torch.rand_like(x) < 0.01, float("inf")),
        ValueError,
        ["x:", "NaN"],
    ),
    ("uint8", lambda x: (x * 255).to(torch.uint8), TypeError, ["x:", "uint8"]),
    ("3d", lambda x: x[0], ValueError, ["x:", "(B, C, H, W)"]),
    ("gray", lambda x: x[:, :1], ValueError, ["x:", "3 channels"]),
    ("empty", lambda x: x[:0], ValueError, ["x:"]),
    ("array", lambda x: x.numpy(), TypeError, ["x:"]),
    ("meta", lambda x: torch.empty_like(x, device="meta"), ValueError, ["x:", "meta tensor"]),
]

BAD_TARGETS = [
    (OVERFLOW, ValueError, ["target:", "outside"]),
    (-1, ValueError, ["target:", "outside"]),
    (2, ValueError, ["target:", "outside [0, 2)"]),
    (1.5, TypeError, ["target:"]),
    ("cat", TypeError, ["target:"]),
    ([0, 1], ValueError, ["target:", "one class"]),
    ([[]], ValueError, ["target:", "non-empty"]),
    (True, TypeError, ["target:", "bool"]),
    (torch.tensor([1], device="meta"), ValueError, ["target:", "meta tensor"]),
]


def _explainer(name: str, **override):
    # layer methods run on the contract suite's convolutional region model (a feature layer)
    return unmask.make_explainer(_CONTRACT._model(name), name, **{**FAST.get(name, {}), **override})


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("case, make, exc, names", BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_explainers_refuse_bad_images(name, case, make, exc, names):
    _raises(lambda: _explainer(name).explain(make(X.clone()), 1), exc, *names)


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("target, exc, names", BAD_TARGETS, ids=[repr(c[0]) for c in BAD_TARGETS])
def test_explainers_refuse_bad_targets(name, target, exc, names):
    _raises(lambda: _explainer(name).explain(X, target), exc, *names)


def test_model_input_sizes_are_bounded(monkeypatch):
    _raises(
        lambda: unmask.Classifier.wrap(torch.nn.Identity(), input_size=HUGE, class_names=["a"]),
        ValueError,
        "input_size:",
    )
    monkeypatch.setenv("UNMASK_MAX_SIZE", "16")
    _raises(lambda: _explainer("occlusion").explain(X, 1), ValueError, "x:", "32x32", "16")
    _raises(lambda: load_image(Image.new("RGB", (8, 8)), size=17), ValueError, "size:", "16")


def test_numpy_targets_and_float64_images_are_accepted():
    e = _explainer("occlusion").explain(X.double(), np.int64(1))
    assert e.target.tolist() == [1] and e.saliency.dtype == torch.float32
    ref = _explainer("occlusion").explain(X, 1)
    torch.testing.assert_close(e.saliency, ref.saliency)


#: Size-like hyperparameters: every one must be bounded or memory-estimated.
SIZE_PARAMS = (
    "patch_size",
    "stride",
    "mask_size",
    "s",
    "masks",
    "n_segments",
    "samples",
    "noise_bs",
    "jitter",
    "step",
    "levels",
    "max_blur",
)


def _params(name: str) -> dict[str, inspect.Parameter]:
    return METHODS.get(name).parameters()


SIZE_CASES = [
    (n, p)
    for n in METHODS.names()
    for p, spec in _params(n).items()
    if p in SIZE_PARAMS and not isinstance(spec.default, bool)
]


@pytest.mark.parametrize("name, param", SIZE_CASES, ids=[f"{n}-{p}" for n, p in SIZE_CASES])
@pytest.mark.parametrize("value", [HUGE, OVERFLOW])
def test_size_like_hyperparameters_are_bounded(name, param, value):
    """Refused when built (or, for bounds that depend on the images, when explaining)."""

    def run():
        _explainer(name, **{param: value}).explain(X, 1)

    _raises(run, ValueError, f"{param}:")


FLOAT_CASES = [
    (n, p)
    for n in METHODS.names()
    for p, spec in _params(n).items()
    if isinstance(spec.default, float)
]


@pytest.mark.parametrize("name, param", FLOAT_CASES, ids=[f"{n}-{p}" for n, p in FLOAT_CASES])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_float_hyperparameters_refuse_nan_and_inf(name, param, value):
    _raises(lambda: _explainer(name, **{param: value}), ValueError, f"{param}:")


@pytest.mark.parametrize("name", [n for n in METHODS.names() if "seed" in _params(n)])
@pytest.mark.parametrize("seed", [OVERFLOW, -1])
def test_seeds_are_bounded(name, seed):
    _raises(lambda: _explainer(name, seed=seed), ValueError, "seed:", "2**63")


def test_perturbation_batch_memory_is_estimated(monkeypatch):
    """patch 1, stride 1 and a huge batch: refused before the batch exists."""
    big = torch.rand(1, 3, 256, 256)
    occ = unmask.make_explainer(MODEL, "occlusion", patch_size=1, stride=1, batch_size=100_000)
    _raises(
        lambda: occ.explain(big, 1), ValueError, "batch_size:", "memory budget", "UNMASK_MAX_MEMORY"
    )
    monkeypatch.setenv("UNMASK_MAX_MEMORY", "1M")
    occ = unmask.make_explainer(MODEL, "occlusion", patch_size=16, stride=16, batch_size=64)
    _raises(lambda: occ.explain(big, 1), ValueError, "batch_size:", "1 MB")
    monkeypatch.setenv("UNMASK_MAX_MEMORY", "4G")
    assert occ.explain(big, 1).saliency.shape == (1, 1, 256, 256)


@pytest.mark.parametrize(
    "name, settings, param",
    [
        ("extremal", {"areas": [0.1] * 100_000}, "areas"),  # one mask with gradients per area
        ("extremal", {"step": 1, "sigma": 1000.0}, "sigma"),  # a 2003 x 2003 smooth-max per pixel
        ("rise", {"masks": 10**8}, "masks"),
        ("lime", {"n_segments": 10_000, "samples": 100_000}, "samples"),
        ("fido", {"samples": 10**6}, "samples"),
        ("shearletx", {"noise_bs": 10**6}, "noise_bs"),
    ],
)
def test_memory_estimates_of_method_settings(name, settings, param):
    _raises(
        lambda: _explainer(name, **settings).explain(X, 1), ValueError, f"{param}:", "memory budget"
    )


def test_lime_sample_count():
    _raises(lambda: _explainer("lime", samples=1), ValueError, "samples:", "at least 2")
    with pytest.warns(UserWarning, match="samples: 10 samples for up to"):
        _explainer("lime", samples=10).explain(X, 1)


@pytest.mark.parametrize("device", ["cuda", "mps", "nonsense"])
def test_unusable_devices(device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _raises(lambda: unmask.load_model(device=device), ValueError, "device:", repr(device))


def test_weights_for_the_embedded_model_are_used_or_refused(tmp_path):
    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pt")
    _raises(
        lambda: unmask.load_model(weights=tmp_path / "bad.pt"),
        ValueError,
        "weights:",
        "does not fit efficientnet_lite0",
    )
    _raises(
        lambda: unmask.load_model(weights=tmp_path / "missing.pt"), FileNotFoundError, "weights:"
    )
    (tmp_path / "junk.pt").write_text("not a state dict")
    _raises(lambda: unmask.load_model(weights=tmp_path / "junk.pt"), ValueError, "weights:")


# --------------------------------------------------------------------------- metrics


def _model_metrics() -> list[str]:
    """The metrics called ``m(model, x, saliency, target)`` (faithfulness kind)."""
    from unmask.cli.evaluate import model_metrics
    from unmask.metrics.kinds import kind_of

    return [n for n in model_metrics() if kind_of(METRICS.get(n)).name == "faithfulness"]


def _map_metrics() -> list[str]:
    """The metrics called on maps alone (``m(saliency)``: complexity...)."""
    from unmask.metrics.kinds import kind_of

    return [e.name for e in METRICS if kind_of(e).inputs == ("saliency",)]


BAD_MAPS = [
    ("nan", lambda s: s.masked_fill(s > 0.9, float("nan")), ValueError, ["saliency:", "NaN"]),
    ("inf", lambda s: s.masked_fill(s > 0.9, float("inf")), ValueError, ["saliency:", "NaN"]),
    ("shape", lambda s: s[:, :, None], ValueError, ["saliency:", "shape"]),
    ("batch", lambda s: torch.cat([s, s]), ValueError, ["saliency:", "1"]),
    ("complex", lambda s: s.to(torch.complex64), TypeError, ["saliency:"]),
    ("meta", lambda s: torch.empty_like(s, device="meta"), ValueError, ["saliency:", "meta"]),
]


@pytest.mark.parametrize("name", _map_metrics())
@pytest.mark.parametrize(
    "case, make, exc, names",
    BAD_MAPS[:3] + BAD_MAPS[4:],
    ids=[c[0] for c in BAD_MAPS[:3] + BAD_MAPS[4:]],
)
def test_map_metrics_refuse_bad_maps(name, case, make, exc, names):
    metric = METRICS.get(name).build()
    _raises(lambda: metric(make(torch.rand(1, 1, 32, 32))), exc, *names)


@pytest.mark.parametrize("name", _model_metrics())
@pytest.mark.parametrize("case, make, exc, names", BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_metrics_refuse_bad_images(name, case, make, exc, names):
    metric = METRICS.get(name).build()
    _raises(lambda: metric(MODEL, make(X.clone()), torch.rand(1, 1, 32, 32), 1), exc, *names)


@pytest.mark.parametrize("name", _model_metrics())
@pytest.mark.parametrize("case, make, exc, names", BAD_MAPS, ids=[c[0] for c in BAD_MAPS])
def test_metrics_refuse_bad_maps(name, case, make, exc, names):
    metric = METRICS.get(name).build()
    _raises(lambda: metric(MODEL, X, make(torch.rand(1, 1, 32, 32)), 1), exc, *names)


def _image_metrics() -> list[str]:
    """The metrics that lay maps on images (faithfulness and contrastive kinds)."""
    from unmask.metrics.kinds import kind_of

    kinds = ("faithfulness", "contrastive")
    return [e.name for e in METRICS if kind_of(e).name in kinds]


def _on_images(name, saliency, x=X):
    from unmask.metrics.kinds import kind_of

    metric = METRICS.get(name).build()
    extra = {"competitors": {0}} if kind_of(METRICS.get(name)).name == "contrastive" else {}
    return metric(_CONTRACT._model("gradcam"), x, saliency, 1, **extra)


@pytest.mark.parametrize("name", _image_metrics())
@pytest.mark.parametrize("h, w", [(30, 30), (64, 64), (32, 24), (31, 32)])
def test_maps_that_do_not_tile_the_images_are_refused(name, h, w):
    # one rule where maps meet images: the image's size, or a grid whose cells tile it
    _raises(lambda: _on_images(name, torch.rand(1, 1, h, w)), ValueError, "saliency:", f"{h} x {w}")


@pytest.mark.parametrize("name", _image_metrics())
def test_grid_maps_are_read_as_documented(name):
    # an 8 x 8 grid on 32 x 32 images: accepted, finite
    assert bool(torch.isfinite(_on_images(name, torch.rand(1, 1, 8, 8))).all())


def test_evaluate_and_the_cli_apply_the_map_rule(tmp_path, capsys):
    from unmask.metrics import evaluate

    _raises(
        lambda: evaluate(MODEL, X, torch.rand(1, 1, 30, 30), ["deletion", "cauc"], competitors={0}),
        ValueError,
        "saliency:",
        "30 x 30",
    )
    np.save(tmp_path / "m.npy", np.random.default_rng(0).random((1, 30, 30), np.float32))
    argv = ["evaluate", "--example", "chelsea", "--model", "synthetic_cnn"]
    line = _cli_error(capsys, [*argv, "--maps", str(tmp_path / "m.npy")])
    assert "--maps:" in line and "30 x 30" in line and "64 x 64" in line


@pytest.mark.parametrize("name", _model_metrics())
@pytest.mark.parametrize("target, exc, names", BAD_TARGETS, ids=[repr(c[0]) for c in BAD_TARGETS])
def test_metrics_refuse_bad_targets(name, target, exc, names):
    metric = METRICS.get(name).build()
    _raises(lambda: metric(MODEL, X, torch.rand(1, 1, 32, 32), target), exc, *names)


METRIC_SIZE_CASES = [
    (n, p)
    for n in _model_metrics()
    for p in METRICS.get(n).parameters()
    if p in ("max_steps", "batch_size", "steps", "pixels_per_step", "samples")
]


@pytest.mark.parametrize(
    "name, param", METRIC_SIZE_CASES, ids=[f"{n}-{p}" for n, p in METRIC_SIZE_CASES]
)
def test_metric_size_parameters_do_not_allocate_their_value(name, param):
    """A huge size-like parameter either is refused naming it or is capped by the image."""
    try:
        metric = METRICS.get(name).build(**{param: HUGE})
        value = metric(MODEL, X, torch.rand(1, 1, 32, 32), 1)
    except ValueError as exc:
        assert f"{param}:" in str(exc), exc
        return
    value = torch.as_tensor(value)
    assert not bool(torch.isinf(value).any())  # finite, or NaN where a correlation is undefined


# --------------------------------------------------------------------------- removals


class _MeanFill(torch.nn.Module):
    """A tiny TorchScript inpainter (LaMa's signature), so that ``torchscript`` is covered."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return image * (1 - mask) + image.mean() * mask


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ts") / "fill.pt"
    torch.jit.script(_MeanFill()).save(str(path))
    return str(path)


def _removal(name: str, scripted: str):
    return make_removal(f"{name}:{scripted}" if name == "torchscript" else name)


@pytest.mark.parametrize("name", REMOVALS.names())
@pytest.mark.parametrize(
    "case, make, exc, names", BAD_IMAGES[:6], ids=[c[0] for c in BAD_IMAGES[:6]]
)
def test_removals_refuse_bad_images(name, case, make, exc, names, scripted):
    removal = _removal(name, scripted)
    mask = torch.zeros(1, 1, 32, 32)
    _raises(lambda: removal(make(X.clone()), mask), exc, *names)


BAD_MASKS = [
    ("nan", lambda m: m.masked_fill(m == 0, float("nan")), ValueError, ["mask:", "NaN"]),
    ("above", lambda m: m + 2, ValueError, ["mask:", "[0, 1]"]),
    ("below", lambda m: m - 1, ValueError, ["mask:", "[0, 1]"]),
    ("shape", lambda m: m[..., :16], ValueError, ["mask:", "shape"]),
    ("channels", lambda m: m.expand(1, 3, 32, 32), ValueError, ["mask:", "shape"]),
    ("batch", lambda m: m.expand(3, 1, 32, 32), ValueError, ["mask:", "batch size"]),
    ("array", lambda m: m.numpy(), TypeError, ["mask:"]),
]


@pytest.mark.parametrize("name", REMOVALS.names())
@pytest.mark.parametrize("case, make, exc, names", BAD_MASKS, ids=[c[0] for c in BAD_MASKS])
def test_removals_refuse_bad_masks(name, case, make, exc, names, scripted):
    removal = _removal(name, scripted)
    x = torch.cat([X, X])
    _raises(lambda: removal(x, make(torch.zeros(1, 1, 32, 32))), exc, *names)


BAD_REMOVALS = [
    (lambda: Constant(float("nan")), ValueError, ["value"]),
    (lambda: Constant(5.0), ValueError, ["[0, 1]"]),
    (lambda: Constant(-0.1), ValueError, ["[0, 1]"]),
    (lambda: Constant((0.5, float("inf"), 0.5)), ValueError, ["[0, 1]"]),
    (lambda: Blur(float("inf")), ValueError, ["sigma:"]),
    (lambda: Blur(float("nan")), ValueError, ["sigma:"]),
    (lambda: Blur(1e6), ValueError, ["sigma:"]),
    (lambda: Blur(0), ValueError, ["sigma:"]),
    (lambda: Blur(10, kernel_size=HUGE), ValueError, ["kernel_size:"]),
    (lambda: Noise(std=float("inf")), ValueError, ["std:"]),
    (lambda: Noise(seed=OVERFLOW), ValueError, ["seed:"]),
    (lambda: make_removal("blur:0"), ValueError, ["sigma", "> 0"]),
    (lambda: make_removal("blur:inf"), ValueError, ["sigma"]),
    (lambda: make_removal("blur:x"), ValueError, ["blur"]),
    (lambda: make_removal("fog"), ValueError, ["removal:", "fog"]),
]


@pytest.mark.parametrize("make, exc, names", BAD_REMOVALS)
def test_removal_constructors(make, exc, names):
    _raises(make, exc, *names)


def test_a_removal_of_the_wrong_shape_is_refused():
    def half(x, mask):
        return x[..., :16, :]

    apply = bind(half, X)
    _raises(
        lambda: apply(torch.zeros(1, 1, 32, 32), torch.zeros(1, dtype=torch.long)),
        ValueError,
        "removal:",
        "shape",
    )
    occ = unmask.make_explainer(MODEL, "occlusion", removal=half, patch_size=8, stride=8)
    _raises(lambda: occ.explain(X, 1), ValueError, "removal:")


# --------------------------------------------------------------------------- the command line


def _tiny_imagenet_model() -> unmask.models.Classifier:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 1000)
    )
    return unmask.models.Classifier.wrap(net, input_size=None, name="tiny")


@pytest.fixture
def tiny_cli(monkeypatch):
    real = unmask.models.load_model
    tiny = _tiny_imagenet_model()

    def load(name="efficientnet_lite0", **kw):
        if name == "efficientnet_lite0" and not kw.get("weights"):
            return tiny
        return real(name, **kw)

    monkeypatch.setattr(unmask.models, "load_model", load)


def _cli_error(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unmask: error: "), err
    return lines[0]


def _files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "bomb.png").write_bytes(_png_header(20_000, 20_000))
    (tmp_path / "big.png").write_bytes(_png_header(12_000, 12_000))
    np.save(tmp_path / "x255.npy", np.full((16, 16, 3), 200.0, np.float32))
    np.save(tmp_path / "nan.npy", np.full((16, 16, 3), np.nan, np.float32))
    np.save(tmp_path / "maps_nan.npy", np.full((1, 16, 16), np.nan, np.float32))
    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pt")
    (tmp_path / "pickle.pkl").write_bytes(pickle.dumps({"a": 1}))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module
    (tmp_path / "cut.jpg").write_bytes(cut_scan(jpeg(), 0.5))  # EOI appended inside the scan
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "loop.npy").symlink_to(tmp_path / "loop.npy")
    return {
        k: str(tmp_path / v)
        for k, v in [
            ("bomb", "bomb.png"),
            ("big", "big.png"),
            ("x255", "x255.npy"),
            ("nan", "nan.npy"),
            ("maps_nan", "maps_nan.npy"),
            ("bad", "bad.pt"),
            ("pkl", "pickle.pkl"),
            ("module", "module.pt"),
            ("cut", "cut.jpg"),
            ("loop", "loop.png"),
            ("dangling", "dangling.png"),
            ("maps_loop", "loop.npy"),
            ("dir", "."),
            ("txt", "result.txt"),
            ("nodir", "no/such/dir/x.png"),
        ]
    }


EX = ["--example", "chelsea", "--no-progress"]
CLI_CASES = [
    (["explain", "{bomb}"], ["image:", "pixels", "limit"]),
    (["explain", "{big}"], ["image:", "12000 x 12000", "limit"]),
    (["explain", "{x255}"], ["image:", "[0, 1]"]),
    (["explain", "{nan}"], ["image:", "NaN"]),
    (["explain", *EX, "--target", str(10**23)], ["--target:", "outside [0, 1000)"]),
    (["explain", *EX, "--target", "-1"], ["--target:", "outside"]),
    (["explain", *EX, "--seed", str(10**23)], ["--seed:", "2**63"]),
    (["explain", *EX, "--seed", "-1"], ["--seed:"]),
    (["explain", *EX, "--size", "0"], ["--size:"]),
    (["explain", *EX, "--size", "100000"], ["--size:", "4096"]),
    (["explain", *EX, "--size", "1"], ["--size:", "32 x 32 patch"]),
    (["explain", *EX, "--batch-size", "0"], ["--batch-size:"]),
    (["explain", *EX, "--batch-size", "100000"], ["--batch-size:", "memory budget"]),
    (
        [
            "explain",
            *EX,
            "--param",
            "patch_size=1",
            "--param",
            "stride=1",
            "--batch-size",
            "100000",
        ],
        ["--batch-size:", "memory budget"],
    ),
    (["explain", *EX, "--param", f"patch_size={10**23}"], ["patch_size:"]),
    (["explain", *EX, "--method", "lime", "--param", "n_segments=100000"], ["n_segments:"]),
    (["explain", *EX, "--method", "lime", "--param", "samples=1"], ["samples:"]),
    (
        ["explain", *EX, "--method", "rise", "--param", f"masks={10**12}"],
        ["masks:", "expected an integer in [1, 100,000]"],  # rise's declared bound
    ),
    (["explain", *EX, "--method", "mp", "--param", "mask_size=100000"], ["mask_size:"]),
    (["explain", *EX, "--method", "rise", "--param", "p=NaN"], ["p:"]),
    (["explain", *EX, "--removal", "blur:0"], ["--removal:", "sigma", "> 0"]),
    (["explain", *EX, "--removal", "blur:1e6"], ["--removal:", "sigma"]),
    (["explain", *EX, "--removal", "constant:5"], ["--removal:"]),
    (["explain", *EX, "--out", "{txt}"], ["--out:", ".png"]),
    (["explain", *EX, "--out", "{dir}"], ["--out:"]),
    (["explain", *EX, "--out", "{nodir}"], ["--out:", "directory does not exist"]),
    (["explain", *EX, "--save-map", "{txt}"], ["--save-map:", ".npy"]),
    (["explain", *EX, "--weights", "{bad}"], ["weights:", "does not fit"]),
    (["explain", *EX, "--method", "magic"], ["method:", "magic"]),
    (["evaluate", "{x255}", "--method", "occlusion"], ["image:", "[0, 1]"]),
    (["evaluate", "--example", "chelsea", "--maps", "{maps_nan}"], ["--maps:", "NaN"]),
    (
        ["evaluate", "--example", "chelsea", "--method", "occlusion", "--size", "100000"],
        ["--size:"],
    ),
    (
        ["evaluate", "--example", "chelsea", "--method", "occlusion", "--seed", str(10**23)],
        ["--seed:"],
    ),
    (
        ["evaluate", "--example", "chelsea", "--method", "occlusion", "--target", str(2**70)],
        ["--target:"],
    ),
    (
        ["evaluate", "--example", "chelsea", "--method", "occlusion", "--max-steps", "0"],
        ["--max-steps:"],
    ),
    (["figure4", "--images", "{dir}", "--out", "{dir}", "--limit", "0"], ["--limit:"]),
    (["figure4", "--images", "{dir}", "--out", "{dir}", "--limit", "-3"], ["--limit:"]),
    (["figure4", "--images", "{dir}", "--out", "{dir}", "--size", "100000"], ["size:"]),
    (["explain", *EX, "--target", "cat"], ["--target"]),
    (["explain", *EX, "--target", "true"], ["--target"]),
    # files that were internal errors or misnamed (issue 25)
    (["explain", *EX, "--weights", "{pkl}"], ["weights:", "pickle.pkl", "not a torch weights"]),
    (["explain", *EX, "--weights", "{module}"], ["weights:", "Linear", "state_dict()"]),
    (
        ["explain", *EX, "--model", "synthetic_cnn", "--weights", "{pkl}"],
        ["weights:", "not a torch weights"],
    ),
    (["explain", *EX, "--model", "synthetic_cnn", "--weights", "{loop}"], ["weights:", "loop"]),
    (["explain", "{cut}", "--no-progress"], ["image:", "cut.jpg", "image file is truncated"]),
    (["explain", "{loop}", "--no-progress"], ["image:", "symbolic link loop"]),
    (["explain", "{dangling}", "--no-progress"], ["image:", "broken symbolic link"]),
    (
        ["evaluate", "--example", "chelsea", "--maps", "{maps_loop}"],
        ["--maps:", "symbolic link loop"],
    ),
]


@pytest.mark.parametrize(
    "argv, names", CLI_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CLI_CASES]
)
def test_cli_bad_input_is_one_line_exit_2(argv, names, tiny_cli, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = _files(tmp_path)
    line = _cli_error(capsys, [a.format(**files) for a in argv])
    for n in names:
        assert n in line, (n, line)


def test_cli_weights_for_the_embedded_model_are_used(tmp_path, capsys):
    """--weights with an embedded model loads that state dict (not silently ignored)."""
    model = unmask.load_model()
    state = {k: v.clone() for k, v in model.net.state_dict().items()}
    state["_fc.bias"] = torch.zeros_like(state["_fc.bias"])
    state["_fc.bias"][7] = 1e4  # class 7 (cock) wins whatever the image
    torch.save(state, tmp_path / "w.pt")
    code = main(
        [
            "explain",
            "--example",
            "coffee",
            "--weights",
            str(tmp_path / "w.pt"),
            "--json",
            "--size",
            "64",
            "--param",
            "patch_size=64",
            "--param",
            "stride=64",
            "--out",
            str(tmp_path / "o.png"),
            "--no-progress",
        ]
    )
    assert code == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["images"][0]["target"] == 7
