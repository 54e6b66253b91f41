"""The explorer's page in headless Chromium (Playwright for Python driving Debian's chromium).

A uvicorn server on a free loopback port serves a tiny model (``conv_region_model(3)``, with a
two-cluster label tree); the test uploads an image, runs Grad-CAM and CWOX, moves a δ slider,
merges two clusters in the dendrogram, downloads the JSON, draws the deletion / insertion
curves and a removal preview, and checks its screenshots are not blank. The real-model
variant (EfficientNet-Lite0 on a bundled photo) is marked slow.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)


def _node(node_id: str, level: int, text: str = "", children: tuple = ()) -> dict:
    return {
        "id": node_id,
        "text": text,
        "data": {"name": node_id, "level": level, "percentage": 0.5},
        "children": list(children),
    }


#: {red box, reddish} and {blue box B} under one root: two clusters at cut level 0.
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn serving ``app`` on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def toy_server():
    from unmask.contrastive import load_tree
    from unmask.serve import create_app
    from unmask.testing import conv_region_model

    app = create_app(
        {"toy": conv_region_model(3)},
        image_size=64,
        trees={"toy": load_tree(TOY_TREE, num_classes=3)},
    )
    with Server(app) as server:
        yield server


def _not_blank(path, min_std: float = 8.0) -> None:
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert a.std() > min_std, f"{path} looks blank (pixel std {a.std():.2f})"


def _canvas(page, selector: str) -> np.ndarray:
    data = page.eval_on_selector(
        selector, "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
    )
    return np.asarray(data, dtype=np.uint8)


def _page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(server.url + "/")
    page.wait_for_selector("#method option[value=gradcam]", state="attached")
    return page, errors


def test_upload_gradcam_cwox_delta_merge_download(browser, toy_server, tmp_path):
    from unmask.testing import region_images

    image = tmp_path / "red box <b>.png"  # a file name that is markup: escaped, never parsed
    arr = (region_images(1, 64)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(image)
    page, errors = _page(browser, toy_server)

    # upload -> the top classes
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#classes li.cls >> nth=2")
    page.select_option("#top-mode", "k")  # the top 3 classes by count (red box alone has 0.95)
    page.wait_for_selector("#classes li.cls.chosen >> nth=2")
    names = page.locator("#classes li.cls .name").all_text_contents()
    assert names[0] == "red box" and sorted(names) == ["blue box B", "red box", "reddish"]
    assert page.locator("#clusters li").count() == 2  # {red box, reddish}, {blue box B}

    # Grad-CAM, one map
    page.click("#tabs button[data-tab=single]")
    page.select_option("#method", "gradcam")
    page.click("#run")
    page.wait_for_selector("#results figure.map canvas")
    page.wait_for_function("() => document.getElementById('job-text').textContent.includes('done')")
    single = _canvas(page, "#results figure.map canvas")
    assert single.reshape(-1, 4)[:, :3].std() > 5  # a heat map over the image, not blank
    page.screenshot(path=tmp_path / "gradcam.png", full_page=True)

    # CWOX: a row per cluster, class maps for the two-class cluster
    page.click("#tabs button[data-tab=cwox]")
    page.click("#run")
    page.wait_for_selector(".cwox-row[data-cluster='2']")
    assert page.locator(".cwox-row").count() == 2
    assert page.locator(".cwox-row[data-cluster='1'] figure.map").count() == 3
    row1 = page.locator(".cwox-row[data-cluster='1'] .row-head strong").text_content()
    assert row1 == "red box · reddish"
    page.screenshot(path=tmp_path / "cwox.png", full_page=True)

    # the page's re-threshold (static/draw.js) on the raw maps gives the server's class map
    key = page.locator("#results p[data-key]").get_attribute("data-key")
    worst = page.evaluate(
        """async (key) => {
        const { rethreshold } = await import("/static/draw.js");
        const get = async (n) => new Float32Array(await (await fetch(
            `/api/results/${key}/${n}.f32`)).arrayBuffer());
        const h = await get("cluster1"), raw = await get("cluster1_1_raw");
        const served = await get("cluster1_1");
        const mine = rethreshold(h, raw, 50);
        return [Math.max(...mine.map((v, i) => Math.abs(v - served[i]))), Math.max(...served)];
    }""",
        key,
    )
    assert worst[0] < 1e-6 and worst[1] > 0

    # the δ slider re-thresholds the class map in the browser (no request)
    member = ".cwox-row[data-cluster='1'] canvas[data-map='cluster1_1']"
    before = _canvas(page, member)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.eval_on_selector(
        ".cwox-row[data-cluster='1'] .delta-slider",
        "s => { s.value = 95; s.dispatchEvent(new Event('input')); }",
    )
    after = _canvas(page, member)
    assert (before != after).any(), "moving δ did not change the class map"
    assert page.locator(".cwox-row[data-cluster='1'] .delta-value").text_content() == "95"
    assert not requests

    # downloads: the numbers as JSON
    with page.expect_download() as info:
        page.click("#download-json")
    data = json.loads(open(info.value.path()).read())
    assert data["kind"] == "cwox" and data["clusters"] == [[1, 2], [0]]

    # merge the two clusters: a click on the root of the dendrogram
    page.click("#dendrogram g.node[data-id='Z2']")
    assert page.locator("#clusters li").count() == 1
    page.click("#run")
    page.wait_for_function("() => document.querySelectorAll('.cwox-row').length === 1")
    page.wait_for_selector(".cwox-row[data-cluster='1'] figure.map >> nth=3")
    # a click on the merged cluster's node splits it again
    page.click("#dendrogram g.node[data-id='Z2']")
    assert page.locator("#clusters li").count() == 2

    # deletion / insertion curves of the selected map, and a removal preview
    page.click("#metrics-run")
    page.wait_for_selector("#curves polyline >> nth=1", state="attached")
    assert page.locator("#metric-values tr").count() == 2
    page.select_option("#removal", "blur")
    page.click("#removal-run")
    page.wait_for_selector("#removal-out canvas >> nth=1")
    page.screenshot(path=tmp_path / "final.png", full_page=True)
    page.locator(".cwox-row").first.screenshot(path=tmp_path / "row.png")

    for shot in ("gradcam.png", "cwox.png", "final.png", "row.png"):
        _not_blank(tmp_path / shot)
    assert "red box &lt;b&gt;" not in page.content()  # nothing was injected as markup
    assert not errors, errors
    page.close()


def test_cwox_form_shows_the_preset_values(browser, toy_server):
    """Issue 26: the CWOX tab's form shows what runs (Grad-CAM's preset relu=false), not the
    method's default; the other tabs show the method's default (relu=true)."""
    page, errors = _page(browser, toy_server)
    page.select_option("#method", "gradcam")
    relu = "#params input[data-name=relu]"
    assert "relu=false" in page.locator("#cwox-preset").text_content()
    assert not page.is_checked(relu)  # the page opens on the CWOX tab
    page.click("#tabs button[data-tab=single]")
    assert page.is_checked(relu)
    page.click("#tabs button[data-tab=cwox]")
    assert not page.is_checked(relu)
    assert page.evaluate("() => document.querySelector('#params').dataset.tab") == "cwox"
    assert not errors, errors
    page.close()


def test_page_colours_maps_as_viz_does(browser, toy_server):
    """static/draw.js paints a map over an image as unmask.viz.overlay does (within one level
    of 255, the page's colour tables being rounded), with the same range caption."""
    import torch

    from unmask import viz

    page, errors = _page(browser, toy_server)
    h, w = 6, 8
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, h, w, generator=gen)
    image8 = (image * 255).round() / 255  # what a canvas holds
    maps = {
        "narrow": torch.linspace(0.78, 0.88, h * w).reshape(1, 1, h, w),  # a RISE-like map
        "signed": torch.randn(1, 1, h, w, generator=gen),
    }
    for name, m in maps.items():
        got = page.evaluate(
            """async ([values, pixels, h, w]) => {
            const { drawOverlay, scaleCaption, colourScale } = await import("/static/draw.js");
            const canvas = document.createElement("canvas");
            const image = new ImageData(Uint8ClampedArray.from(pixels), w, h);
            const v = Float32Array.from(values);
            drawOverlay(canvas, v, h, w, image, 0.5);
            const data = canvas.getContext("2d").getImageData(0, 0, w, h).data;
            return [Array.from(data), scaleCaption(colourScale(v))];
        }""",
            [
                m.flatten().tolist(),
                torch.cat([image8[0] * 255, torch.full((1, h, w), 255.0)])
                .permute(1, 2, 0)
                .flatten()
                .round()
                .int()
                .tolist(),
                h,
                w,
            ],
        )
        rgba = np.asarray(got[0], dtype=np.float64).reshape(h, w, 4)
        want = viz.overlay(image8, m, alpha=0.5)[0].permute(1, 2, 0).numpy() * 255
        assert np.abs(rgba[..., :3] - want).max() <= 1.01, name
        assert got[1] == viz.colour_scale(m).caption(), name
    assert not errors, errors
    page.close()


