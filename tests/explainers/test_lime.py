"""LIME: segment weights equal a direct weighted-ridge solve; SLIC defaults; LIME-G."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unmask
from unmask.explainers.lime import Lime, lime_kernel, sample_on_off, segment_masks, slic_segments
from unmask.removal import Constant, Inpaint


def _ridge_numpy(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float):
    """Closed-form weighted ridge with an unpenalised intercept (scikit-learn's Ridge)."""
    a = np.hstack([np.ones((len(z), 1)), z])
    penalty = alpha * np.eye(a.shape[1])
    penalty[0, 0] = 0.0
    sol = np.linalg.solve(a.T @ (w[:, None] * a) + penalty, a.T @ (w * y))
    pred = a @ sol
    ybar = np.average(y, weights=w)
    r2 = 1 - np.sum(w * (y - pred) ** 2) / np.sum(w * (y - ybar) ** 2)
    return sol[1:], sol[0], r2


def _cosine_kernel_numpy(z: np.ndarray, width: float) -> np.ndarray:
    ones = np.ones(z.shape[1])
    norms = np.linalg.norm(z, axis=1)
    cos = np.where(norms > 0, z @ ones / np.maximum(norms, 1e-300) / np.sqrt(len(ones)), 0.0)
    return np.sqrt(np.exp(-((1 - cos) ** 2) / width**2))


def test_weights_equal_direct_ridge_solve(region_model, region_images):
    x = region_images
    explainer = Lime(region_model, n_segments=20, samples=120, seed=3)
    e = explainer.explain(x, target=[1, 0])
    for i in range(2):
        s_b = int(e.extras["num_segments"][i])
        z = e.extras["samples"][i, :, :s_b].double().numpy()
        y = e.extras["sample_scores"][i].double().numpy()
        w = _cosine_kernel_numpy(z, 0.25)
        coef, intercept, r2 = _ridge_numpy(z, y, w, alpha=1.0)
        np.testing.assert_allclose(e.extras["weights"][i, :s_b].numpy(), coef, rtol=1e-4, atol=1e-6)
        assert torch.all(e.extras["weights"][i, s_b:] == 0)  # padding convention
        np.testing.assert_allclose(float(e.extras["intercept"][i]), intercept, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(e.extras["score"][i]), r2, rtol=1e-4, atol=1e-6)
        # the map paints each segment with its weight
        seg = e.extras["segments"][i]
        torch.testing.assert_close(e.saliency[i, 0], e.extras["weights"][i][seg])


def test_sample_scores_are_the_model_on_the_masked_images(region_model, region_images):
    """Re-score a few samples by hand: the off superpixels filled with the ImageNet mean."""
    x = region_images[:1]
    e = Lime(region_model, n_segments=20, samples=30, seed=1).explain(x, target=1)
    seg = e.extras["segments"][0]
    z = e.extras["samples"][0]
    assert torch.all(z[0])  # first sample keeps everything
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    for n in (0, 5, 17):
        off = ~z[n][seg]  # (H, W)
        image = torch.where(off, mean, x[0])
        p = torch.softmax(region_model(image[None]), 1)[0, 1]
        torch.testing.assert_close(e.extras["sample_scores"][0, n], p)


def test_kernel_and_sampling():
    gen = torch.Generator().manual_seed(0)
    z = sample_on_off(500, 12, gen)
    assert z.shape == (500, 12) and z[0].all()
    assert 0.4 < z[1:].float().mean() < 0.6
    z[1] = False  # the all-off sample: cosine distance 1
    k = lime_kernel(z[None], torch.ones(1, 12, dtype=torch.bool), 0.25)[0]
    np.testing.assert_allclose(
        k.numpy(), _cosine_kernel_numpy(z.double().numpy(), 0.25), rtol=1e-12
    )
    assert float(k[0]) == 1.0 and float(k[1]) == pytest.approx(np.exp(-8.0))


def test_segment_masks_gather():
    seg = torch.tensor([[[0, 0, 1], [2, 2, 1]]])
    off = torch.tensor([[False, True, False]])
    m = segment_masks(off, seg)
    assert m.shape == (1, 1, 2, 3)
    assert m[0, 0].tolist() == [[0, 0, 1], [0, 0, 1]]


def test_slic_defaults_are_the_papers(region_images):
    e = Lime.__init__.__kwdefaults__
    assert (
        e["n_segments"],
        e["compactness"],
        e["sigma"],
        e["samples"],
        e["kernel_width"],
        e["alpha"],
        e["score"],
    ) == (50, 30.0, 3.0, 1000, 0.25, 1.0, "prob")
    from skimage.segmentation import slic

    x = region_images[:1]
    ours = slic_segments(x)[0].numpy()
    ref = slic(
        x[0].permute(1, 2, 0).double().numpy(),
        n_segments=50,
        compactness=30,
        sigma=3,
        start_label=0,
        channel_axis=-1,
    )
    # same partition (labels relabelled consecutively)
    _, ref_relabelled = np.unique(ref, return_inverse=True)
    np.testing.assert_array_equal(ours, ref_relabelled.reshape(ref.shape))


def test_default_removal_and_lime_g(region_model):
    assert repr(Lime(region_model).removal) == repr(Constant("mean"))
    g = unmask.make_explainer(region_model, "lime-g")
    assert isinstance(g, Lime) and isinstance(g.removal, Inpaint) and g.removal.method == "telea"


def test_lime_g_differs_and_uses_the_inpainter(region_model, region_images):
    x = region_images[:1]
    a = unmask.explain(region_model, x, "lime", n_segments=20, samples=40, target=1)
    b = unmask.explain(region_model, x, "lime-g", n_segments=20, samples=40, target=1)
    assert torch.equal(a.extras["samples"], b.extras["samples"])  # same patterns, other fill
    assert not torch.allclose(a.extras["sample_scores"], b.extras["sample_scores"])


def test_user_segments(region_model, region_images):
    x = region_images
    grid = (torch.arange(32)[:, None] // 8) * 4 + torch.arange(32)[None, :] // 8  # 4x4 blocks
    e = Lime(region_model, segments=grid * 10, samples=200).explain(
        x, target=1
    )  # labels relabelled
    assert e.extras["segments"].shape == (2, 32, 32)
    assert e.extras["num_segments"].tolist() == [16, 16]
    # the model only sees block (1, 1): the largest weight is there
    assert e.extras["weights"].argmax(1).tolist() == [5, 5]
    f = Lime(region_model, samples=200).explain(x, target=1, segments=grid.expand(2, 32, 32))
    torch.testing.assert_close(e.saliency, f.saliency)
    with pytest.raises(ValueError, match="segments"):
        Lime(region_model, segments=torch.zeros(3, 32, 32, dtype=torch.long)).explain(x)
    with pytest.raises(TypeError, match="segments"):
        Lime(region_model, segments=torch.zeros(32, 32)).explain(x)


def test_evaluations_counted(region_model, region_images):
    """Exactly B x N model evaluations when the targets are given (the benchmark reads these)."""
    explainer = Lime(region_model, n_segments=20, samples=37, batch_size=8)
    explainer.explain(region_images, target=1)
    assert explainer.scorer.evaluations == 2 * 37
