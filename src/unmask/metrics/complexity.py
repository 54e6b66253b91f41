"""The complexity family: properties of a map alone (kind ``"map"``, no model, no images).

As quantus 0.6.0 (its defaults ``abs=True, normalise=True`` with ``normalise_by_max``), each map
is first made ``a = |s| / max |s|`` (per image; an all-zero map stays zero):

- **sparseness** (Chalasani et al., "Concise explanations of neural networks using adversarial
  training", ICML 2020): the Gini index of ``a + 1e-7`` (quantus' offset), sorted ascending,
  ``Σ_i (2i - n - 1) a_(i) / (n Σ_i a_i)``; in [0, 1), higher = sparser, better.
- **complexity** (Bhatt et al., "Evaluating and aggregating feature-based model explanations",
  IJCAI 2020): the entropy ``-Σ p_i ln p_i`` of ``p = a / Σ a``; lower is better. NaN for an
  all-zero map (no distribution; quantus divides by zero too).
- **effective_complexity** (Nguyen & Martínez, "On quantitative aspects of model
  interpretability", 2020): the number of entries of ``a`` above ``eps`` (default 1e-5); lower
  is better.

The maps are read as given: (B, 1, h, w), one value per map pixel. quantus reads attributions
at the input's shape; a map repeated over C channels gives the same sparseness up to the
offset, an entropy larger by ``ln C`` and C times the count.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._types import SaliencyLike
from ..numerics import maxabs_normalise
from ..registry import METRICS
from ._prepare import check_saliency

__all__ = [
    "Sparseness",
    "Complexity",
    "EffectiveComplexity",
    "sparseness",
    "complexity",
    "effective_complexity",
    "normalise_by_max",
]


def normalise_by_max(saliency: SaliencyLike) -> Tensor:
    """``|s| / max |s|`` per map, flattened: (B, 1, h, w) -> (B, h·w) float64."""
    return maxabs_normalise(check_saliency(saliency).flatten(1).double().abs())


def sparseness(saliency: SaliencyLike) -> Tensor:
    """Gini index of each map (B,) float64; higher = sparser.

    Example:
        >>> one_hot = torch.zeros(1, 1, 4, 4); one_hot[..., 0, 0] = 1
        >>> flat = torch.ones(1, 1, 4, 4)
        >>> round(float(sparseness(one_hot)), 4), round(float(sparseness(flat)), 4)
        (0.9375, 0.0)
    """
    a = torch.sort(normalise_by_max(saliency) + 1e-7, dim=1).values
    n = a.shape[1]
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return ((2 * i - n - 1) * a).sum(1) / (n * a.sum(1))


def complexity(saliency: SaliencyLike) -> Tensor:
    """Entropy of each normalised map (B,) float64 (natural log); lower = simpler.

    Example:
        >>> round(float(complexity(torch.ones(1, 1, 4, 4))), 4) == round(math.log(16), 4)
        True
    """
    a = normalise_by_max(saliency)
    total = a.sum(1, keepdim=True)
    p = a / total
    h = -torch.where(p > 0, p * torch.log(torch.where(p > 0, p, 1.0)), 0.0).sum(1)
    return torch.where(total[:, 0] > 0, h, math.nan)


def effective_complexity(saliency: SaliencyLike, eps: float = 1e-5) -> Tensor:
    """Number of entries of ``|s| / max |s|`` above ``eps``, per map (B,) float64.

    Example:
        >>> effective_complexity(torch.tensor([[[[0.0, 0.5], [1.0, 0.0]]]]))
        tensor([2.], dtype=torch.float64)
    """
    return (normalise_by_max(saliency) > eps).sum(1).double()


class _MapMetric:
    kind = "map"
    higher_is_better = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@METRICS.register("sparseness")
class Sparseness(_MapMetric):
    """Sparseness (Chalasani et al. 2020): the Gini index of the map; higher is better.

    Example:
        >>> from unmask.testing import region_mask
        >>> Sparseness()(region_mask(16, 16).float()).shape
        torch.Size([1])
    """

    higher_is_better = True

    def __call__(self, saliency: SaliencyLike) -> Tensor:
        """Per-map values (B,) for maps (B, 1, h, w)."""
        return sparseness(saliency)


@METRICS.register("complexity")
class Complexity(_MapMetric):
    """Complexity (Bhatt et al. 2020): entropy of the normalised |map|; lower is better."""

    def __call__(self, saliency: SaliencyLike) -> Tensor:
        """Per-map values (B,) for maps (B, 1, h, w)."""
        return complexity(saliency)


@METRICS.register("effective_complexity")
class EffectiveComplexity(_MapMetric):
    """Effective complexity (Nguyen & Martínez 2020): entries above a threshold; lower is better.

    Args:
        eps: the threshold on ``|s| / max |s|`` (quantus' default 1e-5).
    """

    def __init__(self, eps: float = 1e-5) -> None:
        if (
            isinstance(eps, bool)
            or not isinstance(eps, int | float)
            or not math.isfinite(eps)
            or eps < 0
        ):
            raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
        self.eps = float(eps)

    def __call__(self, saliency: SaliencyLike) -> Tensor:
        """Per-map values (B,) for maps (B, 1, h, w)."""
        return effective_complexity(saliency, self.eps)

    def __repr__(self) -> str:
        return f"EffectiveComplexity(eps={self.eps})"
