"""Sanity checks by model randomisation (Adebayo et al. 2018, "Sanity checks for saliency
maps").

An explanation that describes the model must change when the model's learned weights are
destroyed. Both tests recompute the saliency map with the same explainer and the same target
class on randomised copies of the model and measure the similarity between the original map
and each randomised one (SSIM, Spearman rank correlation of absolute values, Pearson
correlation of HOG features -- :mod:`unmask.metrics.similarity`):

- **cascading** (:func:`cascading_randomisation`): the layers are re-initialised **from the top
  (logits) down, one at a time and cumulatively** (step k: layers 1..k random);
- **independent** (:func:`independent_randomisation`): **one layer at a time**, every other
  layer keeping its trained weights (step k: only layer k random), which tells which layers a
  method is sensitive to.

A method that passes shows similarities that fall towards 0 as more layers are randomised; a
map that stays similar does not depend on the model (an edge detector would stay at 1).

Layers: the modules that own parameters directly (``module.parameters(recurse=False)`` is not
empty; for usual networks the leaf layers: convolutions, linear layers, normalisation layers),
in **module registration order, reversed** -- the last registered layer (normally the
classifier head) goes first. Registration order is the order of ``__init__``; it matches the
forward order for ``nn.Sequential`` and conventionally written networks, which is what "from
the top" assumes. Pass ``layers=[...]`` to give the order yourself.

Re-initialisation, on a deep copy of the model (the given model is never modified): a module
with ``reset_parameters()`` (every torch layer) is reset by it -- PyTorch's own default
initialisation, and for normalisation layers also their running statistics -- under a CPU/CUDA
random state seeded with ``seed + step``; a module without it gets every own parameter redrawn
from N(0, rms²), with ``rms`` the root mean square of the parameter's trained values, from a
generator seeded the same way. Layer k (in the order tested) always uses ``seed + k``, so the
independent test's layer k gets exactly the weights it gets at step k of the cascading test.
Same seed -> same randomised models -> same results.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._checks import check_seed
from .._types import ExplainerFactory, Model, Target
from ..inputs import prepare
from ..metrics.similarity import similarity_function
from ..model_randomisation import randomisation_order, randomise_layer
from .robustness import run_explainer

__all__ = [
    "randomisation_order",
    "randomise_layer",
    "cascading_randomisation",
    "independent_randomisation",
    "SanityResult",
    "MODES",
]

#: The two randomisation tests.
MODES = ("cascading", "independent")


@dataclass
class SanityResult:
    """The results of a randomisation test.

    Attributes:
        layers: the randomised module names, in order (cascading: step k randomises
            layers[0..k]; independent: only layers[k]).
        similarity: similarity name -> (L, B): original map vs the map after step k.
        original: (B, 1, H, W) the map of the intact model.
        maps: (L, B, 1, H, W) the maps after each step (None unless ``keep_maps``).
        target: (B,) the explained classes (fixed for every step).
        mode: ``"cascading"`` or ``"independent"``.
    """

    layers: list[str]
    similarity: dict[str, Tensor]
    original: Tensor = field(repr=False)
    maps: Tensor | None = field(repr=False)
    target: Tensor = field(repr=False)
    mode: str = "cascading"

    def mean(self, name: str) -> Tensor:
        """(L,) the similarity ``name`` after each step, averaged over images (NaN left out)."""
        return torch.nanmean(self.similarity[name], dim=1)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per step: ``{"step", "layer", <similarity>: mean over images, ...}``."""
        means = {n: self.mean(n) for n in self.similarity}
        return [
            {"step": k + 1, "layer": layer, **{n: float(v[k]) for n, v in means.items()}}
            for k, layer in enumerate(self.layers)
        ]


