"""The engine policy on every path that runs a job: ``unmask explain``, ``evaluate``, ``cwox``,
``bench run`` and the explorer's jobs ask :func:`unmask.onnx_engine.prepare_for` with the job's
model evaluations on the scoring path (the registry's declared costs, counted here naively), and
it exports (``prepare``) exactly when the job repays it. ``prepare`` is replaced by a counter:
nothing is exported for real.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from test_execution import _net_model

from unmask import onnx_engine
from unmask.cli import main
from unmask.registry import METRICS
from unmask.testing import conv_region_model, region_images


class _Policy:
    """What the jobs asked (evaluations) and which models were prepared."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.prepared: list[object] = []


@pytest.fixture
def policy(monkeypatch, tmp_path) -> _Policy:
    monkeypatch.setenv("UNMASK_CACHE_DIR", str(tmp_path / "cache"))  # nothing cached
    monkeypatch.setattr(onnx_engine, "_MEMORY", OrderedDict())
    seen = _Policy()
    real = onnx_engine.engine_for

    def engine_for(model, evaluations, **kw):
        if evaluations:  # 0: the engine running now (the timer's and batch-size search's key)
            seen.asked.append(evaluations)
        return real(model, evaluations, **kw)

    monkeypatch.setattr(onnx_engine, "engine_for", engine_for)
    monkeypatch.setattr(onnx_engine, "prepare", lambda model: seen.prepared.append(model))
    return seen


