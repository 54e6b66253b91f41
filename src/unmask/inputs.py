"""One input preparation for methods, metrics and studies: the model, the images, the target.

:func:`check_inputs` checks the three at the public boundary (errors name the argument);
:func:`prepare` also turns ``target=None`` into each image's top-1 class. Methods, metrics
and studies call one of them instead of checking on their own. :func:`check_explainer` does
the same for an explainer handed to a metric or made by a study's factory (the conventions:
:data:`unmask._types.ExplainerLike`, :data:`unmask._types.ExplainerFactory`).

Example:
    >>> from unmask.testing import region_images, region_model
    >>> model, x, t = prepare(region_model(), region_images(2), None)
    >>> tuple(x.shape), t.tolist()
    ((2, 3, 32, 32), [1, 1])
"""

from __future__ import annotations

from torch import Tensor

from ._checks import check_targets
from ._types import ExplainFn, Model, Target
from .models import Classifier, as_classifier, check_model_input
from .scoring import Scorer

__all__ = ["check_explainer", "check_inputs", "prepare"]


def check_inputs(
    model: Model, x: object, target: Target | object, name: str = "target"
) -> tuple[Classifier, Tensor, Tensor | None]:
    """Check a model, images and a target.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        target: as :func:`unmask._checks.check_targets` takes it (None: decided later).
        name: the target's argument name in error messages.

    Returns:
        The model, the images on its device in its floating dtype, and the targets ((B,) long or
        (B, K) bool, on the CPU), or None when ``target`` is None.
    """
    model = as_classifier(model, "model")
    x = check_model_input(model, x, "x")
    return model, x, check_targets(target, x.shape[0], model.num_classes, name)


def prepare(
    model: Model,
    x: object,
    target: Target | object,
    scorer: Scorer | None = None,
    name: str = "target",
) -> tuple[Classifier, Tensor, Tensor]:
    """:func:`check_inputs`, with ``target=None`` made each image's top-1 class (by ``scorer``,
    default a :class:`~unmask.scoring.Scorer` of the model)."""
    model, x, t = check_inputs(model, x, target, name)
    if t is None:
        t = (scorer or Scorer(model)).top1(x)
    return model, x, t


def check_explainer(explainer: object, name: str = "explainer") -> ExplainFn:
    """The function ``(x, target) -> Explanation or maps`` of an explainer: its ``explain``
    method, or the explainer itself when it is such a function (a TypeError otherwise).

    Example:
        >>> check_explainer(lambda x, target: x.mean(1, keepdim=True)).__name__
        '<lambda>'
    """
    explain = getattr(explainer, "explain", None)
    if callable(explain):
        return explain
    if callable(explainer):
        return explainer
    raise TypeError(
        f"{name}: expected an explainer (an object with explain(x, target)) or a "
        f"function fn(x, target), got {type(explainer).__name__}"
    )
