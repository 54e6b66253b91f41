"""Hallucination score: the share of edges of an explanation image that the image does not have.

Kolek et al., "Explaining Image Classifiers with Multiscale Directional Image Representation",
CVPR 2023, Sec. 4:

    HS = |E(x̂) ∧ ¬D(E(x))| / |E(x)|

with ``E`` a binary edge map of the gray image and ``D`` a 3 × 3 dilation. Both images are
divided by their own maximum first (the paper divides x̂; doing the same to x makes
``HS(x, x) = 0`` exactly, and changes nothing for an image whose maximum is 1). HS is NaN for
an image without edges.

Edge detectors (``detector=``):

* ``"shearlet"`` (default): a complex-shearlet phase-congruency edge measure in the spirit of
  CoShREM (Reisenhofer, Kiefer, King, "Shearlet-based detection of flame fronts", Exp. Fluids
  2016), which the paper used, built on :mod:`unmask.representations.shearlets` (see
  :func:`shearlet_edge_measure`; all four scales, 16 orientations). Edge where the measure
  exceeds ``threshold`` = 0.1 (the paper's threshold). ``min_contrast`` = 10 grey levels of
  255: the default of the authors' ``get_shearlet_based_edges``. Their Figure 4 script passes
  3, but to ``int8(255 · gray)``, which wraps around above 127 (a bug), so its contrast scale is
  not comparable; here the gray image is scaled to [0, 255] in floating point. With 10, the
  edge map of a natural image (skimage ``chelsea``, 256²) marks ~7% of the pixels, outlining
  eyes, nose and whiskers; with 3 it marks 47% (all fur texture).
* ``"canny"``: scikit-image's Canny (σ = 1, hysteresis thresholds 0.1 / 0.2 of the range).
* any callable ``gray (B, 1, H, W) in [0, 1] -> bool (B, 1, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_images, check_positive, check_unit_range
from ..registry import METRICS
from ..representations.base import gray
from ..representations.shearlets import shearlet_system

__all__ = [
    "HallucinationScore",
    "hallucination_score",
    "shearlet_edge_measure",
    "shearlet_edges",
    "canny_edges",
    "EDGE_DETECTORS",
]

EdgeDetector = Callable[[Tensor], Tensor]


@lru_cache(maxsize=8)
def _edge_filters(
    height: int, width: int, scales: tuple[int, ...], orientations: int
) -> tuple[Tensor, Tensor]:
    """Complex (analytic) shearlet responses per (scale, orientation) and their unit-step gains.

    Returns:
        ``filters`` (S, O, H, W) complex: ``psi_hat · (1 + sign(<xi, n>))`` where ``n`` is the
        filter's normal; the real part of the response is the even (line-like) shearlet
        coefficient, the imaginary part its Hilbert transform across the edge (the odd,
        step-like one). ``gains`` (S,): the peak odd response of each scale to a unit step edge.
    """
    system = shearlet_system(height, width, dtype=torch.float64)
    xi_row = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    xi_col = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    thetas = torch.arange(orientations, dtype=torch.float64) * math.pi / orientations
    banks = []
    for s in scales:
        idx = torch.nonzero(system.scale_of == s).flatten()
        dirs = system.direction_of[idx].double()
        # nearest filter of this scale to each target orientation (angles modulo pi)
        diff = (dirs[None, :] - thetas[:, None]).remainder(math.pi)
        pick = idx[torch.minimum(diff, math.pi - diff).argmin(1)]
        normal = system.direction_of[pick].double()
        proj = xi_col * torch.cos(normal)[:, None, None] + xi_row * torch.sin(normal)[:, None, None]
        banks.append(system.filters[pick].double() * (1 + torch.sign(proj)))
    filters = torch.stack(banks)  # (S, O, H, W)
    step = (torch.arange(width, dtype=torch.float64) >= width // 2).double().expand(height, width)
    odd = torch.fft.ifft2(torch.fft.fft2(step) * filters[:, 0]).imag
    gains = odd.abs().flatten(1).amax(1)
    return filters.to(torch.complex128), gains


def shearlet_edge_measure(
    image: Tensor,
    min_contrast: float = 10.0,
    scales: tuple[int, ...] = (0, 1, 2, 3),
    orientations: int = 16,
    eps: float = 1e-2,
) -> Tensor:
    """Phase-congruency edge measure in [0, 1] from complex shearlet responses.

    For every orientation ``k`` (``orientations`` equispaced normals; at each scale the shearlet
    whose wedge is nearest), with even parts ``e_s`` and odd parts ``o_s`` of the responses at
    the scales ``s``, normalised so that a step edge of height h has peak ``|o_s| ≈ h``:

        E_k = max(|Σ_s o_s| - Σ_s |e_s| - S · min_contrast, 0) / (S · max_s |e_s + i o_s| + eps)

    and ``E = max_k E_k``. At a step edge the odd responses of all scales agree in sign and the
    even ones vanish, so E is close to 1; at a line, in texture or in noise it is small. This is
    CoShREM's edge measure (Reisenhofer et al. 2016) on this library's shearlet system.

    Args:
        image: gray images (B, 1, H, W) in grey levels [0, 255].
        min_contrast: the smallest step height (grey levels) counted as an edge.
        scales: the shearlet scales used (0 = coarsest of 4; default all four).
        orientations: number of orientations tested.
        eps: regulariser of the denominator (grey levels).

    Returns:
        (B, 1, H, W) edge measure in [0, 1].
    """
    h, w = image.shape[-2:]
    filters, gains = _edge_filters(h, w, tuple(scales), orientations)
    spectrum = torch.fft.fft2(image.double())  # (B, 1, H, W)
    z = (
        torch.fft.ifft2(spectrum[:, :, None, None] * filters) / gains[:, None, None, None]
    )  # (B,1,S,O,H,W)
    even, odd = z.real, z.imag
    count = len(scales)
    congruency = odd.sum(2).abs() - even.abs().sum(2) - count * min_contrast
    measure = congruency.clamp_min(0) / (count * z.abs().amax(2) + eps)
    return measure.amax(2).float()


def shearlet_edges(
    gray_image: Tensor, threshold: float = 0.1, min_contrast: float = 10.0
) -> Tensor:
    """Binary edges (B, 1, H, W) of gray images in [0, 1]: the shearlet measure > ``threshold``."""
    return shearlet_edge_measure(gray_image * 255.0, min_contrast=min_contrast) > threshold


def canny_edges(gray_image: Tensor, sigma: float = 1.0) -> Tensor:
    """Binary Canny edges (B, 1, H, W) of gray images in [0, 1] (scikit-image)."""
    from skimage.feature import canny

    arr = gray_image[:, 0].detach().double().cpu().numpy()
    maps = np.stack([canny(a, sigma=sigma, low_threshold=0.1, high_threshold=0.2) for a in arr])
    return torch.from_numpy(maps)[:, None].to(gray_image.device)


#: Named edge detectors: gray (B, 1, H, W) in [0, 1] -> bool (B, 1, H, W).
EDGE_DETECTORS: dict[str, EdgeDetector] = {"shearlet": shearlet_edges, "canny": canny_edges}


def _detector(detector: str | EdgeDetector) -> EdgeDetector:
    if callable(detector):
        return detector
    if not isinstance(detector, str) or detector not in EDGE_DETECTORS:
        raise ValueError(
            f"detector: expected one of {', '.join(map(repr, EDGE_DETECTORS))} or a callable, "
            f"got {detector!r}"
        )
    return EDGE_DETECTORS[detector]


def _normalised_gray(x: Tensor) -> Tensor:
    g = gray(x.detach().float())
    return g / g.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]


def hallucination_score(
    x: Tensor, x_hat: Tensor, detector: str | EdgeDetector = "shearlet"
) -> Tensor:
    """Hallucination score per image, (B,): new edges of x̂ per edge of x (see module docstring).

    Args:
        x: images (B, C, H, W).
        x_hat: explanation images (B, C, H, W).
        detector: ``"shearlet"`` (default), ``"canny"`` or a callable.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 3, 32, 32); x[..., 8:24, 8:24] = 1
        >>> float(hallucination_score(x, x))
        0.0
    """
    check_unit_range(check_images(x, "x"), "x")
    check_unit_range(check_images(x_hat, "x_hat"), "x_hat")
    if x_hat.shape != x.shape:
        raise ValueError(
            f"x_hat: expected the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}"
        )
    find = _detector(detector)
    edges_x = find(_normalised_gray(x)).float()
    edges_hat = find(_normalised_gray(x_hat)).float()
    dilated = F.max_pool2d(edges_x, 3, stride=1, padding=1)
    new = (edges_hat * (1 - dilated)).flatten(1).sum(1)
    total = edges_x.flatten(1).sum(1)
    return torch.where(
        total > 0, new / total.clamp_min(1), torch.full_like(total, float("nan"))
    ).cpu()


class HallucinationScore:
    """The hallucination score as a metric object: ``metric(x, x_hat) -> (B,)`` (lower is better).

    Args:
        detector: ``"shearlet"`` (default), ``"canny"`` or a callable edge detector.
        threshold: edge threshold of the shearlet measure (default 0.1).
        min_contrast: minimum contrast of the shearlet measure in grey levels (default 10).
    """

    kind = "artifact"
    higher_is_better = False

    def __init__(
        self,
        detector: Literal["shearlet", "canny"] | EdgeDetector = "shearlet",
        *,
        threshold: float = 0.1,
        min_contrast: float = 10.0,
    ) -> None:
        check_positive(threshold, "threshold")
        check_positive(min_contrast, "min_contrast", allow_zero=True)
        if detector == "shearlet":

            def find(g: Tensor) -> Tensor:
                return shearlet_edges(g, threshold=threshold, min_contrast=min_contrast)

            self.detector: EdgeDetector = find
        else:
            self.detector = _detector(detector)
        self.name = (
            detector if isinstance(detector, str) else getattr(detector, "__name__", "custom")
        )

    def __call__(self, x: Tensor, x_hat: Tensor, *_: Any, **__: Any) -> Tensor:
        return hallucination_score(x, x_hat, self.detector)


METRICS.add(
    "hallucination_score",
    HallucinationScore,
    aliases=("hs",),
    summary="Hallucination score: artificial edges of x̂ per edge of x (Kolek et al. 2023).",
)
