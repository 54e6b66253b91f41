"""Conciseness-preciseness (CP) scores of explanation images (Kolek et al., CVPR 2023, Sec. 5).

``CP = (p̂ / p) / (I(x̂) / I(x))``: the retained target-class probability (``p̂ = p_t(x̂)``,
``p = p_t(x)``, softmax, the *target* class; the original script uses the top class of x̂)
per retained "information" ``I``:

* ``cp_l1_pixel``: ``I = Σ |pixels|`` of the image.
* ``cp_l1``: ``I = Σ |coefficients|`` in the method's representation (pixels for pixel masks).
* ``cp_entropy``: ``I = H(q) = -Σ q_i log q_i`` with ``q_i = |c_i|² / Σ |c|²`` over the
  coefficients of the representation (0 log 0 = 0). A concise explanation concentrates its
  energy in few coefficients and has low entropy.

The numerator is registered on its own as ``retained_probability`` (``p̂ / p``; with
``scale="max"`` the model reads ``x̂ / max x̂``, as the authors' Figure 4 script feeds it):
Figure 4's table reports it beside the CP scores (``unmask bench run preset:figure4``).

Higher is better. The explanation image can come from any method: mask explainers return it
(``Explanation.extras["image"]``), and a pixel mask m gives ``x̂ = x ⊙ m``
(:func:`masked_image`). For a coefficient mask, pass the masked coefficients ``m ⊙ T(x)``
(what the original code measures); otherwise the coefficients of x̂ are ``T(x̂)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from .._checks import check_choice, check_images, check_positive, check_targets, check_unit_range
from .._types import Model, Target
from ..models import as_classifier, check_model_input
from ..params import BatchSize, RepresentationArg
from ..registry import METRICS
from ..representations import Pixels, make_representation
from ..representations.base import Representation
from ..scores import select_scores
from ..scoring import Scorer

__all__ = [
    "CPScore",
    "cp_score",
    "cp_scores",
    "masked_image",
    "information",
    "INFORMATION",
    "Info",
    "RetainedProbability",
    "Retained",
    "retained_probability",
    "SCALES",
]

#: The information measures of the three CP scores.
Info = Literal["l1_pixel", "l1", "entropy"]
INFORMATION: tuple[str, ...] = get_args(Info)


def masked_image(x: Tensor, mask: Tensor) -> Tensor:
    """The explanation image ``x ⊙ m`` of a pixel mask (1 = kept), (B, C, H, W).

    Args:
        x: images (B, C, H, W).
        mask: (B, 1, H, W) or (B, C, H, W) in [0, 1]; a saliency map from another method should
            be normalised to [0, 1] first.
    """
    check_images(x, "x")
    if not isinstance(mask, Tensor) or mask.ndim != 4 or mask.shape[-2:] != x.shape[-2:]:
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask: expected (B, 1, {x.shape[-2]}, {x.shape[-1]}), got {got}")
    if float(mask.min()) < 0 or float(mask.max()) > 1:
        raise ValueError(
            "mask: expected values in [0, 1], "
            f"got [{float(mask.min()):.3g}, {float(mask.max()):.3g}]"
        )
    return x * mask.to(x.dtype)


def information(coeffs: Sequence[Tensor], kind: str) -> Tensor:
    """``Σ|c|`` (``"l1"``, ``"l1_pixel"``) or the entropy ``H(|c|²/Σ|c|²)`` per image, (B,).

    Args:
        coeffs: band groups (B, ...) of one image batch (all channels, all bands).
        kind: one of :data:`INFORMATION`.
    """
    flat = torch.cat([c.reshape(c.shape[0], -1) for c in coeffs], dim=1).double()
    if kind in ("l1", "l1_pixel"):
        return flat.abs().sum(1)
    energy = flat.pow(2)
    q = energy / energy.sum(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return -torch.special.xlogy(q, q).sum(1)


def cp_scores(
    model: Model,
    x: Tensor,
    x_hat: Tensor,
    target: Target = None,
    *,
    infos: Sequence[str] = INFORMATION,
    representation: Representation | None = None,
    coefficients: Sequence[Tensor] | None = None,
    batch_size: int = 16,
) -> dict[str, Tensor]:
    """Several CP scores of the same explanation images, scoring x and x̂ once.

    Args:
        model: the classifier.
        x: images (B, 3, H, W) in [0, 1].
        x_hat: explanation images (B, 3, H, W).
        target: a class or a set of classes per image (a set: ``p`` = Σ_{c∈C} p_c); None = the
            top-1 class of ``x``.
        infos: which of :data:`INFORMATION` to compute.
        representation: where ``"l1"`` / ``"entropy"`` count (default pixels).
        coefficients: the explanation's own coefficients ``m ⊙ T(x)`` (band groups); default
            ``T(x̂)``.
        batch_size: images per forward pass.

    Returns:
        ``{info: CP (B,) float64}``, and ``"p"``, ``"p_hat"`` (B,) float64: the target
        probabilities on x and x̂.
    """
    model = as_classifier(model, "model")
    infos = [check_choice(i, "info", INFORMATION) for i in infos]
    r = retained_probability(model, x, x_hat, target, batch_size=batch_size)  # checks x, x̂
    p, p_hat = r.p, r.p_hat
    x, x_hat = check_model_input(model, x, "x"), check_images(x_hat, "x_hat")
    out: dict[str, Tensor] = {"p": p, "p_hat": p_hat}
    with torch.no_grad():
        for info in infos:
            rep = (
                Pixels()
                if info == "l1_pixel" or representation is None
                else make_representation(representation)
            )
            base = rep.forward(x)
            own = coefficients is not None and info != "l1_pixel"
            kept = list(coefficients) if own and coefficients is not None else rep.forward(x_hat)
            i_x, i_hat = information(base, info).cpu(), information(kept, info).cpu()
            out[info] = (p_hat / p) / (i_hat / i_x)
    return out


def cp_score(
    model: Model,
    x: Tensor,
    x_hat: Tensor,
    target: Target = None,
    *,
    info: str = "l1",
    representation: Representation | None = None,
    coefficients: Sequence[Tensor] | None = None,
    batch_size: int = 16,
) -> Tensor:
    """CP score per image, (B,) float64; see the module docstring and :func:`cp_scores`.

    Args:
        model: the classifier.
        x: images (B, 3, H, W) in [0, 1].
        x_hat: explanation images (B, 3, H, W).
        target: a class or a set of classes per image (None = top-1 of ``x``).
        info: ``"l1_pixel"``, ``"l1"`` or ``"entropy"``.
        representation: where ``"l1"`` / ``"entropy"`` count (default pixels).
        coefficients: the explanation's own coefficients ``m ⊙ T(x)`` (band groups); default
            ``T(x̂)``.
        batch_size: images per forward pass.
    """
    check_choice(info, "info", INFORMATION)
    return cp_scores(
        model,
        x,
        x_hat,
        target,
        infos=(info,),
        representation=representation,
        coefficients=coefficients,
        batch_size=batch_size,
    )[info]


class CPScore:
    """A CP score as a metric object: ``metric(model, x, x_hat, target=None, coefficients=None)
    -> (B,)``; higher is better.

    Args:
        representation: the representation for ``"l1"`` / ``"entropy"`` (default pixels).
        info: ``"l1_pixel"``, ``"l1"`` or ``"entropy"``.
        batch_size: images per forward pass.
    """

    kind = "explanation_image"
    higher_is_better = True

    def __init__(
        self,
        representation: RepresentationArg | None = None,
        *,
        info: Info = "l1",
        batch_size: BatchSize = 16,
    ) -> None:
        self.info = check_choice(info, "info", INFORMATION)
        check_positive(batch_size, "batch_size", integer=True)
        self.representation = (
            None if representation is None else make_representation(representation)
        )
        self.batch_size = batch_size

    def shared_key(self) -> tuple[Any, ...]:
        """The three CP scores of one representation score x and x̂ once (:func:`cp_scores`)."""
        return ("cp", id(self.representation), self.batch_size)

    def shared(
        self,
        model: Model,
        x: Tensor,
        x_hat: Tensor,
        target: Target = None,
        coefficients: Sequence[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        return cp_scores(
            model,
            x,
            x_hat,
            target,
            representation=self.representation,
            coefficients=coefficients,
            batch_size=self.batch_size,
        )

    def reduce(self, scores: dict[str, Tensor]) -> Tensor:
        return scores[self.info]

    def __call__(
        self,
        model: Model,
        x: Tensor,
        x_hat: Tensor,
        target: Target = None,
        coefficients: Sequence[Tensor] | None = None,
    ) -> Tensor:
        return cp_score(
            model,
            x,
            x_hat,
            target,
            info=self.info,
            representation=self.representation,
            coefficients=coefficients,
            batch_size=self.batch_size,
        )


#: How :class:`RetainedProbability` shows x̂ to the model.
SCALES = ("none", "max")


@dataclass
class Retained:
    """Target probabilities on the images and on their explanation images.

    Attributes:
        p: (B,) float64, the target probability on x.
        p_hat: (B,) float64, the target probability on x̂ (or x̂ / max x̂).
    """

    p: Tensor
    p_hat: Tensor


def retained_probability(
    model: Model,
    x: Tensor,
    x_hat: Tensor,
    target: Target = None,
    *,
    scale: str = "none",
    batch_size: int = 16,
) -> Retained:
    """``p`` and ``p̂`` of explanation images (the CP scores' numerator is ``p̂ / p``).

    Args:
        model: the classifier.
        x: images (B, 3, H, W) in [0, 1].
        x_hat: explanation images (B, 3, H, W).
        target: a class or a set of classes per image (None = the top-1 class of ``x``).
        scale: ``"none"``: the model reads x̂; ``"max"``: x̂ divided by its maximum (per image),
            as the authors' Figure 4 script.
        batch_size: images per forward pass.

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> x = region_images(1, 32)
        >>> r = retained_probability(region_model(), x, x, 1)
        >>> bool(r.p_hat[0] == r.p[0])
        True
    """
    model = as_classifier(model, "model")
    check_choice(scale, "scale", SCALES)
    x = check_model_input(model, x, "x")
    x_hat = check_unit_range(check_images(x_hat, "x_hat"), "x_hat")
    if x_hat.shape != x.shape:
        raise ValueError(
            f"x_hat: expected the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}"
        )
    if scale == "max":
        top = x_hat.flatten(1).amax(1).clamp_min(1e-12)
        x_hat = x_hat / top[:, None, None, None]
    scorer = Scorer(model, batch_size=batch_size, score="prob")
    t = check_targets(target, x.shape[0], model.num_classes, "target")
    logits = scorer.logits(x)
    if t is None:
        t = logits.argmax(1).cpu()
    p = select_scores(logits, t, "prob").double().cpu()
    return Retained(p, scorer(x_hat.to(x.device), t).double().cpu())


class RetainedProbability:
    """The retained target probability ``p̂ / p`` of explanation images (the CP scores'
    numerator; Kolek et al. 2023): ``metric(model, x, x_hat, target=None) -> (B,)``; higher is
    better (x̂ keeps the class).

    Args:
        scale: ``"none"`` (the model reads x̂) or ``"max"`` (x̂ / max x̂, the authors' script).
        batch_size: images per forward pass.
    """

    kind = "explanation_image"
    higher_is_better = True

    def __init__(
        self, *, scale: Literal["none", "max"] = "none", batch_size: BatchSize = 16
    ) -> None:
        self.scale = check_choice(scale, "scale", SCALES)
        check_positive(batch_size, "batch_size", integer=True)
        self.batch_size = batch_size

    def shared_key(self) -> tuple[Any, ...]:
        return ("retained", self.scale, self.batch_size)

    def shared(
        self,
        model: Model,
        x: Tensor,
        x_hat: Tensor,
        target: Target = None,
        coefficients: Sequence[Tensor] | None = None,
    ) -> Retained:
        return retained_probability(
            model, x, x_hat, target, scale=self.scale, batch_size=self.batch_size
        )

    def reduce(self, r: Retained) -> Tensor:
        return r.p_hat / r.p

    def __call__(
        self,
        model: Model,
        x: Tensor,
        x_hat: Tensor,
        target: Target = None,
        coefficients: Sequence[Tensor] | None = None,
    ) -> Tensor:
        return self.reduce(self.shared(model, x, x_hat, target))


METRICS.add(
    "cp_l1_pixel",
    CPScore,
    cost=lambda p, size: 2,  # p(x) and p(x̂)
    defaults={"info": "l1_pixel"},
    summary="CP-ℓ1 pixel: retained target probability per retained pixel ℓ1 (Kolek et al. 2023).",
)
METRICS.add(
    "cp_l1",
    CPScore,
    defaults={"info": "l1"},
    summary="CP-ℓ1: retained target probability per retained coefficient ℓ1 (Kolek et al. 2023).",
)
METRICS.add(
    "cp_entropy",
    CPScore,
    defaults={"info": "entropy"},
    summary=(
        "CP-entropy: retained target probability per retained coefficient entropy "
        "(Kolek et al. 2023)."
    ),
)
METRICS.add(
    "retained_probability",
    RetainedProbability,
    cost=lambda p, size: 2,  # p(x) and p(x̂)
    summary="Retained target probability p̂/p of an explanation image x̂ (the CP scores' "
    "numerator; scale='max': x̂ / max x̂, Kolek et al. 2023).",
)
