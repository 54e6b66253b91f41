"""Removal by a fill that does not depend on the mask: a constant colour, a blur, noise."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_positive
from .base import blend, checked

__all__ = ["Constant", "Blur", "Noise", "gaussian_blur"]

_NAMED_COLOURS = {
    "gray": (0.5, 0.5, 0.5),
    "grey": (0.5, 0.5, 0.5),
    "black": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "mean": (0.485, 0.456, 0.406),  # the ImageNet mean colour: 0 after normalisation
    "imagenet_mean": (0.485, 0.456, 0.406),
}


class _FixedFill:
    """Shared call: check, compute the fill, blend."""

    differentiable = True

    def fill(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Remove ``mask`` (B, 1, H, W) from ``x`` (B, C, H, W); returns (B, C, H, W)."""
        x, mask = checked(x, mask)
        fill = self.fill(x)
        return blend(x, fill, mask)


class Constant(_FixedFill):
    """Fill removed pixels with a constant colour.

    Args:
        value: ``"gray"`` (0.5), ``"black"``, ``"white"``, ``"mean"`` (the ImageNet mean
            colour, i.e. zero after the usual normalisation), ``"image_mean"`` (each image's
            own mean colour), a number, or one number per channel.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> out = Constant("black")(x, torch.ones(2, 1, 8, 8))
        >>> bool((out == 0).all())
        True
    """

    def __init__(self, value: str | float | Sequence[float] = "gray") -> None:
        if isinstance(value, str):
            check_choice(value, "value", [*_NAMED_COLOURS, "image_mean"])
            self.colour: tuple[float, ...] | None = _NAMED_COLOURS.get(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self.colour = (float(value),)
        elif isinstance(value, Sequence) and all(isinstance(v, int | float) for v in value):
            self.colour = tuple(float(v) for v in value)
            if len(self.colour) == 0:
                raise ValueError("value: expected at least one number")
        else:
            raise TypeError(f"value: expected a colour name, a number or a sequence of numbers, got {value!r}")
        self.value = value

    def fill(self, x: Tensor) -> Tensor:
        """The fill image (B, C, H, W) for images ``x`` (B, C, H, W)."""
        if self.colour is None:  # image_mean
            return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
        colour = torch.tensor(self.colour, dtype=x.dtype, device=x.device)
        if colour.numel() not in (1, x.shape[1]):
            raise ValueError(
                f"value: {colour.numel()} channel values for images with {x.shape[1]} channels"
            )
        return colour.reshape(1, -1, 1, 1).expand_as(x)

    def __repr__(self) -> str:
        return f"Constant({self.value!r})"


def gaussian_blur(x: Tensor, sigma: float, kernel_size: int | None = None) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) images, reflect padding (replicate if too small).

    ``kernel_size`` defaults to ``2 * ceil(3 * sigma) + 1``.
    """
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma) + 1
    radius = kernel_size // 2
    t = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - radius
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    mode = "reflect" if radius < min(h, w) else "replicate"
    y = F.pad(y, (radius, radius, radius, radius), mode=mode)
    y = F.conv2d(y, k.reshape(1, 1, 1, -1))
    y = F.conv2d(y, k.reshape(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


class Blur(_FixedFill):
    """Fill removed pixels with a Gaussian-blurred copy of the image.

    Args:
        sigma: standard deviation in pixels (Fong & Vedaldi's meaningful perturbation: 10).
        kernel_size: odd kernel size; default ``2 * ceil(3 sigma) + 1``.
    """

    def __init__(self, sigma: float = 10.0, kernel_size: int | None = None) -> None:
        check_positive(sigma, "sigma")
        if kernel_size is not None:
            check_positive(kernel_size, "kernel_size", integer=True)
            if kernel_size % 2 == 0:
                raise ValueError(f"kernel_size: expected an odd number, got {kernel_size}")
        self.sigma = float(sigma)
        self.kernel_size = kernel_size

    def fill(self, x: Tensor) -> Tensor:
        """The blurred images (B, C, H, W)."""
        return gaussian_blur(x, self.sigma, self.kernel_size)

    def __repr__(self) -> str:
        return f"Blur(sigma={self.sigma})"


class Noise(_FixedFill):
    """Fill removed pixels with random noise, reproducibly.

    The noise is drawn from a generator seeded with ``seed`` at every call, so the same input
    gives the same output. Gaussian noise is N(mean, std), uniform noise U(low, high); with
    ``additive=True`` zero-mean noise (N(0, std), or U(low, high) shifted to mean 0) is added
    to the image instead of replacing it. Results are clipped to [0, 1].

    Args:
        kind: ``"gaussian"`` or ``"uniform"``.
        mean, std: Gaussian parameters (default N(0.5, 0.25)).
        low, high: uniform range (default U(0, 1)).
        additive: add zero-mean noise to the image rather than replace it.
        seed: the random seed.
    """

    def __init__(self, kind: str = "gaussian", *, mean: float = 0.5, std: float = 0.25,
                 low: float = 0.0, high: float = 1.0, additive: bool = False, seed: int = 0) -> None:
        check_choice(kind, "kind", ["gaussian", "uniform"])
        check_positive(std, "std")
        if not high > low:
            raise ValueError(f"high: expected high > low, got low={low}, high={high}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {seed!r}")
        self.kind, self.mean, self.std = kind, float(mean), float(std)
        self.low, self.high, self.additive, self.seed = float(low), float(high), additive, seed

    def fill(self, x: Tensor) -> Tensor:
        """The noise fill (B, C, H, W): the same noise image for every image of the batch."""
        # One noise image shared by the batch: a batch of B gives what B single calls give.
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        shape = (1, *x.shape[1:])
        u = torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype) if self.kind == "uniform" \
            else torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)
        if self.kind == "uniform":
            noise = self.low + (self.high - self.low) * u
            if self.additive:
                noise = noise - (self.low + self.high) / 2
        else:
            noise = u * self.std + (0.0 if self.additive else self.mean)
        return (x + noise if self.additive else noise.expand_as(x)).clamp(0, 1)

    def __repr__(self) -> str:
        params = f"mean={self.mean}, std={self.std}" if self.kind == "gaussian" else f"low={self.low}, high={self.high}"
        return f"Noise({self.kind!r}, {params}, additive={self.additive}, seed={self.seed})"
