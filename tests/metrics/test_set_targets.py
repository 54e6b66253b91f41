"""Set targets in every faithfulness metric: a target per image may be a set of classes (a list
of sets, or a (B, K) membership mask), scored as a whole (Σ p_c, log Σ exp z_c, log Σ p_c).

A one-class set gives exactly the single-class value; a two-class set gives the summed
probability, checked against a naive per-step loop for the deletion curve and against the sum
of the single-class scores for every other metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unmask
from unmask.metrics import METRICS, deletion_curve, insertion_curve
from unmask.metrics.kinds import kind_of
from unmask.metrics.single_step import single_step_scores
from unmask.testing import region_images

FAITHFULNESS = [e.name for e in METRICS if kind_of(e).name == "faithfulness"]
PAIR = (1, 3)


class _PatchNet(nn.Module):
    """Five classes from the mean colour of the four quadrants (a fixed random linear map)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(12, 5)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.head.weight.copy_(3 * torch.randn(5, 12, generator=gen))
            self.head.bias.copy_(torch.randn(5, generator=gen))

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(x, 2).flatten(1))


@pytest.fixture
def model():
    return unmask.Classifier.wrap(
        _PatchNet(), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=None, class_names=list("abcde")
    )


def inputs():
    x = region_images(2, 16, seed=1)
    s = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    return x, s


def member(batch=2, classes=PAIR, k=5):
    m = torch.zeros(batch, k, dtype=torch.bool)
    m[:, list(classes)] = True
    return m


@pytest.mark.parametrize("name", FAITHFULNESS)
def test_a_one_class_set_is_exactly_that_class(name, model):
    metric = METRICS.get(name).build()
    x, s = inputs()
    single = metric(model, x, s, target=[2, 4])
    for as_set in (
        [{2}, {4}],
        [[2], [4]],
        torch.nn.functional.one_hot(torch.tensor([2, 4]), 5).bool(),
    ):
        torch.testing.assert_close(
            metric(model, x, s, target=as_set), single, atol=0, rtol=0, equal_nan=True
        )


@pytest.mark.parametrize("name", FAITHFULNESS)
def test_list_of_sets_equals_membership_mask(name, model):
    metric = METRICS.get(name).build()
    x, s = inputs()
    torch.testing.assert_close(
        metric(model, x, s, target=[set(PAIR)] * 2),
        metric(model, x, s, target=member()),
        atol=0,
        rtol=0,
        equal_nan=True,
    )
    torch.testing.assert_close(
        metric(model, x, s, target={1, 3}),  # one set for every image
        metric(model, x, s, target=member()),
        atol=0,
        rtol=0,
        equal_nan=True,
    )


def test_two_class_deletion_curve_equals_a_naive_loop(model):
    """Seed rule, black fill: delete the top pixels of the 4 x 4 map step by step, score Σ p_c."""
    x, s = inputs()
    curve = deletion_curve(model, x, s, target=[set(PAIR)] * 2, max_steps=16)
    for i in range(2):
        order = np.argsort(-s[i].reshape(-1).numpy(), kind="stable")
        img = x[i : i + 1].clone()
        expected = []
        for k in range(17):
            with torch.no_grad():
                expected.append(float(torch.softmax(model(img), 1)[0, list(PAIR)].sum()))
            if k < 16:
                r, c = divmod(int(order[k]), 4)
                img[..., 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = (
                    0  # nearest upsampling of one map pixel
                )
        np.testing.assert_allclose(curve.scores[i].numpy(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fn", [deletion_curve, insertion_curve])
@pytest.mark.parametrize("rule", ["seed", "rise"])
def test_set_curves_are_sums_of_class_curves(fn, rule, model):
    x, s = inputs()
    kw = {"rule": rule, "max_steps": 8} if rule == "seed" else {"rule": rule}
    pair = fn(model, x, s, target=member(), **kw)
    parts = [fn(model, x, s, target=c, **kw) for c in PAIR]
    torch.testing.assert_close(pair.scores, parts[0].scores + parts[1].scores, atol=1e-6, rtol=0)
    # the correlation and AUC are read from that curve
    assert torch.equal(pair.target, member())
    # a logit score of a set is the generalised logit log Σ exp z_c
    logit = fn(model, x, s, target=member(), score="logit", **kw)
    z = [fn(model, x, s, target=c, score="logit", **kw).scores for c in PAIR]
    torch.testing.assert_close(logit.scores, torch.logaddexp(z[0], z[1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("replace_salient", [False, True])
def test_single_step_scores_of_a_set_are_sums(replace_salient, model):
    x, s = inputs()
    base, pert, _ = single_step_scores(model, x, s, member(), replace_salient=replace_salient)
    parts = [single_step_scores(model, x, s, c, replace_salient=replace_salient) for c in PAIR]
    torch.testing.assert_close(base, parts[0][0] + parts[1][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(pert, parts[0][1] + parts[1][1], atol=1e-6, rtol=0)
    if replace_salient:
        add = METRICS.get("add").build()(model, x, s, member())
        torch.testing.assert_close(add, (base - pert) / base)
    else:
        ad = METRICS.get("ad").build()(model, x, s, member())
        torch.testing.assert_close(ad, (base - pert).clamp(min=0) / base)


def test_saliency_metric_of_a_set_reads_the_summed_probability(model):
    x, s = inputs()
    metric = METRICS.get("saliency_metric").build()
    value = metric(model, x, s, member())
    # SM = log(max(a, 0.05)) - log p on the same crop for every target, so
    # SM_set - SM_c = log p_c - log p_set, and p_1 / p_set + p_3 / p_set = 1
    ratios = [torch.exp(value - metric(model, x, s, c)) for c in PAIR]
    torch.testing.assert_close(ratios[0] + ratios[1], torch.ones(2), atol=1e-5, rtol=0)


def test_explanation_with_a_set_target(model):
    x, s = inputs()
    e = unmask.Explanation(s, member(), "test")
    torch.testing.assert_close(
        METRICS.get("deletion").build()(model, x, e),
        METRICS.get("deletion").build()(model, x, s, member()),
    )
