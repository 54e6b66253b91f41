"""A bounded load test: many concurrent requests against a real uvicorn server on loopback.

16 client threads send 200 requests in all (uploads, predictions, explain jobs of three cheap
methods on three images and three targets, polls, cancels) to a server the test starts on a free
port. Every answer must be 2xx or 429 (the bounded queue), and every finished explanation must
equal the same explanation computed alone, in this process, without the server: requests from
several tabs do not corrupt each other's results.
"""

from __future__ import annotations

import io
import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")  # the serve extra
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from unmask.api import make_explainer  # noqa: E402
from unmask.images import load_image  # noqa: E402
from unmask.serve import create_app  # noqa: E402
from unmask.testing import conv_region_model  # noqa: E402

SIZE = 32
CLIENTS = 16
REQUESTS = 200
METHODS = {  # cheap on the 32 x 32 toy model
    "input_x_gradient": {},
    "gradcam": {},
    "occlusion": {"patch_size": 8, "stride": 8},
}
T = 60.0  # seconds: only reached when something is broken


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(3):
        a = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
        a[8 + 4 * k : 24 + 4 * k, 10:30, 0] = 250  # a red box that moves: different maps
        out.append(a)
    return out


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, object]]:
    torch.set_num_threads(1)
    model = conv_region_model(3)
    app = create_app({"toy": model}, image_size=SIZE, workers=2, max_pending=4, cache_size=32)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port, held by this socket until uvicorn takes it
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + T
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", model
    finally:
        srv.should_exit = True
        thread.join(T)
        sock.close()


def test_concurrent_tabs_get_uncorrupted_results(server: tuple[str, object]) -> None:
    base, model = server
    images = _images()
    with httpx.Client(base_url=base, timeout=T) as c:
        ids = []
        for a in images:
            r = c.post("/api/images", files={"file": ("a.png", _png(a), "image/png")})
            assert r.status_code == 200, r.text
            ids.append(r.json()["image_id"])
    configs = list(itertools.product(range(len(images)), METHODS, range(3)))
    statuses: Counter = Counter()
    done: list[tuple[tuple[int, str, int], str, np.ndarray]] = []  # (config, key, map)
    errors: list[BaseException] = []
    lock = threading.Lock()
    counter = itertools.count()

    def record(r: httpx.Response) -> httpx.Response:
        with lock:
            statuses[r.status_code] += 1
        assert r.status_code < 300 or r.status_code == 429, (r.request.url, r.status_code, r.text)
        return r

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        try:
            with httpx.Client(base_url=base, timeout=T) as c:
                while next(counter) < REQUESTS:
                    roll = rng.random()
                    i = int(rng.integers(len(ids)))
                    if roll < 0.15:
                        record(
                            c.post(
                                "/api/predict", json={"image_id": ids[i], "model": "toy", "top": 2}
                            )
                        )
                        continue
                    if roll < 0.2:
                        r = record(
                            c.post(
                                "/api/images",
                                files={"file": ("b.png", _png(images[i]), "image/png")},
                            )
                        )
                        assert r.json()["image_id"] == ids[i]
                        continue
                    config = configs[int(rng.integers(len(configs)))]
                    img, method, target = config
                    r = record(
                        c.post(
                            "/api/jobs",
                            json={
                                "kind": "explain",
                                "image_id": ids[img],
                                "model": "toy",
                                "method": method,
                                "params": METHODS[method],
                                "target": target,
                            },
                        )
                    )
                    if r.status_code == 429:
                        continue
                    job = r.json()
                    if roll > 0.95:  # a tab that gives up
                        record(c.delete(f"/api/jobs/{job['id']}"))
                        continue
                    deadline = time.monotonic() + T
                    while job["status"] in ("queued", "running"):
                        assert time.monotonic() < deadline, "a job never finished"
                        time.sleep(0.01)
                        job = record(c.get(f"/api/jobs/{job['id']}")).json()
                        next(counter)  # each poll is a request
                    assert job["status"] in ("done", "cancelled"), job
                    if job["status"] == "done":
                        key = job["result"]["key"]
                        assert job["result"]["image_id"] == ids[img]
                        assert job["result"]["target"] == target
                        r = record(c.get(f"/api/results/{key}/saliency.npy"))
                        next(counter)
                        with lock:
                            done.append((config, key, np.load(io.BytesIO(r.content))))
        except BaseException as exc:  # noqa: BLE001 -- reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T * 5)
    assert not any(t.is_alive() for t in threads)
    assert not errors, repr(errors[0])
    assert set(statuses) <= {200, 202, 429}, statuses
    assert sum(statuses.values()) >= REQUESTS
    assert done, "no job finished"

    # one key per request, distinct requests distinct keys
    keys: dict[tuple[int, str, int], set[str]] = {}
    for config, key, _ in done:
        keys.setdefault(config, set()).add(key)
    assert all(len(v) == 1 for v in keys.values())
    assert len({next(iter(v)) for v in keys.values()}) == len(keys)

    # every finished result, as its tab read it, equals the result computed alone
    alone: dict[tuple[int, str, int], np.ndarray] = {}
    for config, _, served in done:
        img, method, target = config
        if config not in alone:
            x = load_image(images[img], size=SIZE)
            e = make_explainer(model, method, **METHODS[method]).explain(x, [target])
            alone[config] = e.saliency[0, 0].detach().float().numpy()
        np.testing.assert_allclose(
            served,
            alone[config],
            rtol=1e-5,
            atol=1e-6,
            err_msg=f"{method} on image {img}, target {target}",
        )
    # the configs differ: a mix-up between tabs could not pass the comparison above
    assert len(keys) >= 3


def test_the_comparison_can_tell_configurations_apart() -> None:
    """Control: the maps of different images, methods or targets differ well beyond the
    tolerance, so a result delivered to the wrong tab fails the load test."""
    model = conv_region_model(3)
    images = _images()
    maps = {}
    for img, method, target in itertools.product(range(len(images)), METHODS, range(3)):
        x = load_image(images[img], size=SIZE)
        e = make_explainer(model, method, **METHODS[method]).explain(x, [target])
        maps[img, method, target] = e.saliency[0, 0].detach().float().numpy()
    for (a, ma), (b, mb) in itertools.combinations(maps.items(), 2):
        assert not np.allclose(ma, mb, rtol=1e-5, atol=1e-6), (a, b)
