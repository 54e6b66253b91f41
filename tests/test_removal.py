"""Removal strategies: the blending contract, fills, inpainters, batching, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from unmask.removal import (
    Blur,
    BoxBlur,
    Constant,
    Inpaint,
    Noise,
    RiseBlur,
    TorchScriptInpainter,
    bind,
    gaussian_blur,
    make_removal,
)
from unmask.removal.inpaint import _EMPTY_CONTEXT_FILL

H = W = 16


class _MeanFill(nn.Module):
    """A tiny "learned inpainter" with LaMa's signature: fills the hole with the mean colour of
    the visible pixels, and insists on sides that are multiples of 8 (as LaMa's export does)."""

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        if image.shape[-1] % 8 != 0 or image.shape[-2] % 8 != 0:
            raise RuntimeError("sides must be multiples of 8")
        visible = 1 - mask
        colour = (image * visible).sum(dim=(2, 3), keepdim=True) / visible.sum(
            dim=(2, 3), keepdim=True
        ).clamp(min=1)
        return image * visible + colour * mask


class _WrongShape(nn.Module):
    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        return image[:, :1]


@pytest.fixture(scope="module")
def lama_like(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ts") / "mean_fill.pt"
    torch.jit.script(_MeanFill()).save(str(path))
    return str(path)


def _images(b: int = 2, h: int = H, w: int = W, seed: int = 0) -> Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _box(b: int = 2, h: int = H, w: int = W) -> Tensor:
    m = torch.zeros(b, 1, h, w)
    m[..., h // 4 : h // 2, w // 4 : w // 2] = 1
    return m


FIXED = {
    "gray": lambda: Constant("gray"),
    "black": lambda: Constant("black"),
    "mean": lambda: Constant("mean"),
    "image_mean": lambda: Constant("image_mean"),
    "rgb": lambda: Constant((0.1, 0.2, 0.3)),
    "blur": lambda: Blur(1.0),
    "gaussian": lambda: Noise("gaussian", seed=3),
    "uniform": lambda: Noise("uniform", seed=3),
    "additive": lambda: Noise("gaussian", std=0.1, additive=True, seed=3),
}
INPAINTERS = {
    "telea": lambda: Inpaint("telea"),
    "ns": lambda: Inpaint("ns"),
    "patchmatch": lambda: Inpaint("patchmatch", patch_size=3),
    "biharmonic": lambda: Inpaint("biharmonic"),
}
ALL = {**FIXED, **INPAINTERS}


@pytest.fixture(params=[*ALL, "torchscript"])
def removal(request, lama_like):
    if request.param == "torchscript":
        return TorchScriptInpainter(lama_like)
    return ALL[request.param]()


# --------------------------------------------------------------------------- the contract


def test_shape_and_range(removal):
    x = _images()
    out = removal(x, _box())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_mask_zero_returns_input_exactly(removal):
    x = _images()
    assert torch.equal(removal(x, torch.zeros(2, 1, H, W)), x)


def test_outside_the_hole_is_unchanged(removal):
    x, m = _images(), _box()
    out = removal(x, m)
    keep = (m == 0).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    assert not torch.equal(out, x)  # something was removed


@pytest.mark.parametrize("name", FIXED)
def test_mask_one_returns_the_fill(name):
    removal = FIXED[name]()
    x = _images()
    assert torch.equal(removal(x, torch.ones(2, 1, H, W)), removal.fill(x))


def test_constant_fill_values():
    x = _images()
    ones = torch.ones(2, 1, H, W)
    assert bool((Constant("gray")(x, ones) == 0.5).all())
    assert bool((Constant("black")(x, ones) == 0).all())
    rgb = Constant((0.1, 0.2, 0.3))(x, ones)
    assert torch.allclose(rgb[:, :, 3, 5], torch.tensor([0.1, 0.2, 0.3]).expand(2, 3))
    own = Constant("image_mean")(x, ones)
    assert torch.allclose(own[:, :, 0, 0], x.mean(dim=(2, 3)))
    mean = Constant("mean")(x, ones)
    assert torch.allclose(mean[0, :, 0, 0], torch.tensor([0.485, 0.456, 0.406]))


def test_blur_fill_is_a_normalised_gaussian():
    x = torch.full((1, 3, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(x, 2.0), x, atol=1e-6)  # a constant image is unchanged
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[..., 10, 10] = 1
    k = gaussian_blur(impulse, 1.5)
    assert abs(float(k.sum()) - 1) < 1e-5
    assert torch.allclose(k, k.flip(-1)) and torch.allclose(k, k.transpose(-1, -2))
    # variance along one axis equals sigma^2
    profile = k[0, 0].sum(0)
    pos = torch.arange(21.0) - 10
    assert abs(float((profile * pos**2).sum()) - 1.5**2) < 0.05


def test_noise_statistics():
    x = torch.zeros(1, 3, 64, 64)
    g = Noise("gaussian", mean=0.5, std=0.1, seed=1).fill(x)
    assert abs(float(g.mean()) - 0.5) < 0.01 and abs(float(g.std()) - 0.1) < 0.01
    u = Noise("uniform", low=0.2, high=0.4, seed=1).fill(x)
    assert float(u.min()) >= 0.2 and float(u.max()) <= 0.4
    add = Noise("gaussian", std=0.05, additive=True, seed=1).fill(torch.full((1, 3, 64, 64), 0.5))
    assert abs(float(add.mean()) - 0.5) < 0.01


@pytest.mark.parametrize("name", INPAINTERS)
def test_inpainter_binarises_at_half(name):
    removal = INPAINTERS[name]()
    x, m = _images(), _box()
    assert torch.equal(removal(x, m * 0.4), x)  # <= 0.5: nothing is removed
    assert torch.equal(removal(x, m * 0.6), removal(x, m))  # > 0.5: removed completely


@pytest.mark.parametrize("name", INPAINTERS)
def test_inpainter_full_hole_is_the_documented_fill(name):
    x = _images()
    out = INPAINTERS[name]()(x, torch.ones(2, 1, H, W))
    expected = torch.tensor(_EMPTY_CONTEXT_FILL).reshape(1, 3, 1, 1).expand_as(x)
    assert torch.allclose(out, expected)


def test_inpainter_fills_from_the_surroundings():
    # a flat image with a hole: every classical inpainter restores the flat colour
    x = torch.full((1, 3, H, W), 0.6)
    for name, make in INPAINTERS.items():
        out = make()(x, _box(1))
        assert torch.allclose(out, x, atol=2 / 255), name


# --------------------------------------------------------------------------- determinism, batching


@pytest.mark.parametrize("name", ["gaussian", "uniform", "additive"])
def test_noise_is_seeded(name):
    x, m = _images(), _box()
    a, b = FIXED[name](), FIXED[name]()
    assert torch.equal(a(x, m), b(x, m))
    assert torch.equal(a(x, m), a(x, m))
    other = Noise(a.kind, additive=a.additive, std=a.std, seed=a.seed + 1)
    assert not torch.equal(other(x, m), a(x, m))


def test_patchmatch_is_seeded():
    x, m = _images(1, 24, 24), _box(1, 24, 24)
    assert torch.equal(Inpaint("patchmatch", seed=5)(x, m), Inpaint("patchmatch", seed=5)(x, m))


def test_batch_equals_single_calls(removal):
    x = _images(3)
    m = torch.rand(3, 1, H, W, generator=torch.Generator().manual_seed(1))
    m = (m > 0.7).float() if getattr(removal, "differentiable", False) is False else m
    batched = removal(x, m)
    singles = torch.cat([removal(x[i : i + 1], m[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, singles, atol=1e-6)


def test_broadcasting(removal):
    x1, xb = _images(1), _images(3)
    m1 = _box(1)
    mb = torch.stack([_box(1)[0], _box(1)[0].roll(4, -1), _box(1)[0].roll(4, -2)])
    out = removal(x1, mb)  # one image, several masks
    assert out.shape == (3, 3, H, W)
    assert torch.allclose(out[1], removal(x1, mb[1:2])[0], atol=1e-6)
    out = removal(xb, m1)  # several images, one mask
    assert out.shape == (3, 3, H, W)
    assert torch.allclose(out[2], removal(xb[2:3], m1)[0], atol=1e-6)


@pytest.mark.parametrize("name", FIXED)
def test_bind_matches_the_call(name):
    removal = FIXED[name]()
    x = _images(3)
    masks = torch.rand(4, 1, H, W, generator=torch.Generator().manual_seed(2))
    index = torch.tensor([2, 0, 1, 2])
    fast = bind(removal, x)(masks, index)
    slow = torch.cat(
        [removal(x[i : i + 1], masks[n : n + 1]) for n, i in enumerate(index.tolist())]
    )
    assert torch.allclose(fast, slow, atol=1e-6)


def test_bind_with_an_inpainter():
    removal = Inpaint("telea")
    x, masks = _images(2), torch.cat([_box(1), _box(1).roll(3, -1)])
    index = torch.tensor([1, 0])
    assert torch.equal(bind(removal, x)(masks, index), removal(x[index], masks))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["gray", "image_mean", "rgb", "blur", "gaussian", "uniform"])
def test_gradcheck_fixed_fills(name):
    removal = FIXED[name]()
    assert removal.differentiable
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    m = (torch.rand(1, 1, 4, 4, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: removal(a, b), (x, m), eps=1e-6, atol=1e-5)


def test_gradient_flows_to_the_mask_for_additive_noise():
    removal = FIXED["additive"]()
    x = torch.full((1, 3, 8, 8), 0.5)
    m = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    removal(x, m).sum().backward()
    assert m.grad is not None and float(m.grad.abs().sum()) > 0


def test_inpainters_say_they_are_not_differentiable(lama_like):
    assert not Inpaint("telea").differentiable
    assert not TorchScriptInpainter(lama_like).differentiable


# --------------------------------------------------------------------------- TorchScript inpainter


def test_torchscript_inpainter_fills_like_the_module(lama_like):
    ts = TorchScriptInpainter(lama_like)
    x, m = _images(), _box()
    expected = _MeanFill()(x, m)
    assert torch.allclose(ts(x, m), expected, atol=1e-6)


def test_torchscript_inpainter_pads_to_multiples_of_8(lama_like):
    x = _images(2, 13, 22)  # the module raises unless the sides are padded
    m = torch.zeros(2, 1, 13, 22)
    m[..., 2:6, 3:9] = 1
    out = TorchScriptInpainter(lama_like, batch_size=1)(x, m)
    assert out.shape == x.shape
    keep = (m == 0).expand_as(x)
    assert torch.equal(out[keep], x[keep])


def test_torchscript_inpainter_errors(tmp_path, lama_like):
    with pytest.raises(FileNotFoundError, match="path: TorchScript inpainter not found"):
        TorchScriptInpainter(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torchscript file")
    with pytest.raises(ValueError, match="path: not a loadable TorchScript module"):
        TorchScriptInpainter(junk)
    wrong = tmp_path / "wrong.pt"
    torch.jit.script(_WrongShape()).save(str(wrong))
    with pytest.raises(ValueError, match=r"returned \(2, 1, 16, 16\), expected"):
        TorchScriptInpainter(wrong)(_images(), _box())
    with pytest.raises(ValueError, match="batch_size"):
        TorchScriptInpainter(lama_like, batch_size=0)


# --------------------------------------------------------------------------- errors


def test_wrong_mask_shape(removal):
    x = _images()
    with pytest.raises(
        ValueError, match=r"mask: expected shape \(B, 1, 16, 16\).*got \(2, 3, 16, 16\)"
    ):
        removal(x, torch.zeros(2, 3, H, W))
    with pytest.raises(ValueError, match=r"mask: expected shape .*got \(2, 1, 8, 8\)"):
        removal(x, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="mask: batch size 3 does not match"):
        removal(x, torch.zeros(3, 1, H, W))
    with pytest.raises(TypeError, match="mask: expected a torch.Tensor"):
        removal(x, [[0.0]])


def test_mask_out_of_range_and_nan(removal):
    x = _images()
    with pytest.raises(ValueError, match=r"mask: expected values in \[0, 1\]"):
        removal(x, torch.full((2, 1, H, W), 1.5))
    with pytest.raises(ValueError, match="mask: contains NaN"):
        removal(x, torch.full((2, 1, H, W), float("nan")))
    bad = _images()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x: contains NaN"):
        removal(bad, _box())
    with pytest.raises(ValueError, match=r"x: expected shape \(B, C, H, W\)"):
        removal(x[0], _box())


def test_constructor_errors():
    with pytest.raises(ValueError, match="value: expected one of"):
        Constant("purple")
    with pytest.raises(ValueError, match="value: 2 channel values for images with 3 channels"):
        Constant((0.1, 0.2))(_images(), _box())
    with pytest.raises(ValueError, match="sigma"):
        Blur(0)
    with pytest.raises(ValueError, match="kernel_size: expected an odd number"):
        Blur(1.0, kernel_size=4)
    with pytest.raises(ValueError, match="kind: expected one of"):
        Noise("pink")
    with pytest.raises(TypeError, match="seed"):
        Noise(seed=1.5)
    with pytest.raises(ValueError, match="method: expected one of"):
        Inpaint("deepfill")


def test_make_removal_names():
    assert isinstance(make_removal("gray"), Constant)
    assert make_removal("blur:4").sigma == 4.0
    assert make_removal("uniform-noise").kind == "uniform"
    assert make_removal("ns").method == "ns"
    custom = Constant("black")
    assert make_removal(custom) is custom
    with pytest.raises(ValueError, match="removal: unknown removal 'fog'"):
        make_removal("fog")
    with pytest.raises(ValueError, match="blur:SIGMA"):
        make_removal("blur:x")
    with pytest.raises(TypeError, match="removal: expected a removal strategy"):
        make_removal(3)


def test_inpaint_threads_give_the_sequential_result():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(4, 1, 32, 32)
    mask[..., 8:20, 10:24] = 1
    sequential = Inpaint("telea", workers=1)(x, mask)
    threaded = Inpaint("telea", workers=3)(x, mask)
    assert torch.equal(sequential, threaded)
    with pytest.raises(ValueError, match="workers"):
        Inpaint("telea", workers=0)


# --- one registry, specs that round-trip (architecture issue) -----------------------------------


def _instances():
    from unmask.removal import REMOVALS, NoisyLinearImputation, make_removal

    out = [make_removal(name) for name in REMOVALS.names() if name != "torchscript"]
    out += [
        Constant(0.25),
        Constant((0.1, 0.2, 0.3)),
        Blur(2.5, kernel_size=9),
        Noise("uniform", low=0.2, high=0.9, seed=4),
        Noise(mean=0.4, std=0.1, additive=True),
        BoxBlur(11),
        RiseBlur(kernel_size=7, sigma=2.0, pad_colour=0.0),
        Inpaint("ns", radius=3),
        NoisyLinearImputation(noise=0.02, seed=3),
    ]
    return out


@pytest.mark.parametrize("removal", _instances(), ids=lambda r: r.spec)
def test_every_spec_round_trips(removal):
    from unmask.removal import make_removal

    rebuilt = make_removal(removal.spec)
    assert type(rebuilt) is type(removal) and rebuilt.spec == removal.spec
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    m = torch.zeros(1, 1, 16, 16)
    m[..., 4:12, 4:12] = 1
    assert torch.equal(rebuilt(x, m), removal(x, m))


def test_torchscript_spec_round_trips(tmp_path):
    from unmask.removal import TorchScriptInpainter, make_removal

    class Mean(torch.nn.Module):
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return image * 0 + 0.5

    path = tmp_path / "mean.pt"
    torch.jit.script(Mean()).save(str(path))
    r = TorchScriptInpainter(path, batch_size=2)
    again = make_removal(r.spec)
    assert again.spec == r.spec and again.batch_size == 2


def test_both_commands_accept_the_registry_names(tmp_path, capsys):
    """`explain --removal` and `evaluate --removal` resolve names through the one registry."""
    from unmask.cli import build_parser
    from unmask.removal import removal_names

    names = removal_names()
    assert {"box-blur", "rise-blur", "rise-zeros", "blur", "telea", "constant"} <= set(names)
    for command in ("explain", "evaluate"):
        help_text = build_parser()._subparsers._group_actions[0].choices[command].format_help()
        flat = "".join(help_text.split())  # argparse wraps lines, also at hyphens
        for name in names:
            assert name in flat, (command, name)
