"""Drop-in replacement for the ``saliency_maps_metrics`` package (0.0.26; Gomez et al.).

Same classes, constructor arguments, call and result keys, so that existing evaluation code
runs unchanged after swapping the import::

    # from saliency_maps_metrics.single_step_metrics import IIC_AD, ADD
    # from saliency_maps_metrics.multi_step_metrics import Deletion, Insertion
    from unmask.metrics.compat import IIC_AD, ADD, Deletion, Insertion

    result = Deletion()(model, data, explanations, class_to_explain)   # {"dauc": .., "dc": ..}

As there, ``model`` is a plain ``torch.nn.Module`` returning softmax probabilities (N, C),
``data`` is (N, 3, H, W), ``explanations`` (N, 1, H', W') and ``class_to_explain`` (N,) (or
None: top-1). The values are the means over the images (numpy float64). The computation runs
on unmask's batched engine (:mod:`unmask.metrics.single_step`, :mod:`unmask.metrics.deletion`):
the model is wrapped with identity normalisation, no resizing, class names ``"0".."K-1"`` (K
is read from one forward pass on one image) and its output used as the score directly.
An :class:`unmask.Classifier` (which returns logits) is accepted too; its softmax is used.

Where 0.0.26 has defects, this module fixes them (documented in
``docs/metrics-faithfulness.md``, each shown by a test):

- IIC / AD / ADD normalise each map by its own min and max, not over the whole batch (the
  same numbers for a batch of one); a constant map is an all-zero mask.
- With ``class_to_explain=None``, the explained class is the top-1 of the clean image (0.0.26's
  Insertion takes the top-1 of the blurred start image).
- A map whose pixel count is not a multiple of the pixels per step (e.g. 32×32 with the default
  196 steps) works (the last step takes the remainder); 0.0.26 raises in ``torch.topk``.
- Ties in the ranking are broken by a stable sort (row-major order); 0.0.26 leaves them to
  ``torch.topk``.
Everything else matches 0.0.26 to float32 round-off, including the bicubic overshoot of the
single-step masks (not clamped here, for fidelity; :mod:`unmask.metrics.single_step` clamps it
by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice, check_images, check_positive
from .._types import Model
from ..models import Classifier
from ..removal import BoxBlur, Constant, TensorFill
from .deletion import deletion_curve, insertion_curve
from .single_step import (
    average_drop,
    average_drop_in_deletion,
    increase_in_confidence,
    single_step_scores,
)

__all__ = ["IIC_AD", "ADD", "Deletion", "Insertion"]

_REPLACE_METHODS = ("black", "blur")


def _substrate(method: object) -> Any:
    if not isinstance(method, str):
        raise TypeError(
            f"data_replace_method: expected 'black' or 'blur', got {type(method).__name__} "
            f"{method!r} (the data_shape / explanation_shape arguments of older versions of "
            "saliency_maps_metrics are not needed: drop them)"
        )
    check_choice(method, "data_replace_method", _REPLACE_METHODS)
    return Constant("black") if method == "black" else BoxBlur()


def _given_fill(fill: object, data: Tensor, name: str) -> TensorFill:
    """A fixed fill given as a tensor (the ``masking_data`` / ``data_to_replace_with`` argument)."""
    fill = check_images(fill, name)
    if fill.shape != data.shape:
        raise ValueError(
            f"{name}: expected shape {tuple(data.shape)} like data, got {tuple(fill.shape)}"
        )
    return TensorFill(fill, name)


def _wrap(model: object, data: Tensor) -> tuple[Classifier, str]:
    """The model as a Classifier and the score to read from it."""
    if isinstance(model, Classifier):
        return model, "prob"
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model: expected a torch.nn.Module returning probabilities, got {type(model).__name__}"
        )
    device = next((p.device for p in model.parameters()), data.device)
    with torch.inference_mode():  # learn the number of classes
        out = model(data[:1].to(device))
    if not isinstance(out, Tensor) or out.ndim != 2:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"model: expected an output of shape (N, C) (softmax probabilities), got {got}"
        )
    names = [str(i) for i in range(out.shape[1])]
    return Classifier(
        model,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=names,
        name=type(model).__name__,
    ), "logit"


def _mean(values: Tensor) -> np.float64:
    return np.float64(values.double().mean().item())


class _SingleStepCompat:
    replace_salient = False

    def __init__(self, data_replace_method: str = "black") -> None:
        self.data_replace_method = data_replace_method
        self._substrate = _substrate(data_replace_method)

    def _scores(
        self,
        model: Model,
        data: Tensor,
        explanations: Any,
        class_to_explain_list: Any,
        data_to_replace_with: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        data = check_images(data, "data", channels=3)
        clf, score = _wrap(model, data)
        removal = (
            self._substrate
            if data_to_replace_with is None
            else _given_fill(data_to_replace_with, data, "data_to_replace_with")
        )
        s, p, _ = single_step_scores(
            clf,
            data,
            explanations,
            class_to_explain_list,
            removal=removal,
            replace_salient=self.replace_salient,
            per_image=True,
            clamp=False,
            score=score,
            batch_size=max(1, data.shape[0]),
        )
        return s, p


class IIC_AD(_SingleStepCompat):  # noqa: N801 - the seed package's name
    """Increase in Confidence and Average Drop, as ``saliency_maps_metrics.IIC_AD``.

    Args:
        data_replace_method: ``"black"`` (default) or ``"blur"`` (box blur).

    Call ``(model, data, explanations, class_to_explain_list=None, data_to_replace_with=None)``
    -> ``{"iic": mean IIC, "ad": mean AD}``.
    """

    def __call__(
        self,
        model: Model,
        data: Tensor,
        explanations: Any,
        class_to_explain_list: Any = None,
        data_to_replace_with: Tensor | None = None,
    ) -> dict[str, np.float64]:
        s, p = self._scores(model, data, explanations, class_to_explain_list, data_to_replace_with)
        return {"iic": _mean(increase_in_confidence(s, p)), "ad": _mean(average_drop(s, p))}


class ADD(_SingleStepCompat):
    """Average Drop in Deletion, as ``saliency_maps_metrics.ADD``.

    Args:
        data_replace_method: ``"black"`` (default) or ``"blur"`` (box blur).

    Call ``(model, data, explanations, class_to_explain_list=None, data_to_replace_with=None)``
    -> ``{"add": mean ADD}``.
    """

    replace_salient = True

    def __call__(
        self,
        model: Model,
        data: Tensor,
        explanations: Any,
        class_to_explain_list: Any = None,
        data_to_replace_with: Tensor | None = None,
    ) -> dict[str, np.float64]:
        s, p = self._scores(model, data, explanations, class_to_explain_list, data_to_replace_with)
        return {"add": _mean(average_drop_in_deletion(s, p))}


class _MultiStepCompat:
    mode = "deletion"
    keys = ("dauc", "dc")

    def __init__(
        self,
        data_replace_method: str,
        bound_max_step: bool = True,
        batch_size: int = 20,
        max_step_nb: int = 14 * 14,
        cumulative: bool = True,
    ) -> None:
        self._substrate = _substrate(data_replace_method)
        check_positive(batch_size, "batch_size", integer=True)
        check_positive(max_step_nb, "max_step_nb", integer=True)
        self.data_replace_method = data_replace_method
        self.bound_max_step, self.batch_size = bool(bound_max_step), batch_size
        self.max_step_nb, self.cumulative = max_step_nb, bool(cumulative)

    def __call__(
        self,
        model: Model,
        data: Tensor,
        explanations: Any,
        class_to_explain_list: Any = None,
        masking_data: Tensor | None = None,
    ) -> dict[str, np.float64]:
        data = check_images(data, "data", channels=3)
        clf, score = _wrap(model, data)
        removal = (
            self._substrate
            if masking_data is None
            else _given_fill(masking_data, data, "masking_data")
        )
        fn = deletion_curve if self.mode == "deletion" else insertion_curve
        curve = fn(
            clf,
            data,
            explanations,
            class_to_explain_list,
            removal=removal,
            rule="seed",
            max_steps=self.max_step_nb if self.bound_max_step else None,
            cumulative=self.cumulative,
            score=score,
            batch_size=self.batch_size,
        )
        return {self.keys[0]: _mean(curve.auc()), self.keys[1]: _mean(curve.correlation())}


class Deletion(_MultiStepCompat):
    """DAUC and DC, as ``saliency_maps_metrics.Deletion``.

    Args:
        data_replace_method: ``"black"`` (default) or ``"blur"``.
        bound_max_step: at most ``max_step_nb`` steps (several pixels per step) when True.
        batch_size: perturbed images per forward pass.
        max_step_nb: the step bound (14·14).
        cumulative: False = step k deletes only the k-th block of pixels.

    Call ``(model, data, explanations, class_to_explain_list=None, masking_data=None)`` ->
    ``{"dauc": mean DAUC, "dc": mean DC}``.
    """

    mode, keys = "deletion", ("dauc", "dc")

    def __init__(
        self,
        data_replace_method: str = "black",
        bound_max_step: bool = True,
        batch_size: int = 20,
        max_step_nb: int = 14 * 14,
        cumulative: bool = True,
    ) -> None:
        super().__init__(data_replace_method, bound_max_step, batch_size, max_step_nb, cumulative)


class Insertion(_MultiStepCompat):
    """IAUC and IC, as ``saliency_maps_metrics.Insertion`` (default substrate ``"blur"``).

    Arguments and call as :class:`Deletion`; returns ``{"iauc": mean IAUC, "ic": mean IC}``.
    """

    mode, keys = "insertion", ("iauc", "ic")

    def __init__(
        self,
        data_replace_method: str = "blur",
        bound_max_step: bool = True,
        batch_size: int = 20,
        max_step_nb: int = 14 * 14,
        cumulative: bool = True,
    ) -> None:
        super().__init__(data_replace_method, bound_max_step, batch_size, max_step_nb, cumulative)
