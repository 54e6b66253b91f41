"""The image loader: file formats, modes, numpy arrays, and bad input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from _jpeg import cut_scan, decodes_silently_wrong, jpeg
from PIL import Image

import unmask
from unmask.images import EXAMPLES, example_image, load_image


def _gradient(h: int = 20, w: int = 30) -> np.ndarray:
    """(H, W, 3) uint8 with distinct rows, columns and channels."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 255 // (h - 1), xx * 255 // (w - 1), np.full_like(yy, 77)], -1).astype(
        np.uint8
    )


def _as_array(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).numpy()


def test_rgb_png_round_trip(tmp_path):
    arr = _gradient()
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", size=None)
    assert x.shape == (1, 3, 20, 30) and x.dtype == torch.float32
    assert np.allclose(_as_array(x), arr / 255, atol=1e-6)
    assert load_image(str(tmp_path / "a.png")).shape == (1, 3, 224, 224)


def test_grayscale(tmp_path):
    arr = _gradient()[..., 1]
    Image.fromarray(arr, mode="L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", size=None)
    assert x.shape == (1, 3, 20, 30)
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])
    assert np.allclose(x[0, 0].numpy(), arr / 255, atol=1e-6)


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red
    arr[:2, ..., 3] = 255  # top half opaque, bottom transparent
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", size=None)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(x[0, :, 3, 3], torch.tensor([1.0, 1.0, 1.0]))


def test_palette_and_transparent_palette(tmp_path):
    rgb = Image.fromarray(_gradient())
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png", size=None)
    assert np.allclose(_as_array(x), np.asarray(pal.convert("RGB")) / 255, atol=1e-6)
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])
    pal.save(tmp_path / "pt.png", transparency=pal.info["transparency"])
    xt = load_image(tmp_path / "pt.png", size=None)
    assert torch.allclose(xt[0, :, 0, 0], torch.ones(3))  # the transparent colour becomes white


def test_16_bit_png(tmp_path):
    arr = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as img:
        assert img.mode.startswith("I")
    x = load_image(tmp_path / "d.png", size=None)
    assert np.allclose(x[0, 0].numpy(), arr / 65535, atol=1e-6)  # full 16-bit precision kept


def test_exif_orientation(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)  # wide image, red block in the top-left corner
    arr[:5, :5] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    x = load_image(tmp_path / "o.jpg", size=None)
    assert x.shape == (1, 3, 40, 20)  # displayed upright: tall
    # after a 90° clockwise rotation the top-left corner lands at the top-right
    assert float(x[0, 0, :5, -5:].mean()) > 0.8 and float(x[0, 1, :5, -5:].mean()) < 0.2
    assert float(x[0, 0, :5, :5].mean()) < 0.2


def test_numpy_inputs():
    arr = _gradient()
    ref = load_image(arr, size=None)
    assert np.allclose(_as_array(ref), arr / 255, atol=1e-6)
    assert torch.allclose(load_image(arr.astype(np.float32) / 255, size=None), ref, atol=1e-6)
    assert torch.allclose(load_image(arr.astype(np.uint16) * 257, size=None), ref, atol=1e-6)
    chw = np.ascontiguousarray(np.moveaxis(arr, -1, 0))  # (3, H, W)
    assert torch.equal(load_image(chw, size=None), ref)
    gray = load_image(arr[..., 0], size=None)
    assert gray.shape == (1, 3, 20, 30) and torch.equal(gray[0, 0], gray[0, 2])
    mask = load_image(arr[..., 0] > 128, size=None)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    rgba = np.concatenate([arr, np.full((20, 30, 1), 255, np.uint8)], -1)
    assert torch.allclose(load_image(rgba, size=None), ref, atol=1e-6)
    assert torch.allclose(load_image(np.moveaxis(rgba, -1, 0), size=None), ref, atol=1e-6)


def test_pil_input_and_sizes():
    img = Image.fromarray(_gradient())
    crop = load_image(img, size=16)
    assert crop.shape == (1, 3, 16, 16) and 0 <= float(crop.min()) and float(crop.max()) <= 1
    stretched = load_image(img, size=16, mode="resize")
    assert stretched.shape == (1, 3, 16, 16)
    assert not torch.allclose(crop, stretched)  # the crop drops the sides, the resize keeps them


