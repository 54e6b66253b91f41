"""Contrastive faithfulness in the bench: CWOX-2s as a method, CAUC / CDROP per cluster and class
pair, stored, reported, and resumed after SIGKILL (the 3-class convolutional region model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from unmask.api import make_explainer
from unmask.bench import Store, load_plan, parse_plan, run
from unmask.bench.report import write_report
from unmask.bench.statistics import contrastive_summary
from unmask.contrastive import cwox
from unmask.explanation import result_key
from unmask.metrics import METRICS
from unmask.testing import conv_region_model

CWOX_TOML = """
name = "contrast"

[model]
name = "unmask.testing:conv_region_model3"
size = 32

[data]
path = "data"

[contrast]
clusters = [[0], [1, 2]]     # red box + reddish against the blue-box class
top = 3

[[methods]]
method = "cwox"
params = {{ base = "gradcam" }}

[[methods]]
method = "gradcam"
{extra}
[[metrics]]
metric = "cauc"

[[metrics]]
metric = "cdrop"

[[metrics]]
metric = "deletion"
params = {{ max_steps = 8, batch_size = 64 }}
"""

OCCLUSION = """
[[methods]]
method = "occlusion"
params = { patch_size = 8, stride = 4, batch_size = 64 }
"""


@pytest.fixture
def contrast_config(tmp_path: Path, bench_files) -> Path:
    write_images, _ = bench_files
    write_images(tmp_path / "data", 3)
    path = tmp_path / "contrast.toml"
    path.write_text(CWOX_TOML.format(extra=OCCLUSION))
    return path


def _pairs(row: dict) -> list[tuple]:
    return [(p["level"], tuple(p["target"]), tuple(p["competitors"])) for p in row["data"]["pairs"]]


def test_cwox_and_plain_maps_scored_per_pair_through_the_store(contrast_config, tmp_path):
    plan = load_plan(contrast_config, allow_code=True)
    assert plan.contrast["clusters"] == [[0], [1, 2]] and plan.config["contrast"] == plan.contrast
    store = tmp_path / "run.sqlite"
    summary = run(plan, store, progress=False, threads=1)
    assert summary.written == 9 and summary.failed == 0
    db = Store.open(store)
    rows = {(r["file"], r["run"], r["metric"]): r for r in db.results()}
    units = {(u["file"], u["run"]): u for u in db.units()}
    model = conv_region_model(3)
    from unmask.bench.data import open_dataset

    data = open_dataset(plan.data["path"])
    cauc, cdrop = METRICS.get("cauc").build(), METRICS.get("cdrop").build()
    for item in data.items:
        x = data.load(item, 32, "crop").x
        # the clusters of the image's top three classes by the fixed partition, top class first
        clusters = [[1, 2], [0]]
        want = [
            ("cluster", (1, 2), (0,)),
            ("cluster", (0,), (1, 2)),
            ("class", (1,), (2,)),
            ("class", (2,), (1,)),
        ]
        e = cwox(model, x, clusters, cluster_explainer="gradcam")
        ref = {
            "cwox": [
                e.cluster_maps[0][0],
                e.cluster_maps[0][1],
                e.class_maps[0][0][0],
                e.class_maps[0][0][1],
            ]
        }
        plain = make_explainer(model, "gradcam")
        ref["gradcam"] = [
            plain.explain(x, [list(t) if lv == "cluster" else t[0]]).saliency[0, 0]
            for lv, t, _ in want
        ]
        occ = make_explainer(model, "occlusion", patch_size=8, stride=4)
        ref["occlusion"] = [
            occ.explain(x, [list(t) if lv == "cluster" else t[0]]).saliency[0, 0]
            for lv, t, _ in want
        ]
        for run_label, maps in ref.items():
            for metric, fn in (("cauc", cauc), ("cdrop", cdrop)):
                row = rows[(item.file, run_label, metric)]
                assert row["status"] == "done" and _pairs(row) == want
                assert row["map"] == ("contrastive" if run_label == "cwox" else "saliency")
                kept = []
                for p, (_, target, comp), m in zip(row["data"]["pairs"], want, maps, strict=True):
                    v = float(
                        fn(
                            model, x, m[None, None].float(), [list(target)], competitors=[set(comp)]
                        )[0]
                    )
                    assert p["zero_map"] == bool(float(m.abs().max()) == 0)
                    if math.isnan(v):
                        assert p["value"] is None
                    else:
                        assert p["value"] == pytest.approx(v, rel=1e-9, abs=1e-12)
                        if not p["zero_map"]:
                            kept.append(v)
                assert row["value"] == pytest.approx(sum(kept) / len(kept))
        # the cwox unit: the map of the target's cluster ({1, 2} holds the label 1), its key
        u = units[(item.file, "cwox")]
        spec = json.loads(u["spec"])
        assert spec["method"] == "cwox" and spec["base"] == "gradcam" and spec["delta"] == 50.0
        assert spec["clusters"] == clusters
        assert u["key"] == result_key(spec, model.name, x[0], 1)
        stored = db.map(item.file, "cwox")
        assert torch.equal(torch.from_numpy(stored), e.cluster_maps[0][0].float())
        assert rows[(item.file, "cwox", "deletion[max_steps=8]")]["status"] == "done"
    # CWOX-2s's class map of "reddish" against "red box" is zero (class 2 = half of class 1
    # everywhere): left out of the unit's mean and of the paired comparison
    summ = contrastive_summary(db)
    table = {(t["run"], t["level"]): t for t in summ["cauc"]["table"]}
    assert table[("cwox", "class")]["left_out"] == 3
    assert table[("gradcam", "class")]["left_out"] == 0
    paired = {(p["against"], p["level"]): p for p in summ["cauc"]["paired"]}
    assert set(paired) == {
        ("gradcam", "cluster"),
        ("gradcam", "class"),
        ("occlusion", "cluster"),
        ("occlusion", "class"),
    }
    assert paired[("gradcam", "cluster")]["pairs"] == 6
    assert paired[("gradcam", "class")]["pairs"] == 3
    page = write_report(store, tmp_path / "report")
    text = page.read_text()
    assert "Contrastive faithfulness" in text and 'class="paired"' in text
    assert json.loads((tmp_path / "report" / "results.json").read_text())["contrastive"] == summ


def test_contrastive_run_resumes_after_sigkill(tmp_path, bench_files, kill_and_resume):
    write_images, _ = bench_files
    write_images(tmp_path / "data", 3)
    config = tmp_path / "contrast.toml"
    config.write_text(CWOX_TOML.format(extra=OCCLUSION))
    got, _ = kill_and_resume(config, tmp_path, (4,))  # 9 units: cwox, gradcam, occlusion x 3
    assert all(s == {"done": 3, "failed": 0, "pending": 0} for s in got.status().values())


def test_a_contrastive_metric_key_depends_on_the_contrast_table(contrast_config, tmp_path):
    plan = load_plan(contrast_config, allow_code=True)
    run(plan, tmp_path / "a.sqlite", progress=False, limit=1)
    cfg = json.loads(json.dumps(plan.config))
    other = {**cfg, "contrast": {**cfg["contrast"], "pairs": ["cluster"]}}
    other["methods"] = [
        {"method": m["method"], "params": m["params"], "label": m["label"]} for m in cfg["methods"]
    ]
    other["metrics"] = [
        {"metric": m["metric"], "params": m["params"], "label": m["label"]} for m in cfg["metrics"]
    ]
    plan2 = parse_plan(other, allow_code=True)
    assert plan2.config_hash != plan.config_hash
    run(plan2, tmp_path / "b.sqlite", progress=False, limit=1)
    a = {(r["run"], r["metric"]): r for r in Store.open(tmp_path / "a.sqlite").results()}
    b = {(r["run"], r["metric"]): r for r in Store.open(tmp_path / "b.sqlite").results()}
    assert a[("gradcam", "cauc")]["key"] != b[("gradcam", "cauc")]["key"]
    deletion = ("gradcam", "deletion[max_steps=8]")
    assert a[deletion]["key"] == b[deletion]["key"]
    assert len(b[("gradcam", "cauc")]["data"]["pairs"]) == 2  # cluster pairs only


def test_an_image_without_pairs_has_no_contrastive_row(tmp_path, bench_files):
    write_images, _ = bench_files
    write_images(tmp_path / "data", 1)
    config = tmp_path / "c.toml"
    text = CWOX_TOML.format(extra="").replace("top = 3", "top = 1")
    config.write_text(text)
    store = tmp_path / "run.sqlite"
    run(load_plan(config, allow_code=True), store, progress=False)
    metrics = {(r["run"], r["metric"]) for r in Store.open(store).results()}
    assert metrics == {("cwox", "deletion[max_steps=8]"), ("gradcam", "deletion[max_steps=8]")}


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"contrast": {"treee": "auto"}}, "contrast.treee: unknown key; expected one of: tree"),
        ({"contrast": {"tree": "missing.json"}}, "contrast.tree: no such tree file"),
        ({"contrast": {"clusters": [[0], [0, 1]]}}, "contrast.clusters: a class appears in two"),
        ({"contrast": {"pairs": ["pixel"]}}, "contrast.pairs: expected a non-empty list of"),
        (
            {"methods": [{"method": "cwox", "params": {"base": "nope"}}]},
            "methods[0].params.base: expected a registered method",
        ),
        (
            {"methods": [{"method": "cwox", "params": {"deltaa": 3}}]},
            "methods[0].params.deltaa: not a hyperparameter of method 'cwox'; expected one of: "
            "base, delta, negative, rescale, batch_size",
        ),
        (
            {"methods": [{"method": "cwox", "removals": ["blur"]}]},
            "methods[0].removals: method 'cwox' takes no removal",
        ),
    ],
)
def test_bad_contrast_and_cwox_settings(changes, message):
    cfg = {
        "model": {"name": "unmask.testing:conv_region_model3"},
        "data": {"path": "."},
        "methods": [{"method": "gradcam"}],
        "metrics": ["cauc"],
        **changes,
    }
    with pytest.raises(ValueError) as info:
        parse_plan(cfg, allow_code=True)
    assert str(info.value).startswith(message)


def test_cwox_preset_is_listed_and_parses():
    from unmask.bench.presets import PRESETS, preset_path

    assert "cwox" in PRESETS
    plan = load_plan(preset_path("cwox"), data=".")
    assert [m.method for m in plan.methods] == ["cwox", "gradcam"]
    assert [m.metric for m in plan.metrics] == ["cauc", "cdrop"]
    assert plan.contrast["tree"] == "auto"
