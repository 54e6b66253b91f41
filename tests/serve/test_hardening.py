"""The explorer under a hostile client (issue 25): Host headers (DNS rebinding), booleans as
classes, huge paths echoed back, absurd worker counts, the time cap of a job, cancellation of
every job kind, and bounded caches."""

from __future__ import annotations

import io
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette's note that httpx will be replaced by httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from unmask.cli import main  # noqa: E402
from unmask.models import Classifier  # noqa: E402
from unmask.serve import create_app  # noqa: E402
from unmask.serve.costs import ModelTime, estimate_seconds, measure  # noqa: E402
from unmask.serve.jobs import MAX_WORKERS, JobQueue  # noqa: E402
from unmask.serve.results import ResultStore, StoredResult  # noqa: E402
from unmask.serve.uploads import ImageStore  # noqa: E402
from unmask.testing import conv_region_model  # noqa: E402

SIZE = 32
LOOPBACK = "http://127.0.0.1"


def _png(seed: int = 0) -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _upload(c: TestClient) -> str:
    r = c.post("/api/images", files={"file": ("a.png", _png(), "image/png")})
    assert r.status_code == 200, r.text
    return r.json()["image_id"]


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


# ---------------------------------------------------------------------- cost in seconds
def test_a_job_estimated_above_the_limit_gets_422_with_its_estimate(image_id):
    app = create_app({"toy": conv_region_model(3)}, image_size=SIZE, max_job_seconds=10)
    served = app.state.served
    served.times["toy"] = ModelTime(forward=1.0, backward=3.0)  # seconds per image, as if slow
    with TestClient(app, base_url=LOOPBACK) as c:
        c.post("/api/images", files={"file": ("a.png", _png(), "image/png")})
        occlusion = {"kind": "explain", "image_id": image_id, "method": "occlusion"}
        r = c.post("/api/jobs", json={**occlusion, "params": {"patch_size": 8, "stride": 8}})
        assert r.status_code == 422, r.text  # (4 x 4 patch positions + the image) x 1 s
        detail = r.json()["detail"]
        assert "17 model evaluations, about 17 s" in detail, detail
        assert "above the limit of 10 s for one job" in detail
        r = c.post("/api/jobs", json={**occlusion, "params": {"patch_size": 16, "stride": 16}})
        assert r.status_code == 202, r.text  # 4 positions + the image: 5 s
        # a gradient method's evaluation is a forward and backward pass (3 s each here)
        ig = {"kind": "explain", "image_id": image_id, "method": "integrated_gradients"}
        # (integrated gradients declares steps + 2 evaluations: the path and its two ends)
        r = c.post("/api/jobs", json={**ig, "params": {"steps": 4}})
        assert r.status_code == 422 and "about 18 s" in r.json()["detail"], r.text
        gradient = {"kind": "explain", "image_id": image_id, "method": "gradient"}
        assert c.post("/api/jobs", json=gradient).status_code == 202  # one pass: 3 s
        # CWOX: one base explanation per cluster, and per class of a cluster of two or more
        cwox = {"kind": "cwox", "image_id": image_id, "method": "gradcam"}
        r = c.post("/api/jobs", json={**cwox, "clusters": [[0], [1, 2]]})
        assert r.status_code == 422 and "about 12 s" in r.json()["detail"], r.text
        assert c.post("/api/jobs", json={**cwox, "clusters": [[0], [1]]}).status_code == 202
        assert c.get("/api/info").json()["limits"]["max_job_seconds"] == 10


def test_estimate_seconds_is_evaluations_times_the_time_per_image():
    t = ModelTime(forward=0.002, backward=0.005)
    assert estimate_seconds(50_176, t) == pytest.approx(100.352)
    assert estimate_seconds(50_176, t, gradients=True) == pytest.approx(250.88)
    measured = measure(conv_region_model(3), SIZE)
    assert 0 < measured.forward <= measured.backward


def test_the_time_limit_flag_is_checked(capsys):
    assert main(["serve", "--max-job-seconds", "0"]) == 2
    assert "--max-job-seconds" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_job_seconds"):
        create_app({"toy": conv_region_model(3)}, max_job_seconds=float("inf"))


# ---------------------------------------------------------------------- cancellation
CLASSES = 128
DELAY = 0.4  # seconds per forward pass of the slow model


