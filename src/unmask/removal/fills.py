"""Removal by a fill that does not depend on the mask: a colour, a blur, noise, a given image.

Besides the general fills (:class:`Constant`, :class:`Blur`, :class:`Noise`), two reference
metrics' own substrates are reproduced exactly so that our metrics give their numbers:

- :class:`BoxBlur` — ``saliency_maps_metrics``' ``"blur"`` (Gomez et al.): a box filter of size
  ``max(H // 5, 9)`` (made odd), zero padding (so borders darken).
- :class:`RiseBlur` — the RISE evaluation code's insertion substrate (Petsiuk et al., BMVC 2018):
  an 11×11 kernel made by ``scipy.ndimage.gaussian_filter`` of a centred delta with σ = 5
  (``gkern(11, 5)``), applied with zero padding *to normalised images*. Zero in normalised space
  is the ImageNet mean colour, so in our [0, 1] space the padding is that colour.

:class:`TensorFill` takes the fill as a given tensor (the ``masking_data`` argument of
``saliency_maps_metrics``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_images, check_positive, check_seed
from .base import FixedFill

__all__ = [
    "Constant",
    "Blur",
    "Noise",
    "BoxBlur",
    "RiseBlur",
    "TensorFill",
    "gaussian_blur",
    "rise_kernel",
    "MAX_SIGMA",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)

_NAMED_COLOURS = {
    "gray": (0.5, 0.5, 0.5),
    "grey": (0.5, 0.5, 0.5),
    "black": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "mean": IMAGENET_MEAN,  # the ImageNet mean colour: 0 after normalisation
    "imagenet_mean": IMAGENET_MEAN,
}

#: The largest blur sigma accepted (pixels); a larger blur is a constant image mean in practice.
MAX_SIGMA = 1000.0


def _number(value: float) -> str:
    """The shortest text of a number that reads back equal (``10.0`` -> ``10``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _colour(value: object, name: str) -> tuple[float, ...]:
    """A colour given as a number or one number per channel, each finite and in [0, 1]."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        colour: tuple[float, ...] = (float(value),)
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        colour = tuple(float(v) for v in value)
    else:
        raise TypeError(
            f"{name}: expected a colour name, a number or one number per channel, got {value!r}"
        )
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in colour):
        raise ValueError(
            f"{name}: expected colour values in [0, 1] (images are in [0, 1]), got {value!r}"
        )
    return colour


def _channel_fill(colour: tuple[float, ...], x: Tensor, name: str) -> Tensor:
    c = torch.tensor(colour, dtype=x.dtype, device=x.device)
    if c.numel() not in (1, x.shape[1]):
        raise ValueError(
            f"{name}: {c.numel()} channel values for images with {x.shape[1]} channels"
        )
    return c.reshape(1, -1, 1, 1)


class Constant(FixedFill):
    """Fill removed pixels with a constant colour.

    Args:
        value: ``"gray"`` (0.5), ``"black"``, ``"white"``, ``"mean"`` (the ImageNet mean
            colour, i.e. zero after the usual normalisation), ``"image_mean"`` (each image's
            own mean colour), a number in [0, 1], or one such number per channel.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> out = Constant("black")(x, torch.ones(2, 1, 8, 8))
        >>> bool((out == 0).all()), Constant(0.25).spec
        (True, 'constant:0.25')
    """

    def __init__(self, value: str | float | Sequence[float] = "gray") -> None:
        if isinstance(value, str):
            check_choice(value, "value", [*_NAMED_COLOURS, "image_mean"])
            self.colour: tuple[float, ...] | None = _NAMED_COLOURS.get(value)
        else:
            self.colour = _colour(value, "value")
            value = self.colour[0] if len(self.colour) == 1 else self.colour
        self.value = value

    @property
    def spec(self) -> str:
        if isinstance(self.value, str):
            return {"grey": "gray", "imagenet_mean": "mean"}.get(self.value, self.value)
        if isinstance(self.value, tuple):
            return "constant:[" + ",".join(_number(v) for v in self.value) + "]"
        return f"constant:{_number(self.value)}"

    def fill(self, x: Tensor) -> Tensor:
        """The fill image (B, C, H, W) for images ``x`` (B, C, H, W)."""
        if self.colour is None:  # image_mean
            return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
        return _channel_fill(self.colour, x, "value").expand_as(x)


def gaussian_blur(x: Tensor, sigma: float, kernel_size: int | None = None) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) images, reflect padding (replicate if too small).

    ``kernel_size`` defaults to ``2 * ceil(3 * sigma) + 1``. Each pass pads only the axis it
    filters, so memory grows linearly, not quadratically, with the kernel.
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
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode), k.reshape(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode), k.reshape(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


class Blur(FixedFill):
    """Fill removed pixels with a Gaussian-blurred copy of the image.

    Args:
        sigma: standard deviation in pixels, in (0, 1000] (Fong & Vedaldi's meaningful
            perturbation: 10).
        kernel_size: odd kernel size; default ``2 * ceil(3 sigma) + 1``.

    Example:
        >>> Blur(5).spec, Blur(2.5, kernel_size=9).spec
        ('blur:5', 'blur:sigma=2.5,kernel_size=9')
    """

    def __init__(self, sigma: float = 10.0, kernel_size: int | None = None) -> None:
        check_positive(sigma, "sigma")
        if not sigma <= MAX_SIGMA:
            raise ValueError(f"sigma: expected a value in (0, {MAX_SIGMA:g}] pixels, got {sigma!r}")
        if kernel_size is not None:
            check_positive(kernel_size, "kernel_size", integer=True)
            if kernel_size % 2 == 0 or kernel_size > 6 * MAX_SIGMA + 1:
                raise ValueError(
                    f"kernel_size: expected an odd number <= {6 * MAX_SIGMA + 1:g}, "
                    f"got {kernel_size}"
                )
        self.sigma = float(sigma)
        self.kernel_size = kernel_size

    @property
    def spec(self) -> str:
        if self.kernel_size is None:
            return f"blur:{_number(self.sigma)}"
        return f"blur:sigma={_number(self.sigma)},kernel_size={self.kernel_size}"

    def fill(self, x: Tensor) -> Tensor:
        """The blurred images (B, C, H, W)."""
        return gaussian_blur(x, self.sigma, self.kernel_size)


class Noise(FixedFill):
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

    Example:
        >>> Noise().spec, Noise("uniform", seed=3).spec
        ('noise', 'uniform-noise:seed=3')
    """

    def __init__(
        self,
        kind: str = "gaussian",
        *,
        mean: float = 0.5,
        std: float = 0.25,
        low: float = 0.0,
        high: float = 1.0,
        additive: bool = False,
        seed: int = 0,
    ) -> None:
        check_choice(kind, "kind", ["gaussian", "uniform"])
        check_positive(std, "std")
        for name, v in (("mean", mean), ("std", std), ("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite number, got {v!r}")
        if not high > low:
            raise ValueError(f"high: expected high > low, got low={low}, high={high}")
        seed = check_seed(seed)
        if not isinstance(additive, bool):
            raise TypeError(f"additive: expected a bool, got {additive!r}")
        self.kind, self.mean, self.std = kind, float(mean), float(std)
        self.low, self.high, self.additive, self.seed = float(low), float(high), additive, seed

    @property
    def spec(self) -> str:
        defaults = {"mean": 0.5, "std": 0.25, "low": 0.0, "high": 1.0, "additive": False, "seed": 0}
        own = ("mean", "std") if self.kind == "gaussian" else ("low", "high")
        parts = [f"{k}={_number(getattr(self, k))}" for k in own if getattr(self, k) != defaults[k]]
        if self.additive:
            parts.append("additive=true")
        if self.seed:
            parts.append(f"seed={self.seed}")
        name = "noise" if self.kind == "gaussian" else "uniform-noise"
        return name + (":" + ",".join(parts) if parts else "")

    def fill(self, x: Tensor) -> Tensor:
        """The noise fill (B, C, H, W): the same noise image for every image of the batch."""
        # One noise image shared by the batch: a batch of B gives what B single calls give.
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        shape = (1, *x.shape[1:])
        u = (
            torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype)
            if self.kind == "uniform"
            else torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)
        )
        if self.kind == "uniform":
            noise = self.low + (self.high - self.low) * u
            if self.additive:
                noise = noise - (self.low + self.high) / 2
        else:
            noise = u * self.std + (0.0 if self.additive else self.mean)
        return (x + noise if self.additive else noise.expand_as(x)).clamp(0, 1)


