"""CAUC / CDROP (CWOX) against a naive per-step loop of the original's definitions; a batch
equals per-image calls; the fill is any removal; bad inputs are named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unmask
from unmask.metrics import CAUC, CDROP, METRICS, contrastive_curve
from unmask.models import IMAGENET_MEAN

SIZE = 32


class _PatchNet(nn.Module):
    """Five classes from the mean colour of 4 x 4 blocks (a fixed random linear map)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(48, 5)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.head.weight.copy_(4 * torch.randn(5, 48, generator=gen))
            self.head.bias.copy_(torch.randn(5, generator=gen))

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(x, 4).flatten(1))


@pytest.fixture
def model():
    return unmask.Classifier.wrap(
        _PatchNet(), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=None, class_names=list("abcde")
    )


def images(batch=3):
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def maps(batch=3):
    gen = torch.Generator().manual_seed(2)
    smooth = F.interpolate(
        torch.rand(batch, 1, 4, 4, generator=gen),
        size=(SIZE, SIZE),
        mode="bilinear",
        align_corners=False,
    )
    peaked = torch.zeros(batch, 1, SIZE, SIZE)
    peaked[:, :, 3:8, 5:12] = torch.rand(batch, 1, 5, 7, generator=gen) + 1  # 35 salient pixels
    return smooth, peaked


