"""ShearletX, WaveletX, CartoonX and PixelMask: one mask optimiser, four representations.

Each class is a thin configuration of :class:`~unmask.explainers.maskopt.MaskOptimizer`
(see there for the objective): the representation, λ₁ (``l1``), λ₂ (``spatial``) and the
optimisation settings. Defaults are those of the papers' experiments:

=========  ===========================  ====  =======  =====  =====  ========
method     representation               λ₁    λ₂       lr     steps  noise_bs
=========  ===========================  ====  =======  =====  =====  ========
shearletx  shearlets, 4 scales, 49      1     2        0.1    300    16
waveletx   DWT db3, J=5, zero padding   2     10       0.1    300    16
cartoonx   DWT db3, J=5, zero padding   20    0        1e-3   2000   64
pixelmask  pixels                       1     0        0.1    300    16
=========  ===========================  ====  =======  =====  =====  ========

ShearletX, WaveletX and PixelMask: Kolek et al., "Explaining Image Classifiers with Multiscale
Directional Image Representation", CVPR 2023 (Figure 4 settings). CartoonX: Kolek et al.,
"Cartoon Explanations of Image Classifiers", ECCV 2022 (the authors' code: λ₁ = 20, lr 1e-3,
2000 steps, 64 samples).

Noise: ShearletX draws the obfuscation from the band statistics of the gray image's shearlet
coefficients and shares it over R, G, B (as its code does); the others use per-channel band
statistics and independent noise per channel (``noise_source``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ..explanation import Explanation
from ..registry import METHODS
from ..representations import Pixels, Shearlets, Wavelets
from .._checks import check_choice
from ..removal import make_removal
from ._common import as_model, check_seed
from .maskopt import MaskOptimizer, explain_with

__all__ = ["ShearletX", "WaveletX", "CartoonX", "PixelMask"]


def _configure(obj: Any, method: str, model: Any, representation: Any, seed: int, removal: Any,
               score: str, **settings: Any) -> None:
    """Give ``obj`` its model, its :class:`MaskOptimizer` and its JSON-friendly params."""
    check_choice(score, "score", ("prob",))
    if removal is not None:
        resolved = make_removal(removal)  # TypeError / ValueError naming ``removal`` for bad input
        raise ValueError(f"removal: {method} removes coefficients by noise in its representation "
                         f"(see noise=); a pixel removal ({resolved!r}) does not apply: pass None")
    obj.method = method
    obj.model = as_model(model)
    obj.optimizer = MaskOptimizer(obj.model, representation, seed=check_seed(seed), **settings)
    obj.params = obj.optimizer.describe()


@METHODS.register("shearletx")
class ShearletX:
    """ShearletX: a sparse mask on shearlet coefficients with a spatial energy penalty.

    Loss ``E(1 - p_t(x̃))² + λ₁ mean|m| + λ₂ mean|clamp(T⁻¹(m ⊙ T(gray x)))|`` over a mask on
    the 49 non-subsampled shearlet bands (4 scales, 8+8+16+16 directions + low-pass), one mask
    value per coefficient shared by R, G, B. Kolek et al., CVPR 2023.

    Args:
        model: the classifier.
        removal: must be ``None``: coefficients are removed by ``noise`` (kept for the common
            explainer signature).
        score: must be ``"prob"``: the distortion is the squared error of the probability.
        l1: λ₁ (default 1).
        spatial: λ₂ (default 2).
        steps: Adam steps (default 300).
        lr: learning rate (default 0.1).
        noise_bs: noise samples per step (default 16).
        noise: ``"uniform"`` (default), ``"gaussian"`` or ``"zeros"``.
        scales: shearlet scales (default 4).
        directions: directions per scale (default (8, 8, 16, 16)).
        seed: noise seed.
        progress: progress bar over steps.

    Extras: ``image`` x̂ (B, 3, H, W), ``mask`` (B, 1, 49, H, W), ``history``.

    Example:
        >>> import torch, unmask
        >>> from unmask.testing import region_model, region_images
        >>> e = ShearletX(region_model(), steps=2, noise_bs=2).explain(region_images(1, 16))
        >>> tuple(e.saliency.shape), tuple(e.extras["mask"].shape)
        ((1, 1, 16, 16), (1, 1, 49, 16, 16))
    """

    def __init__(self, model: Any, removal: Any = None, *, l1: float = 1.0, spatial: float = 2.0,
                 steps: int = 300, lr: float = 0.1, noise_bs: int = 16, noise: str = "uniform",
                 scales: int = 4, directions: Sequence[int] = (8, 8, 16, 16), score: str = "prob",
                 seed: int = 0, progress: bool = False) -> None:
        _configure(self, "shearletx", model, Shearlets(scales, directions), seed, removal, score,
                   l1=l1, spatial=spatial, steps=steps, lr=lr, noise_bs=noise_bs, noise=noise,
                   noise_source="gray", progress=progress)

    def explain(self, x: Tensor, target: Any = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, int, or (B,))."""
        return explain_with(self.optimizer, x, target, self.method, self.params)