def _positions(size: int, patch: int, stride: int) -> int:
    return ((size - patch) // stride + 1) ** 2


def _deletion(size: int, **params) -> int:
    return METRICS.get("deletion").cost(params, size)


def test_prepare_for_exports_only_long_jobs_of_auto_models(policy, monkeypatch):
    monkeypatch.setattr(onnx_engine, "EXPORT_AFTER", 100)
    model = _net_model().fast("auto")
    assert onnx_engine.prepare_for(model, 99) == "channels_last" and policy.prepared == []
    assert onnx_engine.prepare_for(model, 100) == "onnx" and policy.prepared == [model]
    explicit = _net_model().fast("channels_last")
    assert onnx_engine.prepare_for(explicit, 10**6) == "channels_last"
    assert policy.prepared == [model]


def _cli_model(monkeypatch):
    import unmask.models

    model = _net_model().fast("auto")
    monkeypatch.setattr(unmask.models, "load_model", lambda *a, **k: model)
    return model


def test_cli_evaluate_counts_the_method_and_the_metrics(policy, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    model = _cli_model(monkeypatch)
    argv = ["evaluate", "--example", "coffee", "--size", "32", "--method", "occlusion"]
    argv += ["--param", "patch_size=8", "--param", "stride=8", "--metrics", "deletion", "--json"]
    monkeypatch.setattr(onnx_engine, "EXPORT_AFTER", 10**6)
    assert main(argv) == 0
    # the top-1 pass, occlusion's positions and unoccluded image, deletion's curve
    want = 1 + (_positions(32, 8, 8) + 1) + _deletion(32)
    assert policy.asked == [want] and policy.prepared == []
    monkeypatch.setattr(onnx_engine, "EXPORT_AFTER", want)
    assert main(argv) == 0
    assert policy.prepared == [model]
    capsys.readouterr()


def test_cli_evaluate_of_a_gradient_method_counts_only_the_metric(policy, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _cli_model(monkeypatch)
    argv = ["evaluate", "--example", "coffee", "--size", "32", "--method", "gradient"]
    assert main([*argv, "--metrics", "deletion", "--json"]) == 0
    assert policy.asked == [1 + _deletion(32)]


class _Stop(Exception):
    """Ends a command once the policy was asked (the job itself is not under test)."""


def test_cli_cwox_counts_each_stage_once(policy, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNMASK_DEBUG", "1")  # the stop propagates
    _cli_model(monkeypatch)
    asked = onnx_engine.engine_for

    def stop(model, evaluations, **kw):
        asked(model, evaluations, **kw)
        raise _Stop

    monkeypatch.setattr(onnx_engine, "engine_for", stop)
    image = tmp_path / "img.png"
    arr = (region_images(1, 32)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(image)
    with pytest.raises(_Stop):
        main(["cwox", str(image), str(image), "--base", "lime", "--clusters", "0,1;2"])
    # CWOX's LIME preset: 2000 samples at both stages (one explainer, every target in one
    # pass), after the probabilities; per image
    assert policy.asked == [2 * (1 + 2000)]


BENCH_TOML = """
name = "policy"

[model]
name = "test_engine_policy:small_auto"
size = 32

[data]
path = "{data}"

[[methods]]
method = "occlusion"
params = {{ patch_size = 8, stride = 8, batch_size = 8 }}

[[methods]]
method = "gradient"
params = {{}}

[[metrics]]
metric = "deletion"
params = {{ max_steps = 8, batch_size = 8 }}
"""


def small_auto():
    """The bench's model factory (``test_engine_policy:small_auto``)."""
    return _net_model().fast("auto")


def test_bench_run_prepares_once_for_the_pending_units(policy, monkeypatch, tmp_path):
    from unmask.bench import load_plan, run

    data = tmp_path / "data"
    data.mkdir()
    for i, img in enumerate(region_images(3, 32)):
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(data / f"img{i}.png")
    (data / "labels.csv").write_text(
        "file,class_index,name\n" + "".join(f"img{i}.png,{i},c{i}\n" for i in range(3))
    )
    config = tmp_path / "plan.toml"
    config.write_text(BENCH_TOML.format(data=data))
    deletion = _deletion(32, max_steps=8)
    occlusion = 1 + (_positions(32, 8, 8) + 1) + deletion  # the target pass, map, metric
    gradient = 1 + deletion  # gradients are not on the scoring path
    monkeypatch.setattr(onnx_engine, "EXPORT_AFTER", 10**6)
    store = tmp_path / "store.sqlite"
    run(load_plan(config, allow_code=True), store, progress=False, threads=1, limit=2)
    assert policy.asked == [2 * (occlusion + gradient)] and policy.prepared == []
    monkeypatch.setattr(onnx_engine, "EXPORT_AFTER", occlusion + gradient)
    plan = load_plan(config, allow_code=True)
    run(plan, store, progress=False, threads=1)  # resumed: the third image only
    assert policy.asked[1:] == [occlusion + gradient] and len(policy.prepared) == 1
    run(plan, store, progress=False, threads=1)  # nothing pending: nothing asked
    assert len(policy.asked) == 2


def test_explorer_jobs_never_export_in_the_server(policy, monkeypatch):
    """The exporter peaks above 2 GB on EfficientNet-Lite0, past the server's memory bound: the
    explorer runs a graph prepared ahead (`unmask models --prepare`) or channels_last."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from unmask.serve import create_app

    model = conv_region_model(3).fast("auto")
    app = create_app({"toy": model}, image_size=32)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        image = client.post("/api/images/example", json={"name": "coffee"}).json()["image_id"]
        monkeypatch.setattr(onnx_engine, "EXPORT_AFTER", 2)
        body = {"kind": "explain", "model": "toy", "image_id": image, "method": "occlusion"}
        r = client.post("/api/jobs", json={**body, "target": 1, "params": {"patch_size": 4}})
        assert r.status_code == 202, r.text
        assert app.state.served.jobs.wait(r.json()["id"], 60).status == "done"
    assert policy.prepared == []


def test_a_pre_hook_on_the_classifier_keeps_the_fast_path():
    """The explorer's cancel check is a pre-hook on the Classifier: ``infer`` calls it on every
    call (and honours a replaced input) without falling back to eager; a hook inside the
    network still sees the network run (eager)."""
    model = _net_model()
    x = region_images(2, 24)
    with torch.inference_mode():
        flipped = model(x.flip(0))  # eager, no hook
    model.fast("channels_last")
    calls: list[int] = []
    fast: list[int] = []
    real = model._fast_net
    model._fast_net = lambda z, copy_only=False: fast.append(1) or real(z, copy_only)
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    with torch.inference_mode():
        model.infer(x)
    handle.remove()
    assert calls == [2] and fast == [1]
    handle = model.register_forward_pre_hook(lambda m, args: (args[0].flip(0),))
    with torch.inference_mode():
        got = model.infer(x)
    handle.remove()
    assert fast == [1, 1]
    torch.testing.assert_close(got, flipped, rtol=1e-4, atol=1e-4)
    handle = model.net.register_forward_pre_hook(lambda m, args: None)
    with torch.inference_mode():
        model.infer(x)
    handle.remove()
    assert fast == [1, 1]


def test_batch_size_key_records_the_engine_auto_runs(policy, monkeypatch):
    from unmask.tuning import batch_size_key

    model = _net_model().fast("auto")
    assert "|channels_last|" in batch_size_key(model, (3, 24, 24))  # nothing cached
    monkeypatch.setattr(onnx_engine, "cached", lambda *a: True)
    assert "|onnx|" in batch_size_key(model, (3, 24, 24))
    assert "|eager|" in batch_size_key(model.fast("eager"), (3, 24, 24))
