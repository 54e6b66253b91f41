"""Perturbation CAMs: Score-CAM and Ablation-CAM (no gradients; batched forward passes).

Both weight the activation maps ``A_k`` (B, C, h, w) of a named layer by how the target's score
reacts to a perturbation tied to channel k, then combine them as ``ReLU(Σ_k α_k A_k)`` like the
gradient CAMs (``relu`` and ``normalise`` options, ``extras["cam"]`` at layer resolution,
``saliency`` upsampled, ``reshape`` for token layers as in :mod:`unmask.explainers.cam`). C
perturbations per image go through the model in chunks of ``batch_size``; several targets are
scored from one pass (``explain_each``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._types import Model, Target
from ..explanation import Explanation
from ..gradients import capture, find_layer, grad_session, resolve_layer
from ..params import BatchSize, LayerArg, RemovalArg, Score
from ..progress import check_progress, track
from ..registry import METHODS
from ..removal import Constant
from ..scores import select_scores
from ..scoring import Scorer
from ..tokens import Layout, Reshape, check_reshape, layout, network_size
from ._common import as_model, prepare_many, resolve_removal
from .cam import _flag, _weighted, finish_cam

__all__ = ["ScoreCAM", "AblationCAM", "layer_channels"]


def layer_channels(model: nn.Module, layer: str | None) -> int:
    """The channels of ``layer``'s output, from its last convolution or normalisation (the
    weights, not a forward pass).

    Example:
        >>> from unmask.testing import conv_region_model
        >>> layer_channels(conv_region_model(), None)
        2
    """
    for module in reversed(list(find_layer(model, layer).modules())):
        for attr in ("out_channels", "num_features", "out_features"):
            if isinstance(getattr(module, attr, None), int):
                return int(getattr(module, attr))
        shape = getattr(module, "normalized_shape", None)  # a layer norm: a token layer's width
        if isinstance(shape, tuple) and shape and isinstance(shape[-1], int):
            return int(shape[-1])
    raise ValueError(f"layer: cannot tell the channels of {layer!r} from its modules")


def _activations(
    model: Model, x: Tensor, layer: str, reshape: Reshape = "auto"
) -> tuple[Tensor, Tensor, Tensor, Layout]:
    """The layer's activations as (B, C, h, w), the logits (B, K), the layer's own output and
    its :class:`~unmask.tokens.Layout`, from one forward pass."""
    with grad_session(model), capture(model, [layer]) as acts, torch.inference_mode():
        logits = model(x).float()
    raw = acts[layer].clone()
    form = layout(raw, network_size(model, x), reshape, layer)
    return form.spatial(raw), logits, raw, form


def _keep_maps(a: Tensor, size: tuple[int, int]) -> Tensor:
    """Activation maps (N, h, w) upsampled (bilinear) to ``size`` and min-max scaled to [0, 1]
    per map (0 for a constant map) -> (N, 1, H, W) keep masks."""
    up = F.interpolate(a[:, None], size=size, mode="bilinear", align_corners=False)
    flat = up.flatten(1)
    lo, hi = flat.min(1).values[:, None, None, None], flat.max(1).values[:, None, None, None]
    return torch.where(hi > lo, (up - lo) / (hi - lo).clamp(min=1e-30), torch.zeros_like(up))


@METHODS.register(
    "scorecam",
    aliases=("score-cam",),
    family="CAM",
    passes="scoring",
    # the forward pass, the image with everything removed, one masked image per channel
    cost=lambda p, size, model: layer_channels(model, p.get("layer")) + 2,
    test={"batch_size": 64},
)
class ScoreCAM:
    """Score-CAM (Wang et al. 2020): channels weighted by the score of the image they keep.

    Each activation map ``A_k``, upsampled to the input and min-max scaled to [0, 1], is a keep
    mask ``H_k``: the rest of the image is removed by ``removal``. The weight is the paper's
    increase of confidence ``α_k = s_c(keep H_k) - s_c(everything removed)``, with ``s`` the
    softmax probability by default (the paper's and its code's; pytorch-grad-cam instead takes
    a softmax over the channels' logits, which has the same ranking of channels but another
    scale); a constant map keeps nothing and gets α = 0. ``cam = ReLU(Σ_k α_k A_k)``.

    Args:
        model: the classifier.
        removal: how the unkept part is removed (default ``Constant("mean")``: the ImageNet mean
            colour, i.e. multiplying the normalised image by the mask as the paper's code does).
        layer: a path in ``model.net.named_modules()`` (default: the model's feature layer).
        relu: clamp the map at 0 (default True).
        normalise: rescale each upsampled map to [0, 1].
        score: ``"prob"`` (default), ``"logit"`` or ``"log_prob"``.
        batch_size: perturbed images per forward pass.
        progress: a progress bar (True) or a callback ``(done, total)``.
        reshape: ``"auto"`` (default: tokens and channels-last maps read as (B, C, h, w)),
            ``"none"`` or a callable (see :mod:`unmask.tokens`).

    Extras:
        ``cam`` (B, 1, h, w); ``weights`` (B, C) the α_k; ``base_score`` (B,) s_c(x).
    """

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        layer: LayerArg = None,
        relu: bool = True,
        normalise: bool = False,
        score: Score = "prob",
        batch_size: BatchSize = 16,
        progress: Any = False,
        reshape: Reshape = "auto",
    ) -> None:
        self.model = as_model(model)
        self.removal = resolve_removal(removal, lambda: Constant("mean"))
        self.layer = resolve_layer(self.model, layer)
        self.reshape = check_reshape(reshape)
        self.relu = _flag(relu, "relu")
        self.normalise = _flag(normalise, "normalise")
        self.scorer = Scorer(self.model, batch_size=batch_size, score=score, progress=progress)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set)."""
        return self.explain_each(x, [target])[0]

    def explain_each(self, x: Tensor, targets: list[Any]) -> list[Explanation]:
        """One explanation per target of ``targets``, from one pass over the perturbations."""
        x, resolved, target = prepare_many(self.model, x, targets, self.scorer)
        a, logits, _, _ = _activations(self.model, x, self.layer, self.reshape)
        b, c = a.shape[:2]
        size = (x.shape[-2], x.shape[-1])
        n_t = len(resolved)

        def masks(start: int, stop: int) -> Tensor:
            n = torch.arange(start, stop, device=a.device)
            return 1 - _keep_maps(a[n // c, n % c], size)  # removal masks

        index = torch.arange(b).repeat_interleave(c)
        kept = self.scorer.perturbed(
            x, masks, target, self.removal, index=index, count=b * c
        ).reshape(b, c, n_t)
        empty = self.scorer.perturbed(
            x, torch.ones(b, 1, *size), target, self.removal, index=torch.arange(b)
        ).reshape(b, 1, n_t)
        base = select_scores(logits, target.to(logits.device), self.scorer.score).cpu()
        base = base.reshape(b, n_t)
        out = []
        for i, t in enumerate(resolved):
            w = (kept[..., i] - empty[..., i]).to(a)
            out.append(finish_cam(self, _weighted(a, w), t, size, weights=w, base_score=base[:, i]))
        return out


@METHODS.register(
    "ablationcam",
    aliases=("ablation-cam",),
    family="CAM",
    passes="forward",
    # the forward pass, then the layers above once per ablated channel
    cost=lambda p, size, model: layer_channels(model, p.get("layer")) + 1,
    test={"batch_size": 64},
)
class AblationCAM:
    """Ablation-CAM (Desai & Ramaswamy 2020): channels weighted by the score drop when zeroed.

    ``α_k = (y_c - y_c^k) / y_c`` where ``y_c`` is the target's score and ``y_c^k`` the score
    with channel k of the layer set to 0 (the rest of the network run on the ablated
    activations); ``cam = ReLU(Σ_k α_k A_k)``. As in the paper (and pytorch-grad-cam), the drop
    is divided by ``y_c``, whose sign flips the weights when the score is negative. On a token
    layer channel k is zeroed in every token, the class token's included (as pytorch-grad-cam's
    ViT ablation layer).

    Args:
        model: the classifier.
        layer: a path in ``model.net.named_modules()`` (default: the model's feature layer).
        relu: clamp the map at 0 (default True).
        normalise: rescale each upsampled map to [0, 1].
        score: ``"logit"`` (default, the paper's class score), ``"prob"`` or ``"log_prob"``.
        batch_size: ablated images per forward pass.
        progress: a progress bar (True) or a callback ``(done, total)``.
        reshape: ``"auto"``, ``"none"`` or a callable (see :mod:`unmask.tokens`); a callable
            must keep the channels as one axis of the layer's output (they are zeroed there).

    Extras:
        ``cam`` (B, 1, h, w); ``weights`` (B, C) the α_k; ``base_score`` (B,) y_c.
    """

    def __init__(
        self,
        model: Model,
        *,
        layer: LayerArg = None,
        relu: bool = True,
        normalise: bool = False,
        score: Score = "logit",
        batch_size: BatchSize = 16,
        progress: Any = False,
        reshape: Reshape = "auto",
    ) -> None:
        self.model = as_model(model)
        self.layer = resolve_layer(self.model, layer)
        self.reshape = check_reshape(reshape)
        self.relu = _flag(relu, "relu")
        self.normalise = _flag(normalise, "normalise")
        self.scorer = Scorer(self.model, batch_size=batch_size, score=score)
        check_progress(progress)
        self.progress = progress

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set)."""
        return self.explain_each(x, [target])[0]

    def _ablated_scores(self, x: Tensor, a: Tensor, target: Tensor, axis: int) -> Tensor:
        """Scores (B, C[, T]) with each channel (axis ``axis`` of the layer's output ``a``)
        zeroed in turn."""
        b, c = a.shape[0], a.shape[axis]
        total = b * c
        module: nn.Module = find_layer(self.model, self.layer)
        rows: dict[str, Tensor] = {}

        def replace(mod: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            n = rows["n"]
            ablated = a[n // c].movedim(axis, 1).clone()
            ablated[torch.arange(n.numel(), device=a.device), n % c] = 0
            return ablated.movedim(1, axis)

        out: list[Tensor] = []
        starts = range(0, total, self.scorer.batch_size)
        handle = module.register_forward_hook(replace)
        try:
            with grad_session(self.model):
                for start in track(starts, len(starts), self.progress, "ablations", unit="batch"):
                    stop = min(start + self.scorer.batch_size, total)
                    n = torch.arange(start, stop, device=a.device)
                    rows["n"] = n
                    idx = n // c
                    logits = self.scorer.logits(x[idx])
                    out.append(
                        select_scores(
                            logits, target.to(logits.device)[idx], self.scorer.score
                        ).cpu()
                    )
        finally:
            handle.remove()
        scores = torch.cat(out)
        return scores.reshape(b, c, *scores.shape[1:])

    def explain_each(self, x: Tensor, targets: list[Any]) -> list[Explanation]:
        """One explanation per target of ``targets``, from one pass over the ablations."""
        x, resolved, target = prepare_many(self.model, x, targets, self.scorer)
        a, logits, raw, form = _activations(self.model, x, self.layer, self.reshape)
        if form.channel_axis is None:
            raise ValueError(
                f"reshape: Ablation-CAM zeroes channels in {self.layer!r}'s output "
                f"{tuple(raw.shape)}, but the callable's {a.shape[1]} channels match no single "
                "axis of it"
            )
        size = (x.shape[-2], x.shape[-1])
        n_t = len(resolved)
        base = select_scores(logits, target.to(logits.device), self.scorer.score).cpu()
        base = base.reshape(-1, n_t)
        ablated = self._ablated_scores(x, raw, target, form.channel_axis)
        ablated = ablated.reshape(a.shape[0], a.shape[1], n_t)
        out = []
        for i, t in enumerate(resolved):
            y = base[:, i, None]
            w = ((y - ablated[..., i]) / torch.where(y != 0, y, torch.ones_like(y))).to(a)
            out.append(finish_cam(self, _weighted(a, w), t, size, weights=w, base_score=base[:, i]))
        return out