def test_bad_upload_shows_the_message(browser, toy_server, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    page, errors = _page(browser, toy_server)
    page.set_input_files("#file", str(bad))
    page.wait_for_function("() => document.getElementById('image-error').textContent.length > 0")
    assert "image" in page.locator("#image-error").text_content().lower()
    page.close()


def test_cancel_button_stops_a_job(browser, toy_server):
    page, errors = _page(browser, toy_server)
    page.select_option("#example", "chelsea")
    page.wait_for_selector("#classes li.cls.chosen")
    page.click("#tabs button[data-tab=single]")
    page.select_option("#method", "rise")
    page.fill("#params input[data-name=masks]", "100000")  # long enough to be cancelled
    page.click("#run")
    page.wait_for_selector("#job-text:has-text('running')")
    page.click("#cancel")
    page.wait_for_selector("#job-error:has-text('cancelled')")
    assert page.locator("#run").is_enabled()
    assert not errors, errors
    page.close()


@pytest.mark.slow
def test_real_model_cwox(browser, tmp_path):
    from unmask.serve import create_app

    with Server(create_app(None)) as server:
        page, errors = _page(browser, server)
        page.select_option("#example", "coffee")
        page.wait_for_selector("#classes li.cls.chosen")
        page.click("#run")
        page.wait_for_selector(".cwox-row canvas", timeout=300_000)
        page.screenshot(path=tmp_path / "real.png", full_page=True)
        _not_blank(tmp_path / "real.png")
        assert not errors, errors
        page.close()
