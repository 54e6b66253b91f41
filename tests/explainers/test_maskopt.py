"""The mask optimiser behind ShearletX, WaveletX, CartoonX and PixelMask."""

from __future__ import annotations

import pytest
import torch

import unmask
from unmask.explainers.maskopt import MaskOptimizer
from unmask.explainers.shearletx import CartoonX, PixelMask, ShearletX, WaveletX
from unmask.registry import spec_of
from unmask.representations import Pixels, Shearlets, Wavelets
from unmask.testing import region_images, region_mask, region_model

SMALL_SHEARLETS = {"scales": 2, "directions": (4, 4)}


def test_paper_defaults():
    model = region_model()
    s = spec_of(ShearletX(model))
    assert (s["l1"], s["spatial"], s["lr"], s["steps"], s["noise_bs"], s["noise"]) == (
        1.0,
        2.0,
        0.1,
        300,
        16,
        "uniform",
    )
    assert s["method"] == "shearletx" and s["noise_source"] == "gray"
    w = spec_of(WaveletX(model))
    assert (w["l1"], w["spatial"], w["lr"], w["steps"], w["noise_bs"]) == (2.0, 10.0, 0.1, 300, 16)
    assert w["representation"] == "wavelets" and str(WaveletX(model).representation) == (
        "Wavelets(wavelet='db3', levels=5, mode='zero')"
    )
    c = spec_of(CartoonX(model))
    assert (c["l1"], c["spatial"], c["steps"], c["lr"], c["noise_bs"]) == (
        20.0,
        0.0,
        2000,
        1e-3,
        64,
    )
    p = spec_of(PixelMask(model))
    assert (p["l1"], p["spatial"], p["representation"]) == (1.0, 0.0, "pixels")
    assert ShearletX(model).representation.directions == (8, 8, 16, 16)


def test_all_ones_mask_reproduces_the_image_with_no_steps_of_change():
    """lr tiny: the mask stays ~1 and x̂ = x (pixels clamped, coefficients never)."""
    x = region_images(1, 16)
    for rep in (Pixels(), Wavelets(levels=2), Shearlets(**SMALL_SHEARLETS)):
        opt = MaskOptimizer(region_model(), rep, l1=0.0, spatial=0.0, steps=1, lr=1e-9, noise_bs=1)
        result = opt.optimize(x, torch.tensor([1]))
        assert torch.allclose(result.image, x, atol=1e-5), rep


def test_mask_in_unit_interval_and_shapes():
    x = region_images(2, 16)
    e = WaveletX(region_model(), steps=5, noise_bs=2, representation="wavelets:levels=2").explain(x)
    assert isinstance(e.extras["keep_mask"], list) and len(e.extras["keep_mask"]) == 3
    for m in e.extras["keep_mask"]:
        assert m.shape[:2] == (2, 1) and m.min() >= 0 and m.max() <= 1
    assert e.extras["image"].shape == (2, 3, 16, 16)
    assert 0 <= float(e.extras["image"].min()) and float(e.extras["image"].max()) <= 1
    assert e.extras["history"]["distortion"].shape == (5, 2)
    torch.testing.assert_close(e.saliency, e.extras["image"].mean(1, keepdim=True))


def test_loss_terms_by_hand():
    """One step from the all-ones mask: distortion, l1 = 1 and the spatial energy of gray(x)."""
    x = region_images(1, 16)
    model = region_model()
    opt = MaskOptimizer(model, Pixels(), l1=1.0, spatial=1.0, steps=1, lr=0.1, noise_bs=3)
    h = opt.optimize(x, torch.tensor([1])).history
    p = torch.softmax(model(x), 1)[0, 1]
    torch.testing.assert_close(h["distortion"][0, 0], (1 - p) ** 2)  # m = 1: no noise enters
    assert float(h["l1"][0, 0]) == pytest.approx(1.0)
    assert float(h["spatial"][0, 0]) == pytest.approx(float(x.mean()), rel=1e-5)


@pytest.mark.parametrize("noise", ["uniform", "gaussian", "zeros"])
def test_noise_kinds_and_seed(noise):
    x = region_images(1, 16)

    def run(seed):
        return PixelMask(region_model(), steps=3, noise_bs=2, noise=noise, seed=seed).explain(x, 1)

    a, b = run(0), run(0)
    assert torch.equal(a.extras["keep_mask"], b.extras["keep_mask"])
    if noise != "zeros":
        assert not torch.equal(a.extras["keep_mask"], run(1).extras["keep_mask"])


def test_uniform_noise_statistics():
    """Draws of the uniform obfuscation lie in [mean - std, mean + std] of their band."""
    opt = MaskOptimizer(region_model(), Pixels(), l1=1, spatial=0, steps=1, lr=0.1, noise_bs=64)
    mean, std = torch.tensor(0.3).reshape(1, 1, 1, 1, 1), torch.tensor(0.1).reshape(1, 1, 1, 1, 1)
    (z,) = opt._unit([(1, 1, 8, 8)], opt._generators(1, torch.device("cpu")), mean)
    offset, scale = opt._affine(mean, std)
    v = offset.unsqueeze(1) + scale.unsqueeze(1) * z
    assert v.shape == (1, 64, 1, 1, 8, 8)
    assert float(v.min()) >= 0.2 - 1e-6 and float(v.max()) <= 0.4 + 1e-6
    assert float(v.mean()) == pytest.approx(0.3, abs=0.01)


