"""Faithfulness metrics: single step (IIC, AD, ADD) and deletion / insertion (DAUC, IAUC, DC, IC).

Reference tests: the RISE rule against a naive per-step loop written here (RISE's own procedure,
independent substrates built in normalised space), AUC / correlation against numpy, the box blur
against saliency_maps_metrics'. Known-answer tests on the region model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unmask import Classifier
from unmask.explanation import Explanation
from unmask.metrics import METRICS
from unmask.metrics.deletion import (
    Deletion,
    DeletionCorrelation,
    Insertion,
    InsertionCorrelation,
    curve_auc,
    curve_correlation,
    curve_masks,
    deletion_curve,
    insertion_curve,
    pixel_ranks,
    plan_steps,
    step_saliency,
)
from unmask.metrics.single_step import (
    AverageDrop,
    AverageDropInDeletion,
    IncreaseInConfidence,
    normalise_maps,
    single_step_scores,
    soft_masks,
)
from unmask.removal import BoxBlur, Inpaint, RiseBlur
from unmask.removal import resolve_removal as resolve_substrate
from unmask.testing import region_box, region_images, region_mask

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)

MINE = ["iic", "ad", "add", "deletion", "insertion", "dc", "ic", "deletion_rise", "insertion_rise"]


def good_and_random_maps(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A map on the model's box (ranked randomly inside it) and a random map."""
    gen = torch.Generator().manual_seed(seed)
    good = region_mask(size, size).float().expand(batch, 1, size, size) + 0.1 * torch.rand(
        batch, 1, size, size, generator=gen
    )
    return good, torch.rand(batch, 1, size, size, generator=gen)


# --- pure building blocks ---------------------------------------------------------------------


def test_pixel_ranks_stable_ties_and_permutation():
    s = torch.tensor([[[[0.5, 1.0, 0.5], [1.0, 0.0, 0.5]]]])
    r = pixel_ranks(s)
    # 1.0 at flat 1 and 3 (ties: lower index first), then 0.5 at 0, 2, 5, then 0.0 at 4.
    assert r.tolist() == [[2, 0, 3, 1, 5, 4]]
    big = torch.rand(3, 1, 7, 5)
    rb = pixel_ranks(big)
    assert torch.equal(rb.sort(dim=1).values, torch.arange(35).expand(3, 35))
    # rank 0 is the maximum
    assert torch.equal(
        big.flatten(1).gather(1, rb.argmin(1, keepdim=True)).squeeze(1),
        big.flatten(1).max(1).values,
    )


@pytest.mark.parametrize(
    ("n", "kw", "expected"),
    [
        (784, {}, (4, 196)),  # 28x28 maps: 196 steps of 4
        (64, {}, (1, 64)),  # fewer pixels than the bound: one per step
        (1024, {}, (5, 205)),  # 32x32: 1024 // 196 = 5, last step takes 4
        (1024, {"max_steps": None}, (1, 1024)),
        (50176, {"pixels_per_step": 224 * 8}, (1792, 28)),  # RISE at 224^2
        (10, {"pixels_per_step": 50}, (10, 1)),
    ],
)
def test_plan_steps(n, kw, expected):
    assert plan_steps(n, **kw) == expected


