"""unmask.metrics.compat against saliency_maps_metrics 0.0.26 itself, on the same inputs.

Where the definitions coincide the numbers agree to 1e-5. Where unmask fixes a defect, the test
shows the difference and the case where both agree (e.g. per-image normalisation: a batch of
one).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unmask.metrics import compat

sm_single = pytest.importorskip("saliency_maps_metrics.single_step_metrics")
sm_multi = pytest.importorskip("saliency_maps_metrics.multi_step_metrics")

TOL = 1e-5


@pytest.fixture(autouse=True)
def _numpy_trapz(monkeypatch):
    """0.0.26 calls np.trapz, removed in NumPy 2."""
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def softmax_net(seed: int = 0) -> torch.nn.Module:
    """A small CNN with softmax output whose probabilities move with the image content."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(3),
        torch.nn.Flatten(),
        torch.nn.Linear(54, 5),
        torch.nn.Softmax(dim=1),
    )
    with torch.no_grad():
        net[4].weight.mul_(40)
    return net.eval()


def inputs(size: int, map_size: int, seed: int = 1, batch: int = 4):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=gen)
    # maps with different ranges per image, so that whole-batch and per-image normalisation differ
    e = torch.rand(batch, 1, map_size, map_size, generator=gen) * torch.arange(
        1, batch + 1
    ).reshape(-1, 1, 1, 1)
    return x, e


CASES = [(32, 8), (28, 28)]  # 8x8 maps on 32x32 images, and maps at image resolution

MULTI = [
    ("Deletion", {}),
    ("Insertion", {}),
    ("Deletion", {"data_replace_method": "blur"}),
    ("Insertion", {"data_replace_method": "black"}),
    ("Deletion", {"cumulative": False}),
    ("Insertion", {"cumulative": False}),
    ("Deletion", {"max_step_nb": 16, "batch_size": 3}),
    ("Insertion", {"bound_max_step": False}),
]


def _ref(name, kw):
    mod = sm_multi if name in ("Deletion", "Insertion") else sm_single
    return getattr(mod, name)(**kw)


def _close(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert float(b[k]) == pytest.approx(float(a[k]), abs=TOL, nan_ok=True), (k, a, b)


# one pixel per step at 28x28 would be 784 forward passes per image: unbounded runs at 8x8 only
MULTI_CASES = [
    (name, kw, size, map_size)
    for name, kw in MULTI
    for size, map_size in CASES
    if kw.get("bound_max_step", True) or map_size == 8
]


@pytest.mark.parametrize(("name", "kw", "size", "map_size"), MULTI_CASES)
def test_multistep_equals_reference(name, kw, size, map_size):
    net = softmax_net()
    x, e = inputs(size, map_size)
    target = torch.tensor([0, 1, 2, 4])
    ref = _ref(name, kw)(net, x, e, target)
    ours = getattr(compat, name)(**kw)(net, x, e, target)
    _close(ref, ours)
    assert isinstance(ours[next(iter(ours))], np.float64)


@pytest.mark.parametrize(("size", "map_size"), CASES)
@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("IIC_AD", {}),
        ("ADD", {}),
        ("IIC_AD", {"data_replace_method": "blur"}),
        ("ADD", {"data_replace_method": "blur"}),
    ],
)
def test_single_step_per_image_normalisation(name, kw, size, map_size):
    """Batch of one: identical. Batch of four: ours = mean of the per-image reference values,
    and differs from the reference's whole-batch normalisation."""
    net = softmax_net()
    x, e = inputs(size, map_size)
    target = torch.tensor([0, 1, 2, 4])
    ours = getattr(compat, name)(**kw)
    singles = []
    for i in range(4):
        ref_i = _ref(name, kw)(net, x[i : i + 1], e[i : i + 1], target[i : i + 1])
        ours_i = ours(net, x[i : i + 1], e[i : i + 1], target[i : i + 1])
        _close(ref_i, ours_i)
        singles.append(ref_i)
    batch = ours(net, x, e, target)
    _close({k: np.mean([s[k] for s in singles]) for k in batch}, batch)
    # per image: the perturbed scores differ from the whole-batch normalisation of 0.0.26, and
    # unmask's per_image=False reproduces it
    from unmask.metrics.compat import _substrate, _wrap
    from unmask.metrics.single_step import single_step_scores

    ref_s, ref_masked = _ref(name, kw).compute_scores(net, x, e, target)
    clf, score = _wrap(net, x)
    common = {
        "removal": _substrate(kw.get("data_replace_method", "black")),
        "replace_salient": name == "ADD",
        "clamp": False,
        "score": score,
    }
    s, p_batch, _ = single_step_scores(clf, x, e, target, per_image=False, **common)
    np.testing.assert_allclose(s.numpy(), ref_s, atol=TOL, rtol=0)
    np.testing.assert_allclose(p_batch.numpy(), ref_masked, atol=TOL, rtol=0)
    _, p_image, _ = single_step_scores(clf, x, e, target, per_image=True, **common)
    assert float((p_image - p_batch).abs().max()) > 1e-3


