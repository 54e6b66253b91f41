"""Class activation maps from a layer's activations and gradients: Grad-CAM and its family.

Every CAM combines the activations ``A`` (B, C, h, w) of a named layer (default: the model's
feature layer) with the gradient ``G = ∂s/∂A`` of the target's score (default ``"logit"``; a
set of classes through its generalised logit, so the logits are seeded with
``p_c / Σ_{c'∈C} p_c'`` as in CWOX). Options shared by all:

- ``relu``: clamp the combined map at 0 (the papers; off for CWOX's Grad-CAM, which has none);
- ``normalise``: rescale each image's upsampled map to [0, 1] (min-max, as pytorch-grad-cam);
- ``reshape``: how the layer's output becomes (B, C, h, w): ``"auto"`` (default) reads a vision
  transformer's (B, N, C) tokens (class, distillation and register tokens dropped, the patch
  grid inferred from N and the input size) and Swin's (B, h, w, C) maps, ``"none"`` accepts
  (B, C, h, w) only, a callable does it itself (:mod:`unmask.tokens`). Gradients are read the
  same way, so Grad-CAM on a ViT's tokens is pytorch-grad-cam's with its reshape transform.

``extras["cam"]`` is the map at layer resolution (B, 1, h, w) after the ReLU and before
normalisation; ``saliency`` is it upsampled bilinearly to the input (``align_corners=False``, as
captum's ``LayerAttribution.interpolate``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice
from .._types import Model, Target
from ..explanation import Explanation
from ..gradients import capture, grad_session, gradients, resolve_layer
from ..numerics import minmax_normalise
from ..params import LayerArg, Score
from ..registry import METHODS
from ..scores import SCORES
from ..tokens import Reshape, check_reshape, layout, network_size
from ._common import as_model, finish, prepare, upsample

__all__ = [
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "HiResCAM",
    "EigenCAM",
    "finish_cam",
]


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return value


def finish_cam(
    explainer: Any, cam: Tensor, target: Tensor, size: tuple[int, int], **extras: Any
) -> Explanation:
    """ReLU (if ``explainer.relu``), upsample to ``size``, normalise (if asked), finish."""
    if explainer.relu:
        cam = cam.clamp(min=0)
    saliency = upsample(cam, size)
    if explainer.normalise:
        saliency = minmax_normalise(saliency)
    return finish(explainer, saliency.float(), target, cam=cam, **extras)


class _GradientCAM:
    """What the gradient CAMs share: the layer, the score and the two options."""

    def _setup(
        self,
        model: Model,
        layer: str | None,
        relu: bool,
        normalise: bool,
        score: str,
        reshape: Reshape = "auto",
    ) -> None:
        self.model = as_model(model)
        self.layer = resolve_layer(self.model, layer)
        self.reshape = check_reshape(reshape)
        self.relu = _flag(relu, "relu")
        self.normalise = _flag(normalise, "normalise")
        self.score = check_choice(score, "score", SCORES)

    def combine(self, a: Tensor, g: Tensor) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set)."""
        x, t = prepare(self.model, x, target)
        g = gradients(self.model, x, t, score=self.score, layers=[self.layer], input=False)
        a, grad = g.activations[self.layer], g.layer[self.layer]
        form = layout(a, network_size(self.model, x), self.reshape, self.layer)
        cam, extras = self.combine(form.spatial(a), form.spatial(grad))
        return finish_cam(self, cam, t, (x.shape[-2], x.shape[-1]), **extras)


def _weighted(a: Tensor, weights: Tensor) -> Tensor:
    return torch.einsum("bc,bchw->bhw", weights, a)[:, None]


