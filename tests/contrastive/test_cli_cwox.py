"""`unmask cwox`: the figure, the JSON, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import unmask.models
from unmask.cli import main

CELLO = Path("/work/shared/data/cwox/cello_guitar.jpg")


def _tiny_conv_model() -> unmask.models.Classifier:
    """A fast stand-in with the 1000 ImageNet classes and a spatial feature layer."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 8, stride=8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 1000),
    )
    return unmask.models.Classifier.wrap(net, input_size=None, name="tiny-conv", feature_layer="1")


@pytest.fixture(autouse=True)
def models(monkeypatch, request):
    real = unmask.models.load_model
    chosen = (
        request.getfixturevalue("real_model")
        if "real_model" in request.fixturenames
        else _tiny_conv_model()
    )

    def load(name="efficientnet_lite0", **kw):
        if name == "efficientnet_lite0" and not kw.get("weights"):
            return chosen
        return real(name, **kw)

    monkeypatch.setattr(unmask.models, "load_model", load)


@pytest.fixture
def png(tmp_path) -> Path:
    gen = torch.Generator().manual_seed(1)
    arr = (torch.rand(64, 64, 3, generator=gen) * 255).byte().numpy()
    path = tmp_path / "noise.png"
    Image.fromarray(arr).save(path)
    return path


def test_json_lists_clusters_classes_probabilities_and_files(tmp_path, png, capsys):
    out = tmp_path / "fig.png"
    assert (
        main(
            ["cwox", str(png), str(png), "--size", "64", "--top", "4", "--out", str(out), "--json"]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert out.is_file() and data["tree"] == "resnet50" and data["base"] == "gradcam"
    assert data["delta"] == 50.0 and data["cluster_explainer"]["relu"] is False
    assert len(data["images"]) == 2
    for image in data["images"]:
        assert image["outputs"] == [str(out)]
        classes = [c for cl in image["clusters"] for c in cl["classes"]]
        assert len(classes) == 4 and len(set(classes)) == 4
        for cl in image["clusters"]:
            assert cl["probability"] == pytest.approx(sum(cl["class_probabilities"]))
            assert cl["class_maps"] == (len(cl["classes"]) > 1)


def test_explicit_clusters_and_default_file_names(tmp_path, png, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        main(["cwox", str(png), "--size", "64", "--clusters", "486,889;402", "--delta", "30"]) == 0
    )
    text = capsys.readouterr().out
    assert "cluster 1" in text and "cluster 2" in text and "delta 30" in text
    assert (tmp_path / "unmask-noise-cwox-gradcam.png").is_file()


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--delta", "101"], "--delta"),
        (["--clusters", "486,,;"], "--clusters"),
        (["--clusters", "486;1000"], "--clusters[1]: class 1000 is outside"),
        (["--clusters", "486;486"], "--clusters: class 486 appears twice"),
        (["--tree", "nope.json"], "--tree"),
        (["--cut-level", "7"], "--cut-level"),
        (["--top", "0"], "--top"),
        (["--top-p", "1.5"], "--top-p"),
        (["--out", "/no/such/dir/x.png"], "--out"),
    ],
)
def test_bad_input_one_line_exit_2(png, capsys, argv, text):
    code = main(["cwox", str(png), "--size", "64", *argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unmask: error: ") and text in lines[0], err


@pytest.mark.slow
@pytest.mark.skipif(not CELLO.is_file(), reason="cello_guitar.jpg not found")
@pytest.mark.parametrize("tree", ["resnet50", "data-free"])
def test_cello_guitar_real_model(tmp_path, capsys, real_model, tree):
    """The seed's example: the cello (right half) and the guitar (left half) clusters."""
    out = tmp_path / "cello.png"
    assert main(["cwox", str(CELLO), "--tree", tree, "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert out.is_file()
    clusters = [cl["classes"] for cl in data["images"][0]["clusters"]]
    cello = next(c for c in clusters if 486 in c)
    assert 402 in [c for cl in clusters for c in cl]  # acoustic guitar among the top classes
    if tree == "resnet50":
        assert cello == [486] and [402, 546, 420] in clusters
        from unmask.contrastive import cwox
        from unmask.images import load_image

        x = load_image(CELLO, size=224)
        e = cwox(real_model, x, "resnet50")
        i_cello = e.clusters[0].index([486])
        i_guitar = e.clusters[0].index([402, 546, 420])
        h = e.cluster_maps[0]
        right = lambda m: float(m[:, 112:].sum() / m.sum())  # noqa: E731
        assert right(h[i_cello]) > 0.8 and right(h[i_guitar]) < 0.3
