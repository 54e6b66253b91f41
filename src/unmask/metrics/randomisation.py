"""Randomisation of the explained class: random logit (kind ``"explainer"``).

**random_logit** (Sixt, Granz & Landgraf, "When explanations lie: why many modified BP
attributions fail", ICML 2020; quantus ``RandomLogit``): per image, the similarity between the
explanation of the target class and the explanation of a class drawn at random among the other
classes. A method whose maps do not depend on the class scores 1 under SSIM; lower is better.

The random classes are drawn from ``seed``: the i-th image of a batch gets the i-th draw of one
generator (as quantus, which seeds numpy once per call), uniformly among the classes not in its
target (a set of classes excludes all its members).

**model_parameter_randomisation** (Adebayo et al., "Sanity checks for saliency maps", NeurIPS
2018; quantus ``ModelParameterRandomisation``): the explainer is rebuilt from its spec (its
registered name and hyperparameters, :func:`unmask.registry.spec_of`) on copies of the model
whose layers are re-initialised from the top down, cumulatively (``mode="cascading"``) or one
at a time (``"independent"``), with the layer order and seeds of
:mod:`unmask.model_randomisation` (those of the studies
:func:`unmask.studies.cascading_randomisation` / :func:`~unmask.studies.independent_randomisation`,
which give the per-layer curves). Per image, the similarity of the original map and each
randomised map, averaged over the layers (``reduce="mean"``) or the last step's
(``reduce="last"``: every layer random in the cascading test). Lower is better: a map that
stays alike does not depend on the model. quantus returns the per-layer similarities (a dict),
here reduced to one value per image so that it is a metric; the curve is the study's.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import check_choice, check_positive, check_seed
from .._types import Model, Target
from ..model_randomisation import randomisation_order, randomise_layer
from ..params import BatchSize, Seed
from ..registry import METRICS
from ._explain import prepare_explainer_inputs, rebuilder, run_maps
from .similarity import SIMILARITIES, Similarity

__all__ = [
    "random_logit",
    "random_classes",
    "RandomLogit",
    "model_parameter_randomisation",
    "ModelParameterRandomisation",
    "MODES",
    "REDUCTIONS",
]

#: The two randomisation tests, and how the per-layer similarities become one value.
MODES = ("cascading", "independent")
REDUCTIONS = ("mean", "last")


def _check_similarity(similarity: object) -> None:
    if not isinstance(similarity, str) or similarity not in SIMILARITIES:
        raise ValueError(
            f"similarity: expected one of {', '.join(map(repr, SIMILARITIES))}, got {similarity!r}"
        )


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
        raise ValueError(
            f"target: image {i}'s target holds every class; random_logit needs "
            f"another class to draw"
        )
    u = torch.rand(
        target.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    k = torch.minimum((u * counts).long(), counts - 1)  # the k-th allowed class
    order = torch.cumsum(allowed.long(), 1) - 1
    return ((order == k[:, None]) & allowed).long().argmax(1)


def random_logit(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    similarity: str = "ssim",
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
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
    _check_similarity(similarity)
    seed = check_seed(seed)
    model, x, explain, t, _ = prepare_explainer_inputs(model, x, explainer, target, batch_size)
    other = random_classes(t, model.num_classes, seed)
    own = run_maps(explain, x, t, batch_size)
    off = run_maps(explain, x, other, batch_size)
    return SIMILARITIES[similarity](own.float(), off.float()).double()


@METRICS.register("random_logit", cost=lambda p, size: 0)
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

    def __init__(
        self, similarity: Similarity = "ssim", seed: Seed = 0, batch_size: BatchSize = 16
    ) -> None:
        _check_similarity(similarity)
        self.similarity = similarity
        self.seed = check_seed(seed)
        check_positive(batch_size, "batch_size", integer=True)
        self.batch_size = batch_size

    def __call__(self, model: Model, x: Tensor, explainer: Any, target: Target = None) -> Tensor:
        """Per-image values (B,)."""
        return random_logit(
            model,
            x,
            explainer,
            target,
            similarity=self.similarity,
            seed=self.seed,
            batch_size=self.batch_size,
        )

    def __repr__(self) -> str:
        return f"RandomLogit(similarity={self.similarity!r}, seed={self.seed})"


def model_parameter_randomisation(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    mode: str = "cascading",
    similarity: str = "ssim",
    reduce: str = "mean",
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
    """Model parameter randomisation (Adebayo et al. 2018) per image (B,) float64; lower is
    better.

    Args:
        model: an :class:`unmask.Classifier` (deep-copied, never modified).
        x: images (B, 3, H, W) in [0, 1].
        explainer: a registered explainer (``unmask.make_explainer``); rebuilt on each
            randomised model from its spec.
        target: None (the intact model's top-1), a class or a set of classes per image; kept
            for every step.
        mode: ``"cascading"`` (top down, cumulative) or ``"independent"`` (one layer at a time).
        similarity: the map similarity (default ``"ssim"``, :mod:`unmask.metrics.similarity`).
        reduce: ``"mean"`` over the layers or the ``"last"`` step's similarity.
        seed: seed of the re-initialisation (step k uses ``seed + k``, as the studies).
        batch_size: images per explainer call.

    Example:
        >>> from unmask import make_explainer
        >>> from unmask.testing import conv_region_model, region_images
        >>> m = conv_region_model()
        >>> v = model_parameter_randomisation(m, region_images(2, 32), make_explainer(m, "gradcam"))
        >>> bool((v < 0.9).all())
        True
    """
    mode = check_choice(mode, "mode", MODES)
    reduce = check_choice(reduce, "reduce", REDUCTIONS)
    _check_similarity(similarity)
    seed = check_seed(seed)
    model, x, explain, t, _ = prepare_explainer_inputs(model, x, explainer, target, batch_size)
    rebuild = rebuilder(explainer, "model_parameter_randomisation")
    order = randomisation_order(model)
    if not order:
        raise ValueError("model: has no parameters to randomise")
    sim = SIMILARITIES[similarity]
    original = run_maps(explain, x, t, batch_size).float()
    randomised = copy.deepcopy(model).eval()
    values = []
    for k, name in enumerate(order):
        if mode == "independent" and k:
            randomised = copy.deepcopy(model).eval()
        randomise_layer(dict(randomised.named_modules())[name], seed + k)
        maps = run_maps(rebuild(randomised).explain, x, t, batch_size).float()
        values.append(sim(original, maps).double())
    v = torch.stack(values)  # (L, B)
    return torch.nanmean(v, dim=0) if reduce == "mean" else v[-1]


@METRICS.register("model_parameter_randomisation", aliases=("mprt",), cost=lambda p, size: 0)
class ModelParameterRandomisation:
    """Model parameter randomisation (Adebayo et al. 2018): similarity of the maps before and
    after re-initialising the model's layers (cascading, SSIM, mean over layers); lower is
    better. Kind ``"explainer"``; the explainer must be a registered one (rebuilt per step).

    Args:
        mode, similarity, reduce, seed, batch_size: as :func:`model_parameter_randomisation`.
    """

    kind = "explainer"
    higher_is_better = False

    def __init__(
        self,
        mode: Literal["cascading", "independent"] = "cascading",
        similarity: Similarity = "ssim",
        reduce: Literal["mean", "last"] = "mean",
        seed: Seed = 0,
        batch_size: BatchSize = 16,
    ) -> None:
        self.mode = check_choice(mode, "mode", MODES)
        self.reduce = check_choice(reduce, "reduce", REDUCTIONS)
        _check_similarity(similarity)
        self.similarity = similarity
        self.seed = check_seed(seed)
        check_positive(batch_size, "batch_size", integer=True)
        self.batch_size = batch_size

    def __call__(self, model: Model, x: Tensor, explainer: Any, target: Target = None) -> Tensor:
        """Per-image values (B,)."""
        return model_parameter_randomisation(
            model,
            x,
            explainer,
            target,
            mode=self.mode,
            similarity=self.similarity,
            reduce=self.reduce,
            seed=self.seed,
            batch_size=self.batch_size,
        )

    def __repr__(self) -> str:
        return (
            f"ModelParameterRandomisation(mode={self.mode!r}, "
            f"similarity={self.similarity!r}, reduce={self.reduce!r}, seed={self.seed})"
        )
