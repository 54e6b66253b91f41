"""Mask optimisations record their loss, say whether it settled, and warn when it did not."""

from __future__ import annotations

import warnings

import pytest
import torch

import unmask
from unmask.explainers._optim import (
    CONVERGENCE_TOLERANCE,
    CONVERGENCE_WINDOW,
    ConvergenceWarning,
    convergence,
)
from unmask.testing import region_images, region_model


def _naive_change(curve: list[float]) -> float:
    """The documented criterion, written out: last 10 % vs the 10 % before, over the range."""
    k = max(1, round(CONVERGENCE_WINDOW * len(curve)))
    last = sum(curve[-k:]) / k
    before = sum(curve[-2 * k : -k]) / k
    span = max(curve) - min(curve)
    return abs(last - before) / span if span > 0 else 0.0


def test_criterion_matches_its_definition():
    t = torch.arange(200.0)
    curves = torch.stack(
        [
            10 * torch.exp(-t / 10),  # settled long ago
            1 - t / 200,  # still falling steadily: 10 % of its range per window
            torch.full_like(t, 3.0),  # flat
            5 * torch.exp(-t / 80) + 0.01 * torch.sin(t),  # still falling, with noise
        ]
    )
    converged, change = convergence(curves)
    want = [_naive_change(c.tolist()) for c in curves]
    assert change.tolist() == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert converged.tolist() == [w < CONVERGENCE_TOLERANCE for w in want]
    assert converged.tolist() == [True, False, True, False]
    one, inf_change = convergence(torch.ones(2, 1))  # a single step cannot show convergence
    assert not one.any() and torch.isinf(inf_change).all()


def _run(method: str, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = unmask.explain(region_model(), region_images(2), method, **kwargs)
    return e, [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_under_iterated_extremal_warns_and_a_converged_one_does_not():
    # 40 steps at a learning rate 100 times too small: the mask has barely moved
    slow, warned = _run("extremal", steps=40, step=4, sigma=8, lr=1e-4)
    assert slow.extras["loss"].shape == (2, 40)
    assert slow.extras["converged"].tolist() == [False, False]
    assert len(warned) == 1 and "extremal" in str(warned[0].message)
    assert "[0, 1]" in str(warned[0].message)
    # the default learning rate settles within 40 steps on this model
    done, warned = _run("extremal", steps=40, step=4, sigma=8)
    assert done.extras["converged"].tolist() == [True, True] and not warned
    assert (done.extras["loss_change"] < CONVERGENCE_TOLERANCE).all()
    # the extras do not change the map: the same spec gives the same map as without them
    again = unmask.make_explainer(region_model(), **done.spec).explain(region_images(2))
    assert torch.equal(again.saliency, done.saliency)


@pytest.mark.parametrize(
    ("method", "kwargs", "steps"),
    [
        ("mp", {"mask_size": 4, "steps": 3, "jitter": 0}, 3),
        ("fido", {"mask_size": 4, "steps": 3, "samples": 2}, 3),
        ("pixelmask", {"steps": 3, "noise_bs": 1}, 3),
        ("shearletx", {"steps": 3, "noise_bs": 1}, 3),
    ],
)
def test_every_mask_optimisation_records_its_loss(method, kwargs, steps):
    e, warned = _run(method, **kwargs)
    loss = e.extras["loss"]
    assert loss.shape == (2, steps) and torch.isfinite(loss).all()
    converged, change = convergence(loss)
    assert torch.equal(e.extras["converged"], converged)
    assert torch.equal(e.extras["loss_change"], change)
    assert bool(len(warned)) == (not bool(converged.all()))
    assert e[1].extras["loss"].shape == (1, steps)  # batch first: an image's curve slices out


def test_mp2_converged_is_its_stopping_rule():
    e, warned = _run("mp2", mask_size=4, cells_per_iteration=2)
    assert torch.equal(e.extras["converged"], e.extras["reached"])
    assert e.extras["loss"].shape[0] == 2
    assert bool(len(warned)) == (not bool(e.extras["reached"].all()))
    short, warned = _run("mp2", mask_size=4, max_iterations=1, threshold=1e-9)
    assert not short.extras["reached"].all() and len(warned) == 1