def test_localises_region_and_removes_background():
    """ShearletX on the region model keeps the box and drops most of the rest."""
    x = region_images(1, 32)
    e = ShearletX(
        region_model(), steps=40, noise_bs=2, representation=Shearlets(**SMALL_SHEARLETS)
    ).explain(x, 1)
    box = region_mask(32, 32)
    s = e.saliency
    assert float(s[box].mean()) > 3 * float(s[~box].mean())


def test_bad_hyperparameters():
    model = region_model()
    with pytest.raises(ValueError, match="^noise: "):
        ShearletX(model, noise="salt")
    with pytest.raises(ValueError, match="^steps: "):
        WaveletX(model, steps=0)
    with pytest.raises(ValueError, match="^removal: "):
        PixelMask(model, removal="blur")
    with pytest.raises(ValueError, match="^score: "):
        PixelMask(model, score="logit")
    with pytest.raises(TypeError, match="^representation: "):
        MaskOptimizer(model, object(), l1=1, spatial=0, steps=1, lr=0.1, noise_bs=1)


def test_registered():
    for name in ("shearletx", "waveletx", "cartoonx", "pixelmask"):
        assert name in unmask.list_methods()


@pytest.mark.parametrize(
    "rep", [Shearlets(**SMALL_SHEARLETS), Wavelets(levels=2)], ids=["shearlets", "wavelets"]
)
def test_obfuscation_matches_the_objective_written_out(rep):
    """The optimiser's decomposed synthesis (kept + offset + fused noise) gives the distortion of
    ``clamp(T⁻¹(m ⊙ c + (1 - m) ⊙ v))`` computed naively with the same mask and draws."""
    from unmask.representations.base import apply_mask, band_statistics, gray

    torch.manual_seed(0)  # a model that sees every pixel, so that the noise matters
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    model = unmask.Classifier.wrap(net.eval(), input_size=16, class_names=["a", "b"])
    x, target = region_images(1, 16), torch.tensor([1])
    source = "gray" if isinstance(rep, Shearlets) else "color"

    def make(steps):
        return MaskOptimizer(
            model, rep, l1=1.0, spatial=1.0, steps=steps, lr=0.6, noise_bs=3, noise_source=source
        )

    mask = make(1).optimize(x, target).mask  # the mask entering step 2
    opt = make(2)
    draws = []
    unit = opt._unit

    def recording(*args, **kwargs):
        z = unit(*args, **kwargs)
        draws.append([d.clone() for d in z])
        return z

    opt._unit = recording  # type: ignore[method-assign]
    history = opt.optimize(x, target).history
    c = rep.forward(x)
    stats = band_statistics(rep.forward(gray(x)) if source == "gray" else c)

    def distortion(z):
        v = [
            off.unsqueeze(1) + sc.unsqueeze(1) * u
            for (off, sc), u in zip((opt._affine(*st) for st in stats), z, strict=True)
        ]  # (1, S, Cn, K, h, w)
        mixed = [
            (m * ci).unsqueeze(1) + (1 - m).unsqueeze(1) * vi
            for m, ci, vi in zip(mask, c, v, strict=True)
        ]
        images = rep.inverse(
            [t.expand(1, 3, 3, *t.shape[3:]).flatten(0, 1) for t in mixed], (16, 16)
        )
        prob = torch.softmax(model(images.clamp(0, 1)), 1)[:, 1]
        return (1 - prob).pow(2).mean()

    torch.testing.assert_close(
        history["distortion"][1, 0], distortion(draws[1]), rtol=1e-4, atol=1e-7
    )
    assert (
        abs(float(history["distortion"][1, 0] - distortion(draws[0]).detach())) > 1e-5
    )  # draws matter
    kept = rep.inverse(apply_mask(c, mask), (16, 16))
    torch.testing.assert_close(
        history["spatial"][1, 0], gray(kept).clamp(0, 1).mean(), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("noise", ["uniform", "gaussian"])
def test_draws_do_not_depend_on_threads_or_batch(noise):
    """One stream per (image, sample): the same draws serially, from a thread pool, and for an
    image alone or in a batch."""
    opt = MaskOptimizer(
        region_model(), Pixels(), l1=1, spatial=0, steps=1, lr=0.1, noise_bs=5, noise=noise
    )
    like, shapes = torch.zeros(1), [(3, 1, 6, 7), (1, 2, 3, 3)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = opt._unit(shapes, opt._generators(2, torch.device("cpu")), like)
        torch.set_num_threads(3)
        pooled = opt._unit(shapes, opt._generators(2, torch.device("cpu")), like)
    finally:
        torch.set_num_threads(threads)
    alone = opt._unit(shapes, opt._generators(1, torch.device("cpu")), like)
    for a, b, c in zip(serial, pooled, alone, strict=True):
        assert a.shape[:2] == (2, 5)
        assert torch.equal(a, b) and torch.equal(a[1], c[0]) and torch.equal(a[0], a[1])
        assert not torch.equal(a[:, 0], a[:, 1])  # samples differ
