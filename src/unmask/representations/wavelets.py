"""The 2-D discrete wavelet transform (DWT) as a maskable representation, on ``ptwt``.

Library choice: ``ptwt`` (PyTorch Wavelet Toolbox, 1.0.1) rather than ``pytorch_wavelets``
(the ShearletX/CartoonX authors' choice): ptwt is maintained (1.0 in 2024; pytorch_wavelets'
last release, 1.3.0, dates from 2020), pure torch (convolutions, differentiable, any device,
batched over leading dimensions), takes every PyWavelets wavelet and the boundary modes
``zero``, ``reflect``, ``periodic``, ``symmetric``..., and is already a dependency-light install
beside torch 2.13 (pytorch_wavelets also installs, but would add a second DWT package).
With ``mode="zero"`` both libraries compute the same (zero-padded, PyWavelets-compatible)
coefficients.

Default as in WaveletX / CartoonX (Kolek et al. CVPR 2023, ECCV 2022): ``db3``, J = 5 levels,
zero padding.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Literal, cast

import torch
from torch import Tensor

from .._checks import check_images, check_positive

_BoundaryMode = Literal["zero", "constant", "reflect", "periodic", "symmetric"]

__all__ = ["Wavelets"]


@contextlib.contextmanager
def _onednn(size: Sequence[int]) -> Iterator[None]:
    """oneDNN on for large images only: its stride-2 (transposed) convolutions on small maps
    cost a fixed ~50 ms per call on CPU (measured: 32² inverse 7× slower than without it),
    while at 224² it is ~20% faster than torch's native kernels."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TF32 acceleration.*")
        with torch.backends.mkldnn.flags(enabled=size[0] * size[1] > 128 * 128):
            yield


class Wavelets:
    """2-D DWT with band groups ``[low-pass (B, C, 1, h, w), level J (B, C, 3, ...), …, level 1]``.

    The low-pass group has one band; each level (coarsest first) has three bands, the
    horizontal, vertical and diagonal details in ptwt's order. ``inverse`` crops the
    reconstruction to ``size`` (zero padding makes odd sizes one pixel larger).

    Args:
        wavelet: a PyWavelets wavelet name (default ``"db3"``).
        levels: decomposition levels J (default 5).
        mode: boundary mode (default ``"zero"``), any ptwt mode.

    Example:
        >>> import torch
        >>> w = Wavelets()
        >>> x = torch.rand(1, 3, 64, 48)
        >>> c = w.forward(x)
        >>> len(c), tuple(c[0].shape), tuple(c[-1].shape)
        (6, (1, 3, 1, 6, 6), (1, 3, 3, 34, 26))
        >>> bool((w.inverse(c, (64, 48)) - x).abs().max() < 1e-5)
        True
    """

    name = "wavelets"

    def __init__(self, wavelet: str = "db3", levels: int = 5, mode: str = "zero") -> None:
        import pywt

        if wavelet not in pywt.wavelist(kind="discrete"):
            raise ValueError(
                f"wavelet: expected a discrete PyWavelets wavelet (e.g. 'db3'), got {wavelet!r}"
            )
        check_positive(levels, "levels", integer=True)
        modes = ("zero", "constant", "reflect", "periodic", "symmetric")
        if mode not in modes:
            raise ValueError(f"mode: expected one of {', '.join(map(repr, modes))}, got {mode!r}")
        self.wavelet, self.levels = wavelet, levels
        self.mode = cast(_BoundaryMode, mode)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Coefficients of images (B, C, H, W): [(B, C, 1, ...), (B, C, 3, ...) × J]."""
        import ptwt

        check_images(x, "x")
        with _onednn(x.shape[-2:]):
            coeffs = ptwt.wavedec2(x, self.wavelet, level=self.levels, mode=self.mode)
        return [coeffs[0].unsqueeze(2)] + [torch.stack(tuple(d), dim=2) for d in coeffs[1:]]

    def inverse(self, coeffs: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
        """Images (B, C, H, W) of spatial ``size`` from band groups as made by :meth:`forward`."""
        import ptwt
        from ptwt.constants import WaveletDetailTuple2d

        if len(coeffs) != self.levels + 1 or any(c.ndim != 5 for c in coeffs):
            shapes = [tuple(c.shape) for c in coeffs]
            raise ValueError(
                f"coeffs: expected {self.levels + 1} groups of shape (B, C, K, h, w), got {shapes}"
            )
        low = coeffs[0].squeeze(2)
        details = [WaveletDetailTuple2d(*c.unbind(2)) for c in coeffs[1:]]
        with _onednn(size):
            x = ptwt.waverec2((low, *details), self.wavelet)
        h, w = size
        if x.shape[-2] < h or x.shape[-1] < w:
            raise ValueError(
                f"size: {tuple(size)} is larger than the reconstruction {tuple(x.shape[-2:])}"
            )
        return x[..., :h, :w]

    @property
    def spec(self) -> str:
        """``"wavelets"``, or ``"wavelets:wavelet=haar,levels=3,mode=zero"`` off the defaults."""
        if (self.wavelet, self.levels, self.mode) == ("db3", 5, "zero"):
            return "wavelets"
        return f"wavelets:wavelet={self.wavelet},levels={self.levels},mode={self.mode}"

    def __repr__(self) -> str:
        return f"Wavelets(wavelet={self.wavelet!r}, levels={self.levels}, mode={self.mode!r})"
