"""The substrates of the reference faithfulness metrics, as removal strategies.

A *substrate* is what a deletion / insertion metric puts in place of the pixels it removes.
Two reference implementations use their own fills, reproduced here exactly so that our metrics
give their numbers:

- :class:`BoxBlur` — ``saliency_maps_metrics``' ``"blur"`` (Gomez et al.): a box filter of size
  ``max(H // 5, 9)`` (made odd), zero padding (so borders darken).
- :class:`RiseBlur` — the RISE evaluation code's insertion substrate (Petsiuk et al., BMVC 2018):
  an 11×11 kernel made by ``scipy.ndimage.gaussian_filter`` of a centred delta with σ = 5
  (``gkern(11, 5)``), applied with zero padding *to normalised images*. Zero in normalised space
  is the ImageNet mean colour, so in our [0, 1] space the padding is that colour.

Both are fixed fills (``fill(x)`` is computed once per image by the scoring engine) and are
differentiable. :func:`resolve_substrate` turns names into removals for the metrics and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive
from ..removal import Constant, make_removal
from ..removal.base import blend, checked

__all__ = ["BoxBlur", "RiseBlur", "rise_kernel", "resolve_substrate", "SUBSTRATE_NAMES"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)


class BoxBlur:
    """Box-filter blur with zero padding: ``saliency_maps_metrics``' ``"blur"`` substrate.

    Args:
        kernel_size: odd box side; ``None`` = the seed package's rule ``max(H // 5, 9)``, plus one
            when even (H = image height).

    Example:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> BoxBlur().fill(x).shape
        torch.Size([1, 3, 32, 32])
    """

    differentiable = True

    def __init__(self, kernel_size: int | None = None) -> None:
        if kernel_size is not None:
            check_positive(kernel_size, "kernel_size", integer=True)
            if kernel_size % 2 == 0:
                raise ValueError(f"kernel_size: expected an odd number, got {kernel_size}")
        self.kernel_size = kernel_size

    def size_for(self, height: int) -> int:
        """The box side used for images of this height."""
        if self.kernel_size is not None:
            return self.kernel_size
        k = max(height // 5, 9)
        return k + 1 if k % 2 == 0 else k

    def fill(self, x: Tensor) -> Tensor:
        """The blurred images (B, C, H, W).

        Computed as two 1-D box filters (rows, then columns), which equals the seed package's
        k×k convolution with zero padding up to float round-off and costs 2k instead of k²
        multiply-adds per pixel (45 vs 2025 at 224²).
        """
        k = self.size_for(x.shape[2])
        c = x.shape[1]
        row = torch.full((c, 1, 1, k), 1.0 / k, dtype=x.dtype, device=x.device)
        y = F.conv2d(x, row, padding=(0, k // 2), groups=c)
        return F.conv2d(y, row.transpose(2, 3), padding=(k // 2, 0), groups=c)

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Remove ``mask`` (B, 1, H, W) from ``x`` (B, C, H, W)."""
        x, mask = checked(x, mask)
        return blend(x, self.fill(x), mask)

    def __repr__(self) -> str:
        return f"BoxBlur(kernel_size={self.kernel_size})"


def rise_kernel(size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's ``gkern``: ``gaussian_filter`` (reflect mode) of a centred delta, (size, size).

    Its entries sum to 1; it is flatter than a truncated Gaussian because the reflected tails
    fold back into the window.
    """
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, sigma).astype(np.float32))


class RiseBlur:
    """RISE's insertion substrate: ``gkern(11, 5)`` blur with padding by ``pad_colour``.

    Args:
        kernel_size: RISE's ``klen`` (11).
        sigma: RISE's ``nsig`` (5).
        pad_colour: the colour outside the image; ``"mean"`` (default) is the ImageNet mean,
            i.e. RISE's zero padding of normalised images; a number or one per channel otherwise
            (0 = zero padding in [0, 1] space).
    """

    differentiable = True

    def __init__(self, kernel_size: int = 11, sigma: float = 5.0,
                 pad_colour: str | float | Sequence[float] = "mean") -> None:
        check_positive(kernel_size, "kernel_size", integer=True)
        check_positive(sigma, "sigma")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd number, got {kernel_size}")
        if pad_colour == "mean":
            colour: tuple[float, ...] = _IMAGENET_MEAN
        elif isinstance(pad_colour, int | float) and not isinstance(pad_colour, bool):
            colour = (float(pad_colour),)
        elif isinstance(pad_colour, Sequence) and not isinstance(pad_colour, str) and pad_colour:
            colour = tuple(float(v) for v in pad_colour)
        else:
            raise ValueError(f"pad_colour: expected 'mean', a number or one number per channel, got {pad_colour!r}")
        self.kernel_size, self.sigma, self.pad_colour = kernel_size, float(sigma), pad_colour
        self._colour = colour
        self._kernel = rise_kernel(kernel_size, sigma)

    def fill(self, x: Tensor) -> Tensor:
        """The blurred images (B, C, H, W); outside the image counts as ``pad_colour``."""
        c = x.shape[1]
        colour = torch.tensor(self._colour, dtype=x.dtype, device=x.device)
        if colour.numel() not in (1, c):
            raise ValueError(f"pad_colour: {colour.numel()} values for images with {c} channels")
        colour = colour.reshape(1, -1, 1, 1)
        k = self._kernel.to(dtype=x.dtype, device=x.device)
        kernel = k.expand(c, 1, *k.shape)
        # conv(pad_c(x)) = conv0(x - c) + c * sum(k): padding by a colour, per channel.
        return F.conv2d(x - colour, kernel, padding=self.kernel_size // 2, groups=c) + colour * k.sum()

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Remove ``mask`` (B, 1, H, W) from ``x`` (B, C, H, W)."""
        x, mask = checked(x, mask)
        return blend(x, self.fill(x), mask)

    def __repr__(self) -> str:
        return f"RiseBlur(kernel_size={self.kernel_size}, sigma={self.sigma}, pad_colour={self.pad_colour!r})"


#: Names understood by :func:`resolve_substrate` on top of :func:`unmask.removal.make_removal`'s.
SUBSTRATE_NAMES = {
    "box-blur": "saliency_maps_metrics' blur: box filter max(H//5, 9), zero padding",
    "rise-blur": "RISE's insertion blur: gkern(11, 5), padded with the ImageNet mean colour",
    "rise-zeros": "RISE's deletion substrate: zeros of normalised images = the ImageNet mean colour",
}


def resolve_substrate(spec: object, default: Callable[[], Callable] | None = None) -> Callable:
    """A removal from a substrate name, a removal itself, or ``default()`` when ``spec`` is None.

    Names: ``box-blur``, ``rise-blur``, ``rise-zeros`` and every name of
    :func:`unmask.removal.make_removal` (``black``, ``gray``, ``mean``, ``blur[:SIGMA]``,
    ``telea``...).
    """
    if spec is None:
        if default is None:
            raise ValueError("removal: expected a removal strategy or a name, got None")
        return default()
    if isinstance(spec, str):
        if spec == "box-blur":
            return BoxBlur()
        if spec == "rise-blur":
            return RiseBlur()
        if spec == "rise-zeros":
            return Constant("mean")
        try:
            return make_removal(spec)
        except ValueError as exc:
            raise ValueError(f"{exc}, box-blur, rise-blur, rise-zeros") from None
    if callable(spec):
        return spec  # type: ignore[return-value]
    raise TypeError(f"removal: expected a removal strategy or a name, got {type(spec).__name__}")
