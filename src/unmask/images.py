"""Loading images into (1, 3, H, W) float tensors in [0, 1]."""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ._examples import EXAMPLES
from ._files import check_file
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


#: Adam7 interlace passes: (first column, first row, column step, row step).
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
#: Samples per pixel of each PNG colour type (grey, RGB, palette, grey + alpha, RGBA).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_data_size(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """Bytes of a PNG's decompressed image data: each row of each pass, plus its filter byte.

    Example:
        >>> _png_data_size(3, 2, 8, 2, 0)   # 2 rows of 1 + 3 x 3 bytes
        20
    """
    bits = depth * _PNG_SAMPLES.get(colour, 4)
    total = 0
    for x0, y0, dx, dy in _ADAM7 if interlace else ((0, 0, 1, 1),):
        cols, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if cols > 0 and rows > 0:
            total += rows * (1 + -(-cols * bits // 8))
    return total


def _png_missing(fp: BinaryIO) -> str | None:
    """Why a PNG holds less image data than its header declares, or None when it holds enough.

    A PNG whose compressed stream ends after its first rows (IEND present) decodes without an
    error in PIL, the missing rows black; this inflates the IDAT chunks (in bounded pieces,
    stopping at the declared size) and counts. Damage of other kinds is left to the decoder.
    """
    fp.seek(8)
    head = fp.read(25)  # IHDR: length, type, 13 bytes of data, CRC
    if len(head) < 25 or head[4:8] != b"IHDR":
        return None
    need = _png_data_size(*struct.unpack(">IIBBxxB", head[8:21]))
    inflater = zlib.decompressobj()
    got = 0
    try:
        while got < need and not inflater.eof:
            chunk = fp.read(8)
            if len(chunk) < 8:
                break
            length, kind = struct.unpack(">I4s", chunk)
            if kind == b"IEND":
                break
            left = length if kind == b"IDAT" else 0
            while left and got < need and not inflater.eof:
                data = fp.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
                while data and got < need:
                    got += len(inflater.decompress(data, 1 << 22))
                    data = inflater.unconsumed_tail
            fp.seek((length if kind != b"IDAT" else left) + 4, os.SEEK_CUR)
        if got < need:
            got += len(inflater.flush())
    except zlib.error:
        return None  # a damaged stream: the decoder says so itself
    if got >= need:
        return None
    return f"its image data holds {got:,} of the {need:,} bytes its header declares"


#: JPEG markers without a length (TEM, RST0-7, SOI).
_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8}
#: Entropy-coded filler for :func:`_jpeg_missing`: varied bits, no 0xFF (a marker's prefix).
_FILLER = bytes((37 * i + 11) % 255 for i in range(256))


def _jpeg_eoi(data: bytes) -> int | None:
    """The offset of the end-of-image marker that closes a JPEG's last scan, or None (not a
    JPEG, no scan, or no EOI: the decoder refuses a stream that simply stops by itself).

    Walks the markers: segments by their length (an EXIF thumbnail's own EOI is inside one),
    each scan's entropy-coded data up to the next marker that is neither a stuffed 0xFF00 nor
    a restart marker.

    Example:
        >>> _jpeg_eoi(b"\\xff\\xd8\\xff\\xda\\x00\\x02\\x12\\xff\\x00\\x34\\xff\\xd9")
        10
    """
    if data[:2] != b"\xff\xd8":
        return None
    i, scans, n = 2, 0, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill bytes before a marker
            i += 1
            continue
        if marker == 0xD9:
            return i if scans else None
        if marker in _STANDALONE:
            i += 2
            continue
        if i + 4 > n:
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker != 0xDA:
            continue
        scans += 1
        while True:  # the scan's entropy-coded data
            i = data.find(b"\xff", i)
            if i < 0 or i + 1 >= n:
                return None
            following = data[i + 1]
            if following != 0x00 and not 0xD0 <= following <= 0xD7 and following != 0xFF:
                break
            i += 1 if following == 0xFF else 2
    return None


def _jpeg_missing(fp: BinaryIO) -> str | None:
    """Why a JPEG holds less image data than its frame declares, or None.

    A JPEG cut in the middle of a scan with an end-of-image marker appended decodes without an
    error in PIL (libjpeg's warning "premature end of data segment" is not reported; PIL's
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` appends that marker itself): the blocks after the cut
    are left empty, a grey band. This inserts filler bytes before the final marker and decodes
    both files at 1/8 scale (the blocks' DC terms): a complete last scan ignores bytes after
    its last block (the pictures are equal), a cut one reads them as the missing blocks (they
    differ). A progressive file cut inside a scan that refines only AC terms is not seen (its
    tail is the complete picture at a lower quality); damage of other kinds is left to the
    decoder.
    """
    fp.seek(0)
    data = fp.read()
    end = _jpeg_eoi(data)
    if end is None:
        return None
    pictures = []
    for stream in (data, data[:end] + _FILLER + data[end:]):
        try:
            with warnings.catch_warnings():  # the caller checked the size against its limit
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(stream), formats=("JPEG",))
            with img:
                img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                pictures.append(np.asarray(img))
        except Exception:  # noqa: BLE001 -- damage of another kind: the decoder reports it
            return None
    if np.array_equal(pictures[0], pictures[1]):
        return None
    return "its last scan ends before the image's last block (premature end of data segment)"


#: An image is reduced before its resize only while its shorter side stays at least this many
#: times the output side.
REDUCE_MARGIN = 4


def _reduce(img: Image.Image | np.ndarray, min_side: int) -> Image.Image | np.ndarray:
    """Box-average an 8-bit image by the largest integer factor (2 or more) that keeps its
    shorter side at least ``min_side``; other images are returned as they are.

    The factor is the same on both axes (so an EXIF rotation applied later does not matter) and
    only whole boxes are averaged, centred (a partial box at an edge would shift the sampling
    grid). 16-bit, float and bool images are not reduced; a reduced uint8 array (H, W, C) comes
    back as a PIL image.

    Example:
        >>> _reduce(Image.new("RGB", (2000, 1200)), 256).size
        (500, 300)
    """
    w, h = (img.width, img.height) if isinstance(img, Image.Image) else (img.shape[1], img.shape[0])
    factor = min(w, h) // min_side
    if factor < 2:
        return img
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            return img
        img = Image.fromarray(np.ascontiguousarray(img[:, :, 0] if img.shape[2] == 1 else img))
    if img.mode in WIDE_MODES:
        return img
    left, top = (w % factor) // 2, (h % factor) // 2
    box = (left, top, left + w // factor * factor, top + h // factor * factor)
    return _pil_to_rgb(img).reduce(factor, box)


def _open(
    source: Path | BinaryIO,
    name: str,
    label: str | None = None,
    limit: int | None = None,
    formats: tuple[str, ...] | None = None,
    min_side: int | None = None,
    square: bool = False,
) -> Image.Image:
    """Open an image file, check its size from the header, then decode it.

    Args:
        source: a path or a binary file object.
        name: the argument named in errors.
        label: how errors name the file (default: the path).
        limit: the pixel limit (default: ``UNMASK_MAX_PIXELS``).
        formats: the PIL formats tried (default: every format PIL reads).
        min_side: decode at a reduced scale where the format allows it (JPEG's DCT scaling),
            then box-reduce (:func:`_reduce`), keeping the shorter side at least this (default:
            full size).
        square: with ``min_side``, cut the centred square before reducing (what ``"crop"``
            keeps), so that the reduction's boxes line up with it.

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
        _check_complete(source, name, label, img.format)
        if min_side is not None and img.format in ("JPEG", "MPO"):
            short = min(img.size)
            img.draft(
                img.mode, (-(-img.width * min_side // short), -(-img.height * min_side // short))
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()
                small: Image.Image = img
                if min_side is not None and min(img.size) // min_side >= 2:
                    if square and img.width != img.height:
                        top, left, side = _centre_square(img.height, img.width)
                        small = img.crop((left, top, left + side, top + side))
                    small = _reduce(small, min_side)  # type: ignore[assignment]
                return ImageOps.exif_transpose(small) or small  # a copy: `img` is closed
        except Image.DecompressionBombError as exc:
            raise ValueError(f"{name}: {label}: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
            raise ValueError(f"{name}: cannot read image {label}: {exc}") from None


def _check_complete(source: Path | BinaryIO, name: str, label: str, fmt: str | None) -> None:
    """Refuse a file that decodes without an error but holds less image data than its header
    declares: a PNG with rows missing (:func:`_png_missing`), a JPEG whose last scan was cut
    before an end-of-image marker (:func:`_jpeg_missing`). Other formats: nothing to check."""
    check = {"PNG": _png_missing, "JPEG": _jpeg_missing, "MPO": _jpeg_missing}.get(fmt or "")
    if check is None:
        return
    if isinstance(source, Path):
        with source.open("rb") as fp:
            missing = check(fp)
    else:
        where = source.tell()
        try:
            missing = check(source)
        finally:
            source.seek(where)
    if missing is not None:
        raise ValueError(f"{name}: cannot read image {label}: image file is truncated ({missing})")


def _read(
    source: object, name: str, min_side: int | None = None, square: bool = False
) -> Image.Image | np.ndarray:
    """A decoded, size-checked PIL image (EXIF orientation applied) or a checked array (H, W, C).

    ``min_side``, ``square``: a file may be decoded at a reduced scale (see :func:`_open`).
    """
    if isinstance(source, str | os.PathLike):
        path = check_file(source, name)
        if path.stat().st_size == 0:
            raise ValueError(f"{name}: empty file (0 bytes): {path}")
        return _open(path, name, min_side=min_side, square=square)
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
    strip never grows to a huge intermediate image. An image more than eight times ``size``
    is first reduced by an integer factor, to at least four times ``size``: a JPEG file is
    decoded at 1/2, 1/4 or 1/8 scale, other 8-bit images (files, PIL images, uint8 arrays) are
    box-averaged (``Image.reduce``). A 64-megapixel photograph loaded for a 64 x 64 model never
    holds a float copy of its full size; the result is within about 1/255 (mean) of a resize
    of the full image. Smaller images are resized directly, as before.

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
    min_side = None if size is None else REDUCE_MARGIN * size
    src = _read(source, "image", min_side, square=mode == "crop")
    w, h = src.size if isinstance(src, Image.Image) else (src.shape[1], src.shape[0])
    if h == 0 or w == 0:
        raise ValueError(f"image: zero-size image ({w}x{h})")
    if size is not None and mode == "crop" and h != w:  # crop before scaling
        top, left, side = _centre_square(h, w)
        if isinstance(src, Image.Image):
            src = src.crop((left, top, left + side, top + side))
        else:
            src = src[top : top + side, left : left + side]
    if min_side is not None:  # PIL images and arrays (a file was reduced as it was decoded)
        src = _reduce(src, min_side)
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
