"""The one-call entry points: ``unmask.explain`` and ``unmask.list_methods``."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from . import explainers  # noqa: F401  (registers every method)
from .explanation import Explanation
from .registry import METHODS

__all__ = ["explain", "list_methods", "make_explainer"]


def list_methods(aliases: bool = False) -> list[str]:
    """The registered explanation method names (sorted), with aliases when asked."""
    return METHODS.names(aliases=aliases)


def make_explainer(model: Any, method: str, seed: int = 0, **hyperparameters: Any) -> Any:
    """Build the explainer registered as ``method`` for ``model``.

    ``seed`` is passed to methods that use randomness and ignored by deterministic ones.
    Unknown hyperparameters raise a ValueError naming the method's accepted ones.
    """
    entry = METHODS.get(method)
    if entry.accepts("seed"):
        hyperparameters["seed"] = seed
    return entry.build(model, **hyperparameters)


def explain(model: Any, x: Tensor, method: str = "occlusion", target: Any = None, seed: int = 0,
            **hyperparameters: Any) -> Explanation:
    """Explain ``model``'s decision on images ``x`` with one registered method.

    Args:
        model: an :class:`unmask.Classifier` (see :func:`unmask.load_model`).
        x: images (B, 3, H, W) in [0, 1].
        method: a name from :func:`list_methods`.
        target: ``None`` (each image's top-1 class), an int, or one class per image.
        seed: random seed for stochastic methods.
        **hyperparameters: the method's own (see its class docstring), e.g. ``removal=``.

    Returns:
        An :class:`Explanation` with ``saliency`` (B, 1, H, W).
    """
    return make_explainer(model, method, seed=seed, **hyperparameters).explain(x, target)
