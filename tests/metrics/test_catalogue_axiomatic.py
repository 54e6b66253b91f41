"""Axiomatic metrics of the catalogue: completeness and non-sensitivity (known answers on the
region model, a naive loop)."""

from __future__ import annotations

import pytest
import torch

from unmask.api import make_explainer
from unmask.metrics import METRICS
from unmask.metrics.axiomatic import completeness, input_invariance, non_sensitivity, shifted_model
from unmask.models import Classifier
from unmask.removal import Constant
from unmask.testing import RegionModel, region_box, region_images, region_mask, region_model


def exact_attribution(x: torch.Tensor) -> torch.Tensor:
    """Class 1's exact attribution against black on the (linear) region model, summed over
    channels: w_c x_c / |box| inside the box."""
    w = RegionModel().weight.detach()
    top, left, bottom, right = region_box(*x.shape[-2:])
    a = torch.zeros(x.shape[0], 1, *x.shape[-2:])
    box = x[:, :, top:bottom, left:right]
    a[..., top:bottom, left:right] = (box * w.view(1, 3, 1, 1)).sum(1, keepdim=True) / (
        (bottom - top) * (right - left)
    )
    return a


def test_completeness_of_the_exact_attribution_and_of_integrated_gradients_is_zero():
    model, x = region_model(), region_images(2, 32)
    assert completeness(model, x, exact_attribution(x), target=1).max() < 1e-5
    ig = make_explainer(model, method="integrated_gradients").explain(x, target=1)
    assert completeness(model, x, ig).max() < 1e-5
    # half the attribution misses half of the logit change
    gap = completeness(model, x, exact_attribution(x) / 2, target=1)
    change = model(x)[:, 1].detach().double() - model(torch.zeros_like(x))[:, 1].detach().double()
    torch.testing.assert_close(gap, change.abs() / 2, atol=1e-5, rtol=1e-5)
    assert METRICS.get("completeness").build().higher_is_better is False


def test_completeness_depends_on_the_baseline():
    model, x = region_model(), region_images(1, 32)
    # white and gray leave the region model's logit where black does (w sums to 0); red does not
    white = completeness(model, x, exact_attribution(x), target=1, removal=Constant("white"))
    assert float(white) < 1e-5
    red = completeness(model, x, exact_attribution(x), target=1, removal=Constant((1.0, 0, 0)))
    torch.testing.assert_close(float(red), 4.0, atol=1e-5, rtol=0)  # gain · (1 - 0 - 0)


def test_non_sensitivity_of_the_box_map_is_zero_and_of_a_random_map_the_outside_blocks():
    model, x = region_model(), region_images(2, 32)
    box = region_mask(32, 32).float().expand(2, 1, 32, 32)
    assert non_sensitivity(model, x, box, patch=8).tolist() == [0.0, 0.0]
    rand = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) + 0.1
    # 16 blocks of 8x8; the model reads one (the box): 15 blocks have attribution but no effect
    assert non_sensitivity(model, x, rand, patch=8).tolist() == [15.0, 15.0]
    # a map that is zero on the box: 15 mismatches outside, plus the box (zero, yet it matters)
    assert non_sensitivity(model, x, rand * (1 - box), patch=8).tolist() == [16.0, 16.0]


def test_non_sensitivity_equals_a_naive_loop():
    model, x = region_model(), region_images(1, 16, seed=2)
    s = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    s[..., :8, :] = 0
    got = non_sensitivity(model, x, s, patch=4, samples=3, seed=5)
    gen = torch.Generator().manual_seed(5)
    noise = torch.rand(3, 3, 16, 16, generator=gen, dtype=torch.float64).float()
    count = 0
    for i in range(4):  # the features, row-major
        for j in range(4):
            m = torch.zeros(1, 1, 16, 16)
            m[..., 4 * i : 4 * i + 4, 4 * j : 4 * j + 4] = 1
            zero = bool(s[..., 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].abs().max() < 1e-5)
            with torch.no_grad():
                probs = [
                    float(model(x * (1 - m) + noise[k : k + 1] * m).softmax(1)[0, 1])
                    for k in range(3)
                ]
            flat = torch.tensor(probs, dtype=torch.float64).var(unbiased=False) < 1e-5
            count += zero != bool(flat)
    assert float(got) == count


def test_errors_name_the_argument():
    model, x = region_model(), region_images(1, 16)
    with pytest.raises(ValueError, match="^eps"):
        non_sensitivity(model, x, torch.rand(1, 1, 16, 16), eps=-1)
    with pytest.raises(ValueError, match="^patch"):
        non_sensitivity(model, x, torch.rand(1, 1, 16, 16), patch=0)
    with pytest.raises(ValueError, match="^score"):
        completeness(model, x, torch.rand(1, 1, 16, 16), score="odds")


def red_model():
    """The region model reading only the red channel (weights (gain, 0, 0)): a constant shift
    of the input changes its input x gradient (the default model's weights sum to 0)."""
    net = RegionModel()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([4.0, 0.0, 0.0]))
    return Classifier(
        net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=None, class_names=["no", "red"], name="red"
    )


def test_the_shifted_model_compensates_the_shift():
    model, x = red_model(), region_images(2, 32, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(shifted_model(model, -0.1)(x - 0.1), model(x))


def test_input_invariance_known_answers():
    model, x = red_model(), region_images(2, 32, seed=1)
    # the gradient does not see a compensated shift
    assert input_invariance(model, x, make_explainer(model, "gradient")).tolist() == [0.0, 0.0]
    # input x gradient moves by c·w_r/|box| on the box: relative change |c| / rms(red on box)
    c = torch.stack([-xi.min() if xi.min() > 1 - xi.max() else 1 - xi.max() for xi in x])
    top, left, bottom, right = region_box(32, 32)
    rms = x[:, 0, top:bottom, left:right].pow(2).mean(dim=(1, 2)).sqrt()
    got = input_invariance(model, x, make_explainer(model, "input_x_gradient"))
    torch.testing.assert_close(got, (c.abs() / rms).double(), atol=1e-5, rtol=1e-4)
    # an explicit shift, and one that leaves [0, 1]
    got = input_invariance(model, x, make_explainer(model, "input_x_gradient"), shift=0.04)
    torch.testing.assert_close(got, (0.04 / rms).double(), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="^shift: x \\+ 0.5 leaves"):
        input_invariance(model, x, make_explainer(model, "gradient"), shift=0.5)
    with pytest.raises(TypeError, match="^explainer: input_invariance rebuilds"):
        input_invariance(model, x, lambda x, t: x[:, :1])
