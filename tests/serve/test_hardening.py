"""The explorer under a hostile client (issue 25): Host headers (DNS rebinding), booleans as
classes, huge paths echoed back, absurd worker counts, the time cap of a job, cancellation of
every job kind, and bounded caches."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette's note that httpx will be replaced by httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from unmask.cli import main  # noqa: E402
from unmask.serve import create_app  # noqa: E402
from unmask.serve.jobs import MAX_WORKERS, JobQueue  # noqa: E402
from unmask.testing import conv_region_model  # noqa: E402

SIZE = 32
LOOPBACK = "http://127.0.0.1"


def _png(seed: int = 0) -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def app():
    return create_app({"toy": conv_region_model(3)}, image_size=SIZE, host="10.1.2.3")


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url=LOOPBACK) as c:
        yield c


@pytest.fixture(scope="module")
def image_id(client) -> str:
    r = client.post("/api/images", files={"file": ("a.png", _png(), "image/png")})
    assert r.status_code == 200, r.text
    return r.json()["image_id"]


# ---------------------------------------------------------------------- trusted hosts
@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8000", "localhost:8000", "[::1]:8000", "[::1]", "10.1.2.3"]
)
def test_loopback_names_and_the_given_host_are_answered(client, host):
    r = client.get("/api/info", headers={"Host": host})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "host", ["evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.com", "10.1.2.4", ""]
)
def test_any_other_host_is_refused(client, image_id, host):
    """DNS rebinding: a page on evil.example.com (resolving to 127.0.0.1) can neither read
    the API nor run jobs."""
    assert client.get("/api/info", headers={"Host": host}).status_code == 400
    job = {"kind": "explain", "image_id": image_id, "method": "gradcam"}
    assert client.post("/api/jobs", json=job, headers={"Host": host}).status_code == 400
    r = client.post(
        "/api/images", files={"file": ("a.png", _png(1), "image/png")}, headers={"Host": host}
    )
    assert r.status_code == 400


def test_without_a_host_argument_only_loopback_names_pass():
    app = create_app({"toy": conv_region_model(3)}, image_size=SIZE)
    with TestClient(app, base_url="http://localhost") as c:
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"Host": "10.1.2.3"}).status_code == 400


# ---------------------------------------------------------------------- silent acceptance
@pytest.mark.parametrize("target", [True, False, [True], [1, True], 1.0, "1"])
def test_a_bool_or_a_non_integer_is_not_a_class(client, image_id, target):
    job = {"kind": "explain", "image_id": image_id, "method": "gradcam", "target": target}
    r = client.post("/api/jobs", json=job)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("target")


def test_a_bool_is_not_a_class_in_clusters(client, image_id):
    job = {"kind": "cwox", "image_id": image_id, "clusters": [[0], [True]]}
    r = client.post("/api/jobs", json=job)
    assert r.status_code == 422 and r.json()["detail"].startswith("clusters"), r.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/{x}",
        "/api/results/{x}.json",
        "/api/results/{x}/saliency.png",
        "/api/images/{x}.png",
    ],
)
def test_404_messages_do_not_echo_a_huge_path(client, path):
    huge = "a" * 20_000
    r = client.get(path.format(x=huge))
    assert r.status_code == 404, r.text
    assert len(r.json()["detail"]) < 300
    assert r.json()["detail"].split(":")[0] in ("job", "result", "image_id")


def test_a_huge_map_name_or_format_is_cut_short(client, image_id):
    r = client.post("/api/jobs", json={"kind": "removal", "image_id": image_id, "removal": "gray"})
    key = r.json()["key"]
    for tail in ("b" * 20_000 + ".png", "saliency." + "c" * 20_000):
        r = client.get(f"/api/results/{key}/{tail}")
        assert r.status_code == 404 and len(r.json()["detail"]) < 300, r.text


def test_worker_counts_are_bounded(capsys):
    with pytest.raises(ValueError, match=rf"workers: expected an int in \[1, {MAX_WORKERS}\]"):
        JobQueue(workers=100_000)
    with pytest.raises(ValueError, match="workers"):
        create_app({"toy": conv_region_model(3)}, workers=100_000)
    assert main(["serve", "--workers", "100000"]) == 2
    err = capsys.readouterr().err
    assert f"--workers: expected an int in [1, {MAX_WORKERS}], got 100,000" in err
    assert main(["serve", "--max-pending", "10000000"]) == 2
    assert "--max-pending: expected an int in [1, " in capsys.readouterr().err
