"""Loading images into (1, 3, H, W) float tensors in [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = ["load_image", "example_image", "EXAMPLES"]

#: Example images that ship with scikit-image and load offline.
EXAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "horse")

# Refuse decompression bombs explicitly instead of with a PIL warning.
_MAX_PIXELS = 200_000_000


def example_image(name: str = "chelsea") -> np.ndarray:
    """An example RGB image (H, W, 3) uint8 bundled with scikit-image (offline)."""
    if name not in EXAMPLES:
        raise ValueError(f"example: expected one of {', '.join(EXAMPLES)}, got {name!r}")
    import skimage.data

    return getattr(skimage.data, name)()


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """PIL image of any mode -> float32 (H, W, 3) in [0, 1]."""
    img = ImageOps.exif_transpose(img) or img
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
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.clip(arr, 0.0, 1.0)


def _numpy_to_array(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: expected an array (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        out = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        if out.min() < 0 or out.max() > 1:
            raise ValueError(
                f"{name}: a float image must have values in [0, 1], got range "
                f"[{out.min():.3g}, {out.max():.3g}]"
            )
    else:
        raise TypeError(f"{name}: unsupported array dtype {arr.dtype} (use uint8, uint16, bool or float)")
    if out.shape[2] == 4:  # composite on white
        alpha = out[:, :, 3:4]
        out = out[:, :, :3] * alpha + (1 - alpha)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return out


def _read(source: object, name: str) -> np.ndarray:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{name}: file not found: {path}")
        if not path.is_file():
            raise ValueError(f"{name}: not a file: {path}")
        if path.stat().st_size == 0:
            raise ValueError(f"{name}: empty file (0 bytes): {path}")
        try:
            with Image.open(path) as img:
                if img.width * img.height > _MAX_PIXELS:
                    raise ValueError(f"{name}: image too large ({img.width}x{img.height}): {path}")
                img.load()
                return _pil_to_array(img)
        except UnidentifiedImageError:
            raise ValueError(f"{name}: not an image file PIL can read: {path}") from None
        except (OSError, SyntaxError) as exc:
            raise ValueError(f"{name}: cannot read image {path}: {exc}") from None
    if isinstance(source, Image.Image):
        return _pil_to_array(source)
    if isinstance(source, np.ndarray):
        return _numpy_to_array(source, name)
    raise TypeError(
        f"{name}: expected a file path, a PIL image or a numpy array, got {type(source).__name__}"
    )


def load_image(source: str | os.PathLike | Image.Image | np.ndarray, size: int | None = 224,
               mode: str = "crop") -> Tensor:
    """Load an image as a (1, 3, size, size) float32 tensor in [0, 1].

    Handles grayscale, RGB, RGBA / LA / transparent palette (composited on white), palette,
    16-bit and float images, and applies the EXIF orientation.

    Args:
        source: a file path, a PIL image, or a numpy array (H, W), (H, W, 3|4) or (3|4, H, W)
            of dtype uint8, uint16, bool or float in [0, 1].
        size: output side length; ``None`` keeps the original size.
        mode: ``"crop"`` resizes the shorter side to ``size`` and centre-crops (keeps the
            aspect ratio); ``"resize"`` stretches to ``size`` x ``size``.

    Returns:
        Tensor (1, 3, size, size), dtype float32, values in [0, 1].

    Example:
        >>> x = load_image(example_image("chelsea"), size=64)
        >>> x.shape, x.dtype
        (torch.Size([1, 3, 64, 64]), torch.float32)
    """
    if mode not in ("crop", "resize"):
        raise ValueError(f"mode: expected 'crop' or 'resize', got {mode!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ValueError(f"size: expected a positive int or None, got {size!r}")
    arr = _read(source, "image")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image: zero-size image ({arr.shape[1]}x{arr.shape[0]})")
    if not np.isfinite(arr).all():  # float files (TIFF mode F) may hold NaN
        raise ValueError("image: contains NaN or infinite values")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].contiguous()
    if size is None:
        return x
    h, w = x.shape[-2:]
    if mode == "resize":
        out_hw = (size, size)
    else:
        scale = size / min(h, w)
        out_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
    if (h, w) != out_hw:
        x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    if mode == "crop":
        top = (x.shape[-2] - size) // 2
        left = (x.shape[-1] - size) // 2
        x = x[..., top : top + size, left : left + size]
    return x.clamp(0, 1).contiguous()
