"""Targets as score functions of the logits (``target=f``, ``f(logits (N, K)) -> (N,)``, or one
function per image), as pytorch-grad-cam's target objects.

Where a function and a class target define the same score (``lambda z: z.softmax(1)[:, 1]`` and
class 1 with probability scores), every method and metric gives the same result; where a
function cannot apply, the error says why.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import unmask
import unmask.metrics  # noqa: F401  (registers every metric)
from unmask._checks import ScoreTarget, check_targets
from unmask.contrastive import cwox
from unmask.registry import METHODS, METRICS
from unmask.scoring import select_scores

sys.path.insert(0, str(Path(__file__).resolve().parent / "explainers"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "metrics"))
from test_contract import FAST, _images, _model  # noqa: E402
from test_contract_metrics import FACTORIES  # noqa: E402

#: The function equal to "class c" for each score a method may use.
SCORE_OF = {
    "prob": lambda c: lambda z: z.softmax(1)[:, c],
    "logit": lambda c: lambda z: z[:, c],
    "log_prob": lambda c: lambda z: z.log_softmax(1)[:, c],
    "log_odds": lambda c: (
        lambda z: z[:, c] - z[:, [k for k in range(z.shape[1]) if k != c]].logsumexp(1)
    ),
}


def _function(method: str, c: int):
    params = METHODS.get(method).parameters()
    score = params["score"].default if "score" in params else "logit"
    return SCORE_OF[score](c)


@pytest.mark.parametrize("method", sorted(FAST))
def test_functions_equal_the_class_they_score(method):
    model, x = _model(method), _images()[:2]
    run = lambda t: unmask.explain(model, x, method, target=t, seed=0, **FAST[method])  # noqa: E731
    by_class = run([1, 0])
    per_image = run([_function(method, 1), _function(method, 0)])
    assert isinstance(per_image.target, ScoreTarget)
    torch.testing.assert_close(per_image.saliency, by_class.saliency, rtol=1e-5, atol=1e-6)
    one = run(_function(method, 1))  # one function for every image
    torch.testing.assert_close(one.saliency, run(1).saliency, rtol=1e-5, atol=1e-6)


def test_a_function_is_not_a_class():
    """A score no class target gives (the margin of class 1 over class 0) changes the map."""
    model, x = _model("input_x_gradient"), _images()[:1]
    margin = unmask.explain(model, x, "input_x_gradient", target=lambda z: z[:, 1] - z[:, 0])
    g1 = unmask.explain(model, x, "input_x_gradient", target=1).saliency
    g0 = unmask.explain(model, x, "input_x_gradient", target=0).saliency
    assert not torch.allclose(margin.saliency, g1)
    # the gradient of z1 - z0 is the difference of the gradients: x * grad is linear in them
    torch.testing.assert_close(margin.saliency, g1 - g0)


@pytest.mark.parametrize(
    "name", ["deletion", "insertion", "pixel_flipping", "irof", "faithfulness_estimate"]
)
def test_metrics_take_functions(name):
    metric = METRICS.get(name).build()
    inputs = FACTORIES["faithfulness"](2)
    score = getattr(metric, "score", "prob")
    by_class = metric(**inputs, target=1)
    torch.testing.assert_close(metric(**inputs, target=SCORE_OF[score](1)), by_class)


def test_select_scores_applies_each_image_its_function():
    z = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    t = check_targets([lambda z: z[:, 0], lambda z: z[:, 2]], 2, 3)
    rows = t[torch.tensor([0, 1, 1])]  # perturbed copies: image 0, then two of image 1
    assert select_scores(z, rows, "prob").tolist() == [0.0, 5.0, 8.0]
    assert len(t.repeat_interleave(3)) == 6 and t.repeat(2).rows.tolist() == [0, 1, 0, 1]


def test_functions_are_refused_with_the_reason_where_they_cannot_apply():
    model, x = _model("occlusion"), _images()[:2]
    with pytest.raises(TypeError, match="targets\\[0\\]: a target function .* several targets"):
        unmask.explain_each(model, x, [lambda z: z[:, 1], 0], "occlusion", patch_size=8, stride=8)
    inputs = FACTORIES["contrastive"](2)
    contrastive = METRICS.get("cdrop").build()
    with pytest.raises(TypeError, match="target: a target function .* contrastive metric"):
        contrastive(**{**inputs, "target": lambda z: z[:, 1]})
    e = unmask.explain(model, x, "occlusion", target=lambda z: z[:, 1], patch_size=8, stride=8)
    with pytest.raises(TypeError, match="target: a target function .* has no stable key"):
        e.keys(x, model)
    with pytest.raises(TypeError, match="clusters\\[0\\]: expected class indices"):
        cwox(_model("gradcam"), x[:1], [[lambda z: z[:, 0]], [1]], delta=50)


def test_bad_functions_raise_clear_errors():
    model, x = _model("gradient"), _images()[:2]
    with pytest.raises(ValueError, match=r"target: a target function must return one score per"):
        unmask.explain(model, x, "gradient", target=lambda z: z)
    with pytest.raises(ValueError, match=r"target\[1\]: a target function must return"):
        unmask.explain(model, x, "gradient", target=[lambda z: z[:, 0], lambda z: z.sum()])
    with pytest.raises(ValueError, match="one target function per image \\(2\\), got 3"):
        check_targets([lambda z: z[:, 0]] * 3, 2, 2)
    with pytest.raises(TypeError, match="not a mix"):
        check_targets([lambda z: z[:, 0], 1], 2, 2)