def _randomisation(
    mode: str,
    model: Model,
    x: Tensor,
    method: str | ExplainerFactory,
    target: Target,
    seed: int,
    similarities: Sequence[str],
    layers: Sequence[str] | None,
    keep_maps: bool,
    hyperparameters: dict[str, Any],
) -> SanityResult:
    check_seed(seed)
    functions = {n: similarity_function(n) for n in similarities}
    if not functions:
        raise ValueError("similarities: expected at least one similarity name")
    model, x, t = prepare(model, x, target)
    order = randomisation_order(model) if layers is None else list(layers)
    modules = dict(model.named_modules())
    unknown = [n for n in order if n not in modules]
    if unknown:
        raise ValueError(
            f"layers: {unknown[0]!r} is not a module of the model; "
            f"expected names like {randomisation_order(model)[:3]}"
        )
    if not order:
        raise ValueError("model: has no parameters to randomise")
    original = run_explainer(model, x, method, t, **hyperparameters)
    randomised = copy.deepcopy(model).eval()
    values: dict[str, list[Tensor]] = {n: [] for n in functions}
    maps = []
    for k, name in enumerate(order):
        if mode == "independent" and k:
            randomised = copy.deepcopy(
                model
            ).eval()  # every other layer back to its trained weights
        randomise_layer(dict(randomised.named_modules())[name], seed + k)
        m = run_explainer(randomised, x, method, t, **hyperparameters)
        for n, fn in functions.items():
            values[n].append(fn(original, m))
        if keep_maps:
            maps.append(m)
    return SanityResult(
        order,
        {n: torch.stack(v) for n, v in values.items()},
        original,
        torch.stack(maps) if keep_maps else None,
        t,
        mode,
    )


def cascading_randomisation(
    model: Model,
    x: Tensor,
    method: str | ExplainerFactory = "occlusion",
    target: Target = None,
    *,
    seed: int = 0,
    similarities: Sequence[str] = ("ssim", "spearman_abs", "hog"),
    layers: Sequence[str] | None = None,
    keep_maps: bool = False,
    **hyperparameters: Any,
) -> SanityResult:
    """Adebayo et al.'s cascading randomisation test for one explainer.

    Args:
        model: an :class:`unmask.Classifier` (it is deep-copied, never modified).
        x: images (B, 3, H, W) in [0, 1].
        method: a registered method name (run with ``unmask.explain``) or a factory
            ``make(model, **hyperparameters)`` returning an explainer for the (randomised)
            model: an object with ``explain(x, target)`` or a function ``fn(x, target)``.
        target: class per image; None = the intact model's top-1, kept for every step.
        seed: seed of the re-initialisation (step k uses ``seed + k``).
        similarities: names from :data:`unmask.metrics.similarity.SIMILARITIES`.
        layers: module names to randomise, in this order (default :func:`randomisation_order`).
        keep_maps: keep every step's maps in the result.
        **hyperparameters: passed to the explainer at every step (e.g. ``patch_size=4``).

    Returns:
        A :class:`SanityResult` with one (L, B) tensor per similarity.

    Example:
        >>> import torch, unmask
        >>> from unmask.testing import region_model, region_images
        >>> r = cascading_randomisation(region_model(), region_images(1, 16), "occlusion",
        ...                             similarities=("spearman",), patch_size=4, stride=4)
        >>> r.layers, tuple(r.similarity["spearman"].shape)
        (['net'], (1, 1))
    """
    return _randomisation(
        "cascading",
        model,
        x,
        method,
        target,
        seed,
        similarities,
        layers,
        keep_maps,
        hyperparameters,
    )


def independent_randomisation(
    model: Model,
    x: Tensor,
    method: str | ExplainerFactory = "occlusion",
    target: Target = None,
    *,
    seed: int = 0,
    similarities: Sequence[str] = ("ssim", "spearman_abs", "hog"),
    layers: Sequence[str] | None = None,
    keep_maps: bool = False,
    **hyperparameters: Any,
) -> SanityResult:
    """Adebayo et al.'s independent (layer-by-layer) randomisation test for one explainer.

    Step k re-initialises only layer k (as :func:`cascading_randomisation` does at its step k,
    same seed ``seed + k``); every other layer keeps its trained weights. Arguments and result
    as :func:`cascading_randomisation` (``result.mode == "independent"``).

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> r = independent_randomisation(region_model(), region_images(1, 16), "occlusion",
        ...                               similarities=("spearman",), patch_size=4, stride=4)
        >>> r.mode, r.layers
        ('independent', ['net'])
    """
    return _randomisation(
        "independent",
        model,
        x,
        method,
        target,
        seed,
        similarities,
        layers,
        keep_maps,
        hyperparameters,
    )