def test_examples():
    assert "chelsea" in EXAMPLES
    arr = example_image("chelsea")
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert unmask.load_image(arr, size=32).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="example: expected one of chelsea"):
        example_image("eagle")


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="image: file not found"):
        load_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am text")
    with pytest.raises(ValueError, match="image: not an image file PIL can read"):
        load_image(tmp_path / "notes.png")


def test_truncated_image(tmp_path):
    Image.fromarray(_gradient(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="image: cannot read image"):
        load_image(tmp_path / "cut.png")


def _png(width, height, raw, interlace=0):
    """A PNG file (RGB, 8 bits) whose IDAT is the zlib stream of ``raw`` (filtered rows)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_png_with_rows_missing_is_refused(tmp_path):
    # a well-formed file (complete zlib stream, IEND) whose data holds 10 of its 200 rows:
    # PIL decodes it without an error, the missing rows black
    rows = b"".join(b"\x00" + b"\xff" * (3 * 200) for _ in range(10))
    (tmp_path / "short.png").write_bytes(_png(200, 200, rows))
    with pytest.raises(
        ValueError, match=r"image: cannot read image .*short.png: image file is tru"
    ):
        load_image(tmp_path / "short.png")
    full = b"".join(b"\x00" + b"\xff" * (3 * 200) for _ in range(200))
    (tmp_path / "full.png").write_bytes(_png(200, 200, full))
    assert float(load_image(tmp_path / "full.png", size=None).min()) == 1.0


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", [0.2, 0.6, 0.95])
def test_jpeg_cut_inside_a_scan_with_an_end_marker_is_refused(tmp_path, progressive, keep):
    # cut inside the (first) scan, EOI appended: PIL decodes it without an error, grey below
    whole = jpeg(progressive=progressive)
    cut = cut_scan(whole, keep)
    assert decodes_silently_wrong(cut, whole)
    (tmp_path / "cut.jpg").write_bytes(cut)
    for size in (None, 224, 8):  # full size, and decoded at a reduced scale (draft)
        with pytest.raises(
            ValueError, match=r"image: cannot read image .*cut.jpg: image file is truncated"
        ):
            load_image(tmp_path / "cut.jpg", size=size)


def test_complete_jpegs_load(tmp_path):
    """Controls for the cut-scan check: nothing it reads as a cut in complete files."""
    exif = Image.Exif()
    exif[0x010E] = "thumbnail-like bytes \xff\xd9 inside a segment"  # an EOI inside APP1
    files = {
        "baseline": jpeg(),
        "progressive": jpeg(progressive=True),
        "trailing": jpeg(subsampling=0) + b"trailing bytes after the end marker",
        "exif": jpeg(exif=exif.tobytes()),
        "odd": jpeg(height=37, width=29),
        "small": jpeg(height=8, width=8),
    }
    flat = io.BytesIO()
    Image.new("RGB", (64, 48), (128, 128, 128)).save(flat, "JPEG")  # a mid-grey picture
    files["flat"] = flat.getvalue()
    for name, data in files.items():
        (tmp_path / f"{name}.jpg").write_bytes(data)
        x = load_image(tmp_path / f"{name}.jpg", size=None)
        with Image.open(io.BytesIO(data)) as img:
            want = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy(), want, err_msg=name)


def test_interlaced_png_sizes(tmp_path):
    # Adam7: the data of 7 passes; the check counts each pass's rows and filter bytes
    w, h = 13, 11
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2))
    passes += ((0, 1, 1, 2),)
    raw = b""
    for x0, y0, dx, dy in passes:
        cols, rows = -(-(w - x0) // dx), -(-(h - y0) // dy)
        if cols > 0 and rows > 0:
            raw += (b"\x00" + b"\x80" * (3 * cols)) * rows
    (tmp_path / "i.png").write_bytes(_png(w, h, raw, interlace=1))
    assert load_image(tmp_path / "i.png", size=None).shape == (1, 3, h, w)
    (tmp_path / "cut.png").write_bytes(_png(w, h, raw[:-5], interlace=1))
    with pytest.raises(ValueError, match="image file is truncated"):
        load_image(tmp_path / "cut.png")


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGB", "RGBA", "I;16"])
def test_complete_pngs_of_every_depth_load(tmp_path, mode):
    img = Image.fromarray(_gradient(11, 13)).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img, dtype=np.uint16) * 257)
    img.save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", size=None).shape == (1, 3, 11, 13)


def test_empty_file_and_directory(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"image: empty file \(0 bytes\)"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ValueError, match="image: not a file"):
        load_image(tmp_path)


def test_zero_size_arrays():
    with pytest.raises(ValueError, match="image: zero-size image"):
        load_image(np.zeros((0, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="image: zero-size image"):
        load_image(np.zeros((5, 0), dtype=np.uint8))


def test_nan_in_a_float_tiff(tmp_path):
    arr = np.full((8, 8), 0.5, np.float32)
    arr[2, 2] = np.nan
    Image.fromarray(arr, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="image: contains NaN"):
        load_image(tmp_path / "nan.tif")
    arr[2, 2] = 0.25
    Image.fromarray(arr, mode="F").save(tmp_path / "ok.tif")
    assert float(load_image(tmp_path / "ok.tif", size=None)[0, 0, 2, 2]) == 0.25


def test_bad_arrays():
    with pytest.raises(ValueError, match="image: contains NaN"):
        load_image(np.full((4, 4, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"image: a float image must have values in \[0, 1\]"):
        load_image(np.full((4, 4, 3), 2.0))
    with pytest.raises(ValueError, match=r"image: expected an array \(H, W\)"):
        load_image(np.zeros((6, 6, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="image: unsupported array dtype"):
        load_image(np.zeros((4, 4, 3), dtype=np.int64))
    with pytest.raises(
        TypeError, match="image: expected a file path, a PIL image or a numpy array"
    ):
        load_image(torch.zeros(1, 3, 4, 4))


def test_bad_options():
    arr = _gradient()
    with pytest.raises(ValueError, match="size: expected a positive int or None"):
        load_image(arr, size=0)
    with pytest.raises(ValueError, match="mode: expected 'crop' or 'resize'"):
        load_image(arr, mode="pad")


# --------------------------------------------------------------------------- large images


@pytest.fixture(scope="module")
def large_files(tmp_path_factory):
    """A 2400 x 1800 photograph (astronaut, upscaled) as PNG, JPEG and a uint8 array."""
    root = tmp_path_factory.mktemp("large")
    img = Image.fromarray(example_image("astronaut")).resize((2400, 1800), Image.BICUBIC)
    img.save(root / "big.png", compress_level=1)
    img.save(root / "big.jpg", quality=95)
    return {"png": root / "big.png", "jpg": root / "big.jpg", "array": np.asarray(img)}


def _full_resize(source, size, mode):
    """The resize of the full-size image, as load_image did before it reduced large images."""
    import torch.nn.functional as F

    from unmask.images import _pil_to_array

    img = Image.fromarray(source) if isinstance(source, np.ndarray) else Image.open(source)
    img.load()
    if mode == "crop":
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    x = torch.from_numpy(_pil_to_array(img)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1)


@pytest.mark.parametrize("kind", ["png", "jpg", "array"])
@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_large_images_are_reduced_before_their_float_copy(large_files, kind, mode, monkeypatch):
    import unmask.images as images

    seen = []
    convert = images._pil_to_array
    monkeypatch.setattr(images, "_pil_to_array", lambda img: seen.append(img.size) or convert(img))
    x = load_image(large_files[kind], size=64, mode=mode)
    assert x.shape == (1, 3, 64, 64)
    # the float copy is at most 8 times the output side (not 2400 x 1800)
    assert seen and max(seen[0]) < 8 * 64 * (2400 / 1800 if mode == "resize" else 1)
    # and within about 1/255 of a resize of the full image
    diff = (x - _full_resize(large_files[kind], 64, mode)).abs()
    assert float(diff.mean()) < 0.006 and float(diff.max()) < 0.08


def test_images_under_eight_times_the_size_are_resized_as_before(large_files):
    # 2400 x 1800 at 224: 1800 // (4 * 224) = 2, reduced; at 256: 1800 // 1024 = 1, as before
    for kind in ("png", "array"):
        x = load_image(large_files[kind], size=256)
        assert torch.equal(x, _full_resize(large_files[kind], 256, "crop").contiguous())
