"""The explorer's JSON API, happy paths, through FastAPI's TestClient with a tiny model.

Every result is checked against the library called directly: the maps (PNG, NPY, f32) of an
explain job against ``unmask.explain``, a CWOX job's against ``unmask.contrastive.CWOX`` (and
the page's δ re-threshold against the class maps), a metrics job's numbers against
``unmask.metrics.evaluate``, a removal preview against the removal itself.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette's note that httpx will be replaced by httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from unmask import explain, load_image, make_explainer  # noqa: E402
from unmask.contrastive import CWOX, load_tree, stage_layers  # noqa: E402
from unmask.metrics import evaluate  # noqa: E402
from unmask.removal import bind, make_removal  # noqa: E402
from unmask.serve import create_app, is_loopback  # noqa: E402
from unmask.serve.results import colourise  # noqa: E402
from unmask.testing import conv_region_model, region_images  # noqa: E402

SIZE = 64
LOOPBACK = "http://127.0.0.1"  # an allowed Host: (any other gets 400)


def _node(node_id, level, text="", children=()):
    return {
        "id": node_id,
        "text": text,
        "data": {"name": node_id, "level": level, "percentage": 0.5},
        "children": list(children),
    }


TOY_TREE = [
    _node(
        "Z2",
        2,
        children=(
            _node("Z11", 1, "c001-red_box 0.9 c002-reddish 0.8"),
            _node("Z12", 1, "c000-blue_box_B 0.9"),
        ),
    )
]


@pytest.fixture(scope="module")
def model():
    return conv_region_model(3)


@pytest.fixture(scope="module")
def app(model):
    return create_app(
        {"toy": model}, image_size=SIZE, trees={"toy": load_tree(TOY_TREE, num_classes=3)}
    )


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url=LOOPBACK) as c:
        yield c


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def pixels():
    return (region_images(1, SIZE)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def image_id(client, pixels):
    r = client.post("/api/images", files={"file": ("red.png", _png(pixels), "image/png")})
    assert r.status_code == 200, r.text
    return r.json()["image_id"]


@pytest.fixture(scope="module")
def x(pixels):
    return load_image(pixels, size=SIZE)


def _run(client, app, body, status=("done",)):
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 202, r.text
    job = app.state.served.jobs.wait(r.json()["id"], 60)
    out = client.get(f"/api/jobs/{job.id}").json()
    assert out["status"] in status, out
    return out


def _map(client, info):
    """A map's three encodings: (npy, f32, png) arrays."""
    npy = np.load(io.BytesIO(client.get(info["npy"]).content))
    f32 = np.frombuffer(client.get(info["f32"]).content, dtype="<f4").reshape(info["shape"])
    png = np.asarray(Image.open(io.BytesIO(client.get(info["png"]).content)).convert("RGB"))
    return npy, f32, png


# ---------------------------------------------------------------------- info, images, predict
def test_info_lists_models_methods_metrics_removals(client):
    info = client.get("/api/info").json()
    layers = {b: list(stage_layers(conv_region_model(3), b)) for b in ("gradcam", "mwp")}
    assert info["models"] == [
        {
            "name": "toy",
            "description": "conv-region3",
            "num_classes": 3,
            "input_size": SIZE,
            "trees": ["toy", "data-free"],
            "cwox_layers": layers,
        }
    ]
    methods = {m["name"]: m for m in info["methods"]}
    assert {"gradcam", "rise", "lime", "occlusion", "mwp"} <= set(methods)
    assert methods["gradcam"]["family"] == "CAM" and methods["gradcam"]["cwox_delta"] == 50
    assert methods["rise"]["cwox_preset"]["cluster"] == {"masks": 5000, "p": 0.3, "s": 15}
    assert methods["occlusion"]["cwox_preset"] is None
    assert {f["name"] for f in methods["rise"]["form"]} >= {"masks", "p", "s"}
    metrics = {m["name"]: m for m in info["metrics"]}
    assert metrics["deletion"]["served"] and metrics["deletion"]["higher_is_better"] is False
    assert not metrics["ssim"]["served"]
    removals = [r["name"] for r in info["removals"]]
    assert {"gray", "blur", "noise", "telea"} <= set(removals) and "torchscript" not in removals
    assert "chelsea" in info["examples"]
    assert info["limits"]["max_pending"] == 8


