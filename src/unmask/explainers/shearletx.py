"""ShearletX, WaveletX, CartoonX and PixelMask: one mask optimiser, four registered settings.

:class:`MaskExplainer` runs :class:`~unmask.explainers.maskopt.MaskOptimizer` (see there for
the objective) on a representation; the four methods are registry entries that differ only in
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

from typing import Any

from torch import Tensor

from .._checks import check_choice, check_seed
from .._types import Model, Target
from ..explanation import Explanation
from ..registry import METHODS
from ..representations import make_representation
from ._common import as_model, finish, prepare
from .maskopt import MaskOptimizer, mask_explanation

__all__ = ["MaskExplainer", "ShearletX", "WaveletX", "CartoonX", "PixelMask"]


@METHODS.register(
    "shearletx",
    defaults={"representation": "shearlets", "l1": 1.0, "spatial": 2.0, "noise_source": "gray"},
)
class MaskExplainer:
    """A sparse mask on the coefficients of a representation, with a spatial energy penalty.

    Loss ``E(1 - p_t(x̃))² + λ₁ mean|m| + λ₂ mean|clamp(T⁻¹(m ⊙ T(gray x)))|`` over a mask on
    the coefficients (one value per coefficient shared by R, G, B), where x̃ keeps the masked
    coefficients and replaces the others by noise. Registered as ``shearletx`` (the 49
    non-subsampled shearlet bands), ``waveletx`` and ``cartoonx`` (DWT) and ``pixelmask``
    (pixels), with the papers' defaults (module table). Kolek et al., ECCV 2022, CVPR 2023.

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
        representation: Any = "shearlets",
        l1: float = 1.0,
        spatial: float = 2.0,
        steps: int = 300,
        lr: float = 0.1,
        noise_bs: int = 16,
        noise: str = "uniform",
        noise_source: str = "gray",
        score: str = "prob",
        seed: int = 0,
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
        saliency, extras = mask_explanation(self.optimizer.optimize(x, target))
        return finish(self, saliency, target, **extras)


METHODS.add(
    "waveletx",
    MaskExplainer,
    defaults={"representation": "wavelets", "l1": 2.0, "spatial": 10.0, "noise_source": "color"},
    summary="WaveletX: ShearletX's objective on DWT coefficients (db3, J=5, zero padding).",
)
METHODS.add(
    "cartoonx",
    MaskExplainer,
    defaults={
        "representation": "wavelets",
        "l1": 20.0,
        "spatial": 0.0,
        "steps": 2000,
        "lr": 1e-3,
        "noise_bs": 64,
        "noise_source": "color",
    },
    summary="CartoonX: a sparse DWT mask without spatial penalty (Kolek et al., ECCV 2022).",
)
METHODS.add(
    "pixelmask",
    MaskExplainer,
    defaults={"representation": "pixels", "l1": 1.0, "spatial": 0.0, "noise_source": "color"},
    summary="PixelMask: the same objective on a pixel mask, no smoothness prior.",
)


def _preset(name: str) -> Any:
    """``ShearletX(model, **kw)`` etc.: the registered setting as a constructor."""

    def build(model: Model, **hyperparameters: Any) -> MaskExplainer:
        return METHODS.get(name).build(model, **hyperparameters)

    build.__name__ = build.__qualname__ = {
        "shearletx": "ShearletX",
        "waveletx": "WaveletX",
        "cartoonx": "CartoonX",
        "pixelmask": "PixelMask",
    }[name]
    build.__doc__ = f"The ``{name}`` setting of :class:`MaskExplainer` (see the module table)."
    return build


ShearletX, WaveletX, CartoonX, PixelMask = (
    _preset(n) for n in ("shearletx", "waveletx", "cartoonx", "pixelmask")
)