def test_single_step_identical_when_maps_share_a_range():
    net = softmax_net()
    x, e = inputs(32, 8)
    e = e / e.flatten(1).max(1).values.reshape(-1, 1, 1, 1)
    e[:, :, 0, 0] = 0.0  # every map spans exactly [0, 1]: batch and per-image ranges coincide
    e[:, :, 0, 1] = 1.0
    for name in ("IIC_AD", "ADD"):
        _close(_ref(name, {})(net, x, e, None), getattr(compat, name)()(net, x, e, None))


def test_default_target_top1_of_the_clean_image():
    net = softmax_net()
    x, e = inputs(32, 8)
    with torch.no_grad():
        top1 = net(x).argmax(1)
    # deletion starts from the clean image: both packages pick the same class
    _close(sm_multi.Deletion()(net, x, e, None), compat.Deletion()(net, x, e, None))
    # insertion: 0.0.26 takes the top-1 of the blurred start image; we take the clean image's
    ours = compat.Insertion()(net, x, e, None)
    _close(sm_multi.Insertion()(net, x, e, top1), ours)
    with torch.no_grad():
        blurred_top1 = net(sm_multi.Insertion().get_masking_data(x)).argmax(1)
    assert not torch.equal(blurred_top1, top1)  # so the difference is real on these inputs
    assert abs(float(sm_multi.Insertion()(net, x, e, None)["iauc"]) - float(ours["iauc"])) > 1e-4


def test_pixel_count_not_a_multiple_of_the_step():
    """32x32 maps: 1024 // 196 = 5 pixels per step; 0.0.26 crashes on the last step, we finish
    with a 4-pixel step. The first 204 points are the same."""
    net = softmax_net()
    x, e = inputs(32, 32, batch=2)
    with pytest.raises(RuntimeError):
        sm_multi.Deletion()(net, x, e, torch.tensor([0, 1]))
    out = compat.Deletion()(net, x, e, torch.tensor([0, 1]))
    assert np.isfinite(out["dauc"]) and np.isfinite(out["dc"])
    # steps 1..204 are 0.0.26's own masks (its compute_mask works until k exceeds 1024)
    from unmask.metrics.compat import _wrap
    from unmask.metrics.deletion import deletion_curve

    clf, score = _wrap(net, x)
    target = torch.tensor([0, 1])
    curve = deletion_curve(clf, x, e, target, score=score)
    assert curve.scores.shape == (2, 206)
    assert curve.fractions[-2] == pytest.approx(1020 / 1024) and curve.fractions[-1] == 1
    ref = sm_multi.Deletion()
    for i in range(2):
        for step in (1, 57, 204):
            mask, _ = ref.compute_mask(e[i : i + 1], x.shape, 5 * step, 5)
            with torch.no_grad():
                expected = net(x[i : i + 1] * mask)[0, target[i]]
            assert float(curve.scores[i, step]) == pytest.approx(float(expected), abs=TOL)
    with torch.no_grad():
        assert float(curve.scores[0, -1]) == pytest.approx(
            float(net(torch.zeros_like(x[:1]))[0, 0]), abs=TOL
        )


def test_masking_data_argument():
    net = softmax_net()
    x, e = inputs(32, 8)
    t = torch.tensor([0, 1, 2, 4])
    zeros = torch.zeros_like(x)
    _close(
        sm_multi.Insertion()(net, x, e, t, masking_data=zeros),
        compat.Insertion()(net, x, e, t, masking_data=zeros),
    )
    _close(
        compat.Insertion(data_replace_method="black")(net, x, e, t),
        compat.Insertion()(net, x, e, t, masking_data=zeros),
    )
    grey = torch.full_like(x, 0.5)
    _close(
        sm_single.ADD()(net, x[:1], e[:1], t[:1], data_to_replace_with=grey[:1]),
        compat.ADD()(net, x[:1], e[:1], t[:1], data_to_replace_with=grey[:1]),
    )


def test_compat_arguments_and_errors():
    d = compat.Deletion()
    assert (d.data_replace_method, d.bound_max_step, d.batch_size, d.max_step_nb, d.cumulative) == (
        "black",
        True,
        20,
        196,
        True,
    )
    assert compat.Insertion().data_replace_method == "blur"
    assert compat.IIC_AD().data_replace_method == "black"
    with pytest.raises(ValueError, match="data_replace_method: expected one of 'black', 'blur'"):
        compat.ADD(data_replace_method="noise")
    with pytest.raises(TypeError, match="data_shape / explanation_shape"):
        compat.Deletion((1, 3, 32, 32), (1, 1, 8, 8))
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        compat.Deletion()(lambda t: t, torch.rand(1, 3, 8, 8), torch.rand(1, 1, 2, 2), None)
    with pytest.raises(ValueError, match="saliency: expected one map per image"):
        compat.Deletion()(softmax_net(), torch.rand(2, 3, 8, 8), torch.rand(1, 1, 2, 2), None)


def test_accepts_an_unmask_classifier(region_model, region_images):
    """An unmask Classifier (logits) is scored by its softmax: same as the module + softmax."""
    e = torch.rand(2, 1, 4, 4)
    probs = torch.nn.Sequential(region_model.net, torch.nn.Softmax(dim=1))
    _close(
        sm_multi.Deletion()(probs, region_images, e, torch.tensor([1, 1])),
        compat.Deletion()(region_model, region_images, e, torch.tensor([1, 1])),
    )
