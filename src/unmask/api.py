"""The one-call entry points: ``unmask.explain`` and ``unmask.list_methods``."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ._types import Model, Target
from .explanation import Explanation
from .registry import METHODS

__all__ = ["explain", "explain_each", "list_methods", "make_explainer"]


def list_methods(aliases: bool = False) -> list[str]:
    """The registered explanation method names (sorted), with aliases when asked."""
    return METHODS.names(aliases=aliases)


def make_explainer(model: Model, method: str, seed: int = 0, **hyperparameters: Any) -> Any:
    """Build the explainer registered as ``method`` for ``model``.

    ``seed`` is passed to methods that use randomness and ignored by deterministic ones.
    Unknown hyperparameters raise a ValueError naming the method's accepted ones. An
    explanation's spec rebuilds its explainer: ``make_explainer(model, **e.spec)``.
    """
    entry = METHODS.get(method)
    if entry.accepts("seed"):
        hyperparameters["seed"] = seed
    return entry.build(model, **hyperparameters)


def explain_each(
    model: Model,
    x: Tensor,
    targets: list[Any],
    method: str = "occlusion",
    seed: int = 0,
    **hyperparameters: Any,
) -> list[Explanation]:
    """One explanation per target of ``targets`` (each as ``explain`` takes ``target``).

    Black-box methods (occlusion, RISE, LIME) score each perturbation once for all targets;
    other methods run once per target.
    """
    explainer = make_explainer(model, method, seed=seed, **hyperparameters)
    each = getattr(explainer, "explain_each", None)
    if each is not None:
        return each(x, list(targets))
    return [explainer.explain(x, t) for t in targets]


def explain(
    model: Model,
    x: Tensor,
    method: str = "occlusion",
    target: Target = None,
    seed: int = 0,
    **hyperparameters: Any,
) -> Explanation:
    """Explain ``model``'s decision on images ``x`` with one registered method.

    Args:
        model: an :class:`unmask.Classifier` (see :func:`unmask.load_model`).
        x: images (B, 3, H, W) in [0, 1].
        method: a name from :func:`list_methods`.
        target: ``None`` (each image's top-1 class), a class, a set of classes (``[[486, 889]]``:
            the cluster scored as a whole), or one class or set per image; or a score function
            of the logits ``f(logits (N, K)) -> (N,)`` (or one per image).
        seed: random seed for stochastic methods.
        **hyperparameters: the method's own (see its class docstring), e.g. ``removal=``.

    Returns:
        An :class:`Explanation` with ``saliency`` (B, 1, H, W).
    """
    return make_explainer(model, method, seed=seed, **hyperparameters).explain(x, target)
