"""The representation protocol: pixels, the shearlet adapter, band statistics."""

from __future__ import annotations

import pytest
import torch

from unmask.representations import (
    Pixels,
    Representation,
    Shearlets,
    Wavelets,
    apply_mask,
    band_statistics,
    coefficient_count,
    gray,
    ones_mask,
)
from unmask.representations.base import modulated_inverse


def test_all_follow_the_protocol():
    for rep in (Pixels(), Shearlets(), Wavelets()):
        assert isinstance(rep, Representation)


def test_pixels_identity():
    x = torch.rand(2, 3, 5, 7)
    c = Pixels().forward(x)
    assert c[0].shape == (2, 3, 1, 5, 7)
    assert torch.equal(Pixels().inverse(c, (5, 7)), x)


def test_shearlets_any_size_round_trip_and_cache():
    rep = Shearlets()
    x = torch.rand(1, 3, 30, 44)
    c = rep.forward(x)
    assert c[0].shape == (1, 3, 49, 30, 44)
    assert (rep.inverse(c, (30, 44)) - x).abs().max() <= 1e-5
    assert rep.system(30, 44) is rep.system(30, 44)


def test_shearlet_synthesis_adjoint_gradcheck():
    """The custom backward of the synthesis (its adjoint) against finite differences."""
    rep = Shearlets(scales=2, directions=(4, 4))
    c = torch.randn(1, 1, 9, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: rep.inverse([t], (6, 5)), (c,), atol=1e-5, fast_mode=True
    )


@pytest.mark.parametrize("samples, channels", [(4, 1), (3, 3), (1, 1)])
def test_fused_shearlet_modulated_synthesis_matches_generic_path(samples, channels):
    """Shearlets' fused T⁻¹(u ⊙ z_s) (odd and even sample counts, 1 or 3 noise channels, B = 2)
    equals rep.inverse of the products, values and gradients."""
    rep = Shearlets(scales=2, directions=(4, 4))
    u = torch.rand(2, channels, 9, 10, 12, dtype=torch.float64, requires_grad=True)
    z = torch.rand(2, samples, channels, 9, 10, 12, dtype=torch.float64)
    g = torch.randn(2, samples, channels, 10, 12, dtype=torch.float64)
    fused = modulated_inverse(rep, [u], [z], (10, 12))
    generic = rep.inverse([(u.unsqueeze(1) * z).flatten(0, 1)], (10, 12)).unflatten(0, (2, samples))
    torch.testing.assert_close(fused, generic)
    (g_fused,) = torch.autograd.grad(fused, u, g)
    (g_generic,) = torch.autograd.grad(generic, u, g)
    torch.testing.assert_close(g_fused, g_generic)
    small = u[:1, :, :, :6, :5].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: modulated_inverse(rep, [t], [z[:1, :, :, :, :6, :5]], (6, 5)),
        (small,),
        fast_mode=True,
    )


def test_modulated_inverse_falls_back_to_inverse():
    rep = Wavelets(levels=1)
    x = torch.rand(1, 1, 8, 8)
    u = [torch.rand_like(c) for c in rep.forward(x)]
    z = [torch.rand(1, 2, *c.shape[1:]) for c in u]
    out = modulated_inverse(rep, u, z, (8, 8))
    assert out.shape == (1, 2, 1, 8, 8)
    torch.testing.assert_close(
        out[0, 1], rep.inverse([a * b[:, 1] for a, b in zip(u, z, strict=True)], (8, 8))[0]
    )


def test_fused_modulated_synthesis_bad_shapes():
    rep = Shearlets(scales=2, directions=(4, 4))
    with pytest.raises(ValueError, match="^signals: "):
        rep.modulated_inverse([torch.rand(1, 1, 9, 6, 5)], [torch.rand(1, 2, 1, 9, 6, 4)])


def test_band_statistics_and_masks():
    c = [torch.arange(2 * 1 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 1, 2, 2, 2)]
    ((mean, std),) = band_statistics(c)
    assert mean.shape == (2, 1, 2, 1, 1)
    torch.testing.assert_close(mean[0, 0, :, 0, 0], torch.tensor([1.5, 5.5]))
    torch.testing.assert_close(std[0, 0, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]).std())
    m = ones_mask(c)
    assert m[0].shape == (2, 1, 2, 2, 2)
    assert torch.equal(apply_mask(c, m)[0], c[0])
    assert coefficient_count(c) == 8


def test_gray_is_channel_mean_and_commutes_with_transforms():
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(gray(x), x.mean(1, keepdim=True))
    for rep in (Shearlets(), Wavelets()):
        a = rep.forward(gray(x))
        b = [g.mean(1, keepdim=True) for g in rep.forward(x)]
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u, v, atol=1e-5, rtol=0)
