"""The HTML report: numbers that match the store, and a page that a real headless browser
(Debian's chromium) renders with its tables and images (a screenshot is saved)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmask.bench import Store, load_plan, run
from unmask.bench.report import write_report
from unmask.bench.statistics import FEW_IMAGES, bootstrap_ci

EXTRA_METHODS = """
[[methods]]
method = "pixelmask"
params = { steps = 10, noise_bs = 1 }
"""
EXTRA_METRICS = """
[[metrics]]
metric = "cp_l1_pixel"

[[metrics]]
metric = "hallucination_score"
params = { detector = "canny" }

[[metrics]]
metric = "ssim"
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory, bench_files) -> tuple[Path, Path]:
    write_images, write_config = bench_files
    root = tmp_path_factory.mktemp("report")
    write_images(root / "data", 4, bad=3)
    plan = load_plan(write_config(root, EXTRA_METHODS, EXTRA_METRICS), allow_code=True)
    store = root / "run.sqlite"
    run(plan, store, progress=False)
    return store, write_report(store, root / "out", examples=2, bootstrap=200)


def test_report_numbers_match_the_store(report) -> None:
    store_path, page = report
    store = Store.open(store_path)
    rows = list(csv.DictReader((page.parent / "results.csv").open()))
    assert len(rows) == len(store.results())
    summary = json.loads((page.parent / "results.json").read_text())["summary"]
    for label, s in summary.items():
        for run_label, cell in s["methods"].items():
            vals = [
                float(r["value"])
                for r in rows
                if r["metric"] == label and r["run"] == run_label and r["status"] == "done"
            ]
            assert cell["n"] == len(vals) == 3
            assert cell["mean"] == pytest.approx(np.mean(vals))
            lo, hi = cell["ci95"]
            assert lo <= cell["mean"] + 1e-12 and cell["mean"] <= hi + 1e-12
            assert cell["few_images"] is True  # 3 images < FEW_IMAGES: flagged
        means = {r: c["mean"] for r, c in s["methods"].items()}
        best = max(means.values()) if s["higher_is_better"] else min(means.values())
        assert set(s["best"]) == {r for r, v in means.items() if v == best}
    # which map each metric read is recorded: x̂ methods get the relevance map for ranking metrics
    maps = {(r["run"], r["metric"]): r["map"] for r in rows}
    assert maps[("pixelmask", "deletion[max_steps=8]")] == "relevance"
    assert maps[("occlusion", "deletion[max_steps=8]")] == "saliency"
    assert maps[("pixelmask", "cp_l1_pixel")] == "x_hat"
    assert ("occlusion", "cp_l1_pixel") not in maps  # explanation-image metrics: x̂ methods only
    html = page.read_text()
    assert "http://" not in html and "https://" not in html  # self-contained
    assert html.count("<table") >= 6 and html.count("data:image/png;base64,") >= 5
    assert f"fewer than {FEW_IMAGES} images" in html and "] †</td>" in html


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    v = np.random.default_rng(0).normal(size=50)
    assert bootstrap_ci(v, seed=3) == bootstrap_ci(v, seed=3)
    lo, hi = bootstrap_ci(v)
    assert lo < v.mean() < hi


PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  document.title = "PROBE " + JSON.stringify({tables: document.querySelectorAll("table").length,
    rows: document.querySelectorAll("tr.best").length, images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length});
});
</script>"""


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not installed (apt-get install -y chromium)",
)
def test_report_renders_in_headless_chromium(report) -> None:
    _, page = report
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    flags = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = json.loads(re.search(r"<title>PROBE (.*?)</title>", dom).group(1))
    assert found["tables"] >= 6 and found["rows"] >= 1
    assert found["images"] >= 5 and found["decoded"] == found["images"]  # every plot decodes
    shot = page.with_name("screenshot.png")
    subprocess.run(
        [*flags, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as im:
        assert im.size == (1200, 2400)
        assert len(np.unique(np.asarray(im.convert("L")))) > 20  # not a blank page


def test_directions_come_from_the_registry_and_unknown_metrics_are_not_ranked():
    from unmask.bench.report import _direction
    from unmask.bench.statistics import direction
    from unmask.registry import METRICS

    for entry in METRICS:
        assert direction(entry.name) is entry.factory.higher_is_better
    assert direction("deletion") is False and direction("insertion") is True
    assert direction("no_such_metric") is None  # was taken as higher-is-better before
    assert _direction(None) == "direction unknown: not ranked"
