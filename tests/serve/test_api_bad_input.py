"""Every bad input of issue 16's "Security and bad input", through the real HTTP API.

Uploads (non-image, truncated, decompression bomb, 20,000² header, too many bytes, other types),
names and parameters (unknown method, metric, removal, parameter; 10⁹ samples), paths from the
client (never opened), the bounded queue (429), and HTML in class and file names (escaped: the
API answers JSON only and the page sets data with textContent under a strict CSP).
"""

from __future__ import annotations

import builtins
import io
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _jpeg import cut_scan, decodes_silently_wrong, jpeg
from PIL import Image

pytest.importorskip("fastapi")  # the serve extra (the app itself, not serve-core's modules)
from fastapi.testclient import TestClient  # noqa: E402

from unmask.models import Classifier  # noqa: E402
from unmask.serve import create_app  # noqa: E402
from unmask.testing import ConvRegionModel, conv_region_model  # noqa: E402

MAX_BYTES = 200_000
LOOPBACK = "http://127.0.0.1"  # an allowed Host: (any other gets 400)
MAX_PIXELS = 1_000_000
EVIL = ["<img src=x onerror=alert(1)>", "<script>alert('x')</script>", 'a & b "q"']
STATIC = Path(__import__("unmask.serve", fromlist=["x"]).__file__).parent / "static"


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _header_png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + _chunk(b"IEND", b"")
    )


def _image(seed: int = 0, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    model = Classifier(
        ConvRegionModel(classes=3),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=EVIL,
        name="evil",
    )
    app = create_app(
        {"toy": conv_region_model(3), "evil": model},
        image_size=32,
        max_bytes=MAX_BYTES,
        max_pixels=MAX_PIXELS,
        max_pending=2,
    )
    with TestClient(app, base_url=LOOPBACK) as c:
        yield c


@pytest.fixture(scope="module")
def image_id(client: TestClient) -> str:
    r = client.post(
        "/api/images", files={"file": ("x.png", _png(Image.fromarray(_image())), "image/png")}
    )
    assert r.status_code == 200, r.text
    return r.json()["image_id"]


def _detail(r: object) -> str:
    body = r.json()  # type: ignore[attr-defined]
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    assert "\n" not in body["detail"] and "Traceback" not in body["detail"]
    return body["detail"]


def _upload(
    client: TestClient, data: bytes, name: str = "upload.png", mime: str = "image/png"
) -> object:
    return client.post("/api/images", files={"file": (name, data, mime)})


# --- uploads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"just some text", b"\x00" * 512, b"%PDF-1.4 not really", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64],
)
def test_non_image_upload(client: TestClient, data: bytes) -> None:
    r = _upload(client, data)
    assert r.status_code in (400, 415)
    assert re.match(r"^file: (not an image|PDF files are not accepted)", _detail(r))


def test_empty_upload(client: TestClient) -> None:
    r = _upload(client, b"")
    assert r.status_code == 400 and "empty" in _detail(r)


