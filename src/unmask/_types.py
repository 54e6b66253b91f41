"""Named types for what the API passes around: a model, a target, images, maps.

Aliases for type checkers and readers (as captum's ``_utils/typing.py``): at run time they are
plain objects and change nothing. ``Images``, ``Saliency`` and ``Mask`` are tensors whose shape
and range the name states; :data:`Target` is what a public function accepts as a target,
:data:`Targets` what :func:`unmask._checks.check_targets` turns it into.

Example:
    >>> from unmask._types import Images, Target
    >>> def top1(x: Images, target: Target = None) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from typing import TYPE_CHECKING, Protocol, TypeAlias

from torch import Tensor

if TYPE_CHECKING:  # for the string aliases only (models imports nothing from here)
    import numpy as np

    from .explanation import Explanation
    from .models import Classifier

__all__ = [
    "ClassSet",
    "ExplainFn",
    "Explainer",
    "ExplainerFactory",
    "ExplainerLike",
    "Images",
    "Mask",
    "Model",
    "ModelLike",
    "Saliency",
    "SaliencyLike",
    "Target",
    "Targets",
]

Images: TypeAlias = Tensor
"""Images (B, 3, H, W), float, values in [0, 1]."""

Saliency: TypeAlias = Tensor
"""Saliency maps (B, 1, H, W), float (signed or not, as the method returns them)."""

SaliencyLike: TypeAlias = "Tensor | np.ndarray | Explanation"
"""Maps as the metrics accept them: a tensor or array (B, 1, h, w), or an Explanation."""

Mask: TypeAlias = Tensor
"""Masks (B, 1, H, W) or (B, S, 1, H, W), values in [0, 1] (1 = removed or kept, as stated)."""

ClassSet: TypeAlias = Set[int]
"""A cluster of classes that together form one target (CWOX, set targets)."""

Target: TypeAlias = (
    "int | np.integer | ClassSet "
    "| Sequence[int | np.integer | ClassSet | Sequence[int]] | Tensor | np.ndarray | None"
)
"""A target as the public API accepts it: None (top-1), one class or set for every image, one
class or set (a set, list or tuple of classes) per image, a long tensor (B,) or a boolean
membership tensor (B, K), or a score function of the logits ``f(logits (N, K)) -> (N,)`` (or
one per image)."""

Targets: TypeAlias = Tensor
"""Checked targets: a long tensor (B,) of classes or a boolean membership tensor (B, K)."""

Model: TypeAlias = "Classifier"
"""A wrapped classifier (:class:`unmask.Classifier`)."""

ModelLike: TypeAlias = "Classifier | str"
"""What :func:`unmask.models.as_classifier` accepts: a Classifier or a model name to load."""


class Explainer(Protocol):
    """What every explanation method offers: ``explain(x, target=None) -> Explanation``.

    Black-box methods also offer ``explain_each(x, targets) -> list[Explanation]``: several
    targets from one pass of the model over the perturbations.
    """

    model: Classifier

    def explain(self, x: Tensor, target: Target = None) -> Explanation: ...


ExplainFn: TypeAlias = "Callable[[Tensor, Tensor], Explanation | Tensor]"
"""An explainer as a function: ``fn(x, target) -> Explanation or maps (B, 1, h, w)``."""

ExplainerLike: TypeAlias = "Explainer | ExplainFn"
"""What a metric of kind ``"explainer"`` is handed: an explainer bound to a model, or a function
(:func:`unmask.inputs.check_explainer` turns either into an :data:`ExplainFn`)."""

ExplainerFactory: TypeAlias = "Callable[..., ExplainerLike]"
"""What a study runs when it is not given a registered name: ``make(model, **hyperparameters)``
returning an explainer for ``model`` (as :func:`unmask.make_explainer` with the name bound);
studies call it once per model, setting or seed."""