@METHODS.register("waveletx")
class WaveletX:
    """WaveletX: ShearletX's objective on DWT coefficients (db3, J=5, zero padding).

    Kolek et al., CVPR 2023 (Figure 4: λ₁ = 2, λ₂ = 10, lr 0.1, 300 steps, 16 samples).

    Args:
        model: the classifier.
        removal: must be ``None``: coefficients are removed by ``noise`` (kept for the common
            explainer signature).
        score: must be ``"prob"``: the distortion is the squared error of the probability.
        l1: λ₁ (default 2).
        spatial: λ₂ (default 10).
        steps, lr, noise_bs, noise, seed, progress: as :class:`ShearletX`.
        wavelet: PyWavelets name (default ``"db3"``).
        levels: DWT levels (default 5).
        mode: boundary mode (default ``"zero"``).

    Extras: ``image`` x̂ (B, 3, H, W), ``mask`` a list of (B, 1, K, h, w): low-pass, then the
    levels coarse to fine (K = 3 orientations), ``history``.
    """

    def __init__(self, model: Any, removal: Any = None, *, l1: float = 2.0, spatial: float = 10.0,
                 steps: int = 300, lr: float = 0.1, noise_bs: int = 16, noise: str = "uniform",
                 wavelet: str = "db3", levels: int = 5, mode: str = "zero", score: str = "prob",
                 seed: int = 0, progress: bool = False) -> None:
        _configure(self, "waveletx", model, Wavelets(wavelet, levels, mode), seed, removal, score,
                   l1=l1, spatial=spatial, steps=steps, lr=lr, noise_bs=noise_bs, noise=noise,
                   noise_source="color", progress=progress)

    def explain(self, x: Tensor, target: Any = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, int, or (B,))."""
        return explain_with(self.optimizer, x, target, self.method, self.params)


@METHODS.register("cartoonx")
class CartoonX:
    """CartoonX: a sparse DWT mask without spatial penalty (Kolek et al., ECCV 2022).

    Args:
        model: the classifier.
        removal: must be ``None``: coefficients are removed by ``noise`` (kept for the common
            explainer signature).
        score: must be ``"prob"``: the distortion is the squared error of the probability.
        l1: λ₁ (default 20).
        steps: Adam steps (default 2000).
        lr: learning rate (default 1e-3).
        noise_bs: noise samples per step (default 64).
        noise, seed, progress, wavelet, levels, mode: as :class:`WaveletX`.

    Extras: as :class:`WaveletX`.
    """

    def __init__(self, model: Any, removal: Any = None, *, l1: float = 20.0, steps: int = 2000,
                 lr: float = 1e-3, noise_bs: int = 64, noise: str = "uniform", wavelet: str = "db3",
                 levels: int = 5, mode: str = "zero", score: str = "prob", seed: int = 0,
                 progress: bool = False) -> None:
        _configure(self, "cartoonx", model, Wavelets(wavelet, levels, mode), seed, removal, score,
                   l1=l1, spatial=0.0, steps=steps, lr=lr, noise_bs=noise_bs, noise=noise,
                   noise_source="color", progress=progress)

    def explain(self, x: Tensor, target: Any = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, int, or (B,))."""
        return explain_with(self.optimizer, x, target, self.method, self.params)


@METHODS.register("pixelmask")
class PixelMask:
    """PixelMask: the same objective on a pixel mask, no smoothness prior (Kolek et al., CVPR 2023).

    Figure 4 settings: λ₁ = 1, no spatial or TV term, lr 0.1, 300 steps, 16 samples.

    Args:
        model: the classifier.
        removal: must be ``None``: coefficients are removed by ``noise`` (kept for the common
            explainer signature).
        score: must be ``"prob"``: the distortion is the squared error of the probability.
        l1: λ₁ (default 1).
        spatial: λ₂ (default 0).
        steps, lr, noise_bs, noise, seed, progress: as :class:`ShearletX`.

    Extras: ``image`` x̂ = m ⊙ x (B, 3, H, W), ``mask`` (B, 1, 1, H, W), ``history``.
    """

    def __init__(self, model: Any, removal: Any = None, *, l1: float = 1.0, spatial: float = 0.0,
                 steps: int = 300, lr: float = 0.1, noise_bs: int = 16, noise: str = "uniform",
                 score: str = "prob", seed: int = 0, progress: bool = False) -> None:
        _configure(self, "pixelmask", model, Pixels(), seed, removal, score, l1=l1, spatial=spatial,
                   steps=steps, lr=lr, noise_bs=noise_bs, noise=noise, noise_source="color",
                   progress=progress)

    def explain(self, x: Tensor, target: Any = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, int, or (B,))."""
        return explain_with(self.optimizer, x, target, self.method, self.params)