def test_upload_and_the_model_input(client, image_id, pixels, x):
    r = client.post("/api/images", files={"file": ("again.png", _png(pixels), "image/png")})
    assert r.json() == {"image_id": image_id, "width": SIZE, "height": SIZE}  # same pixels
    png = client.get(f"/api/images/{image_id}.png")
    assert png.headers["content-type"] == "image/png"
    seen = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
    expected = np.round(x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(seen, expected)


def test_example_image(client):
    r = client.post("/api/images/example", json={"name": "coffee"})
    assert r.status_code == 200 and r.json()["width"] == 600 and r.json()["height"] == 400


def test_predict_top_classes_tree_clusters(client, image_id, model, x):
    p = model(x).softmax(1)[0].double().detach()
    r = client.post("/api/predict", json={"image_id": image_id, "top": 3}).json()
    order = p.argsort(descending=True).tolist()
    assert [c["class"] for c in r["classes"]] == order == [1, 2, 0]
    assert [c["name"] for c in r["classes"]] == ["red box", "reddish", "blue box B"]
    np.testing.assert_allclose(
        [c["probability"] for c in r["classes"]], p[order].numpy(), rtol=1e-6
    )
    assert r["chosen"] == [1, 2, 0] and r["tree_name"] == "toy"
    assert r["clusters"] == [[1, 2], [0]]
    assert r["tree"][0]["id"] == "Z2" and len(r["tree"][0]["children"]) == 2
    r = client.post("/api/predict", json={"image_id": image_id, "top": 3, "cut_level": 1}).json()
    assert r["clusters"] == [[1, 2, 0]]
    # by cumulative probability: red box alone carries more than half
    r = client.post("/api/predict", json={"image_id": image_id, "top_p": 0.5}).json()
    assert r["chosen"] == [1]


# ---------------------------------------------------------------------- jobs
def test_explain_job_maps_agree_with_unmask_explain(client, app, image_id, model, x):
    out = _run(
        client,
        app,
        {
            "kind": "explain",
            "image_id": image_id,
            "method": "gradcam",
            "params": {"relu": False},
            "target": 1,
        },
    )
    result = out["result"]
    direct = explain(model, x, "gradcam", target=1, relu=False).saliency[0, 0].numpy()
    (info,) = result["maps"]
    npy, f32, png = _map(client, info)
    np.testing.assert_array_equal(npy, direct)
    np.testing.assert_array_equal(f32, direct)
    np.testing.assert_array_equal(png, colourise(direct))
    assert result["target"] == 1 and result["target_names"] == ["red box"]
    assert result["spec"]["method"] == "gradcam" and result["spec"]["relu"] is False
    assert client.get(f"/api/results/{result['key']}.json").json() == result
    # a set of classes, scored as a whole; the default target is the top-1 class
    out = _run(
        client,
        app,
        {"kind": "explain", "image_id": image_id, "method": "gradcam", "target": [2, 1]},
    )
    assert out["result"]["target"] == [1, 2]
    direct = explain(model, x, "gradcam", target=[{1, 2}]).saliency[0, 0].numpy()
    np.testing.assert_array_equal(_map(client, out["result"]["maps"][0])[0], direct)
    out = _run(client, app, {"kind": "explain", "image_id": image_id, "method": "gradcam"})
    assert out["result"]["target"] == 1


def test_rise_job_with_params_agrees(client, app, image_id, model, x):
    body = {
        "kind": "explain",
        "image_id": image_id,
        "method": "rise",
        "params": {"masks": 64, "s": 4},
        "target": 0,
        "seed": 3,
    }
    result = _run(client, app, body)["result"]
    direct = explain(model, x, "rise", target=0, seed=3, masks=64, s=4).saliency[0, 0].numpy()
    np.testing.assert_array_equal(_map(client, result["maps"][0])[1], direct)


def test_cache_hit_does_not_recompute(client, app, image_id, model):
    body = {
        "kind": "explain",
        "image_id": image_id,
        "method": "occlusion",
        "params": {"patch_size": 16, "stride": 16},
        "target": 1,
    }
    first = _run(client, app, body)
    calls = []
    hook = model.net.register_forward_hook(lambda *a: calls.append(1))
    try:
        r = client.post("/api/jobs", json=body)
        again = r.json()
    finally:
        hook.remove()
    assert r.status_code == 202 and again["status"] == "done" and again["cached"] is True
    assert again["result"] == first["result"] and not calls


def test_cwox_job_agrees_with_cwox_and_the_page_rethreshold(client, app, image_id, model, x):
    clusters = [[1, 2], [0]]
    result = _run(
        client,
        app,
        {
            "kind": "cwox",
            "image_id": image_id,
            "method": "gradcam",
            "clusters": clusters,
            "delta": 40,
        },
    )["result"]
    e = CWOX(model, "gradcam", delta=40).explain(x, clusters)
    assert result["clusters"] == clusters and result["delta"] == 40
    assert [r["classes"] for r in result["rows"]] == clusters
    assert result["rows"][0]["names"] == ["red box", "reddish"]
    maps = {m["name"]: m for m in result["maps"]}
    assert set(maps) == {
        "cluster1",
        "cluster1_1",
        "cluster1_1_raw",
        "cluster1_2",
        "cluster1_2_raw",
        "cluster2",
    }
    for i in range(2):
        h = _map(client, maps[f"cluster{i + 1}"])[1]
        np.testing.assert_array_equal(h, e.cluster_maps[0][i].numpy())
    h = _map(client, maps["cluster1"])[1].astype(np.float64)
    for k, c in enumerate(clusters[0]):
        served = _map(client, maps[f"cluster1_{c}"])[0]
        np.testing.assert_array_equal(served, e.class_maps[0][0][k].numpy())
        raw = _map(client, maps[f"cluster1_{c}_raw"])[1]
        # the page's formula (static/draw.js rethreshold): 1[H > percentile(H, δ)] · raw
        for delta in (40, 0, 75, 100):
            mine = np.where(h > np.percentile(h, delta), raw, 0)
            theirs = CWOX(model, "gradcam", delta=delta).explain(x, clusters).class_maps[0][0][k]
            np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-6, atol=1e-7)
    assert result["rows"][1]["members"] == []  # a singleton: no class maps
    assert result["cluster_explainer"]["layer"] == "features"


