"""CP scores against values computed by hand on a small example."""

from __future__ import annotations

import math

import pytest
import torch

import unmask
from unmask.metrics.cp import cp_score, information, masked_image
from unmask.registry import METRICS
from unmask.representations import Pixels, Wavelets


class _MeanNet(torch.nn.Module):
    """logits = [0, 10 · mean(x)]: p_1 = sigmoid(10 · mean(x))."""

    def forward(self, x):
        s = 10 * x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(s), s], dim=1)


@pytest.fixture
def mean_model():
    return unmask.Classifier.wrap(
        _MeanNet(), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=None, class_names=["a", "b"]
    )


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


def _example():
    x = torch.full((1, 3, 2, 2), 0.5)  # 12 values of 0.5: sum 6, entropy log 12
    m = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).reshape(
        1, 1, 2, 2
    )  # keeps 6 values: sum 3, entropy log 6
    return x, masked_image(x, m)


def test_cp_scores_by_hand(mean_model):
    x, x_hat = _example()
    ratio = _sigmoid(2.5) / _sigmoid(5.0)  # mean 0.25 vs 0.5
    assert float(cp_score(mean_model, x, x_hat, 1, info="l1_pixel")) == pytest.approx(
        ratio / (3 / 6), rel=1e-6
    )
    assert float(cp_score(mean_model, x, x_hat, 1, info="l1")) == pytest.approx(
        ratio / (3 / 6), rel=1e-6
    )
    assert float(cp_score(mean_model, x, x_hat, 1, info="entropy")) == pytest.approx(
        ratio / (math.log(6) / math.log(12)), rel=1e-6
    )


def test_target_class_not_top_class(mean_model):
    """The score uses the target: class 0 has p = 1 - sigmoid(·)."""
    x, x_hat = _example()
    ratio = (1 - _sigmoid(2.5)) / (1 - _sigmoid(5.0))
    assert float(cp_score(mean_model, x, x_hat, 0, info="l1_pixel")) == pytest.approx(
        ratio * 2, rel=1e-6
    )


def test_information_measures():
    c = [torch.tensor([[3.0, -4.0, 0.0]])]
    assert float(information(c, "l1")) == 7.0
    q = torch.tensor([9 / 25, 16 / 25])
    assert float(information(c, "entropy")) == pytest.approx(float(-(q * q.log()).sum()))


def test_coefficient_domain_uses_given_coefficients(mean_model):
    """With masked coefficients m ⊙ T(x) given they are what is counted (not T(x̂))."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rep = Wavelets(levels=2)
    coeffs = rep.forward(x)
    kept = [c * 0.5 for c in coeffs]  # halves every coefficient: l1 ratio 1/2, entropy ratio 1
    x_hat = rep.inverse(kept, (16, 16))
    p_ratio = float(mean_model(x_hat).softmax(1)[0, 1] / mean_model(x).softmax(1)[0, 1])
    cp = cp_score(mean_model, x, x_hat, 1, info="l1", representation=rep, coefficients=kept)
    assert float(cp) == pytest.approx(p_ratio * 2, rel=1e-5)
    cp_e = cp_score(mean_model, x, x_hat, 1, info="entropy", representation=rep, coefficients=kept)
    assert float(cp_e) == pytest.approx(p_ratio, rel=1e-5)
    # without coefficients, T(x̂) is used: the same here, since the DWT is invertible
    assert float(cp_score(mean_model, x, x_hat, 1, info="l1", representation=rep)) == pytest.approx(
        float(cp), rel=1e-4
    )


def test_registered_and_batched(mean_model):
    x, x_hat = _example()
    for name in ("cp_l1_pixel", "cp_l1", "cp_entropy"):
        metric = METRICS.get(name).build(Pixels())
        assert metric.higher_is_better
        out = metric(mean_model, x.repeat(2, 1, 1, 1), x_hat.repeat(2, 1, 1, 1), [1, 1])
        assert out.shape == (2,) and torch.allclose(out[0], out[1])


def test_bad_inputs(mean_model):
    x, x_hat = _example()
    with pytest.raises(ValueError, match="^info: "):
        cp_score(mean_model, x, x_hat, 1, info="nope")
    with pytest.raises(ValueError, match="^x_hat: "):
        cp_score(mean_model, x, x_hat[..., :1], 1)
    with pytest.raises(ValueError, match="^mask: "):
        masked_image(x, torch.full((1, 1, 2, 2), 2.0))
