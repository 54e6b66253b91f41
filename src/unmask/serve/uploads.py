"""Uploaded images: bounded decoding, and the session's store of images.

:func:`read_upload` turns the bytes a client sent into an RGB image, refusing before it
allocates: the byte length first, then the size the header declares (a decompression bomb's
small file that unpacks to gigapixels is refused unread), then the format by its content (never
by a file name), then the decode itself (a truncated file is refused, never padded).
:class:`ImageStore` keeps the session's images as PNG files in a temporary directory under ids
that are the SHA-256 of their pixels, so that no path a client sends is ever opened.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from ..images import WIDE_MODES, _open, _pil_to_array, _pil_to_rgb

__all__ = ["UploadError", "read_upload", "ImageStore", "FORMATS", "MAX_BYTES"]

#: Formats accepted, as PIL names them (MPO: a camera's multi-picture JPEG).
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
_ALSO = {"MPO": "JPEG"}
#: Default bound of one upload's bytes (its pixels: :func:`unmask._limits.max_pixels`).
MAX_BYTES = 20 * 1024**2

#: Signatures of files that are not images PIL reads, named in the 415 message.
_SIGNATURES = (
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x7fELF", "ELF executable"),
)
_ID = re.compile(r"[0-9a-f]{64}")


class UploadError(ValueError):
    """A refused upload, with the HTTP status it maps to.

    ``status``: 400 not an image or a damaged (truncated) one, 413 too large (bytes or pixels),
    415 an image type that is not accepted.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _allowed() -> str:
    return ", ".join("WebP" if f == "WEBP" else f for f in FORMATS)


def _identify(data: bytes) -> str | None:
    """The name of a format PIL knows but that is not accepted, or of a known non-image."""
    head = data[:64].lstrip()
    for sig, name in _SIGNATURES:
        if head.startswith(sig):
            return name
    try:  # header only: PIL's other plugins read a few bytes to name the format
        with Image.open(io.BytesIO(data)) as img:
            return str(img.format)
    except Exception:  # noqa: BLE001 -- any failure means "not an image"
        return None


