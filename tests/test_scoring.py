"""The batched scoring engine: chunking, counting, mask sources, score kinds, errors."""

from __future__ import annotations

import pytest
import torch

from unmask.removal import Constant, Inpaint
from unmask.scores import select_scores
from unmask.scoring import Scorer
from unmask.testing import region_box


def _masks(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return (
        torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) > 0.5
    ).float()


def test_chunking_equals_one_pass(region_model, region_images):
    x = torch.cat([region_images, region_images.flip(-1), region_images * 0.5])  # 6 images
    one = Scorer(region_model, batch_size=100).logits(x)
    chunked = Scorer(region_model, batch_size=4).logits(x)
    assert one.shape == (6, 2)
    assert torch.allclose(one, chunked, atol=1e-6)
    masks = _masks(11)
    index = torch.arange(11) % 2
    target = torch.tensor([1, 0])
    a = Scorer(region_model, batch_size=100).perturbed(
        region_images, masks, target, Constant("gray"), index
    )
    b = Scorer(region_model, batch_size=3).perturbed(
        region_images, masks, target, Constant("gray"), index
    )
    assert torch.allclose(a, b, atol=1e-6)


def test_perturbed_matches_a_naive_loop(region_model, region_images):
    masks = _masks(5)
    index = torch.tensor([0, 1, 1, 0, 1])
    target = torch.tensor([1, 0])
    removal = Constant("black")
    scores = Scorer(region_model, batch_size=2).perturbed(
        region_images, masks, target, removal, index
    )
    for n in range(5):
        i = int(index[n])
        with torch.no_grad():
            logits = region_model(removal(region_images[i : i + 1], masks[n : n + 1]))
        assert abs(float(logits.softmax(1)[0, target[i]]) - float(scores[n])) < 1e-6
    assert (
        scores.dtype == torch.float32 and scores.device.type == "cpu" and not scores.requires_grad
    )


def test_evaluations_count(region_model, region_images):
    scorer = Scorer(region_model, batch_size=3)
    scorer.logits(region_images)
    assert scorer.evaluations == 2
    scorer.perturbed(region_images[:1], _masks(7), torch.tensor([1]), Constant("gray"))
    assert scorer.evaluations == 9
    scorer(region_images, torch.tensor([1, 1]))
    scorer.top1(region_images)
    assert scorer.evaluations == 13


def test_mask_function_equals_mask_tensor(region_model, region_images):
    masks = _masks(10)
    index = torch.arange(10) // 5
    target = torch.tensor([1, 1])
    calls = []

    def source(start: int, stop: int) -> torch.Tensor:
        calls.append((start, stop))
        return masks[start:stop]

    scorer = Scorer(region_model, batch_size=4)
    from_tensor = scorer.perturbed(region_images, masks, target, Constant("gray"), index)
    from_fn = scorer.perturbed(region_images, source, target, Constant("gray"), index, count=10)
    assert torch.equal(from_tensor, from_fn)
    assert calls == [(0, 4), (4, 8), (8, 10)]  # chunk by chunk, never all at once


def test_removing_the_box_drops_the_score(region_model, region_images):
    t, left, b, r = region_box(32, 32)
    box = torch.zeros(1, 1, 32, 32)
    box[..., t:b, left:r] = 1
    outside = 1 - box
    scores = Scorer(region_model).perturbed(
        region_images[:1], torch.cat([box, outside]), torch.tensor([1]), Constant("gray")
    )
    base = Scorer(region_model)(region_images[:1], torch.tensor([1]))
    assert float(scores[0]) < 0.5 < float(base[0])
    assert abs(float(scores[1]) - float(base[0])) < 1e-6  # the model ignores everything else


def test_non_fixed_removal_goes_through_the_engine(region_model, region_images):
    masks = _masks(3)
    removal = Inpaint("telea")
    scores = Scorer(region_model, batch_size=2).perturbed(
        region_images[:1], masks, torch.tensor([1]), removal
    )
    with torch.no_grad():
        expected = region_model(removal(region_images[:1], masks)).softmax(1)[:, 1]
    assert torch.allclose(scores, expected, atol=1e-6)


def test_score_kinds(region_model, region_images):
    logits = Scorer(region_model).logits(region_images)
    target = torch.tensor([1, 0])
    for kind, expected in [
        ("logit", logits),
        ("prob", logits.softmax(1)),
        ("log_prob", logits.log_softmax(1)),
    ]:
        got = Scorer(region_model, score=kind)(region_images, target)
        assert torch.allclose(got, expected[torch.arange(2), target], atol=1e-6)
        assert torch.allclose(select_scores(logits, target, kind), got, atol=1e-6)
    probs = Scorer(region_model).probabilities(region_images)
    assert torch.allclose(probs.sum(1), torch.ones(2))
    assert Scorer(region_model).top1(region_images).tolist() == [1, 1]


def test_progress_bar_does_not_change_results(region_model, region_images, capsys):
    masks = _masks(9)
    quiet = Scorer(region_model, batch_size=2).perturbed(
        region_images[:1], masks, torch.tensor([1]), Constant("gray")
    )
    loud = Scorer(region_model, batch_size=2, progress=True).perturbed(
        region_images[:1], masks, torch.tensor([1]), Constant("gray")
    )
    assert torch.equal(quiet, loud)
    assert "perturbations" in capsys.readouterr().err


def test_errors(region_model, region_images):
    with pytest.raises(ValueError, match="batch_size"):
        Scorer(region_model, batch_size=0)
    with pytest.raises(ValueError, match="score: expected one of 'prob', 'logit', 'log_prob'"):
        Scorer(region_model, score="margin")
    scorer = Scorer(region_model)
    with pytest.raises(ValueError, match="count: required when masks is a function"):
        scorer.perturbed(
            region_images[:1], lambda a, b: _masks(b - a), torch.tensor([1]), Constant("gray")
        )
    with pytest.raises(ValueError, match="index: required for a batch of 2 images"):
        scorer.perturbed(region_images, _masks(2), torch.tensor([1, 1]), Constant("gray"))
