"""CAMs against naive per-image implementations of their papers' formulas, on a tiny net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unmask
from unmask.removal import Constant


def _model() -> unmask.Classifier:
    torch.manual_seed(3)
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
        feature_layer="3",
    )


MODEL = _model()
NET = MODEL.net
X = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
T = [2, 0, 3]
LAYER = 4  # NET[:LAYER] is the feature layer "3" (after the second ReLU)


def _split(i: int, c: int):
    """Image i's activations A (C, h, w) and the gradient G of its logit c, by hand."""
    with torch.enable_grad():
        z = MODEL.preprocess(X[i : i + 1])
        a = NET[:LAYER](z).detach().requires_grad_(True)
        logit = NET[LAYER:](a)[0, c]
        (g,) = torch.autograd.grad(logit, a)
    return a[0].detach().double(), g[0].double()


def _naive(formula):
    maps = []
    for i, c in enumerate(T):
        a, g = _split(i, c)
        maps.append(formula(a, g, i, c).clamp(min=0))
    return torch.stack(maps)[:, None].float()


def _gradcampp(a, g, i, c):
    C, h, w = a.shape
    cam = torch.zeros(h, w, dtype=torch.float64)
    for k in range(C):
        total = a[k].sum()
        wk = 0.0
        for p in range(h):
            for q in range(w):
                g1 = g[k, p, q]
                den = 2 * g1**2 + total * g1**3
                alpha = g1**2 / den if den != 0 else 0.0
                wk = wk + alpha * max(float(g1), 0.0)
        cam += wk * a[k]
    return cam


def _xgradcam(a, g, i, c):
    return sum(
        (a[k] / a[k].sum() * g[k]).sum() * a[k] if a[k].sum() != 0 else 0 * a[k]
        for k in range(a.shape[0])
    )


def _layercam(a, g, i, c):
    return sum(torch.clamp(g[k], min=0) * a[k] for k in range(a.shape[0]))


def _hirescam(a, g, i, c):
    return sum(g[k] * a[k] for k in range(a.shape[0]))


def _eigencam(a, g, i, c):
    m = a.reshape(a.shape[0], -1).T.numpy()  # (hw, C)
    _, _, vt = np.linalg.svd(m, full_matrices=False)
    proj = m @ vt[0]
    if proj.sum() < 0:
        proj = -proj
    return torch.from_numpy(proj.reshape(a.shape[1:]))


@pytest.mark.parametrize(
    "name,formula",
    [
        ("gradcam++", _gradcampp),
        ("xgradcam", _xgradcam),
        ("layercam", _layercam),
        ("hirescam", _hirescam),
        ("eigencam", _eigencam),
    ],
)
def test_gradient_cams_equal_their_formulas(name, formula):
    e = unmask.explain(MODEL, X, name, target=T)
    ref = _naive(formula)
    torch.testing.assert_close(e.extras["cam"], ref, rtol=1e-4, atol=1e-6)
    up = F.interpolate(ref, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(e.saliency, up, rtol=1e-4, atol=1e-6)


def _prob(img: torch.Tensor, c: int) -> float:
    return float(torch.softmax(MODEL(img[None]), 1)[0, c])


def test_scorecam_equals_its_formula():
    """α_k = p_c(x ⊙ H_k + fill ⊙ (1 - H_k)) - p_c(fill), H_k = minmax(upsample(A_k))."""
    e = unmask.explain(MODEL, X, "scorecam", target=T, batch_size=7)
    fill = torch.tensor([0.485, 0.456, 0.406])[:, None, None].expand(3, 16, 16)
    with torch.no_grad():
        maps = []
        for i, c in enumerate(T):
            a, _ = _split(i, c)
            base = _prob(fill, c)
            cam = torch.zeros(a.shape[1:], dtype=torch.float64)
            for k in range(a.shape[0]):
                up = F.interpolate(
                    a[k][None, None].float(), size=(16, 16), mode="bilinear", align_corners=False
                )[0, 0]
                if up.max() > up.min():
                    hk = (up - up.min()) / (up.max() - up.min())
                    cam += (_prob(X[i] * hk + fill * (1 - hk), c) - base) * a[k]
            maps.append(cam.clamp(min=0))
    torch.testing.assert_close(
        e.extras["cam"], torch.stack(maps)[:, None].float(), rtol=1e-4, atol=1e-6
    )


def test_scorecam_takes_any_removal():
    e = unmask.explain(MODEL, X[:1], "scorecam", target=1, removal=Constant("black"))
    assert e.params["removal"] == "black"
    mean = unmask.explain(MODEL, X[:1], "scorecam", target=1)
    assert not torch.allclose(e.saliency, mean.saliency)


def test_ablationcam_equals_its_formula():
    """α_k = (y_c - y_c^k) / y_c with y_c^k the logit when channel k is zeroed."""
    e = unmask.explain(MODEL, X, "ablationcam", target=T, batch_size=4)
    maps = []
    with torch.no_grad():
        for i, c in enumerate(T):
            a, _ = _split(i, c)
            y = float(NET[LAYER:](a[None].float())[0, c])
            cam = torch.zeros(a.shape[1:], dtype=torch.float64)
            for k in range(a.shape[0]):
                ablated = a.clone().float()
                ablated[k] = 0
                yk = float(NET[LAYER:](ablated[None])[0, c])
                cam += (y - yk) / y * a[k]
            maps.append(cam.clamp(min=0))
    torch.testing.assert_close(
        e.extras["cam"], torch.stack(maps)[:, None].float(), rtol=1e-4, atol=1e-6
    )


def test_explain_each_equals_separate_calls():
    for name in ("scorecam", "ablationcam"):
        each = unmask.explain_each(MODEL, X, [T, 1], name)
        for e, t in zip(each, [T, 1], strict=True):
            single = unmask.explain(MODEL, X, name, target=t)
            torch.testing.assert_close(e.saliency, single.saliency)


def test_options_relu_normalise():
    raw = unmask.explain(MODEL, X, "gradcam", target=T, relu=False)
    assert float(raw.extras["cam"].min()) < 0  # CWOX's Grad-CAM: signed
    norm = unmask.explain(MODEL, X, "gradcam", target=T, normalise=True)
    flat = norm.saliency.flatten(1)
    torch.testing.assert_close(flat.min(1).values, torch.zeros(3))
    torch.testing.assert_close(flat.max(1).values, torch.ones(3))
    assert norm.extras["cam"].shape == (3, 1, 8, 8)


def test_layer_defaults_to_feature_layer_and_takes_a_name():
    a = unmask.explain(MODEL, X, "gradcam", target=T)
    b = unmask.explain(MODEL, X, "gradcam", target=T, layer="3")
    torch.testing.assert_close(a.saliency, b.saliency)
    c = unmask.explain(MODEL, X, "gradcam", target=T, layer="1")
    assert c.extras["cam"].shape == (3, 1, 16, 16)