def read_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image file into RGB pixels, within bounds.

    Checks, in order: the byte length (before anything is parsed), the format by content (PNG,
    JPEG, WebP, BMP, GIF; only these decoders are tried), the width × height the header declares
    (before any pixel is decoded: decompression bombs), then the decode (a truncated file is
    refused). Animated images give their first frame; palette, grey, alpha (composited on
    white) and 16-bit images become 8-bit RGB; the EXIF orientation is applied.

    Args:
        data: the file's bytes.
        max_bytes: the largest accepted file, bytes.
        max_pixels: the largest accepted width × height.

    Returns:
        np.ndarray (H, W, 3), dtype uint8.

    Raises:
        UploadError: 400 (not an image, damaged), 413 (too many bytes or pixels), 415 (a type
            that is not accepted).

    Example:
        >>> buf = io.BytesIO()
        >>> Image.new("L", (4, 3), 128).save(buf, "PNG")
        >>> read_upload(buf.getvalue(), max_bytes=10_000, max_pixels=100).shape
        (3, 4, 3)
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    size = len(data)
    if size > max_bytes:
        raise UploadError(f"file: {size:,} bytes is above the limit of {max_bytes:,} bytes", 413)
    if size == 0:
        raise UploadError("file: empty (0 bytes); expected an image file", 400)
    data = bytes(data)
    try:
        img = _open(io.BytesIO(data), "file", "the upload", limit=max_pixels, formats=FORMATS)
    except ValueError as exc:
        text = str(exc)
        if "not an image file PIL can read" in text:
            found = _identify(data)
            if found is not None and _ALSO.get(found, found) not in FORMATS:
                raise UploadError(
                    f"file: {found} files are not accepted; expected an image of type {_allowed()}",
                    415,
                ) from None
            raise UploadError(f"file: not an image (expected {_allowed()})", 400) from None
        if "pixels" in text and "above the limit" in text:
            raise UploadError(text, 413) from None
        raise UploadError(
            f"file: damaged or truncated image ({text.split(': ', 2)[-1]})", 400
        ) from None
    except Exception as exc:  # noqa: BLE001 -- a decoder's own error on a malformed file
        raise UploadError(f"file: damaged image ({type(exc).__name__})", 400) from None
    try:
        with img:
            if img.mode in WIDE_MODES:  # 16-bit or float: through the float path, then 8 bits
                arr = np.rint(_pil_to_array(img) * 255.0).astype(np.uint8)
            else:
                arr = np.asarray(_pil_to_rgb(img), dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 -- a mode PIL cannot convert
        raise UploadError(
            f"file: damaged or unsupported image ({type(exc).__name__})", 400
        ) from None
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UploadError("file: zero-size image", 400)
    return np.ascontiguousarray(arr)


def _image_id(image: np.ndarray) -> str:
    digest = hashlib.sha256(f"{image.shape}:{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _check_id(image_id: object) -> str:
    if not isinstance(image_id, str) or not _ID.fullmatch(image_id):
        shown = repr(image_id) if len(repr(image_id)) <= 80 else repr(image_id)[:77] + "..."
        raise KeyError(f"image_id: expected 64 lowercase hex digits, got {shown}")
    return image_id


class ImageStore:
    """The session's images, as PNG files in a temporary directory removed by :meth:`close`.

    Ids are the SHA-256 of the pixels (the same image twice is stored once); the least recently
    used image is dropped beyond ``max_images`` images or ``max_bytes`` bytes of files (the
    newest is always kept). Thread-safe. The directory is also removed at interpreter exit, or
    when the store is garbage-collected.

    Args:
        max_images: how many images are kept.
        root: the folder the temporary directory is made in (default: the system's).
        max_bytes: the most bytes of stored files.

    Example:
        >>> store = ImageStore(max_images=2)
        >>> image_id = store.put(np.zeros((4, 4, 3), np.uint8))
        >>> store.get(image_id).shape
        (4, 4, 3)
        >>> store.close()
    """

    def __init__(
        self,
        *,
        max_images: int = 64,
        root: str | os.PathLike | None = None,
        max_bytes: int = 1024**3,
    ) -> None:
        for name, value in (("max_images", max_images), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.max_images, self.max_bytes = max_images, max_bytes
        self.dir = Path(tempfile.mkdtemp(prefix="unmask-serve-", dir=root))
        self._ids: OrderedDict[str, int] = OrderedDict()  # id -> bytes of its file
        self._bytes = 0
        self._lock = threading.Lock()
        self._closed = False
        # removes the directory when the store is collected, or at interpreter exit
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.dir), True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        with self._lock:
            return isinstance(image_id, str) and image_id in self._ids

    def ids(self) -> list[str]:
        """Stored ids, least recently used first."""
        with self._lock:
            return list(self._ids)

    def put(self, image: np.ndarray) -> str:
        """Store an RGB image (H, W, 3) uint8; returns its id (SHA-256 hex of the pixels)."""
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] != 3
        ):
            got = (
                f"{image.dtype} array of shape {image.shape}"
                if isinstance(image, np.ndarray)
                else type(image).__name__
            )
            raise ValueError(f"image: expected a uint8 array (H, W, 3), got {got}")
        image_id = _image_id(image)
        with self._lock:
            self._check_open()
            if image_id in self._ids:
                self._ids.move_to_end(image_id)
                return image_id
            target = self.dir / f"{image_id}.png"
            partial = self.dir / f"{image_id}.{threading.get_ident()}.part"
            Image.fromarray(np.ascontiguousarray(image), "RGB").save(partial, "PNG")
            os.replace(partial, target)
            self._ids[image_id] = size = target.stat().st_size
            self._bytes += size
            while len(self._ids) > 1 and (
                len(self._ids) > self.max_images or self._bytes > self.max_bytes
            ):
                old, dropped = self._ids.popitem(last=False)
                self._bytes -= dropped
                (self.dir / f"{old}.png").unlink(missing_ok=True)
        return image_id

    @property
    def nbytes(self) -> int:
        """Bytes of the stored files."""
        with self._lock:
            return self._bytes

    def path(self, image_id: str) -> Path:
        """The stored PNG of ``image_id`` (KeyError for an unknown or malformed id)."""
        image_id = _check_id(image_id)
        with self._lock:
            self._check_open()
            if image_id not in self._ids:
                raise KeyError(f"image_id: unknown image {image_id}")
            self._ids.move_to_end(image_id)
            return self.dir / f"{image_id}.png"

    def get(self, image_id: str) -> np.ndarray:
        """The image (H, W, 3) uint8 of ``image_id`` (KeyError for an unknown or malformed id)."""
        image_id = _check_id(image_id)
        with self._lock:  # read under the lock: eviction cannot remove the file meanwhile
            self._check_open()
            if image_id not in self._ids:
                raise KeyError(f"image_id: unknown image {image_id}")
            self._ids.move_to_end(image_id)
            with Image.open(self.dir / f"{image_id}.png", formats=("PNG",)) as img:
                return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()

    def close(self) -> None:
        """Remove the directory and every image (the store refuses further use)."""
        with self._lock:
            self._closed = True
            self._ids.clear()
            self._bytes = 0
        self._finalizer()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ImageStore: closed")

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