def test_cwox_job_with_a_black_box_base(client, app, image_id, model, x):
    params = {"masks": 50, "s": 4, "p": 0.5}
    result = _run(
        client,
        app,
        {
            "kind": "cwox",
            "image_id": image_id,
            "method": "rise",
            "params": params,
            "clusters": [[1, 2], [0]],
        },
    )["result"]
    spec = {"method": "rise", **params}
    e = CWOX(model, spec, delta=70, rescale="minmax").explain(x, [[1, 2], [0]])
    assert result["delta"] == 70  # RISE's preset δ and min-max scaling
    h = _map(client, result["rows"][0]["map"])[1]
    np.testing.assert_allclose(h, e.cluster_maps[0][0].numpy(), rtol=1e-5, atol=1e-7)


def test_metrics_job_agrees_with_evaluate(client, app, image_id, model, x):
    source = _run(
        client, app, {"kind": "explain", "image_id": image_id, "method": "gradcam", "target": 1}
    )["result"]
    out = _run(
        client,
        app,
        {
            "kind": "metrics",
            "image_id": image_id,
            "result": source["key"],
            "metrics": ["deletion", "insertion", "sparseness"],
        },
    )["result"]
    saliency = explain(model, x, "gradcam", target=1).saliency
    direct = evaluate(model, x, saliency, ["deletion", "insertion", "sparseness"], target=1)
    for name in ("deletion", "insertion", "sparseness"):
        assert out["values"][name] == pytest.approx(float(direct[name][0]), rel=1e-6)
    curve = out["curves"]["deletion"]
    assert curve["mode"] == "deletion"
    assert curve["fractions"][0] == 0 and curve["fractions"][-1] == 1
    assert len(curve["scores"]) == len(curve["fractions"])
    assert curve["auc"] == pytest.approx(out["values"]["deletion"])
    assert out["higher_is_better"] == {"deletion": False, "insertion": True, "sparseness": True}


def test_metrics_of_a_cwox_map_by_job_id(client, app, image_id, model, x):
    job = _run(
        client,
        app,
        {"kind": "cwox", "image_id": image_id, "method": "gradcam", "clusters": [[1, 2], [0]]},
    )
    out = _run(
        client,
        app,
        {
            "kind": "metrics",
            "image_id": image_id,
            "result": job["id"],
            "map": "cluster1",
            "removal": "blur",
            "metrics": [{"name": "deletion", "params": {"max_steps": 16}}],
        },
    )
    result = out["result"]
    h = torch.from_numpy(_map(client, job["result"]["rows"][0]["map"])[1].copy())[None, None]
    direct = evaluate(model, x, h, {"deletion": make_deletion(blur=True)}, target=[{1, 2}])
    assert result["target"] == [1, 2]
    assert result["values"]["deletion"] == pytest.approx(float(direct["deletion"][0]), rel=1e-6)
    assert len(result["curves"]["deletion"]["scores"]) == 17


def make_deletion(blur: bool):
    from unmask.registry import METRICS

    return METRICS.get("deletion").build(removal="blur" if blur else None, max_steps=16)