class _SlowNet(nn.Module):
    """A small CNN with many classes whose every forward pass takes DELAY seconds (once
    ``delay`` is set) and is counted."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, CLASSES)
        self.delay, self.calls = 0.0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.delay)
        return self.head(self.pool(self.features(x)).flatten(1))


def _served(net: _SlowNet) -> Classifier:
    """``net`` as a classifier of CLASSES classes, its feature layer the convolutions."""
    names = [f"c{i}" for i in range(CLASSES)]
    return Classifier(
        net, (0.0,) * 3, (1.0,) * 3, None, names, name="slow", feature_layer="features"
    )


@pytest.fixture()
def slow():
    model = _served(_SlowNet())
    app = create_app({"slow": model}, image_size=SIZE, workers=1, max_job_seconds=2.5)
    model.net.delay = DELAY  # the served model only: its time per image is measured on a copy
    with TestClient(app, base_url=LOOPBACK) as c:
        r = c.post("/api/images", files={"file": ("a.png", _png(), "image/png")})
        yield c, r.json()["image_id"], model.net


def _wait(c, job_id: str, until: tuple[str, ...], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/api/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def _cancel_then_cheap_job(c, image_id: str, net: _SlowNet, job: dict) -> float:
    """Start ``job``, cancel it once it runs the model, and return the seconds until a cheap
    job queued behind it (on the one worker) is done."""
    r = c.post("/api/jobs", json=job)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    _wait(c, job_id, ("running",))
    deadline = time.monotonic() + 30
    while net.calls == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    start = time.monotonic()
    assert c.delete(f"/api/jobs/{job_id}").json()["status"] == "cancelled"
    cheap = {"kind": "removal", "image_id": image_id, "removal": "black"}
    r = c.post("/api/jobs", json=cheap)
    assert r.status_code == 202, r.text
    assert _wait(c, r.json()["id"], ("done", "failed"))["status"] == "done"
    return time.monotonic() - start


def test_cancelling_a_running_cwox_job_frees_the_worker(slow):
    c, image_id, net = slow
    clusters = [[k] for k in range(CLASSES)]  # 128 base explanations: 16 batches, >= 6 s
    job = {"kind": "cwox", "image_id": image_id, "method": "gradcam", "clusters": clusters}
    waited = _cancel_then_cheap_job(c, image_id, net, job)
    assert waited < 5 * DELAY, waited  # the batch under way, not the 16 batches
    assert net.calls < 5


#: 100 forward and backward passes of the slow model: >= 40 s (its time is measured on a fast
#: copy: the job is accepted)
LONG_IG = {
    "kind": "explain",
    "method": "integrated_gradients",
    "params": {"steps": 100, "batch_size": 1},
    "target": 3,
}


def test_cancelling_a_running_gradient_job_frees_the_worker(slow):
    c, image_id, net = slow
    waited = _cancel_then_cheap_job(c, image_id, net, {**LONG_IG, "image_id": image_id})
    assert waited < 5 * DELAY, waited
    assert net.calls < 5


def test_a_job_that_outlives_the_limit_is_stopped(slow):
    c, image_id, net = slow
    r = c.post("/api/jobs", json={**LONG_IG, "image_id": image_id})
    assert r.status_code == 202, r.text
    done = _wait(c, r.json()["id"], ("done", "failed", "cancelled"))
    assert done["status"] == "failed"
    assert done["error"] == "job: stopped at the limit of 2.5 s for one job"
    assert net.calls < 2.5 / DELAY + 4  # not the 100 passes


class _Gate:
    """Holds the forward pass number ``at`` of a :class:`_GateNet` (``reached`` is set) until
    ``go`` is set. A copy (the explorer's prediction copy) gets its own gate, never armed."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.reached, self.go = threading.Event(), threading.Event()

    def __deepcopy__(self, memo: dict) -> _Gate:
        return _Gate()


class _GateNet(_SlowNet):
    """:class:`_SlowNet` without a delay, whose pass number ``gate.at`` waits for the test."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = _Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.calls == self.gate.at:
            self.gate.reached.set()
            self.gate.go.wait(60)
        return out


#: A long job of every kind (tens of model passes or more on the small model), each of which
#: has a cancellation point at every model pass (and progress tick).
LONG_JOBS = {
    "occlusion": {
        "kind": "explain",
        "method": "occlusion",
        "params": {"patch_size": 4, "stride": 2},
    },
    "rise": {"kind": "explain", "method": "rise", "params": {"masks": 1000}},
    "lime": {"kind": "explain", "method": "lime", "params": {"samples": 500}},
    "gradient": {"kind": "explain", "method": "integrated_gradients", "params": {"steps": 200}},
    "extremal": {"kind": "explain", "method": "extremal", "params": {"steps": 100}},
    "cwox": {"kind": "cwox", "method": "gradcam", "clusters": [[k] for k in range(80)]},
    "cwox-rise": {"kind": "cwox", "method": "rise", "clusters": [[0, 1], [2, 3], [4]]},
    "metrics": {"kind": "metrics", "metrics": [{"name": "deletion", "params": {"max_steps": 400}}]},
}


@pytest.fixture(scope="module")
def gated():
    model = _served(_GateNet())
    app = create_app({"gated": model}, image_size=SIZE, workers=1, max_pending=4)
    with TestClient(app, base_url=LOOPBACK) as c:
        image_id = _upload(c)
        r = c.post(
            "/api/jobs",
            json={"kind": "explain", "image_id": image_id, "method": "gradcam", "target": 3},
        )
        source = _wait(c, r.json()["id"], ("done", "failed"))
        assert source["status"] == "done", source
        yield c, image_id, source["id"], model.net


@pytest.mark.parametrize("kind", LONG_JOBS)
def test_a_cancel_lands_at_the_next_model_pass_for_every_job_kind(gated, kind):
    """Cancel a job while its second model pass runs: the computation stops before its next
    pass (the worker is then free: a job queued behind it finishes), long before its end (the
    same job run whole takes many passes). No clock: the passes are counted."""
    c, image_id, source, net = gated
    body = {**LONG_JOBS[kind], "image_id": image_id}
    if kind == "metrics":
        body["result"] = source
    elif body["kind"] == "explain":
        body["target"] = 3
    gate = net.gate
    gate.reached.clear()
    gate.go.clear()
    start = net.calls
    gate.at = start + 2
    try:
        r = c.post("/api/jobs", json=body)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert gate.reached.wait(60), "the job never reached its second model pass"
        assert c.delete(f"/api/jobs/{job_id}").json()["status"] == "cancelled"
    finally:
        gate.at = None
        gate.go.set()
    behind = {"kind": "removal", "image_id": image_id, "removal": f"blur:{1 + len(kind) / 10}"}
    r = c.post("/api/jobs", json=behind)
    assert r.status_code == 202, r.text
    assert _wait(c, r.json()["id"], ("done", "failed"))["status"] == "done"
    assert net.calls == start + 2, f"{net.calls - start - 2} model passes after the cancel"
    # the same job, whole (a cancelled computation is not cached): many more passes
    before = net.calls
    r = c.post("/api/jobs", json=body)
    assert _wait(c, r.json()["id"], ("done", "failed", "cancelled"))["status"] == "done"
    assert net.calls - before > 4, (kind, net.calls - before)


def test_planning_a_job_never_runs_the_model_a_job_holds(gated):
    """A request is planned while a job holds the model (its hooks on it): planning a CWOX job
    reads the stage layers found when the app started, it never runs the model (a pass there
    would run the job's hooks in the request thread: a 500 once the job was cancelled)."""
    c, image_id, _, net = gated
    gate = net.gate
    gate.reached.clear()
    gate.go.clear()
    gate.at = net.calls + 1
    try:
        body = {**LONG_JOBS["rise"], "image_id": image_id, "target": 3, "seed": 7}  # not cached
        r = c.post("/api/jobs", json=body)
        assert gate.reached.wait(60)
        held = net.calls
        assert c.delete(f"/api/jobs/{r.json()['id']}").json()["status"] == "cancelled"
        clusters = [[1, 2], [3]]
        r = c.post(
            "/api/jobs",
            json={"kind": "cwox", "image_id": image_id, "method": "gradcam", "clusters": clusters},
        )
        assert r.status_code == 202, r.text
        assert net.calls == held
    finally:
        gate.at = None
        gate.go.set()
    assert _wait(c, r.json()["id"], ("done", "failed"))["status"] == "done"


# ---------------------------------------------------------------------- job memory
def _lite0_sized(classes: int = 10) -> Classifier:
    """A small network that takes 224 x 224 inputs: its batches are estimated as
    EfficientNet-Lite0's (about 100 MB per image with gradients, 22 MB without)."""
    net = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, classes))
    return Classifier(
        net, (0.0,) * 3, (1.0,) * 3, 224, [f"c{i}" for i in range(classes)], name="sized"
    )


