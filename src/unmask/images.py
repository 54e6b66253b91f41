"""Loading images into (1, 3, H, W) float tensors in [0, 1]."""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ._examples import EXAMPLES
from ._limits import max_pixels, max_size

__all__ = ["load_image", "example_image", "EXAMPLES", "IMAGE_SUFFIXES"]

#: File suffixes (lower case) read as images when a folder is listed (bench data sets, label
#: tree documents, the Figure 4 study).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def example_image(name: str = "chelsea") -> np.ndarray:
    """An example RGB image (H, W, 3) uint8 bundled with scikit-image (offline)."""
    if name not in EXAMPLES:
        raise ValueError(f"example: expected one of {', '.join(EXAMPLES)}, got {name!r}")
    import skimage.data

    return getattr(skimage.data, name)()


#: PIL modes with more than 8 bits per channel (read through the float path).
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _pil_to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit PIL image of any mode -> mode RGB (transparency composited on white)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """PIL image of any mode -> float32 (H, W, 3) in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
    elif img.mode == "I":
        raw = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if raw.max(initial=0) > 255 else 255.0
        arr = (raw / scale).astype(np.float32)
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max(initial=0))
        arr = arr / (255.0 if hi > 1 else 1.0)
    else:
        arr = np.asarray(_pil_to_rgb(img), dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.clip(arr, 0.0, 1.0)


def _numpy_layout(arr: np.ndarray, name: str) -> np.ndarray:
    """An array (H, W), (H, W, C) or (C, H, W) -> a view (H, W, C), checked but not converted."""
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{name}: expected an array (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}"
        )
    _check_pixels(arr.shape[1], arr.shape[0], name)  # before reading any value
    if arr.dtype not in (np.bool_, np.uint8, np.uint16) and not np.issubdtype(
        arr.dtype, np.floating
    ):
        raise TypeError(
            f"{name}: unsupported array dtype {arr.dtype} (use uint8, uint16, bool or float)"
        )
    if np.issubdtype(arr.dtype, np.floating) and arr.size:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{name}: a float image must have values in [0, 1], got range [{lo:.3g}, {hi:.3g}]"
                " (divide uint8 values by 255)"
            )
    return arr


def _numpy_to_array(arr: np.ndarray) -> np.ndarray:
    """A checked array (H, W, C) -> float32 (H, W, 3) in [0, 1]."""
    if arr.dtype == np.bool_:
        out = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    else:
        out = arr.astype(np.float32)
    if out.shape[2] == 4:  # composite on white
        alpha = out[:, :, 3:4]
        out = out[:, :, :3] * alpha + (1 - alpha)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return out


def _check_pixels(
    width: int, height: int, name: str, where: str = "", limit: int | None = None
) -> None:
    """Refuse ``width * height`` above ``limit`` (default: ``UNMASK_MAX_PIXELS``).

    The message says how to raise the limit only for the environment's own limit.
    """
    how = limit is None
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        when = "refused before decoding" if where else ""
        hint = "raise it with the environment variable UNMASK_MAX_PIXELS" if how else ""
        why = "; ".join(part for part in (when, hint) if part)
        raise ValueError(
            f"{name}: {width} x {height} = {width * height:,} pixels{where} is above the limit of "
            f"{limit:,} pixels" + (f" ({why})" if why else "")
        )


def _open(
    source: Path | BinaryIO,
    name: str,
    label: str | None = None,
    limit: int | None = None,
    formats: tuple[str, ...] | None = None,
) -> Image.Image:
    """Open an image file, check its size from the header, then decode it.

    Args:
        source: a path or a binary file object.
        name: the argument named in errors.
        label: how errors name the file (default: the path).
        limit: the pixel limit (default: ``UNMASK_MAX_PIXELS``).
        formats: the PIL formats tried (default: every format PIL reads).

    Returns:
        The decoded image (its first frame), EXIF orientation applied.
    """
    label = str(source) if label is None else label
    try:
        with warnings.catch_warnings():  # our own limit, below, replaces PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source, formats=formats)
    except Image.DecompressionBombError as exc:  # PIL's hard limit (2 x MAX_IMAGE_PIXELS)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        bound = min(max_pixels() if limit is None else limit, 2 * (Image.MAX_IMAGE_PIXELS or 0))
        hint = (
            "; UNMASK_MAX_PIXELS sets unmask's limit, PIL's Image.MAX_IMAGE_PIXELS its own"
            if limit is None
            else ""
        )
        raise ValueError(
            f"{name}: {label} has {pixels}, above the limit of {bound:,} "
            f"pixels (refused before decoding{hint})"
        ) from None
    except UnidentifiedImageError:
        raise ValueError(f"{name}: not an image file PIL can read: {label}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ValueError(f"{name}: cannot read image {label}: {exc}") from None
    with img:
        _check_pixels(img.width, img.height, name, f" in {label}", limit)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()
                return ImageOps.exif_transpose(img) or img
        except Image.DecompressionBombError as exc:
            raise ValueError(f"{name}: {label}: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
            raise ValueError(f"{name}: cannot read image {label}: {exc}") from None


def _read(source: object, name: str) -> Image.Image | np.ndarray:
    """A decoded, size-checked PIL image (EXIF orientation applied) or a checked array (H, W, C)."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{name}: file not found: {path}")
        if not path.is_file():
            raise ValueError(f"{name}: not a file: {path}")
        if path.stat().st_size == 0:
            raise ValueError(f"{name}: empty file (0 bytes): {path}")
        return _open(path, name)
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, name)
        return ImageOps.exif_transpose(source) or source
    if isinstance(source, np.ndarray):
        return _numpy_layout(source, name)
    raise TypeError(
        f"{name}: expected a file path, a PIL image or a numpy array, got {type(source).__name__}"
    )


