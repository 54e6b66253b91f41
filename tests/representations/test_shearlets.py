"""Tests of the FFT shearlet system (unmask.representations.shearlets)."""

from __future__ import annotations

import math

import pytest
import torch

from unmask.representations.shearlets import ShearletSystem, default_directions, shearlet_system


def _energy_per_filter(system: ShearletSystem, x: torch.Tensor) -> torch.Tensor:
    """(K,) energy of the coefficients of a single image (H, W)."""
    c = system.forward(x.view(1, 1, *x.shape))
    return (c.double() ** 2).sum(dim=(0, 1, 3, 4))


def _angular_distance(a: torch.Tensor, b: float) -> torch.Tensor:
    """Distance between orientations modulo pi."""
    d = torch.remainder(a - b, math.pi)
    return torch.minimum(d, math.pi - d)


# -- reconstruction -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(224, 224), (256, 256), (200, 300)])
def test_reconstruction_float32(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    system = shearlet_system(*size)
    x = torch.rand(2, 3, *size)
    c = system.forward(x)
    assert c.shape == (2, 3, 49, *size)
    assert c.dtype == torch.float32
    assert float((system.inverse(c) - x).abs().max()) <= 1e-5


@pytest.mark.parametrize("size", [(32, 48), (31, 17), (16, 20)])
def test_reconstruction_float64_small_and_odd_sizes(size: tuple[int, int]) -> None:
    torch.manual_seed(1)
    system = shearlet_system(*size, dtype=torch.float64)
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    c = system.forward(x)
    assert c.dtype == torch.float64
    assert float((system.inverse(c) - x).abs().max()) <= 1e-12


def test_forward_matches_full_complex_fft_reference() -> None:
    """The rfft2 half-plane path equals the textbook F^-1(F(x) psi_hat) on the full plane."""
    torch.manual_seed(2)
    system = shearlet_system(30, 44, dtype=torch.float64)
    x = torch.randn(2, 1, 30, 44, dtype=torch.float64)
    full = torch.fft.ifft2(torch.fft.fft2(x).unsqueeze(2) * system.filters)
    assert float(full.imag.abs().max()) < 1e-12
    torch.testing.assert_close(system.forward(x), full.real, rtol=0, atol=1e-12)


def test_parseval_energy_and_adjoint() -> None:
    """Tight frame: ||T x|| = ||x||, and <T x, c> = <x, T^-1 c> (inverse = adjoint)."""
    torch.manual_seed(3)
    system = shearlet_system(40, 56, dtype=torch.float64)
    x = torch.randn(1, 1, 40, 56, dtype=torch.float64)
    c = torch.randn(1, 1, system.num_filters, 40, 56, dtype=torch.float64)
    assert float((system.forward(x) ** 2).sum()) == pytest.approx(float((x**2).sum()), rel=1e-10)
    lhs = float((system.forward(x) * c).sum())
    rhs = float((x * system.inverse(c)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10)


def test_float32_system_accepts_float64_input_at_full_precision() -> None:
    system = shearlet_system(24, 24)  # float32 filters
    x = torch.randn(1, 1, 24, 24, dtype=torch.float64)
    y = system.inverse(system.forward(x))
    assert y.dtype == torch.float64
    assert float((y - x).abs().max()) <= 1e-12


def test_batch_equals_single_images() -> None:
    torch.manual_seed(4)
    system = shearlet_system(20, 28)
    x = torch.rand(3, 2, 20, 28)
    batched = system.forward(x)
    single = torch.cat([system.forward(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single)


# -- tiling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(256, 256), (200, 300), (32, 48), (15, 16)])
def test_tiling_covers_plane(size: tuple[int, int]) -> None:
    system = shearlet_system(*size, dtype=torch.float64)
    total = (system.filters**2).sum(0)
    torch.testing.assert_close(system.dual_weights, total)
    assert float(total.min()) > 0.5 * float(total.max())
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-12)  # Parseval
    assert system.filters.shape == (49, *size)
    if min(size) >= 32:  # at 15 x 16 a coarse wedge can fall between the grid points
        assert bool((system.filters.abs().amax(dim=(1, 2)) > 0).all()), "an empty filter"


def test_default_filter_counts() -> None:
    system = shearlet_system(64, 64)
    assert system.num_filters == 49
    counts = [int((system.scale_of == s).sum()) for s in range(-1, 4)]
    assert counts == [1, 8, 8, 16, 16]
    assert int(system.scale_of[0]) == -1 and math.isnan(float(system.direction_of[0]))
    assert default_directions(4) == (8, 8, 16, 16)
    assert default_directions(6) == (8, 8, 16, 16, 32, 32)
    # orientations: D equispaced slopes per scale, in [0, pi), each once
    for s, d in enumerate(system.directions):
        angles = system.direction_of[system.scale_of == s].double()
        assert len(set(torch.round(angles, decimals=6).tolist())) == d
        assert float(angles.min()) == 0.0 and float(angles.max()) < math.pi
        assert (angles - math.pi / 2).abs().min() < 1e-6  # the vertical-frequency axis


def test_custom_configuration() -> None:
    system = ShearletSystem(36, 52, scales=3, directions=(4, 6, 12), dtype=torch.float64)
    assert system.num_filters == 1 + 4 + 6 + 12
    assert [int((system.scale_of == s).sum()) for s in range(3)] == [4, 6, 12]
    x = torch.randn(1, 1, 36, 52, dtype=torch.float64)
    assert float((system.inverse(system.forward(x)) - x).abs().max()) <= 1e-12
    iso = ShearletSystem(16, 16, scales=2, directions=(1, 1))  # wavelet-like: no directions
    assert iso.num_filters == 3


@pytest.mark.parametrize("scale", [0, 1, 2, 3])
def test_scales_are_dyadic_octaves(scale: int) -> None:
    """A cosine at frequency 2^(scale - 4) cycles/pixel lies entirely in that scale's band.

    The low-pass is flat up to 1/32, band s peaks (response 1) at 2^(s - 4): 1/16 ... 1/2.
    """
    n = 64
    system = shearlet_system(n, n, dtype=torch.float64)
    cols = torch.arange(n, dtype=torch.float64)
    x = torch.cos(2 * math.pi * 2.0 ** (scale - 4) * cols).expand(n, n)
    energy = _energy_per_filter(system, x)
    assert float(energy[system.scale_of == scale].sum() / energy.sum()) > 1 - 1e-9


# -- orientation ----------------------------------------------------------------------------


def _stripes(h: int, w: int, wave: tuple[int, int]) -> torch.Tensor:
    """Band-limited periodic square wave (step edges) with wave vector (kx, ky) per image side.

    Only the odd harmonics below Nyquist are kept, so that no harmonic aliases into another
    orientation (a sampled binary step would).
    """
    rows = torch.arange(h, dtype=torch.float64).view(-1, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, -1)
    phase = 2 * math.pi * (wave[0] * cols / w + wave[1] * rows / h)
    x = torch.zeros(h, w, dtype=torch.float64)
    m = 1
    while max(abs(m * wave[0]) / w, abs(m * wave[1]) / h) < 0.5:
        x += torch.sin(m * phase) / m
        m += 2
    return x


@pytest.mark.parametrize(
    ("size", "wave"),
    [
        ((64, 64), (1, 0)),  # vertical edges (normal along x)
        ((64, 64), (0, 1)),  # horizontal edges
        ((64, 64), (1, 1)),  # diagonal edges
        ((64, 64), (1, -1)),  # anti-diagonal edges
        ((64, 64), (3, 1)),  # between two finest-scale directions
        ((64, 64), (-2, 5)),  # between two, vertical cone
        ((48, 96), (1, 2)),  # non-square image, normal at atan(4)
        ((48, 96), (2, 0)),
    ],
)
def test_oriented_edges_excite_matching_directions(
    size: tuple[int, int], wave: tuple[int, int]
) -> None:
    """Finest-scale energy of oriented edges sits in filters of matching ``direction_of``.

    The edges' normal is at atan2(ky / H, kx / W); nearly all finest-scale energy must lie in
    the finest filters within one direction step of it, and the strongest one within half a step.
    """
    h, w = size
    system = shearlet_system(h, w)
    x = _stripes(h, w, wave).float()
    normal = math.atan2(wave[1] / h, wave[0] / w) % math.pi

    finest = system.scale_of == system.scales - 1
    energy = _energy_per_filter(system, x)[finest]
    angles = system.direction_of[finest].double()
    step = math.pi / 8  # the widest angular gap between neighbouring finest directions (16)
    near = _angular_distance(angles, normal) < step
    assert float(energy[near].sum() / energy.sum()) > 0.99
    assert float(_angular_distance(angles[energy.argmax()], normal)) < step / 2 + 1e-6


def test_vertical_step_edge_in_natural_position() -> None:
    """A single (non-periodic) vertical step: energy near the edge is in the 0-rad filters."""
    n = 64
    system = shearlet_system(n, n)
    x = torch.zeros(n, n)
    x[:, n // 2 :] = 1.0
    c = system.forward(x.view(1, 1, n, n))[0, 0, :, 8:-8, n // 2 - 4 : n // 2 + 4]
    finest = system.scale_of == system.scales - 1
    energy = (c[finest].double() ** 2).sum(dim=(1, 2))
    best = system.direction_of[finest][energy.argmax()]
    assert float(best) == 0.0
    assert float(energy.max() / energy.sum()) > 0.9


# -- realness -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 48), (33, 20)])
def test_filters_have_real_spatial_responses(size: tuple[int, int]) -> None:
    system = shearlet_system(*size, dtype=torch.float64)
    psi = system.filters
    kernels = torch.fft.ifft2(psi)
    assert float(kernels.imag.abs().max()) < 1e-14 * float(kernels.real.abs().max()) + 1e-16
    mirrored = torch.roll(torch.flip(psi, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    torch.testing.assert_close(psi, mirrored, rtol=0, atol=0)  # even: psi_hat(-xi) = psi_hat(xi)
    assert not system.forward(torch.rand(1, 1, *size, dtype=torch.float64)).is_complex()


# -- gradients ------------------------------------------------------------------------------


def test_gradcheck_forward_and_inverse() -> None:
    system = shearlet_system(16, 20, dtype=torch.float64)
    x = torch.randn(1, 2, 16, 20, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 1, 49, 16, 20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(system.forward, (x,), fast_mode=True)
    assert torch.autograd.gradcheck(system.inverse, (c,), fast_mode=True)


def test_gradcheck_full_jacobian_small_system() -> None:
    system = ShearletSystem(6, 9, scales=2, directions=(4, 4), dtype=torch.float64)
    x = torch.randn(1, 1, 6, 9, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 1, 9, 6, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(system.forward, (x,))
    assert torch.autograd.gradcheck(system.inverse, (c,))


# -- cache ----------------------------------------------------------------------------------


def test_cache_returns_same_object() -> None:
    a = shearlet_system(24, 40)
    assert shearlet_system(24, 40) is a
    assert shearlet_system(24, 40, 4, (8, 8, 16, 16), "cpu", torch.float32) is a
    assert shearlet_system(40, 24) is not a
    assert shearlet_system(24, 40, dtype=torch.float64) is not a


# -- input validation -----------------------------------------------------------------------


def test_bad_inputs_raise_with_argument_name() -> None:
    system = shearlet_system(16, 20)
    with pytest.raises(ValueError, match=r"x: expected spatial size 16x20.*got \(1, 1, 20, 16\)"):
        system.forward(torch.rand(1, 1, 20, 16))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, C, H, W\)"):
        system.forward(torch.rand(16, 20))
    with pytest.raises(TypeError, match="x:"):
        system.forward(torch.ones(1, 1, 16, 20, dtype=torch.long))
    with pytest.raises(ValueError, match=r"c: expected shape \(B, C, 49, 16, 20\)"):
        system.inverse(torch.rand(1, 1, 48, 16, 20))
    with pytest.raises(ValueError, match="c: expected spatial size"):
        system.inverse(torch.rand(1, 1, 49, 16, 21))
    with pytest.raises(ValueError, match="directions: expected one entry per scale"):
        shearlet_system(16, 20, scales=3, directions=(8, 8, 16, 16))
    with pytest.raises(ValueError, match="directions"):
        ShearletSystem(16, 20, scales=2, directions=(8, 0))
    with pytest.raises(ValueError, match="height"):
        ShearletSystem(0, 20)
    with pytest.raises(TypeError, match="width"):
        shearlet_system(16, 20.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtype"):
        ShearletSystem(16, 20, dtype=torch.float16)
