"""ShearletX, WaveletX, CartoonX and PixelMask: one mask optimiser, four registered settings.

:class:`MaskExplainer` runs :class:`~unmask.explainers.maskopt.MaskOptimizer` (see there for
the objective) on a representation; the four methods are its subclasses that differ only in
their defaults, those of the papers' experiments:

=========  ===========================  ====  =======  =====  =====  ========  ============
method     representation               λ₁    λ₂       lr     steps  noise_bs  noise_source
=========  ===========================  ====  =======  =====  =====  ========  ============
shearletx  shearlets, 4 scales, 49      1     2        0.1    300    16        gray
waveletx   DWT db3, J=5, zero padding   2     10       0.1    300    16        color
cartoonx   DWT db3, J=5, zero padding   20    0        1e-3   2000   64        color
pixelmask  pixels                       1     0        0.1    300    16        color
=========  ===========================  ====  =======  =====  =====  ========  ============

ShearletX, WaveletX and PixelMask: Kolek et al., "Explaining Image Classifiers with Multiscale
Directional Image Representation", CVPR 2023 (Figure 4 settings). CartoonX: Kolek et al.,
"Cartoon Explanations of Image Classifiers", ECCV 2022 (the authors' code: λ₁ = 20, lr 1e-3,
2000 steps, 64 samples).

Noise: ShearletX draws the obfuscation from the band statistics of the gray image's shearlet
coefficients and shares it over R, G, B (as its code does); the others use per-channel band
statistics and independent noise per channel (``noise_source``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal

from torch import Tensor

from .._checks import check_choice, check_seed
from .._types import Model, Target
from ..explanation import Explanation
from ..params import Bounds, RepresentationArg, Seed, Steps
from ..registry import METHODS
from ..representations import make_representation
from ._common import as_model, finish, prepare
from ._optim import record_convergence
from .maskopt import MaskOptimizer, Noise, mask_explanation

__all__ = ["MaskExplainer", "ShearletX", "WaveletX", "CartoonX", "PixelMask"]


class MaskExplainer:
    """A sparse mask on the coefficients of a representation, with a spatial energy penalty.

    Loss ``E(1 - p_t(x̃))² + λ₁ mean|m| + λ₂ mean|clamp(T⁻¹(m ⊙ T(gray x)))|`` over a mask on
    the coefficients (one value per coefficient shared by R, G, B), where x̃ keeps the masked
    coefficients and replaces the others by noise. Its subclasses :class:`ShearletX` (the 49
    non-subsampled shearlet bands), :class:`WaveletX` and :class:`CartoonX` (DWT) and
    :class:`PixelMask` (pixels) have the papers' defaults (module table). Kolek et al., ECCV
    2022, CVPR 2023.

    Args:
        model: the classifier.
        representation: ``"shearlets"``, ``"wavelets"``, ``"pixels"`` or a spec with options
            (``"shearlets:scales=3,directions=[8,8,16]"``, ``"wavelets:wavelet=haar,levels=3"``),
            or a :class:`~unmask.representations.Representation`.
        l1: λ₁.
        spatial: λ₂ (0: none).
        steps: Adam steps.
        lr: learning rate.
        noise_bs: noise samples per step.
        noise: ``"uniform"``, ``"gaussian"`` or ``"zeros"``.
        noise_source: ``"gray"`` (band statistics of the gray image, one draw for R, G, B) or
            ``"color"`` (per channel).
        score: must be ``"prob"``: the distortion is the squared error of the probability.
        seed: noise seed.
        progress: progress bar over steps (bool or a callback ``(done, total)``).

    Extras: ``image`` x̂ (B, 3, H, W); ``keep_mask`` the coefficient mask (B, 1, K, h, w) for
    pixels and shearlets, or a list of such tensors for wavelets (low-pass, then the levels
    coarse to fine, K = 3 orientations); ``coefficients`` m ⊙ T(x); ``history``.

    Example:
        >>> import torch, unmask
        >>> from unmask.testing import region_model, region_images
        >>> e = unmask.explain(
        ...     region_model(), region_images(1, 16), "shearletx", steps=2, noise_bs=2)
        >>> e.method, tuple(e.saliency.shape), tuple(e.extras["keep_mask"].shape)
        ('shearletx', (1, 1, 16, 16), (1, 1, 49, 16, 16))
    """

    def __init__(
        self,
        model: Model,
        *,
        representation: RepresentationArg = "shearlets",
        l1: float = 1.0,
        spatial: float = 2.0,
        steps: Steps = 300,
        lr: float = 0.1,
        noise_bs: Annotated[int, Bounds(1, 1_024)] = 16,
        noise: Noise = "uniform",
        noise_source: Literal["gray", "color"] = "gray",
        score: Literal["prob"] = "prob",
        seed: Seed = 0,
        progress: Any = False,
    ) -> None:
        check_choice(score, "score", ("prob",))
        self.model = as_model(model)
        self.representation = make_representation(representation)
        self.optimizer = MaskOptimizer(
            self.model,
            self.representation,
            l1=l1,
            spatial=spatial,
            steps=steps,
            lr=lr,
            noise_bs=noise_bs,
            noise=noise,
            noise_source=noise_source,
            seed=check_seed(seed),
            progress=progress,
        )

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set of
        classes, or one per image)."""
        x, target = prepare(self.model, x, target)
        result = self.optimizer.optimize(x, target)
        saliency, extras = mask_explanation(result)
        e = finish(self, saliency, target, **extras)
        return record_convergence(e, result.history["loss"].T)


