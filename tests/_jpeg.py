"""JPEG files cut inside a scan with an end-of-image marker appended (issue 25).

PIL decodes such a file without an error (libjpeg's "premature end of data segment" is a
warning PIL does not report): the blocks after the cut come out grey (baseline), or smoothed
towards grey (progressive). The loader must refuse
it the way it refuses a PNG with rows missing. Shared by the tests of ``load_image``, the
command line and the explorer.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def jpeg(height: int = 96, width: int = 128, seed: int = 0, **save: object) -> bytes:
    """A JPEG of smooth colours plus noise (every block carries data), PIL's ``save`` options."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    a = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx + yy) % 256])
    a = np.clip(a.transpose(1, 2, 0) + rng.integers(-40, 40, (height, width, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def cut_scan(data: bytes, keep: float = 0.5) -> bytes:
    """``data`` cut at ``keep`` of its first scan's entropy-coded data, an EOI marker appended."""
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    end = start
    while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
        end += 1
    cut = start + int((end - start) * keep)
    if data[cut - 1] == 0xFF:  # never leave half of a stuffed 0xFF00
        cut -= 1
    return data[:cut] + b"\xff\xd9"


def decodes_silently_wrong(cut: bytes, whole: bytes) -> bool:
    """Whether PIL decodes ``cut`` without an error into a picture whose last block differs from
    ``whole``'s (grey, or smoothed towards grey): what the loader must not hand on."""
    pictures = []
    for data in (cut, whole):
        with Image.open(io.BytesIO(data)) as img:
            pictures.append(np.asarray(img.convert("RGB")))
    a, b = pictures
    return a.shape == b.shape and not np.array_equal(a[-8:, -8:], b[-8:, -8:])