@METHODS.register(
    "gradcam",
    aliases=("grad-cam",),
    family="CAM",
    passes="autograd",
    cost=lambda p, size: 1,
    test={},
)
class GradCAM(_GradientCAM):
    """Grad-CAM (Selvaraju et al. 2017): ``Σ_k α_k A_k`` with ``α_k = mean_ij ∂s/∂A_kij``.

    Args:
        model: the classifier.
        layer: a path in ``model.net.named_modules()`` (default: the model's feature layer).
        relu: clamp the map at 0 (default True, the paper; CWOX uses False).
        normalise: rescale each upsampled map to [0, 1].
        score: the differentiated score: ``"logit"`` (default), ``"prob"`` or ``"log_prob"``.
        reshape: ``"auto"`` (default: tokens and channels-last maps read as (B, C, h, w)),
            ``"none"`` or a callable (see the module docstring).

    Extras:
        ``cam`` (B, 1, h, w); ``weights`` (B, C) the α_k.

    Example:
        >>> from unmask.testing import conv_region_model, region_images
        >>> e = GradCAM(conv_region_model()).explain(region_images(2), target=[1, 0])
        >>> e.saliency.shape, e.extras["cam"].shape, e.extras["weights"].shape
        (torch.Size([2, 1, 32, 32]), torch.Size([2, 1, 8, 8]), torch.Size([2, 2]))
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        relu: bool = True,
        normalise: bool = False,
        score: Score = "logit",
        reshape: Reshape = "auto",
    ) -> None:
        self._setup(model, layer, relu, normalise, score, reshape)

    def combine(self, a: Tensor, g: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        w = g.mean(dim=(2, 3))
        return _weighted(a, w), {"weights": w}


@METHODS.register(
    "gradcam++",
    aliases=("gradcampp",),
    family="CAM",
    passes="autograd",
    cost=lambda p, size: 1,
    test={},
)
class GradCAMPlusPlus(_GradientCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018): channel weights from positive gradients, reweighted.

    ``α_k = Σ_ij a_kij ReLU(G_kij)`` with ``a_kij = G² / (2 G² + Σ_ab A_kab G³)`` (the paper's
    closed form for an exponential score; 0 where G = 0).

    Args: as :class:`GradCAM`. Extras: ``cam``, ``weights``.
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        relu: bool = True,
        normalise: bool = False,
        score: Score = "logit",
        reshape: Reshape = "auto",
    ) -> None:
        self._setup(model, layer, relu, normalise, score, reshape)

    def combine(self, a: Tensor, g: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        g2, g3 = g * g, g * g * g
        denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(
            denom != 0,
            g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
            torch.zeros_like(g),
        )
        w = (alpha * g.clamp(min=0)).sum(dim=(2, 3))
        return _weighted(a, w), {"weights": w}


@METHODS.register(
    "xgradcam",
    aliases=("xgrad-cam",),
    family="CAM",
    passes="autograd",
    cost=lambda p, size: 1,
    test={},
)
class XGradCAM(_GradientCAM):
    """XGrad-CAM (Fu et al. 2020): gradients averaged with the channel's activations as weights.

    ``α_k = Σ_ij (A_kij / Σ_ab A_kab) G_kij`` (0 for a channel whose activations sum to 0).

    Args: as :class:`GradCAM`. Extras: ``cam``, ``weights``.
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        relu: bool = True,
        normalise: bool = False,
        score: Score = "logit",
        reshape: Reshape = "auto",
    ) -> None:
        self._setup(model, layer, relu, normalise, score, reshape)

    def combine(self, a: Tensor, g: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total = a.sum(dim=(2, 3), keepdim=True)
        share = torch.where(
            total != 0,
            a / torch.where(total != 0, total, torch.ones_like(total)),
            torch.zeros_like(a),
        )
        w = (share * g).sum(dim=(2, 3))
        return _weighted(a, w), {"weights": w}


@METHODS.register(
    "layercam",
    aliases=("layer-cam",),
    family="CAM",
    passes="autograd",
    cost=lambda p, size: 1,
    test={},
)
class LayerCAM(_GradientCAM):
    """Layer-CAM (Jiang et al. 2021): ``Σ_k ReLU(G_kij) A_kij``, a weight per location.

    Args: as :class:`GradCAM`. Extras: ``cam``.
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        relu: bool = True,
        normalise: bool = False,
        score: Score = "logit",
        reshape: Reshape = "auto",
    ) -> None:
        self._setup(model, layer, relu, normalise, score, reshape)

    def combine(self, a: Tensor, g: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return (g.clamp(min=0) * a).sum(dim=1, keepdim=True), {}


@METHODS.register(
    "hirescam",
    aliases=("hires-cam",),
    family="CAM",
    passes="autograd",
    cost=lambda p, size: 1,
    test={},
)
class HiResCAM(_GradientCAM):
    """HiResCAM (Draelos & Carin 2020): gradient times activation at every location.

    ``Σ_k G_kij A_kij`` (faithful to the score for a global-average-pooled linear head).

    Args: as :class:`GradCAM`. Extras: ``cam``.
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        relu: bool = True,
        normalise: bool = False,
        score: Score = "logit",
        reshape: Reshape = "auto",
    ) -> None:
        self._setup(model, layer, relu, normalise, score, reshape)

    def combine(self, a: Tensor, g: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return (g * a).sum(dim=1, keepdim=True), {}


def first_component(a: Tensor) -> Tensor:
    """Eigen-CAM's map: the activations (B, C, h, w) projected on their first principal
    direction, per image: with ``M`` (hw, C) the image's activations, ``M v₁`` where ``v₁`` is
    M's first right singular vector, signed so that the projection sums to ≥ 0 -> (B, 1, h, w).
    """
    b, c, h, w = a.shape
    m = a.flatten(2).transpose(1, 2).double()  # (B, hw, C)
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    proj = m @ vh[:, 0, :, None]  # (B, hw, 1)
    sign = torch.where(proj.sum(dim=(1, 2)) < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign[:, None, None]).transpose(1, 2).reshape(b, 1, h, w).to(a.dtype)


@METHODS.register(
    "eigencam",
    aliases=("eigen-cam",),
    family="CAM",
    passes="forward",
    cost=lambda p, size: 1,
    test={},
)
class EigenCAM:
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations' first principal component.

    The layer's activations projected on their first principal direction (no gradients; the
    same map for every target).

    The projection is of the uncentred activations (the paper's SVD of the feature matrix);
    pytorch-grad-cam subtracts the per-channel mean first.

    Args:
        model: the classifier.
        layer: a path in ``model.net.named_modules()`` (default: the model's feature layer).
        relu: clamp the map at 0 (default True, as pytorch-grad-cam).
        normalise: rescale each upsampled map to [0, 1].
        reshape: ``"auto"``, ``"none"`` or a callable (see the module docstring).

    Extras:
        ``cam`` (B, 1, h, w).
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        relu: bool = True,
        normalise: bool = False,
        reshape: Reshape = "auto",
    ) -> None:
        self.model = as_model(model)
        self.layer = resolve_layer(self.model, layer)
        self.relu = _flag(relu, "relu")
        self.normalise = _flag(normalise, "normalise")
        self.reshape = check_reshape(reshape)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W); ``target`` is recorded (top-1 when None)."""
        x, t = prepare(self.model, x, target)
        with (
            grad_session(self.model),
            capture(self.model, [self.layer]) as acts,
            torch.inference_mode(),
        ):
            self.model(x)
        a = acts[self.layer]
        a = layout(a, network_size(self.model, x), self.reshape, self.layer).spatial(a)
        return finish_cam(self, first_component(a.clone()), t, (x.shape[-2], x.shape[-1]))
