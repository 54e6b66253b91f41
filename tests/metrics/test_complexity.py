"""The complexity family against independent re-implementations of the papers' formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unmask.metrics import evaluate
from unmask.metrics.complexity import (
    EffectiveComplexity,
    complexity,
    effective_complexity,
    sparseness,
)


def maps() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(3, 1, 6, 7, generator=gen, dtype=torch.float64)
    m[1] = m[1].clamp(min=0) ** 3  # peaked, non-negative
    m[2, 0, 2:4, 2:4] = 0.0
    return m


def hurley_gini(c: np.ndarray) -> float:
    """Gini index as Hurley & Rickard (2009) write it: 1 - 2 Σ_k c_(k)/|c|_1 (n - k + 1/2)/n."""
    c = np.sort(c)
    n = c.size
    k = np.arange(1, n + 1)
    return float(1 - 2 * np.sum(c / c.sum() * (n - k + 0.5) / n))


def test_sparseness_is_the_gini_index_of_the_max_normalised_map():
    m = maps()
    for i, value in enumerate(sparseness(m)):
        a = np.abs(m[i].numpy().ravel())
        assert float(value) == pytest.approx(hurley_gini(a / a.max() + 1e-7), abs=1e-12)
    one_hot = torch.zeros(1, 1, 4, 4)
    one_hot[..., 1, 2] = -3.0
    assert float(sparseness(one_hot)) == pytest.approx(1 - 1 / 16, abs=1e-5)
    assert float(sparseness(torch.full((1, 1, 4, 4), 2.0))) == pytest.approx(0.0, abs=1e-12)


def test_complexity_is_the_entropy_of_the_normalised_map():
    m = maps()
    for i, value in enumerate(complexity(m)):
        p = np.abs(m[i].numpy().ravel())
        p = p / p.sum()
        p = p[p > 0]
        assert float(value) == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-12)
    assert float(complexity(torch.ones(1, 1, 5, 5))) == pytest.approx(math.log(25))
    assert math.isnan(float(complexity(torch.zeros(1, 1, 3, 3))))


def test_effective_complexity_counts_entries_above_eps():
    m = maps()
    for eps in (1e-5, 0.1, 0.5):
        got = effective_complexity(m, eps)
        for i in range(3):
            a = np.abs(m[i].numpy().ravel())
            assert float(got[i]) == float(np.sum(a / a.max() > eps))
    assert float(effective_complexity(torch.zeros(1, 1, 3, 3))) == 0.0
    assert float(EffectiveComplexity(eps=0.5)(m[1:2])) == float(effective_complexity(m[1:2], 0.5))
    with pytest.raises(ValueError, match="eps"):
        EffectiveComplexity(eps=-1)


def test_map_metrics_through_evaluate_need_no_model():
    m = maps().float()
    out = evaluate(None, None, m, ["sparseness", "complexity", "effective_complexity"])
    torch.testing.assert_close(out["sparseness"], sparseness(m))
    assert out["complexity"].shape == (3,)