def _with_defaults(**defaults: Any) -> Callable[..., None]:
    """An ``__init__`` for a :class:`MaskExplainer` setting: its signature with ``defaults``."""
    base = inspect.signature(MaskExplainer.__init__)
    signature = base.replace(
        parameters=[
            p.replace(default=defaults.get(name, p.default)) for name, p in base.parameters.items()
        ]
    )

    def __init__(self: MaskExplainer, *args: Any, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(signature.parameters))
        if unknown:  # as METHODS.get(name).build says it
            allowed = ", ".join(list(signature.parameters)[2:])
            raise ValueError(
                f"{unknown[0]}: not a hyperparameter of {METHODS.name_of(type(self))!r}; "
                f"expected one of: {allowed}"
            )
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        MaskExplainer.__init__(*bound.args, **bound.kwargs)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    return __init__


def _cost(p: dict[str, Any], size: int) -> int:
    return int(p["steps"] * p["noise_bs"])  # one noise draw per model evaluation


@METHODS.register(
    "shearletx",
    family="representation",
    passes="autograd",
    cost=_cost,
    # 2 shearlet scales at 32x32
    test={"steps": 40, "noise_bs": 2, "representation": "shearlets:scales=2,directions=[4,4]"},
)
class ShearletX(MaskExplainer):
    """ShearletX: a sparse mask on the 49 shearlet bands, with a spatial energy penalty (Kolek
    et al., CVPR 2023). :class:`MaskExplainer` with the module table's defaults."""

    __init__ = _with_defaults(representation="shearlets", l1=1.0, spatial=2.0, noise_source="gray")


@METHODS.register(
    "waveletx",
    family="representation",
    passes="autograd",
    cost=_cost,
    test={"steps": 40, "noise_bs": 2, "representation": "wavelets:levels=3"},
)
class WaveletX(MaskExplainer):
    """WaveletX: ShearletX's objective on DWT coefficients (db3, J=5, zero padding)."""

    __init__ = _with_defaults(representation="wavelets", l1=2.0, spatial=10.0, noise_source="color")


@METHODS.register(
    "cartoonx",
    family="representation",
    passes="autograd",
    cost=_cost,
    test={"steps": 40, "noise_bs": 2, "representation": "wavelets:levels=3", "lr": 0.1},
)
class CartoonX(MaskExplainer):
    """CartoonX: a sparse DWT mask without spatial penalty (Kolek et al., ECCV 2022)."""

    __init__ = _with_defaults(
        representation="wavelets",
        l1=20.0,
        spatial=0.0,
        steps=2000,
        lr=1e-3,
        noise_bs=64,
        noise_source="color",
    )


@METHODS.register(
    "pixelmask",
    family="representation",
    passes="autograd",
    cost=_cost,
    test={"steps": 40, "noise_bs": 2},
)
class PixelMask(MaskExplainer):
    """PixelMask: the same objective on a pixel mask, no smoothness prior."""

    __init__ = _with_defaults(representation="pixels", l1=1.0, spatial=0.0, noise_source="color")