def test_removal_job_previews_the_removal(client, app, image_id, x):
    result = _run(client, app, {"kind": "removal", "image_id": image_id, "removal": "gray"})[
        "result"
    ]
    maps = {m["name"]: m for m in result["maps"]}
    mask = _map(client, maps["mask"])[1]
    assert mask.shape == (SIZE, SIZE) and mask.mean() == 0.25  # the centred square
    removed = _map(client, maps["removed"])[1]
    direct = bind(make_removal("gray"), x)(torch.from_numpy(mask.copy())[None, None])
    np.testing.assert_allclose(removed, direct[0].permute(1, 2, 0).numpy(), atol=1e-6)
    png = _map(client, maps["removed"])[2]
    assert png.shape == (SIZE, SIZE, 3)
    # the top quarter of a map, inpainted
    source = _run(
        client, app, {"kind": "explain", "image_id": image_id, "method": "gradcam", "target": 1}
    )["result"]
    result = _run(
        client,
        app,
        {
            "kind": "removal",
            "image_id": image_id,
            "removal": "telea",
            "result": source["key"],
            "fraction": 0.1,
        },
    )["result"]
    mask = _map(client, {m["name"]: m for m in result["maps"]}["mask"])[1]
    assert mask.sum() == round(0.1 * SIZE * SIZE)
    assert result["removal"] == "telea"


def test_cancel_a_running_and_a_queued_job(client, app, image_id):
    served = app.state.served
    body = {
        "kind": "explain",
        "image_id": image_id,
        "method": "rise",
        "params": {"masks": 4000, "batch_size": 8},
        "target": 1,
        "seed": 11,
    }
    with served.lock("toy"):  # the worker waits for the model: the job cannot finish yet
        running = client.post("/api/jobs", json=body).json()
        queued = client.post("/api/jobs", json={**body, "seed": 12}).json()
        assert client.delete(f"/api/jobs/{queued['id']}").json()["status"] == "cancelled"
        assert client.delete(f"/api/jobs/{running['id']}").json()["status"] == "cancelled"
    for job in (running, queued):
        served.jobs.wait(job["id"], 30)
        out = client.get(f"/api/jobs/{job['id']}").json()
        assert out["status"] == "cancelled" and "result" not in out
    # a cancelled computation left nothing in the cache: asking again computes
    again = client.post("/api/jobs", json={**body, "params": {"masks": 16}}).json()
    assert again["cached"] is False
    served.jobs.wait(again["id"], 30)


def test_openapi_and_the_page(client):
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/api/info",
        "/api/images",
        "/api/images/example",
        "/api/images/{image_id}.png",
        "/api/predict",
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/results/{key}.json",
        "/api/results/{key}/{name}.{fmt}",
    } <= paths
    body = spec["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert "discriminator" in str(body) or "oneOf" in str(spec["components"])
    index = client.get("/api").json()
    assert {"path": "/api/predict", "methods": ["POST"]} in [
        {k: r[k] for k in ("path", "methods")} for r in index["routes"]
    ]
    page = client.get("/")
    assert page.status_code == 200 and "unmask explorer" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "draw.js", "dendrogram.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "http://" not in r.text.replace(
            "http://www.w3.org/2000/svg", ""
        )  # nothing fetched from the network


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_cli_refuses_unknown_model(capsys):
    from unmask.cli import main

    assert main(["serve", "--model", "nope"]) == 2
    assert "--model: unknown model 'nope'" in capsys.readouterr().err


def test_a_model_without_the_extra_is_explained_by_name():
    with pytest.raises(ValueError, match="model: unknown model 'nope'"):
        create_app(["nope"])


def test_job_helpers_from_the_same_explainer(model, x):
    # the served spec rebuilds the same explainer: the bench store's key
    e = make_explainer(model, "gradcam", relu=False).explain(x, 1)
    assert e.spec["relu"] is False


def test_bodies_over_the_limit_are_refused_before_parsing(model):
    # the app's own middleware (serve-core's tests cover the upload checks themselves)
    small = create_app({"toy": model}, image_size=SIZE, max_bytes=100_000)

    def chunks():  # a streamed body: no Content-Length to refuse it by
        for _ in range(100):
            yield b"x" * 10_000

    with TestClient(small, base_url=LOOPBACK) as c:
        r = c.post(
            "/api/images",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert r.status_code == 413 and r.json()["detail"].startswith("file: the request is")
        r = c.post("/api/predict", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["detail"].startswith("body: the request is")
        r = c.post("/api/images", files={"file": ("big.png", b"x" * 400_000, "image/png")})
        assert r.status_code == 413