def naive(model, x, h, pos, neg, fill, step=16, delta=0.5, tau=0.05, smooth=3):
    """The original's loop for one image: delete 16 pixels per step until the curve holds
    ceil(n_δ / 16) points; CAUC and CDROP from that curve."""
    hw = SIZE * SIZE

    def score(img):
        with torch.no_grad():
            p = torch.softmax(model(img), 1)[0]
        return float(p[list(pos)].sum()) * (1 - float(p[list(neg)].sum()))

    flat = h.reshape(-1).double().numpy()
    order = np.argsort(-flat, kind="stable")
    count = int((flat > flat.min() + delta * (flat.max() - flat.min())).sum())
    stop = -(-count // step)
    curve = np.full(math.ceil(hw / step) + 1, np.nan)
    curve[0] = score(x)
    img = x.clone()
    for i in range(1, len(curve)):
        if np.count_nonzero(~np.isnan(curve)) >= stop:
            break
        for j in order[(i - 1) * step : i * step]:
            r, c = divmod(int(j), SIZE)
            img[0, :, r, c] = fill
        curve[i] = score(img)
    length = int(np.count_nonzero(~np.isnan(curve)))
    cauc = (np.nansum(curve) - 0.5 * (curve[0] + curve[length - 1])) / len(curve)
    end = curve[stop - smooth : stop].mean() if stop >= smooth else curve[stop - 1]
    t = tau * hw
    cdrop = (curve[0] - end) / math.log2(1 + max(count, t) / t) if count else math.nan
    return curve, cauc, cdrop, count


@pytest.mark.parametrize("which", ["smooth", "peaked"])
def test_equals_the_naive_loop(model, which):
    x = images()
    h = maps()[which == "peaked"]
    pos, neg = [{1, 3}, {2}, {0, 4}], [{0}, {1, 3}, {2}]
    curve = contrastive_curve(model, x, h, target=pos, competitors=neg)
    cauc = CAUC()(model, x, h, pos, competitors=neg)
    cdrop = CDROP()(model, x, h, pos, competitors=neg)
    mean = torch.tensor(IMAGENET_MEAN)
    for i in range(3):
        ref_curve, ref_cauc, ref_cdrop, count = naive(
            model, x[i : i + 1], h[i, 0], pos[i], neg[i], mean
        )
        assert int(curve.n_delta[i]) == count
        np.testing.assert_allclose(curve.scores[i].numpy(), ref_curve, atol=1e-6, rtol=0)
        assert float(cauc[i]) == pytest.approx(ref_cauc, abs=1e-7)
        assert float(cdrop[i]) == pytest.approx(ref_cdrop, abs=1e-7)
    if which == "peaked":  # 35 salient pixels: 3 points, the smoothing window is the whole curve
        assert curve.length.tolist() == [3, 3, 3]


def test_short_curves_and_a_constant_map(model):
    x = images(3)
    h = torch.zeros(3, 1, SIZE, SIZE)
    h[0, 0, 0, :20] = 1  # 20 salient pixels: 2 points (s_0 and one step)
    h[1, 0, 0, :9] = 1  # 9: one point, CDROP = 0
    # image 2: constant, no salient pixel: CAUC 0, CDROP NaN
    curve = contrastive_curve(model, x, h, target=1, competitors={0})
    assert curve.length.tolist() == [2, 1, 0] and curve.n_delta.tolist() == [20, 9, 0]
    cauc, cdrop = curve.cauc(), curve.cdrop()
    for i in range(2):
        ref = naive(model, x[i : i + 1], h[i, 0], {1}, {0}, torch.tensor(IMAGENET_MEAN))
        assert float(cauc[i]) == pytest.approx(ref[1], abs=1e-7)
        assert float(cdrop[i]) == pytest.approx(ref[2], abs=1e-7)
    assert float(cdrop[1]) == 0 and float(cauc[2]) == 0 and math.isnan(float(cdrop[2]))


def test_batched_equals_per_image_and_chunks_do_not_matter(model):
    x, h = images(), maps()[0]
    pos, neg = [{1, 3}, 2, {0, 4}], [{0}, {1, 3}, {2}]
    for metric in (CAUC(), CDROP(), CAUC(batch_size=5), CDROP(batch_size=1)):
        batched = metric(model, x, h, pos, competitors=neg)
        singles = torch.cat(
            [
                metric(model, x[i : i + 1], h[i : i + 1], pos[i], competitors=neg[i])
                for i in range(3)
            ]
        )
        torch.testing.assert_close(batched, singles, atol=1e-7, rtol=0)
        torch.testing.assert_close(
            batched,
            CDROP()(model, x, h, pos, competitors=neg)
            if isinstance(metric, CDROP)
            else CAUC()(model, x, h, pos, competitors=neg),
        )


def test_any_removal_is_the_fill_and_maps_are_read_at_the_image_resolution(model):
    x, h = images(1), maps(1)[0]
    black = CAUC("black")(model, x, h, {2}, competitors={0, 1})
    ref = naive(model, x, h[0, 0], {2}, {0, 1}, torch.zeros(3))
    assert float(black[0]) == pytest.approx(ref[1], abs=1e-7)
    coarse = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    full = F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(
        CDROP()(model, x, coarse, 2, competitors={0}), CDROP()(model, x, full, 2, competitors={0})
    )


def test_targets_and_competitors_forms(model):
    x, h = images(2), maps(2)[0]
    ref = CAUC()(model, x, h, {1, 3}, competitors={0, 2})
    member = torch.zeros(2, 5, dtype=torch.bool)
    member[:, [0, 2]] = True
    for competitors in ([0, 2], [{0, 2}, {0, 2}], member):
        torch.testing.assert_close(CAUC()(model, x, h, [{1, 3}] * 2, competitors=competitors), ref)
    # the default target is the top-1 class
    top = model(x).argmax(1)
    others = [sorted(set(range(5)) - {int(t)}) for t in top]
    torch.testing.assert_close(
        CAUC()(model, x, h, competitors=[set(o) for o in others]),
        CAUC()(model, x, h, top, competitors=[set(o) for o in others]),
    )


def test_registered_with_direction_and_bad_inputs(model):
    assert METRICS.get("cauc").build().higher_is_better is False
    assert METRICS.get("cdrop").build().higher_is_better is True
    x, h = images(1), maps(1)[0]
    with pytest.raises(ValueError, match="^competitors: image 0 has classes \\[1\\] both"):
        CAUC()(model, x, h, {1, 2}, competitors={0, 1})
    with pytest.raises(ValueError, match="^competitors: expected the competing classes"):
        CAUC()(model, x, h, 1)
    with pytest.raises(ValueError, match="^competitors: class 9 is outside"):
        CAUC()(model, x, h, 1, competitors={9})
    with pytest.raises(ValueError, match="^delta: "):
        CAUC(delta=0)
    with pytest.raises(ValueError, match="^tau: "):
        CDROP(tau=2)
