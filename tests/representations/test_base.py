"""The representation protocol: pixels, the shearlet adapter, band statistics."""

from __future__ import annotations

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
    assert torch.autograd.gradcheck(lambda t: rep.inverse([t], (6, 5)), (c,), atol=1e-5, fast_mode=True)


def test_band_statistics_and_masks():
    c = [torch.arange(2 * 1 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 1, 2, 2, 2)]
    (mean, std), = band_statistics(c)
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
