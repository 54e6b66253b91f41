"""Randomisation of the explained class: random logit (kind ``"explainer"``).

**random_logit** (Sixt, Granz & Landgraf, "When explanations lie: why many modified BP
attributions fail", ICML 2020; quantus ``RandomLogit``): per image, the similarity between the
explanation of the target class and the explanation of a class drawn at random among the other
classes. A method whose maps do not depend on the class scores 1 under SSIM; lower is better.

The random classes are drawn from ``seed``: the i-th image of a batch gets the i-th draw of one
generator (as quantus, which seeds numpy once per call), uniformly among the classes not in its
target (a set of classes excludes all its members).

The parameter randomisation test (Adebayo et al. 2018) re-runs a method on randomised copies of
the model, so it needs the method, not a bound explainer: it is the study
:func:`unmask.studies.cascading_randomisation` / :func:`unmask.studies.independent_randomisation`
and is not registered as a metric.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_positive
from ..registry import METRICS
from ._explain import prepare_explainer_inputs, run_maps
from .similarity import SIMILARITIES, similarity_function

__all__ = ["random_logit", "random_classes", "RandomLogit"]


def _check_seed(seed: object) -> int:
    check_positive(seed, "seed", integer=True, allow_zero=True)
    return int(seed)  # type: ignore[call-overload]


def random_classes(target: Tensor, num_classes: int, seed: int) -> Tensor:
    """One class per image (B,) drawn uniformly among the classes not in its target.

    Args:
        target: (B,) long classes or (B, K) bool class sets.
        num_classes: K.
        seed: seed of the draws (the i-th image gets the i-th draw).

    Example:
        >>> c = random_classes(torch.tensor([0, 1, 2, 3]), 4, seed=0)
        >>> bool((c != torch.tensor([0, 1, 2, 3])).all())
        True
    """
    if target.dtype == torch.bool:
        allowed = ~target
    else:
        allowed = torch.ones(target.shape[0], num_classes, dtype=torch.bool)
        allowed[torch.arange(target.shape[0]), target] = False
    counts = allowed.sum(1)
    if bool((counts == 0).any()):
        i = int((counts == 0).nonzero()[0])
        raise ValueError(f"target: image {i}'s target holds every class; random_logit needs "
                         f"another class to draw")
    u = torch.rand(target.shape[0], generator=torch.Generator().manual_seed(seed),
                   dtype=torch.float64)
    k = torch.minimum((u * counts).long(), counts - 1)  # the k-th allowed class
    order = torch.cumsum(allowed.long(), 1) - 1
    return ((order == k[:, None]) & allowed).long().argmax(1)


def random_logit(model: Any, x: Tensor, explainer: Any, target: Any = None, *,
                 similarity: str = "ssim", seed: int = 0, batch_size: int = 16) -> Tensor:
    """Random logit (Sixt et al. 2020) per image (B,): similarity of the target's map and of a
    random other class's map; lower is better.

    Args:
        model: an :class:`unmask.Classifier` (its classes are drawn from).
        x: images (B, 3, H, W) in [0, 1].
        explainer: an explainer (``explain(x, target)``) or ``fn(x, target)`` -> maps.
        target: None (top-1), a class or a set of classes per image.
        similarity: ``"ssim"`` (default, as quantus), ``"hog"``, ``"spearman"``,
            ``"spearman_abs"`` (:mod:`unmask.metrics.similarity`).
        seed: seed of the random classes.
        batch_size: images per explainer call.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> blind = lambda x, t: region_mask(32, 32).float().expand(len(x), 1, 32, 32)
        >>> random_logit(region_model(), region_images(2, 32), blind).tolist()
        [1.0, 1.0]
    """
    if similarity not in SIMILARITIES:
        similarity_function(similarity)  # raises the named error
    seed = _check_seed(seed)
    model, x, explain, t, _ = prepare_explainer_inputs(model, x, explainer, target, batch_size)
    other = random_classes(t, model.num_classes, seed)
    own = run_maps(explain, x, t, batch_size)
    off = run_maps(explain, x, other, batch_size)
    return SIMILARITIES[similarity](own.float(), off.float()).double()


@METRICS.register("random_logit")
class RandomLogit:
    """Random logit (Sixt et al. 2020): SSIM of the target's and a random class's map; lower is
    better. Kind ``"explainer"``: ``metric(model, x, explainer, target=None)``.

    Args:
        similarity: the map similarity (default ``"ssim"``).
        seed: seed of the random classes.
        batch_size: images per explainer call.
    """

    kind = "explainer"
    higher_is_better = False

    def __init__(self, similarity: str = "ssim", seed: int = 0, batch_size: int = 16) -> None:
        if similarity not in SIMILARITIES:
            similarity_function(similarity)
        self.similarity = similarity
        self.seed = _check_seed(seed)
        check_positive(batch_size, "batch_size", integer=True)
        self.batch_size = batch_size

    def __call__(self, model: Any, x: Tensor, explainer: Any, target: Any = None) -> Tensor:
        """Per-image values (B,)."""
        return random_logit(model, x, explainer, target, similarity=self.similarity,
                            seed=self.seed, batch_size=self.batch_size)

    def __repr__(self) -> str:
        return f"RandomLogit(similarity={self.similarity!r}, seed={self.seed})"