class BoxBlur(FixedFill):
    """Box-filter blur with zero padding: ``saliency_maps_metrics``' ``"blur"`` substrate.

    Args:
        kernel_size: odd box side; ``None`` = the seed package's rule ``max(H // 5, 9)``, plus one
            when even (H = image height).

    Example:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> BoxBlur().fill(x).shape, BoxBlur().spec
        (torch.Size([1, 3, 32, 32]), 'box-blur')
    """

    def __init__(self, kernel_size: int | None = None) -> None:
        if kernel_size is not None:
            check_positive(kernel_size, "kernel_size", integer=True)
            if kernel_size % 2 == 0 or kernel_size > 6 * MAX_SIGMA + 1:
                raise ValueError(
                    f"kernel_size: expected an odd number <= {6 * MAX_SIGMA + 1:g}, "
                    f"got {kernel_size}"
                )
        self.kernel_size = kernel_size

    @property
    def spec(self) -> str:
        return "box-blur" if self.kernel_size is None else f"box-blur:{self.kernel_size}"

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


def rise_kernel(size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's ``gkern``: ``gaussian_filter`` (reflect mode) of a centred delta, (size, size).

    Its entries sum to 1; it is flatter than a truncated Gaussian because the reflected tails
    fold back into the window.
    """
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, sigma).astype(np.float32))


class RiseBlur(FixedFill):
    """RISE's insertion substrate: ``gkern(11, 5)`` blur with padding by ``pad_colour``.

    Args:
        kernel_size: RISE's ``klen`` (11).
        sigma: RISE's ``nsig`` (5).
        pad_colour: the colour outside the image; ``"mean"`` (default) is the ImageNet mean,
            i.e. RISE's zero padding of normalised images; a number or one per channel otherwise
            (0 = zero padding in [0, 1] space).
    """

    def __init__(
        self,
        kernel_size: int = 11,
        sigma: float = 5.0,
        pad_colour: str | float | Sequence[float] = "mean",
    ) -> None:
        check_positive(kernel_size, "kernel_size", integer=True)
        check_positive(sigma, "sigma")
        if kernel_size % 2 == 0 or kernel_size > 1001:
            raise ValueError(f"kernel_size: expected an odd number <= 1001, got {kernel_size}")
        if not sigma <= MAX_SIGMA:
            raise ValueError(f"sigma: expected a value in (0, {MAX_SIGMA:g}], got {sigma!r}")
        if pad_colour == "mean":
            colour: tuple[float, ...] = IMAGENET_MEAN
        else:
            colour = _colour(pad_colour, "pad_colour")
        self.kernel_size, self.sigma, self.pad_colour = kernel_size, float(sigma), pad_colour
        self._colour = colour
        self._kernel = rise_kernel(kernel_size, sigma)

    @property
    def spec(self) -> str:
        parts = []
        if self.kernel_size != 11:
            parts.append(f"kernel_size={self.kernel_size}")
        if self.sigma != 5.0:
            parts.append(f"sigma={_number(self.sigma)}")
        if self.pad_colour != "mean":
            parts.append(f"pad_colour={json.dumps(self.pad_colour, separators=(',', ':'))}")
        return "rise-blur" + (":" + ",".join(parts) if parts else "")

    def fill(self, x: Tensor) -> Tensor:
        """The blurred images (B, C, H, W); outside the image counts as ``pad_colour``."""
        c = x.shape[1]
        colour = _channel_fill(self._colour, x, "pad_colour")
        k = self._kernel.to(dtype=x.dtype, device=x.device)
        kernel = k.expand(c, 1, *k.shape)
        # conv(pad_c(x)) = conv0(x - c) + c * sum(k): padding by a colour, per channel.
        return (
            F.conv2d(x - colour, kernel, padding=self.kernel_size // 2, groups=c) + colour * k.sum()
        )


class TensorFill(FixedFill):
    """A fixed fill given as a tensor: removed pixels take the values of ``fill``.

    Args:
        fill: (B, C, H, W) or (1, C, H, W) in [0, 1], the replacement images.
        name: the argument name used in error messages (the caller's own name for ``fill``).

    It has no string form (the spec names only its shape): it cannot be rebuilt from a name.
    """

    def __init__(self, fill: Tensor, name: str = "fill") -> None:
        self._fill = check_images(fill, name)
        self.name = name

    @property
    def spec(self) -> str:
        return "tensor:" + "x".join(str(s) for s in self._fill.shape)

    def fill(self, x: Tensor) -> Tensor:
        if self._fill.shape[1:] != x.shape[1:] or self._fill.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"{self.name}: expected shape {tuple(x.shape)} like the images, "
                f"got {tuple(self._fill.shape)}"
            )
        return self._fill.to(device=x.device, dtype=x.dtype).expand_as(x)
