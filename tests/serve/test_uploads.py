"""Uploads: bounded decoding (bytes, pixels, type, damage) and the session's image store."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageFile

from unmask.serve.uploads import FORMATS, ImageStore, UploadError, read_upload

BIG = dict(max_bytes=10_000_000, max_pixels=10_000_000)


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (8-bit RGB) and a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel is decoded."""

    def refuse(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP"])
def test_lossless_formats_round_trip(fmt: str) -> None:
    a = _rgb()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out = read_upload(_encode(Image.fromarray(a), fmt, **kw), **BIG)
    assert out.dtype == np.uint8 and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


def test_jpeg_decodes_close() -> None:
    a = np.full((16, 16, 3), (200, 30, 60), np.uint8)
    out = read_upload(_encode(Image.fromarray(a), "JPEG", quality=95), **BIG)
    assert out.shape == (16, 16, 3) and np.abs(out.astype(int) - a).max() < 8


@pytest.mark.parametrize(
    "data",
    [b"hello, I am text", b"\x00" * 100, b"GIF89a garbage", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
)
def test_not_an_image_is_400(data: bytes) -> None:
    with pytest.raises(UploadError, match="file: ") as info:
        read_upload(data, **BIG)
    assert info.value.status == 400


def test_empty_is_400() -> None:
    with pytest.raises(UploadError, match="empty") as info:
        read_upload(b"", **BIG)
    assert info.value.status == 400


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_truncated_is_400(fmt: str, keep: float) -> None:
    data = _encode(Image.fromarray(_rgb(64, 64)), fmt)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(UploadError) as info:
        read_upload(data[: int(len(data) * keep)], **BIG)
    assert info.value.status == 400
    assert "truncated" in str(info.value) or "damaged" in str(info.value)


def test_png_with_rows_missing_is_400() -> None:
    # complete zlib stream and IEND, but 10 of the 100 rows: the same check as load_image
    rows = b"".join(b"\x00" + b"\x7f" * (3 * 100) for _ in range(10))
    header = struct.pack(">IIBBBBB", 100, 100, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )
    with pytest.raises(UploadError, match="truncated") as err:
        read_upload(data, **BIG)
    assert err.value.status == 400


def test_too_many_bytes_is_413_before_parsing(no_decoding: None) -> None:
    data = _encode(Image.fromarray(_rgb()), "PNG")
    with pytest.raises(UploadError, match=f"{len(data):,} bytes is above the limit of 100") as info:
        read_upload(data, max_bytes=100, max_pixels=10**9)
    assert info.value.status == 413


def test_header_20000_square_is_413_unread(no_decoding: None) -> None:
    data = _png_header_only(20_000, 20_000)
    assert len(data) < 200
    with pytest.raises(UploadError, match="400,000,000 pixels") as info:
        read_upload(data, **BIG)
    assert info.value.status == 413


def test_pil_own_bomb_limit_is_413(no_decoding: None) -> None:
    # our own limit above PIL's: PIL's DecompressionBombError is answered, not raised
    with pytest.raises(UploadError, match="refused before decoding") as info:
        read_upload(_png_header_only(20_000, 20_000), max_bytes=10**6, max_pixels=10**12)
    assert info.value.status == 413


def test_real_decompression_bomb_is_413_unread(no_decoding: None) -> None:
    data = _encode(Image.new("L", (5000, 5000)), "PNG")  # 25 Mpx in a small file
    assert len(data) < 100_000
    with pytest.raises(UploadError, match="25,000,000 pixels") as info:
        read_upload(data, max_bytes=10**6, max_pixels=1_000_000)
    assert info.value.status == 413


def test_at_the_pixel_limit_is_accepted() -> None:
    assert read_upload(
        _encode(Image.new("RGB", (10, 10)), "PNG"), max_bytes=10**6, max_pixels=100
    ).shape == (10, 10, 3)
    with pytest.raises(UploadError):
        read_upload(_encode(Image.new("RGB", (10, 11)), "PNG"), max_bytes=10**6, max_pixels=100)


@pytest.mark.parametrize(
    "fmt,name", [("TIFF", "TIFF"), ("PDF", "PDF"), ("ICO", "ICO"), ("PPM", "PPM"), ("TGA", "TGA")]
)
def test_other_types_are_415(fmt: str, name: str) -> None:
    data = _encode(Image.fromarray(_rgb()), fmt)
    with pytest.raises(UploadError, match=f"{name} files are not accepted") as info:
        read_upload(data, **BIG)
    assert info.value.status == 415
    assert "PNG, JPEG" in str(info.value)


def test_svg_is_415() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    with pytest.raises(UploadError) as info:
        read_upload(svg, **BIG)
    assert info.value.status == 415


def test_type_by_content_not_name() -> None:
    # the bytes decide: a PNG is a PNG whatever the client calls it; a TIFF named .png is not
    assert "TIFF" not in FORMATS
    data = _encode(Image.fromarray(_rgb()), "TIFF")
    with pytest.raises(UploadError):
        read_upload(data, **BIG)


def test_grey_palette_rgba_16bit_become_rgb8() -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = read_upload(_encode(Image.fromarray(grey, "L"), "PNG"), **BIG)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))

    pal = Image.fromarray(_rgb(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    expected = np.asarray(pal.convert("RGB"))
    np.testing.assert_array_equal(read_upload(_encode(pal, "PNG"), **BIG), expected)

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent -> white
    out = read_upload(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), **BIG)
    np.testing.assert_array_equal(out[:2], np.broadcast_to([255, 0, 0], (2, 4, 3)))
    np.testing.assert_array_equal(out[2:], np.full((2, 4, 3), 255))

    wide = np.array([[0, 65535], [32768, 257 * 10]], np.uint16)
    out = read_upload(_encode(Image.fromarray(wide), "PNG"), **BIG)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[..., 0], [[0, 255], [128, 10]])


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    out = read_upload(buf.getvalue(), **BIG)
    assert out.shape == (6, 6, 3)
    assert (out[..., 0] > 200).all() and (out[..., 2] < 50).all()