def test_curve_masks_cumulative_and_blocks():
    s = torch.rand(2, 1, 4, 4)
    ranks = pixel_ranks(s)
    steps = torch.arange(6)
    for img in range(2):
        idx = torch.full((6,), img)
        dele = curve_masks(ranks, idx, steps, pixels_per_step=3, grid=(4, 4), size=(8, 8))
        assert dele.shape == (6, 1, 8, 8)
        counts = dele[:, 0, ::2, ::2].flatten(1).sum(1)
        assert counts.tolist() == [0, 3, 6, 9, 12, 15]
        # the deleted pixels are the most salient ones
        k3 = dele[3, 0, ::2, ::2].flatten().bool()
        assert s[img].flatten()[k3].min() >= s[img].flatten()[~k3].max()
        # nearest upsampling: each map pixel is a 2x2 block
        assert torch.equal(
            dele, F.interpolate(dele[:, :, ::2, ::2], scale_factor=2, mode="nearest")
        )
        ins = curve_masks(
            ranks, idx, steps, pixels_per_step=3, grid=(4, 4), size=(8, 8), mode="insertion"
        )
        assert torch.equal(ins, 1 - dele)
        block = curve_masks(
            ranks, idx, steps, pixels_per_step=3, grid=(4, 4), size=(4, 4), cumulative=False
        )
        assert block.flatten(1).sum(1).tolist() == [0, 3, 3, 3, 3, 3]
        assert torch.equal(block[2], dele[2, :, ::2, ::2] - dele[1, :, ::2, ::2])


def test_step_saliency_is_block_mean():
    s = torch.rand(2, 1, 3, 3)
    ranks = pixel_ranks(s)
    got = step_saliency(s, ranks, pixels_per_step=4, steps=3)
    srt = s.flatten(1).sort(dim=1, descending=True).values.double()
    expected = torch.stack([srt[:, :4].mean(1), srt[:, 4:8].mean(1), srt[:, 8:].mean(1)], dim=1)
    torch.testing.assert_close(got, expected)


def test_auc_and_correlation_match_numpy():
    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(3, 9, generator=gen)
    sal = torch.rand(3, 8, generator=gen)
    x = np.arange(9) / 8
    np.testing.assert_allclose(curve_auc(scores).numpy(), np.trapezoid(scores.numpy(), x, axis=1))
    np.testing.assert_allclose(
        curve_auc(scores, cumulative=False).numpy(),
        np.trapezoid(scores.numpy()[:, 1:], np.arange(8) / 7, axis=1),
    )
    dc = curve_correlation(scores, sal, "deletion").numpy()
    ic = curve_correlation(scores, sal, "insertion").numpy()
    s = scores.double().numpy()
    for i in range(3):
        assert dc[i] == pytest.approx(
            np.corrcoef(s[i, :-1] - s[i, 1:], sal[i].numpy())[0, 1], abs=1e-12
        )
        assert ic[i] == pytest.approx(-dc[i], abs=1e-12)
    flat = curve_correlation(torch.ones(1, 9), sal[:1])
    assert torch.isnan(flat).all()


def test_normalise_per_image_vs_batch():
    s = torch.stack(
        [torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 4.0]]), torch.tensor([[3.0, 3.0]])]
    )[:, None]
    per = normalise_maps(s)
    assert per[:, 0, 0].tolist() == [[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]]  # constant -> zeros
    whole = normalise_maps(s, per_image=False)
    assert whole[:, 0, 0].tolist() == [[0.0, 0.25], [0.0, 1.0], [0.75, 0.75]]


def test_soft_masks_bicubic_clamped_or_not():
    s = torch.zeros(1, 1, 4, 4)
    s[..., 1:3, 1:3] = 1
    raw = soft_masks(s, (16, 16), clamp=False)
    assert raw.min() < 0 and raw.max() > 1  # bicubic overshoot
    m = soft_masks(s, (16, 16))
    assert m.min() >= 0 and m.max() <= 1
    torch.testing.assert_close(m, raw.clamp(0, 1))
    # at the image's resolution bicubic is the identity
    assert torch.equal(soft_masks(s, (4, 4), clamp=False), s)


# --- substrates -------------------------------------------------------------------------------


def test_box_blur_equals_saliency_maps_metrics():
    from saliency_maps_metrics.data_replace import blur_data

    for size in (32, 50, 64):
        x = torch.rand(2, 3, size, size)
        torch.testing.assert_close(BoxBlur().fill(x), blur_data(x), atol=1e-6, rtol=0)
    assert (
        BoxBlur().size_for(32) == 9
        and BoxBlur().size_for(50) == 11
        and BoxBlur().size_for(224) == 45
    )