def _gradient_batches(model: Classifier) -> list[int]:
    """The size of every batch ``model`` runs with gradients, recorded from now on."""
    seen: list[int] = []
    real = model.forward

    def record(x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            seen.append(x.shape[0])
        return real(x)

    model.forward = record  # type: ignore[method-assign]
    return seen


def test_a_gradient_job_s_default_batch_is_fitted_to_one_job_s_memory():
    # Lite0's activations with gradients: 16 x 100 MB would be 1.5 GB; 512 MB holds 5
    model = _lite0_sized()
    app = create_app({"m": model}, image_size=224, max_job_memory=512 * 1024**2)
    seen = _gradient_batches(model)
    with TestClient(app, base_url=LOOPBACK) as c:
        image_id = _upload(c)
        job = {"kind": "explain", "image_id": image_id, "target": 1}
        r = c.post("/api/jobs", json={**job, "method": "integrated_gradients"})
        done = _wait(c, r.json()["id"], ("done", "failed"))
        assert done["status"] == "done", done
        assert done["result"]["spec"]["batch_size"] == 5 and max(seen) == 5, seen
        # a black-box method's batches without gradients fit (16 x 22 MB): its default stays
        r = c.post("/api/jobs", json={**job, "method": "rise", "params": {"masks": 64}})
        done = _wait(c, r.json()["id"], ("done", "failed"))
        assert done["result"]["spec"]["batch_size"] == 16
        # an explicit batch above the budget: refused before anything runs, naming the field
        r = c.post(
            "/api/jobs",
            json={**job, "method": "integrated_gradients", "params": {"batch_size": 16}},
        )
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert detail.startswith("params.batch_size: a batch of 16 images of 224x224 with")
        assert "512 MB" in detail and "explorer's memory for one job" in detail
        # the library's own checks under the same budget: ShearletX's 16 noise images
        r = c.post("/api/jobs", json={**job, "method": "shearletx"})
        assert r.status_code == 400 and "noise_bs" in r.json()["detail"], r.text


def test_cwox_pairs_are_batched_within_one_job_s_memory():
    model = _lite0_sized(classes=40)
    model.feature_layer = "0"
    app = create_app({"m": model}, image_size=224, max_job_memory=300 * 1024**2)
    seen = _gradient_batches(model)
    with TestClient(app, base_url=LOOPBACK) as c:
        image_id = _upload(c)
        clusters = [[k] for k in range(20)]
        r = c.post(
            "/api/jobs",
            json={"kind": "cwox", "image_id": image_id, "method": "gradcam", "clusters": clusters},
        )
        done = _wait(c, r.json()["id"], ("done", "failed"))
        assert done["status"] == "done", done
        assert seen and max(seen) == 3, seen  # 300 MB / 100 MB per image with gradients


def test_max_job_memory_is_checked(capsys):
    with pytest.raises(ValueError, match="max_job_memory"):
        create_app({"toy": conv_region_model(3)}, max_job_memory=0)
    assert main(["serve", "--max-job-memory-mb", "-1"]) == 2
    assert "--max-job-memory-mb" in capsys.readouterr().err


# ---------------------------------------------------------------------- bounded caches
def test_results_are_bounded_in_bytes():
    store = ResultStore(max_results=100, max_bytes=10 * 4096 + 100)
    for k in range(30):
        store.put(StoredResult(str(k), {}, {"m": np.zeros((32, 32), np.float32)}))  # 4 KiB
        assert store.nbytes <= store.max_bytes
    assert len(store) == 10 and "29" in store and "19" not in store
    big = StoredResult("big", {}, {"m": np.zeros((512, 512), np.float32)})  # 1 MiB
    store.put(big)  # the newest is kept, even alone above the bound
    assert len(store) == 1 and store.get("big") is big


def test_stored_images_are_bounded_in_bytes():
    rng = np.random.default_rng(0)
    with ImageStore(max_images=100, max_bytes=200_000) as store:
        ids = [store.put(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)) for _ in range(20)]
        files = list(store.dir.glob("*.png"))
        assert store.nbytes == sum(f.stat().st_size for f in files) <= 200_000
        assert 4 <= len(store) < 20 and ids[-1] in store and ids[0] not in store
        assert len(files) == len(store)