def test_missing_file_field(client: TestClient) -> None:
    r = client.post("/api/images", data={"other": "x"})
    assert r.status_code == 422 and _detail(r).startswith("file")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_upload(client: TestClient, fmt: str) -> None:
    data = _encode(Image.fromarray(_image(size=64)), fmt)
    r = _upload(client, data[: len(data) // 2], f"cut.{fmt.lower()}")
    assert r.status_code == 400
    assert "truncated" in _detail(r) or "damaged" in _detail(r)


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_cut_inside_a_scan_with_an_end_marker(client: TestClient, progressive: bool) -> None:
    # PIL decodes it without an error, the blocks after the cut grey: refused as truncated
    whole = jpeg(progressive=progressive)
    cut = cut_scan(whole, 0.5)
    assert decodes_silently_wrong(cut, whole)
    r = _upload(client, cut, "cut.jpg")
    assert r.status_code == 400, r.text
    assert "truncated" in _detail(r) and "premature end" in _detail(r)
    r = _upload(client, whole, "whole.jpg")
    assert r.status_code == 200, r.text


def test_header_says_20000_square(client: TestClient) -> None:
    r = _upload(client, _header_png(20_000, 20_000))
    assert r.status_code == 413 and "400,000,000 pixels" in _detail(r)


def test_decompression_bomb(client: TestClient) -> None:
    data = _png(Image.new("L", (4000, 4000)))  # 16 Mpx in a few KB
    assert len(data) < MAX_BYTES
    r = _upload(client, data)
    assert r.status_code == 413 and "16,000,000 pixels" in _detail(r)
    assert f"{MAX_PIXELS:,}" in _detail(r)


def test_too_many_bytes(client: TestClient) -> None:
    data = _png(Image.fromarray(_image(size=300)))  # random pixels: ~270 KB
    assert len(data) > MAX_BYTES
    r = _upload(client, data)
    assert r.status_code == 413 and "limit" in _detail(r)


def test_far_too_many_bytes_refused_by_length(client: TestClient) -> None:
    r = _upload(client, b"\x00" * (MAX_BYTES + 300 * 1024))
    assert r.status_code == 413 and "larger than the limit" in _detail(r)


def test_oversize_chunked_upload_without_length(client: TestClient) -> None:
    data = _png(Image.fromarray(_image(size=300)))
    boundary = "xxBOUNDARYxx"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = client.post(
        "/api/images",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM"])
def test_other_image_types(client: TestClient, fmt: str) -> None:
    # the name and the declared type say PNG: the content decides
    r = _upload(client, _encode(Image.fromarray(_image()), fmt), "looks.png", "image/png")
    assert r.status_code == 415 and f"{fmt} files are not accepted" in _detail(r)


def test_svg_upload(client: TestClient) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    r = _upload(client, svg, "x.svg", "image/svg+xml")
    assert r.status_code == 415 and "SVG" in _detail(r)


def test_html_file_name_is_not_echoed(client: TestClient) -> None:
    name = '"><img src=x onerror=alert(1)>.png'
    r = _upload(client, _png(Image.fromarray(_image(seed=5))), name)
    assert r.status_code == 200 and "onerror" not in r.text
    assert set(r.json()) == {"image_id", "width", "height"}
    r = _upload(client, b"not an image", name)
    assert r.status_code == 400 and "onerror" not in r.text


def test_a_good_upload_still_works_after_bad_ones(client: TestClient) -> None:
    r = _upload(client, _png(Image.fromarray(_image(seed=9))))
    assert r.status_code == 200 and len(r.json()["image_id"]) == 64


# --- names and parameters -----------------------------------------------------------------------


def _job(client: TestClient, image_id: str, **body: object) -> object:
    return client.post(
        "/api/jobs", json={"kind": "explain", "image_id": image_id, "model": "toy", **body}
    )


@pytest.mark.parametrize(
    "body,status,match",
    [
        ({"method": "nope"}, 400, r"^method: unknown method 'nope'; expected one of: .*gradcam"),
        (
            {"method": "rise", "params": {"masks": 10**9}},
            400,
            r"^params\.masks: expected an integer in \[1, 100,000\], got 1000000000",
        ),
        ({"method": "lime", "params": {"samples": 10**9}}, 400, r"^params\.samples: "),
        ({"method": "smoothgrad", "params": {"samples": 10**9}}, 400, r"^params\.samples: "),
        (
            {"method": "fido", "params": {"steps": 10_000, "samples": 1_000}},
            400,
            r"^params: samples=1000, steps=10000 ask for 10,000,002 model evaluations",
        ),
        (
            {"method": "rise", "params": {"wat": 1}},
            400,
            r"^params\.wat: not a hyperparameter of method 'rise'; expected one of: removal, masks",
        ),
        (
            {"method": "rise", "params": {"removal": "nope"}},
            400,
            r"^params\.removal: unknown removal 'nope'; expected one of: .*blur",
        ),
        (
            {"method": "rise", "params": {"score": "<b>x</b>"}},
            400,
            r"^params\.score: expected one of: prob, logit, log_prob",
        ),
        (
            {"method": "rise", "params": {"progress": True}},
            400,
            r"^params\.progress: cannot be set",
        ),
        ({"method": "occlusion", "params": {"patch_size": 10**9}}, 400, r"^params\.patch_size: "),
        (
            {"method": "gradcam", "params": {"layer": "../../etc/passwd"}},
            400,
            r"^params\.layer: expected a layer name",
        ),
        ({"method": "gradcam", "target": 7}, 400, r"^target: class 7 is outside \[0, 3\)"),
        ({"method": "gradcam", "model": "nope"}, 400, r"^model: unknown model 'nope'"),
        ({"method": "gradcam", "kind": "hack"}, 422, r"'kind'.*explain"),
        ({"method": "gradcam", "extra": 1}, 422, r"extra"),
    ],
)
def test_bad_job_requests(
    client: TestClient, image_id: str, body: dict, status: int, match: str
) -> None:
    r = _job(client, image_id, **body)
    assert r.status_code == status, r.text
    assert re.search(match, _detail(r)), _detail(r)


def test_nan_parameter(client: TestClient, image_id: str) -> None:
    raw = (
        '{"kind": "explain", "image_id": "' + image_id + '", "model": "toy", '
        '"method": "rise", "params": {"p": NaN}}'
    )
    r = client.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and "p" in _detail(r)


def _explained(client: TestClient, image_id: str) -> dict:
    r = _job(client, image_id, method="gradient", target=1)
    assert r.status_code == 202, r.text
    job = client.app.state.served.jobs.wait(r.json()["id"], 30)
    assert job.status == "done", job.error
    return r.json()


@pytest.mark.parametrize(
    "metrics,removal,match",
    [
        (["nope"], None, r"^metric: unknown metric 'nope'; expected one of: .*deletion"),
        ([{"name": "deletion", "params": {"max_steps": 10**9}}], None, r"^params\.max_steps: "),
        ([{"name": "deletion", "params": {"wat": 1}}], None, r"^params\.wat: not a hyperparameter"),
        (["deletion"], "nope", r"^removal: unknown removal 'nope'"),
        (["deletion"], "torchscript:/etc/passwd", r"^removal: unknown removal"),
    ],
)
def test_bad_metric_requests(
    client: TestClient, image_id: str, metrics: list, removal: object, match: str
) -> None:
    job = _explained(client, image_id)
    body = {
        "kind": "metrics",
        "image_id": image_id,
        "model": "toy",
        "result": job["id"],
        "metrics": metrics,
    }
    if removal is not None:
        body["removal"] = removal
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 400, r.text
    assert re.search(match, _detail(r)), _detail(r)


@pytest.mark.parametrize("removal", ["nope", "torchscript:/etc/passwd", "blur:1e12"])
def test_bad_removal_job(client: TestClient, image_id: str, removal: str) -> None:
    r = client.post(
        "/api/jobs",
        json={"kind": "removal", "image_id": image_id, "model": "toy", "removal": removal},
    )
    assert r.status_code == 400 and _detail(r).startswith("removal: ")


@pytest.mark.parametrize(
    "body,match",
    [
        ({"top": 10**9}, r"^top: "),
        ({"top_p": 2.0}, r"^top_p: "),
        ({"max_top": 0}, r"^max_top: "),
        ({"top": 2, "top_p": 0.5}, "not both"),
        ({"tree": "<x>"}, r"^tree: "),
        ({"cut_level": 10**6}, r"^cut_level: "),
        ({"model": "nope"}, r"^model: "),
    ],
)
def test_bad_predict_requests(client: TestClient, image_id: str, body: dict, match: str) -> None:
    r = client.post("/api/predict", json={"image_id": image_id, "model": "toy", **body})
    assert r.status_code == 400, r.text
    assert re.search(match, _detail(r))


def test_bad_example_name(client: TestClient) -> None:
    r = client.post("/api/images/example", json={"name": "../../etc/passwd"})
    assert r.status_code == 400 and _detail(r).startswith("name: expected one of")


# --- paths from the client are never opened -----------------------------------------------------

BAD_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "0" * 63 + "/",
    "%00",
    "A" * 64,
]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the server opens (builtins.open, PIL.Image.open, torch.load, torch.jit.load)."""
    import PIL.Image
    import torch

    seen: list[str] = []

    def spy(real):  # type: ignore[no-untyped-def]
        def wrapper(f, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(str(f))
            return real(f, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "open", spy(builtins.open))
    monkeypatch.setattr(PIL.Image, "open", spy(PIL.Image.open))
    monkeypatch.setattr(torch, "load", spy(torch.load))
    monkeypatch.setattr(torch.jit, "load", spy(torch.jit.load))
    return seen


@pytest.mark.parametrize("bad", BAD_IDS)
def test_client_paths_are_never_opened(
    client: TestClient, image_id: str, bad: str, opened: list[str]
) -> None:
    from urllib.parse import quote

    for r in (
        client.post("/api/predict", json={"image_id": bad, "model": "toy"}),
        _job(client, bad, method="gradcam"),
        client.get(f"/api/images/{quote(bad, safe='')}.png"),
        client.get(f"/api/results/{quote(bad, safe='')}.json"),
        client.get(f"/api/results/{quote(bad, safe='')}/saliency.npy"),
        client.get(f"/api/jobs/{quote(bad, safe='')}"),
        client.delete(f"/api/jobs/{quote(bad, safe='')}"),
        client.post(
            "/api/jobs",
            json={"kind": "metrics", "image_id": image_id, "model": "toy", "result": bad},
        ),
        client.post(
            "/api/jobs",
            json={
                "kind": "removal",
                "image_id": image_id,
                "model": "toy",
                "removal": f"torchscript:{bad}",
            },
        ),
    ):
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        assert "root:" not in r.text
    assert not [f for f in opened if "passwd" in f or "etc" in f.split("/")[:3]]


def test_static_route_does_not_escape(client: TestClient) -> None:
    for path in (
        "/static/../app.py",
        "/static/..%2Fapp.py",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/../../../../etc/passwd",
    ):
        r = client.get(path)
        assert r.status_code == 404 or "create_app" not in r.text and "root:" not in r.text


# --- the bounded queue --------------------------------------------------------------------------


def test_full_queue_answers_429(client: TestClient, image_id: str) -> None:
    jobs = client.app.state.served.jobs
    release = threading.Event()
    blockers = [jobs.submit("block", lambda p: release.wait(30)) for _ in range(2)]
    try:
        r = _job(
            client, image_id, method="occlusion", params={"patch_size": 8, "stride": 8}, target=2
        )
        assert r.status_code == 429 and "pending" in _detail(r)
    finally:
        release.set()
        for b in blockers:
            jobs.wait(b.id, 30)
    r = _job(client, image_id, method="occlusion", params={"patch_size": 8, "stride": 8}, target=2)
    assert r.status_code == 202


# --- HTML in class names and file names ---------------------------------------------------------


def test_class_names_with_html_come_back_as_json_data(client: TestClient, image_id: str) -> None:
    r = client.post("/api/predict", json={"image_id": image_id, "model": "evil", "top": 3})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert sorted(c["name"] for c in r.json()["classes"]) == sorted(EVIL)


def test_page_sets_data_as_text_under_a_strict_csp(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = r.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    scripts = sorted(STATIC.glob("*.js"))
    assert scripts
    for path in scripts:
        code = path.read_text(encoding="utf-8")
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "srcdoc",
        ):
            assert sink not in code.replace("never innerHTML", ""), f"{path.name} uses {sink}"
    # class names reach the page through textContent (or SVG text) only
    every = "\n".join(p.read_text(encoding="utf-8") for p in scripts)
    assert "textContent" in every
    assert "http://" not in every.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in every


def test_error_messages_with_html_are_json(client: TestClient) -> None:
    r = client.get("/api/jobs/<script>alert(1)</script>")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")


def test_the_open_spy_sees_the_store(client: TestClient, opened: list[str]) -> None:
    # control for the test above: a good id is read from the store's own directory only (a
    # fresh image: one already read is kept decoded at the model's size)
    r = client.post(
        "/api/images", files={"file": ("s.png", _png(Image.fromarray(_image(7))), "image/png")}
    )
    image_id = r.json()["image_id"]
    r = client.get(f"/api/images/{image_id}.png")
    assert r.status_code == 200
    store = str(client.app.state.served.images.dir)
    assert any(f.startswith(store) and image_id in f for f in opened)


@pytest.mark.parametrize(
    "body,match",
    [
        ({"method": "rise", "params": {"masks": 10**9}}, r"^params\.masks: expected an integer"),
        ({"method": "nope"}, r"^method: unknown method 'nope'"),
        ({"method": "gradcam", "clusters": [[0], [7]]}, r"^clusters: class 7 is outside"),
        ({"method": "gradcam", "clusters": []}, r"^clusters: "),
        ({"method": "gradcam", "clusters": [[0], []]}, r"^clusters: "),
        ({"method": "gradcam", "delta": 1e9}, r"^delta: expected a percentile in \[0, 100\]"),
    ],
)
def test_bad_cwox_requests(client: TestClient, image_id: str, body: dict, match: str) -> None:
    r = client.post(
        "/api/jobs",
        json={
            "kind": "cwox",
            "image_id": image_id,
            "model": "toy",
            "clusters": [[0], [1, 2]],
            **body,
        },
    )
    assert r.status_code == 400, r.text
    assert re.search(match, _detail(r)), _detail(r)


def test_uploads_live_in_a_temporary_directory_removed_at_shutdown() -> None:
    app = create_app({"toy": conv_region_model(3)}, image_size=32)
    with TestClient(app, base_url=LOOPBACK) as c:
        r = _upload(c, _png(Image.fromarray(_image(seed=3))))
        assert r.status_code == 200
        folder = app.state.served.images.dir
        files = list(folder.iterdir())
        assert [f.name for f in files] == [r.json()["image_id"] + ".png"]
    assert not folder.exists()