def test_resolve_substrate_names():
    assert isinstance(resolve_substrate("box-blur"), BoxBlur)
    assert isinstance(resolve_substrate("rise-blur"), RiseBlur)
    assert repr(resolve_substrate("rise-zeros")) == "Constant('mean')"
    assert repr(resolve_substrate("black")) == "Constant('black')"
    with pytest.raises(ValueError, match="removal: unknown removal 'nope'"):
        resolve_substrate("nope")
    x, m = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    torch.testing.assert_close(RiseBlur()(x, m), RiseBlur().fill(x))


# --- RISE rule against a naive per-step loop --------------------------------------------------


def _naive_rise(net_probs, x, sal, mode, step):
    """RISE's CausalMetric.single_run, image by image, in normalised space."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    k = torch.from_numpy(gaussian_filter(delta, 5).astype(np.float32))
    kern = torch.zeros(3, 3, 11, 11)
    for c in range(3):
        kern[c, c] = k
    curves = []
    for i in range(x.shape[0]):
        img = (x[i : i + 1] - IMAGENET_MEAN) / IMAGENET_STD  # RISE works on normalised tensors
        hw = img.shape[-1] * img.shape[-2]
        c = int(net_probs(x[i : i + 1]).argmax())
        n_steps = (hw + step - 1) // step
        if mode == "deletion":
            start, finish = img.clone(), torch.zeros_like(img)
        else:
            start, finish = F.conv2d(img, kern, padding=5), img.clone()
        order = np.argsort(-sal[i].reshape(-1).numpy(), kind="stable")
        scores = []
        for s_i in range(n_steps + 1):
            scores.append(float(net_probs(start * IMAGENET_STD + IMAGENET_MEAN)[0, c]))
            if s_i < n_steps:
                coords = order[step * s_i : step * (s_i + 1)]
                start.reshape(1, 3, hw)[0, :, coords] = finish.reshape(1, 3, hw)[0, :, coords]
        curves.append(scores)
    arr = np.array(curves)
    auc = (arr.sum(1) - arr[:, 0] / 2 - arr[:, -1] / 2) / (arr.shape[1] - 1)  # RISE's auc()
    return arr, auc


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("map_size", [32, 8])
def test_rise_rule_equals_naive_loop(region_model, mode, map_size):
    x = region_images(2, 32, seed=3)
    sal = torch.rand(2, 1, map_size, map_size, generator=torch.Generator().manual_seed(4))
    full = (
        F.interpolate(sal, size=(32, 32), mode="bilinear", align_corners=False)
        if map_size != 32
        else sal
    )

    def probs(img):
        with torch.no_grad():
            return torch.softmax(region_model(img), dim=1)

    step = 100  # 11 steps, the last one partial
    ref_curves, ref_auc = _naive_rise(probs, x, full, mode, step)
    fn = deletion_curve if mode == "deletion" else insertion_curve
    c = fn(region_model, x, sal, rule="rise", pixels_per_step=step, batch_size=7)
    assert c.scores.shape == (2, 12)
    np.testing.assert_allclose(c.scores.numpy(), ref_curves, atol=1e-5, rtol=0)
    np.testing.assert_allclose(c.auc().numpy(), ref_auc, atol=1e-6, rtol=0)
    assert c.fractions[-1] == 1 and c.fractions[1] == pytest.approx(100 / 1024)


def test_rise_default_step_is_eight_rows(region_model):
    x = region_images(1, 32)
    c = Deletion(rule="rise").curve(region_model, x, torch.rand(1, 1, 32, 32))
    assert c.scores.shape == (1, 32 * 32 // (8 * 32) + 1)


# --- known answers on the region model --------------------------------------------------------


@pytest.mark.parametrize("rule", ["seed", "rise"])
def test_map_on_the_region_beats_random_map_multistep(region_model, rule):
    x = region_images(3, 32, seed=1)
    good, rnd = good_and_random_maps(3, 32)
    kw = {"rule": rule, "pixels_per_step": 32 if rule == "rise" else None}  # 32 steps, not 4
    # the blurred red box stays fairly red: insertion curves start high, so smaller margins
    for cls, correlation, margins in (
        (Deletion, DeletionCorrelation, (0.3, 0.3)),
        (Insertion, InsertionCorrelation, (0.03, 0.05)),
    ):
        metric = cls(**kw)
        g, r = metric.curve(region_model, x, good), metric.curve(region_model, x, rnd)
        assert g.scores.shape == r.scores.shape
        torch.testing.assert_close(g.auc(), metric(region_model, x, good))
        torch.testing.assert_close(g.correlation(), correlation(**kw)(region_model, x, good))
        if metric.higher_is_better:
            assert bool((g.auc() > r.auc() + margins[0]).all()), (metric, g.auc(), r.auc())
        else:
            assert bool((g.auc() < r.auc() - margins[0]).all()), (metric, g.auc(), r.auc())
        assert bool((g.correlation() > r.correlation() + margins[1]).all()), (
            metric,
            g.correlation(),
            r.correlation(),
        )


def test_deletion_curve_on_region_known_shape(region_model):
    x = region_images(1, 32)
    # a map that ranks exactly the box first: the score collapses once the box is gone
    t, left, b, r = region_box(32, 32)
    good = region_mask(32, 32).float()
    c = deletion_curve(region_model, x, good, max_steps=16)  # 64 pixels per step, box = 64 pixels
    assert c.scores.shape == (1, 17)
    assert c.scores[0, 0] > 0.9
    # the whole box black at step 1: logit_1 = 4 * (0 - 0.25) = -1, p = sigmoid(-2)
    assert float(c.scores[0, 1]) == pytest.approx(1 / (1 + np.exp(2)), abs=1e-6)
    torch.testing.assert_close(c.scores[0, 1:], c.scores[0, 1:2].expand(16))  # nothing else matters
    assert c.target.tolist() == [1]


def test_single_step_known_answers(region_model):
    x = region_images(2, 32, seed=2)
    good, rnd = good_and_random_maps(2, 32)
    ad, add = AverageDrop(), AverageDropInDeletion()
    assert bool((ad(region_model, x, good) < ad(region_model, x, rnd) - 0.05).all())
    assert bool((add(region_model, x, good) > add(region_model, x, rnd) + 0.3).all())
    # the map on the box keeps the box untouched: no drop at all
    assert torch.equal(
        ad(region_model, x, region_mask(32, 32).float().expand(2, 1, 32, 32)), torch.zeros(2)
    )


def test_iic_known_answer(region_model):
    # green distractor pixels inside the box lower the score; a map that points at the red
    # pixels only (not the distractors) removes them -> confidence increases; a map that points
    # at the distractors removes the red pixels -> it falls.
    x = region_images(2, 32, seed=5)
    t, left, b, r = region_box(32, 32)
    x[:, :, t : t + 3, left:r] = torch.tensor([0.1, 0.9, 0.1]).reshape(1, 3, 1, 1)
    red = torch.zeros(2, 1, 32, 32)
    red[..., t + 3 : b, left:r] = 1
    distractor = torch.zeros(2, 1, 32, 32)
    distractor[..., t : t + 3, left:r] = 1
    iic = IncreaseInConfidence()
    assert iic(region_model, x, red).tolist() == [1.0, 1.0]
    assert iic(region_model, x, distractor).tolist() == [0.0, 0.0]
    s, p, _ = single_step_scores(region_model, x, red)
    assert bool((p > s).all())


# --- contracts --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MINE)
def test_registry_contract_batch_equals_singles(region_model, name):
    metric = METRICS.get(name).build(batch_size=5)
    assert isinstance(metric.higher_is_better, bool) and metric.kind == "faithfulness"
    x = region_images(3, 16, seed=7)
    sal = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(8))
    out = metric(region_model, x, sal)
    assert out.shape == (3,)
    singles = torch.cat([metric(region_model, x[i : i + 1], sal[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(out, singles.to(out.dtype), atol=1e-6, rtol=0, equal_nan=True)


def test_targets_and_explanation_input(region_model):
    x = region_images(2, 16)
    sal = torch.rand(2, 1, 4, 4)
    d = Deletion()
    c1 = d.curve(region_model, x, sal)
    assert c1.target.tolist() == [1, 1]
    c0 = d.curve(region_model, x, sal, target=0)
    torch.testing.assert_close(c0.scores, 1 - c1.scores, atol=1e-6, rtol=0)  # two classes
    e = Explanation(sal, torch.tensor([0, 0]), "test")
    torch.testing.assert_close(d(region_model, x, e), d(region_model, x, sal, target=[0, 0]))
    torch.testing.assert_close(d(region_model, x, sal[:, 0]), d(region_model, x, sal))


def test_scores_logit_option(region_model):
    x = region_images(1, 16)
    sal = torch.rand(1, 1, 4, 4)
    c = deletion_curve(region_model, x, sal, score="logit")
    assert c.scores[0, 0] == pytest.approx(float(region_model(x)[0, 1].detach()), abs=1e-5)


def test_non_cumulative_deletion_changes_only_block_k(region_model):
    x = region_images(1, 16)
    sal = torch.rand(1, 1, 4, 4)
    c = deletion_curve(region_model, x, sal, cumulative=False, max_steps=4)
    ranks = pixel_ranks(sal)
    m = curve_masks(
        ranks,
        torch.zeros(4, dtype=torch.long),
        torch.arange(1, 5),
        pixels_per_step=4,
        grid=(4, 4),
        size=(16, 16),
        cumulative=False,
    )
    expected = torch.softmax(region_model(x * (1 - m)), dim=1)[:, 1].detach()
    torch.testing.assert_close(c.scores[0, 1:], expected, atol=1e-6, rtol=0)


def test_inpainting_substrate(region_model):
    x = region_images(1, 16)
    sal = torch.rand(1, 1, 4, 4)
    c = deletion_curve(region_model, x, sal, removal=Inpaint("telea"), max_steps=4)
    assert c.scores.shape == (1, 5) and bool(torch.isfinite(c.scores).all())
    # at the last step the whole image is a hole: filled with the ImageNet mean colour
    mean_img = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1).expand(1, 3, 16, 16)
    assert c.scores[0, -1] == pytest.approx(
        float(torch.softmax(region_model(mean_img), 1)[0, 1].detach()), abs=1e-5
    )
    ad = AverageDrop(removal="telea")(region_model, x, sal)
    assert ad.shape == (1,)


def test_bad_inputs(region_model):
    x = region_images(2, 16)
    with pytest.raises(ValueError, match="saliency: expected one map per image"):
        Deletion()(region_model, x, torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match="saliency: expected shape"):
        Deletion()(region_model, x, torch.rand(2, 2, 4, 4))
    with pytest.raises(ValueError, match="saliency: contains NaN"):
        AverageDrop()(region_model, x, torch.full((2, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="rule: expected one of"):
        Deletion(rule="fast")
    with pytest.raises(ValueError, match="max_steps"):
        Insertion(max_steps=0)
    with pytest.raises(ValueError, match="target: class 5"):
        Deletion()(region_model, x, torch.rand(2, 1, 4, 4), target=5)
    with pytest.raises(TypeError, match="model: expected an unmask.Classifier"):
        Deletion()(torch.nn.Identity(), x, torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="x: expected 3 channels"):
        AverageDrop()(region_model, torch.rand(2, 1, 16, 16), torch.rand(2, 1, 4, 4))


def test_works_with_any_classifier_size():
    net = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 3)
    )
    model = Classifier.wrap(
        net, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=8, class_names=list("abc")
    )
    x = torch.rand(2, 3, 20, 24)
    sal = torch.rand(2, 1, 5, 6)
    for name in MINE:
        assert METRICS.get(name).build()(model, x, sal).shape == (2,)