def _centre_square(h: int, w: int) -> tuple[int, int, int]:
    """(top, left, side) of the centred square of an h x w image."""
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def load_image(
    source: str | os.PathLike | Image.Image | np.ndarray, size: int | None = 224, mode: str = "crop"
) -> Tensor:
    """Load an image as a (1, 3, size, size) float32 tensor in [0, 1].

    Handles grayscale, RGB, RGBA / LA / transparent palette (composited on white), palette,
    16-bit and float images, and applies the EXIF orientation.

    Size limits (see :mod:`unmask._limits`): a file's width × height is read from its header
    and refused above ``UNMASK_MAX_PIXELS`` (default 64,000,000) before it is decoded; arrays
    and PIL images are held to the same limit; ``size`` is at most ``UNMASK_MAX_SIZE``
    (default 4096). ``"crop"`` cuts the centred square first and then scales it, so a thin
    strip never grows to a huge intermediate image.

    Args:
        source: a file path, a PIL image, or a numpy array (H, W), (H, W, 3|4) or (3|4, H, W)
            of dtype uint8, uint16, bool or float in [0, 1].
        size: output side length; ``None`` keeps the original size.
        mode: ``"crop"`` takes the centred square (side: the shorter side) and scales it to
            ``size`` (keeps the aspect ratio); ``"resize"`` stretches to ``size`` x ``size``.

    Returns:
        Tensor (1, 3, size, size), dtype float32, values in [0, 1].

    Example:
        >>> x = load_image(example_image("chelsea"), size=64)
        >>> x.shape, x.dtype
        (torch.Size([1, 3, 64, 64]), torch.float32)
    """
    if mode not in ("crop", "resize"):
        raise ValueError(f"mode: expected 'crop' or 'resize', got {mode!r}")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
            raise ValueError(f"size: expected a positive int or None, got {size!r}")
        size = int(size)
        if size > max_size():
            raise ValueError(
                f"size: expected at most {max_size()} (the image side limit; raise it "
                f"with the environment variable UNMASK_MAX_SIZE), got {size}"
            )
    src = _read(source, "image")
    w, h = src.size if isinstance(src, Image.Image) else (src.shape[1], src.shape[0])
    if h == 0 or w == 0:
        raise ValueError(f"image: zero-size image ({w}x{h})")
    if size is not None and mode == "crop" and h != w:  # crop before scaling
        top, left, side = _centre_square(h, w)
        if isinstance(src, Image.Image):
            src = src.crop((left, top, left + side, top + side))
        else:
            src = src[top : top + side, left : left + side]
    arr = _pil_to_array(src) if isinstance(src, Image.Image) else _numpy_to_array(src)
    if not np.isfinite(arr).all():  # float files (TIFF mode F) may hold NaN
        raise ValueError("image: contains NaN or infinite values")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].contiguous()
    if size is None:
        return x
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return x.clamp(0, 1).contiguous()