def test_exif_orientation_is_applied() -> None:
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10] = 255  # left half white, 10 high x 20 wide
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    out = read_upload(_encode(img, "JPEG", exif=exif, quality=95), **BIG)
    assert out.shape == (20, 10, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the white half is now on top


def test_read_upload_type() -> None:
    with pytest.raises(TypeError, match="data: expected bytes"):
        read_upload("x.png", **BIG)  # type: ignore[arg-type]


# --- the store --------------------------------------------------------------------------------


def test_store_put_get_dedupe_and_path() -> None:
    with ImageStore(max_images=4) as store:
        a = _rgb(seed=1)
        i = store.put(a)
        assert len(i) == 64 and int(i, 16) >= 0
        assert store.put(a.copy()) == i and len(store) == 1
        np.testing.assert_array_equal(store.get(i), a)
        assert store.path(i).parent == store.dir and store.path(i).is_file()
        assert store.put(a[:, :-1].copy()) != i


def test_store_lru_eviction_removes_files() -> None:
    with ImageStore(max_images=2) as store:
        ids = [store.put(_rgb(seed=s)) for s in range(2)]
        store.get(ids[0])  # 0 used last: 1 is evicted next
        path1 = store.path(ids[1])
        store.get(ids[0])
        third = store.put(_rgb(seed=2))
        assert ids[1] not in store and ids[0] in store and third in store
        assert not path1.exists()
        with pytest.raises(KeyError, match="unknown image"):
            store.get(ids[1])
        assert sorted(p.name for p in store.dir.iterdir()) == sorted(
            f"{i}.png" for i in (ids[0], third)
        )


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "A" * 64,
        "0" * 63,
        "0" * 65,
        "0" * 63 + "/",
        "..",
        "",
        12,
        None,
        "0" * 64 + "\n",
    ],
)
def test_store_bad_ids_are_key_errors(bad: object) -> None:
    with ImageStore() as store:
        with pytest.raises(KeyError):
            store.get(bad)  # type: ignore[arg-type]
        with pytest.raises(KeyError):
            store.path(bad)  # type: ignore[arg-type]


def test_store_unknown_well_formed_id() -> None:
    with ImageStore() as store, pytest.raises(KeyError, match="unknown image"):
        store.get("0" * 64)


def test_store_rejects_non_rgb8() -> None:
    with ImageStore() as store:
        for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), "x"):
            with pytest.raises(ValueError, match="image: expected a uint8 array"):
                store.put(bad)  # type: ignore[arg-type]


def test_store_close_removes_directory(tmp_path: object) -> None:
    store = ImageStore(root=str(tmp_path))
    i = store.put(_rgb())
    folder = store.dir
    assert folder.parent == tmp_path and store.path(i).exists()
    store.close()
    assert not folder.exists()
    store.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        store.put(_rgb())


def test_store_removed_when_collected(tmp_path: object) -> None:
    store = ImageStore(root=str(tmp_path))
    store.put(_rgb())
    folder = store.dir
    del store
    import gc

    gc.collect()
    assert not folder.exists()


def test_store_threads() -> None:
    images = [_rgb(8, 8, seed=s) for s in range(12)]
    errors: list[BaseException] = []
    with ImageStore(max_images=5) as store:

        def work(k: int) -> None:
            try:
                for r in range(20):
                    img = images[(k + r) % len(images)]
                    i = store.put(img)
                    try:
                        np.testing.assert_array_equal(store.get(i), img)
                    except KeyError:  # evicted by another thread meanwhile: allowed
                        pass
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(store) == 5 and len(list(store.dir.iterdir())) == 5


def test_store_removed_at_interpreter_exit() -> None:
    # the same finalizer as above, which weakref.finalize also runs at exit
    with ImageStore() as store:
        assert store._finalizer.alive and store._finalizer.atexit
    assert not store._finalizer.alive


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_damaged_files_never_crash(fmt: str) -> None:
    """Seeded byte flips, cuts and splices of a valid file: an image or an UploadError, never
    another exception."""
    img = Image.fromarray(_rgb(24, 24))
    exif = img.getexif()
    exif[0x0112] = 3
    data = _encode(img, fmt, **({"exif": exif} if fmt in ("JPEG", "PNG", "WEBP") else {}))
    rng = np.random.default_rng(0)
    outcomes = Counter()
    for _ in range(60):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        if rng.random() < 0.3:
            b = b[: int(rng.integers(8, len(b)))]
        try:
            out = read_upload(bytes(b), max_bytes=10**6, max_pixels=10**6)
        except UploadError as exc:
            assert exc.status in (400, 413, 415)
            outcomes[exc.status] += 1
        else:
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
            outcomes["ok"] += 1
    assert sum(outcomes.values()) == 60