def test_the_server_caches_are_bounded_in_bytes():
    app = create_app(
        {"toy": conv_region_model(3)}, image_size=SIZE, cache_bytes=20_000, image_bytes=50_000
    )
    with TestClient(app, base_url=LOOPBACK):
        served = app.state.served
        assert served.results.max_bytes == 20_000 and served.images.max_bytes == 50_000
    with pytest.raises(ValueError, match="cache_bytes"):
        create_app({"toy": conv_region_model(3)}, cache_bytes=0)


@pytest.mark.slow
def test_the_issue_s_hour_long_requests_are_refused_with_the_embedded_model():
    """Issue 25's requests that took hours on a CPU: occlusion with patch 1 / stride 1 (50,176
    patch positions at 224² and the unoccluded image), LIME with 100,000 samples, each refused
    with its estimate under the default limit; the default occlusion is accepted."""
    with TestClient(create_app(), base_url=LOOPBACK) as c:
        r = c.post("/api/images/example", json={"name": "coffee"})
        image_id = r.json()["image_id"]
        job = {"kind": "explain", "image_id": image_id}
        for method, params, evaluations in (
            ("occlusion", {"patch_size": 1, "stride": 1}, "50,177"),
            ("lime", {"samples": 100_000}, "100,000"),
        ):
            r = c.post("/api/jobs", json={**job, "method": method, "params": params})
            assert r.status_code == 422, r.text
            detail = r.json()["detail"]
            assert f"{evaluations} model evaluations, about " in detail
            assert "above the limit of 180 s for one job" in detail
        ok = {**job, "method": "occlusion", "params": {"patch_size": 32, "stride": 16}}
        assert c.post("/api/jobs", json=ok).status_code == 202
