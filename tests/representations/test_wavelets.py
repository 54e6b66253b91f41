"""Wavelets (ptwt) as a maskable representation.

Structure, round trip, PyWavelets reference, gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from unmask.representations import Wavelets


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (64, 40)])
def test_round_trip(size):
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    w = Wavelets()
    assert (w.inverse(w.forward(x), size) - x).abs().max() <= 1e-5


def test_band_structure_default_db3_j5_zero():
    w = Wavelets()
    assert (w.wavelet, w.levels, w.mode) == ("db3", 5, "zero")
    c = w.forward(torch.rand(1, 3, 64, 64))
    assert len(c) == 6
    assert c[0].shape[:3] == (1, 3, 1)
    assert all(g.shape[:3] == (1, 3, 3) for g in c[1:])
    assert [g.shape[-1] for g in c[1:]] == sorted(g.shape[-1] for g in c[1:])  # coarse to fine


def test_matches_pywavelets():
    """Independent reference: PyWavelets' wavedec2 with the same wavelet, levels and zero mode."""
    x = np.random.default_rng(0).random((40, 36))
    with pytest.warns(UserWarning, match="boundary effects"):  # 5 levels of db3 on 40x36
        ref = pywt.wavedec2(x, "db3", mode="zero", level=5)
    ours = Wavelets().forward(torch.from_numpy(x)[None, None])
    np.testing.assert_allclose(ours[0][0, 0, 0].numpy(), ref[0], atol=1e-10)
    for group, details in zip(ours[1:], ref[1:], strict=True):
        for k in range(3):
            np.testing.assert_allclose(group[0, 0, k].numpy(), details[k], atol=1e-10)


def test_gradcheck_forward_and_inverse():
    w = Wavelets(levels=2)
    x = torch.rand(1, 1, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tuple(w.forward(t)), (x,), fast_mode=True)
    coeffs = [c.detach().requires_grad_(True) for c in w.forward(x.detach())]
    assert torch.autograd.gradcheck(
        lambda *c: w.inverse(list(c), (7, 6)), tuple(coeffs), fast_mode=True
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="^wavelet: "):
        Wavelets("nope")
    with pytest.raises(ValueError, match="^mode: "):
        Wavelets(mode="nope")
    with pytest.raises(TypeError, match="^levels: "):
        Wavelets(levels=2.5)
    w = Wavelets()
    with pytest.raises(ValueError, match="^coeffs: "):
        w.inverse(w.forward(torch.rand(1, 1, 32, 32))[:3], (32, 32))
