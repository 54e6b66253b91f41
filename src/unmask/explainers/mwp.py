"""Excitation backprop: marginal winning probability (MWP) and contrastive MWP.

Zhang et al. (2016), "Top-down neural attention by excitation backprop". A probability mass
seeded at the logits flows down the network; a unit passes its mass to its inputs in
proportion to their positive contributions. The rules, applied through
:func:`unmask.gradients.backward_rules` for one call:

- convolution and linear layers: the W⁺ rule ``P(x_j) = Σ_i x_j w⁺_ij / (Σ_j' x_j' w⁺_ij') P(y_i)``
  (bias left out). For inputs that can be negative (EfficientNet's linear bottlenecks) the
  positive contributions ``(x_j w_ij)⁺ = x⁺_j w⁺_ij + x⁻_j w⁻_ij`` are used instead, which is
  the W⁺ rule for non-negative inputs and keeps the mass non-negative;
- average and max pooling: the same rule with the pooling's own (positive) weights (max pooling
  sends everything to the winner);
- batch norm is passed through (one input per output: its mass goes to that input; this equals
  folding the batch norm into the preceding convolution when its scale γ/σ is positive, and
  differs only for channels with a negative scale); ReLU, ReLU6 and dropout pass it through;
- element-wise sums of two activations (residual and inverted-residual skips) split the mass in
  proportion to the inputs' positive parts (:func:`unmask.gradients.split_sums`).

The seed is the gradient of the target's generalised logit: one-hot for a class, and
``p_c / Σ_{c'∈C} p_c'`` on the members of a set (CWOX). Where every contribution to a unit is
zero, its mass is lost; otherwise the total mass is conserved from layer to layer.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .._checks import check_targets
from .._types import Model, Target
from ..explanation import Explanation
from ..gradients import gradients, resolve_layer
from ..numerics import minmax_normalise
from ..params import ClassesArg, LayerArg
from ..registry import METHODS
from ..tokens import Reshape, check_reshape, layout, network_size
from ._common import as_model, finish, prepare, upsample
from .cam import _flag

__all__ = ["MWP", "ContrastiveMWP", "mwp_rules", "classifier_layer", "relevance"]

_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_POOLS = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
)
_PASS = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Dropout, nn.Identity)


def _share(z: Tensor, grad: Tensor) -> Tensor:
    return torch.where(z > 0, grad / torch.where(z > 0, z, torch.ones_like(z)), torch.zeros_like(z))


def _weighted_rule(negate: nn.Module | None = None):
    """The W⁺ rule (with positive contributions for signed inputs) for a weighted module; the
    module ``negate`` uses the negated weights (the dual units of contrastive MWP)."""

    def rule(module: nn.Module, x: Tensor, output: Tensor, grad: Tensor) -> Tensor:
        weight = cast(Tensor, module.weight)
        if module is negate:
            weight = -weight
        bias = getattr(module, "bias", None)
        extra = {} if bias is None else {"bias": torch.zeros_like(bias)}
        xp = x.detach().clamp(min=0).requires_grad_(True)
        z = functional_call(module, {"weight": weight.clamp(min=0), **extra}, (xp,))
        signed = bool((x < 0).any())
        if signed:
            xn = x.detach().clamp(max=0).requires_grad_(True)
            z = z + functional_call(module, {"weight": weight.clamp(max=0), **extra}, (xn,))
            gp, gn = torch.autograd.grad(z, (xp, xn), _share(z, grad))
            return xp.detach() * gp + xn.detach() * gn
        (gp,) = torch.autograd.grad(z, xp, _share(z, grad))
        return xp.detach() * gp

    return rule


def _pool_rule(module: nn.Module, x: Tensor, output: Tensor, grad: Tensor) -> Tensor:
    xp = x.detach().clamp(min=0).requires_grad_(True)
    z = module(xp)
    (g,) = torch.autograd.grad(z, xp, _share(z, grad))
    return xp.detach() * g


def _pass(module: nn.Module, x: Tensor, output: Tensor, grad: Tensor) -> Tensor:
    return grad


def mwp_rules(negate: nn.Module | None = None) -> dict[type, Any]:
    """The backward rules of excitation backprop, by module type (see the module docstring)."""
    return {_LINEAR: _weighted_rule(negate), _POOLS: _pool_rule, _PASS: _pass}  # type: ignore[dict-item]


def _flatten_rules(rules: dict) -> dict[type, Any]:
    out: dict[type, Any] = {}
    for kinds, rule in rules.items():
        for kind in kinds if isinstance(kinds, tuple) else (kinds,):
            out[kind] = rule
    return out


def classifier_layer(model: Model) -> nn.Linear:
    """The classifier layer whose weights contrastive MWP negates: the last ``nn.Linear`` of
    ``model.net`` in ``named_modules()`` order."""
    linear = [m for m in model.net.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(
            "model: contrastive MWP needs a linear classifier layer (nn.Linear) in "
            "the network; none found"
        )
    return linear[-1]


def relevance(
    model: Model,
    x: Tensor,
    target: Tensor,
    layer: str,
    negate: nn.Module | None = None,
    reshape: Reshape = "auto",
) -> Tensor:
    """The excitation-backprop mass (B, C, h, w) arriving at ``layer``'s output for checked
    images ``x`` and targets ``target`` ((B,) long or (B, K) bool); ``negate`` = the module
    whose weights are negated (the dual units of c-MWP); ``reshape`` reads token layers (see
    :mod:`unmask.tokens`)."""
    g = gradients(
        model,
        x,
        target,
        score="logit",
        layers=[layer],
        input=False,
        rules=_flatten_rules(mwp_rules(negate)),
        sums=True,
    )
    form = layout(g.activations[layer], network_size(model, x), reshape, layer)
    return form.spatial(g.layer[layer])


def _finish(
    explainer: Any, maps: Tensor, target: Tensor, size: tuple[int, int], **extras: Any
) -> Explanation:
    saliency = upsample(maps, size)
    if explainer.normalise:
        saliency = minmax_normalise(saliency)
    return finish(explainer, saliency.float(), target, layer_map=maps, **extras)


@METHODS.register(
    "mwp",
    aliases=("excitation_backprop",),
    family="backprop",
    passes="autograd",
    cost=lambda p, size: 1,
    test={},
)
class MWP:
    """Excitation backprop (Zhang et al. 2016): the marginal winning probability at a layer.

    ``saliency`` is the mass arriving at the layer, summed over its channels and upsampled
    bilinearly to the input; non-negative, summing (at layer resolution) to at most 1 per image.

    Args:
        model: the classifier.
        layer: a path in ``model.net.named_modules()`` (default: the model's feature layer).
        normalise: rescale each upsampled map to [0, 1].
        reshape: how the layer's output becomes (B, C, h, w) (``"auto"``: transformer tokens
            and channels-last maps too; see :mod:`unmask.tokens`). The rules cover
            convolutions, linear layers, pooling, batch norm and ReLU; on a transformer,
            attention, layer norm and GELU pass plain gradients, so the mass is not conserved.

    Extras:
        ``layer_map`` (B, 1, h, w) the mass at layer resolution; ``total`` (B,) its sum.

    Example:
        >>> from unmask.testing import conv_region_model, region_images
        >>> e = MWP(conv_region_model()).explain(region_images(2), target=1)
        >>> [round(v, 4) for v in e.extras["total"].tolist()]
        [1.0, 1.0]
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        normalise: bool = False,
        reshape: Reshape = "auto",
    ) -> None:
        self.model = as_model(model)
        self.layer = resolve_layer(self.model, layer)
        self.normalise = _flag(normalise, "normalise")
        self.reshape = check_reshape(reshape)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set)."""
        x, t = prepare(self.model, x, target)
        maps = relevance(self.model, x, t, self.layer, reshape=self.reshape)
        maps = maps.sum(dim=1, keepdim=True)
        return _finish(
            self, maps, t, (x.shape[-2], x.shape[-1]), total=maps.sum(dim=(1, 2, 3)).cpu()
        )


@METHODS.register(
    "c-mwp",
    aliases=("contrastive_mwp",),
    family="backprop",
    passes="autograd",
    cost=lambda p, size: 2,  # the target's and the contrast's top-down passes
    test={},
)
class ContrastiveMWP:
    """Contrastive MWP (Zhang et al. 2016): the target's MWP minus that of a contrast.

    With ``contrast=None`` the contrast is the target's dual (the paper's c-MWP): the same seed
    sent through the classifier layer (:func:`classifier_layer`) with negated weights, i.e. the
    evidence against the target. With ``contrast`` a class or a set of classes (one per image
    allowed), the map is ``MWP(target) - MWP(contrast)``: where the target's evidence beats the
    contrast's. Signed; Zhang et al. display the positive part.

    Args:
        model: the classifier.
        layer: a path in ``model.net.named_modules()`` (default: the model's feature layer).
        contrast: None (the dual), a class, a set of classes, or one per image.
        normalise: rescale each upsampled map to [0, 1].
        reshape: as :class:`MWP`.

    Extras:
        ``layer_map`` (B, 1, h, w) the contrastive mass at layer resolution.
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        contrast: ClassesArg = None,
        normalise: bool = False,
        reshape: Reshape = "auto",
    ) -> None:
        self.model = as_model(model)
        self.layer = resolve_layer(self.model, layer)
        self.reshape = check_reshape(reshape)
        if contrast is not None:  # classes and types checked now, the count per call
            check_targets(
                contrast,
                len(contrast) if isinstance(contrast, list | tuple) else 1,
                self.model.num_classes,
                "contrast",
            )
        self.contrast = contrast
        self.normalise = _flag(normalise, "normalise")
        if contrast is None:
            classifier_layer(self.model)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` against the contrast."""
        x, t = prepare(self.model, x, target)
        own = relevance(self.model, x, t, self.layer, reshape=self.reshape)
        if self.contrast is None:
            dual = classifier_layer(self.model)
            other = relevance(self.model, x, t, self.layer, negate=dual, reshape=self.reshape)
        else:
            c = check_targets(self.contrast, x.shape[0], self.model.num_classes, "contrast")
            assert c is not None
            other = relevance(self.model, x, c, self.layer, reshape=self.reshape)
        maps = (own - other).sum(dim=1, keepdim=True)
        return _finish(self, maps, t, (x.shape[-2], x.shape[-1]))
