"""Input-gradient methods and Grad-CAM against captum (an independent implementation)."""

from __future__ import annotations

import pytest
import torch

import unmask

captum_attr = pytest.importorskip("captum.attr")

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def _model() -> unmask.Classifier:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 5, 3, padding=1, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(5, 4),
    )
    return unmask.Classifier.wrap(
        net,
        mean=(0.4,) * 3,
        std=(0.3,) * 3,
        input_size=None,
        class_names=list("abcd"),
        feature_layer="2",
    )


MODEL = _model()
X = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
T = [2, 0, 3]


def _close(a, b):
    torch.testing.assert_close(a.detach().float(), b.detach().float(), rtol=1e-5, atol=1e-5)


def test_gradient_is_captum_saliency_max_over_channels():
    e = unmask.explain(MODEL, X, "gradient", target=T)
    ref = captum_attr.Saliency(MODEL).attribute(X.clone(), target=T)  # abs=True by default
    _close(e.extras["attribution"], ref)
    # unmask's choice: the map is the max over colour channels (Simonyan et al.)
    _close(e.saliency, ref.amax(dim=1, keepdim=True))


def test_input_x_gradient_is_captum():
    e = unmask.explain(MODEL, X, "input_x_gradient", target=T)
    ref = captum_attr.InputXGradient(MODEL).attribute(X.clone(), target=T)
    _close(e.extras["attribution"], ref)
    _close(e.saliency, ref.sum(dim=1, keepdim=True))


@pytest.mark.parametrize(
    "rule",
    ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"],
)
def test_integrated_gradients_is_captum(rule):
    e = unmask.explain(
        MODEL, X, "integrated_gradients", target=T, steps=12, rule=rule, batch_size=5
    )
    ref = captum_attr.IntegratedGradients(MODEL).attribute(
        X.clone(), target=T, n_steps=12, method=rule
    )
    if rule == "riemann_trapezoid":
        # the difference: captum's trapezoid weights are 1/n (ends halved, summing to 1 - 1/n);
        # the textbook rule used here has 1/(n-1), so captum's result is (n-1)/n of it
        _close(e.extras["attribution"] * 11 / 12, ref)
    else:
        _close(e.extras["attribution"], ref)


def test_integrated_gradients_blurred_baseline_is_captum_with_that_baseline():
    from unmask.removal import Blur

    blur = Blur(2.0)
    e = unmask.explain(MODEL, X, "integrated_gradients", target=T, steps=8, removal=blur)
    base = blur.fill(X)
    ref = captum_attr.IntegratedGradients(MODEL).attribute(
        X.clone(), baselines=base, target=T, n_steps=8
    )
    _close(e.extras["attribution"], ref)
    assert e.params["removal"] == "blur:2"


def test_integrated_gradients_completeness():
    e = unmask.explain(MODEL, X, "integrated_gradients", target=T, steps=64)
    assert float(e.extras["delta"].abs().max()) < 1e-3


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_smoothgrad_is_captum_noise_tunnel(kind):
    x = X[:1]
    e = unmask.explain(MODEL, x, "smoothgrad", target=1, samples=6, sigma=0.2, kind=kind, seed=7)
    torch.manual_seed(7)  # captum draws its noise from the global generator
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(MODEL)).attribute(
        x.clone(), nt_type=kind, nt_samples=6, stdevs=0.2, target=1
    )
    _close(e.extras["attribution"], ref)


def test_smoothgrad_over_input_x_gradient_is_captum():
    x = X[:1]
    e = unmask.explain(
        MODEL, x, "smoothgrad", target=3, samples=5, sigma=0.1, seed=2, base="input_x_gradient"
    )
    torch.manual_seed(2)
    ref = captum_attr.NoiseTunnel(captum_attr.InputXGradient(MODEL)).attribute(
        x.clone(), nt_samples=5, stdevs=0.1, target=3
    )
    _close(e.extras["attribution"], ref)


@pytest.mark.parametrize("relu", [True, False])
def test_gradcam_is_captum_layer_gradcam(relu):
    e = unmask.explain(MODEL, X, "gradcam", target=T, relu=relu)
    ref = captum_attr.LayerGradCam(MODEL, MODEL.net[2]).attribute(
        X.clone(), target=T, relu_attributions=relu
    )
    _close(e.extras["cam"], ref)
    _close(e.saliency, captum_attr.LayerAttribution.interpolate(ref, (16, 16), "bilinear"))


def test_gradcam_default_relu_differs_from_captum_default():
    """captum's LayerGradCam has no ReLU by default; unmask's gradcam (the paper) has one."""
    e = unmask.explain(MODEL, X, "gradcam", target=T)
    ref = captum_attr.LayerGradCam(MODEL, MODEL.net[2]).attribute(X.clone(), target=T)
    assert float(ref.detach().min()) < 0 <= float(e.extras["cam"].min())
    _close(e.extras["cam"], ref.clamp(min=0))


def test_set_target_differentiates_the_generalised_logit():
    """A cluster target: the gradient is Σ_c p_c/Σp · ∂z_c (CWOX's seed)."""
    e = unmask.explain(MODEL, X[:1], "input_x_gradient", target=[[1, 3]])
    p = torch.softmax(MODEL(X[:1]), 1)[0].detach()
    w = p[[1, 3]] / p[[1, 3]].sum()
    ixg = captum_attr.InputXGradient(MODEL)
    x = X[:1]
    ref = w[0] * ixg.attribute(x.clone(), target=1) + w[1] * ixg.attribute(x.clone(), target=3)
    _close(e.extras["attribution"], ref)
