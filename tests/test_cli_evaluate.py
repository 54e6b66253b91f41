"""`unmask evaluate`: saved maps or a method, table or JSON, one-line errors (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unmask.cli import main
from unmask.cli.evaluate import model_metrics


@pytest.fixture
def files(tmp_path):
    from PIL import Image
    from skimage import data

    img = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(img)
    maps = tmp_path / "maps.npy"
    np.save(maps, np.random.default_rng(0).random((4, 4)).astype(np.float32))
    return img, maps, tmp_path


def test_usable_metrics_are_the_model_metrics():
    names = model_metrics()
    for n in (
        "deletion",
        "insertion",
        "dc",
        "ic",
        "iic",
        "ad",
        "add",
        "deletion_rise",
        "insertion_rise",
    ):
        assert n in names


def test_saved_maps_json_matches_the_api(files, capsys, real_model):
    img, maps, _ = files
    code = main(
        [
            "evaluate",
            str(img),
            "--maps",
            str(maps),
            "--metrics",
            "deletion,ad,dc",
            "--max-steps",
            "8",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"][0]["target"] == 285  # Egyptian cat
    assert set(out["metrics"]) == {"deletion", "ad", "dc"}
    assert out["metrics"]["deletion"]["higher_is_better"] is False
    # the same numbers as the library call
    from unmask.images import load_image
    from unmask.metrics import AverageDrop, Deletion

    x = load_image(str(img), size=224)
    sal = torch.from_numpy(np.load(maps))[None, None]
    dauc = float(Deletion(max_steps=8)(real_model, x, sal)[0])
    ad = float(AverageDrop()(real_model, x, sal)[0])
    assert out["metrics"]["deletion"]["values"][0] == pytest.approx(dauc, abs=1e-6)
    assert out["images"][0]["ad"] == pytest.approx(ad, abs=1e-6)
    assert out["metrics"]["deletion"]["mean"] == pytest.approx(dauc, abs=1e-6)


def test_method_on_the_fly_table(files, capsys):
    img, _, _ = files
    code = main(
        [
            "evaluate",
            str(img),
            "--method",
            "occlusion",
            "--param",
            "patch_size=112",
            "--param",
            "stride=112",
            "--metrics",
            "deletion,insertion",
            "--max-steps",
            "4",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["image", "class", "deletion"]
    assert lines[1].startswith("cat.png") and lines[-1].startswith("mean")
    values = [float(v) for v in lines[1].split()[2:]]
    assert len(values) == 2 and all(0 <= v <= 1 for v in values)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--maps", "MAPS", "--metrics", "pointing_game"],
            "--metrics: 'pointing_game' does not score",
        ),
        (["--maps", "MAPS", "--metrics", "nope"], "--metrics: unknown metric 'nope'"),
        (["--maps", "MAPS", "MAPS"], "--maps: 2 maps for 1 images"),
        (["--maps", "missing.npy"], "--maps: file not found"),
        (["--maps", "IMG"], "--maps: expected .npy files"),
        (["--metrics", "deletion"], "--maps: give saved maps"),
        (["--method", "nope"], "method: unknown method 'nope'"),
        (["--maps", "MAPS", "--removal", "sparkles"], "--removal: unknown removal 'sparkles'"),
        (["--maps", "MAPS", "--max-steps", "0"], "--max-steps: expected a value > 0"),
        (["--maps", "MAPS", "--param", "a=1"], "--param: only with --method"),
    ],
)
def test_bad_input_one_line_exit_2(files, capsys, argv, message):
    img, maps, tmp = files
    argv = [
        str(maps)
        if a == "MAPS"
        else str(img)
        if a == "IMG"
        else str(tmp / a)
        if a.endswith(".npy")
        else a
        for a in argv
    ]
    assert main(["evaluate", str(img), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_bad_map_arrays(files, capsys):
    img, _, tmp = files
    np.save(tmp / "bad.npy", np.zeros((2, 3, 4, 4)))
    assert main(["evaluate", str(img), "--maps", str(tmp / "bad.npy")]) == 2
    assert "--maps: expected a real array (H, W) or (B, H, W)" in capsys.readouterr().err
    np.save(tmp / "nan.npy", np.full((4, 4), np.nan))
    assert main(["evaluate", str(img), "--maps", str(tmp / "nan.npy")]) == 2
    err = capsys.readouterr().err
    assert "--maps:" in err and "NaN" in err


def test_list_metrics(capsys):
    assert main(["evaluate", "--metrics", "list"]) == 0
    out = capsys.readouterr().out
    assert "deletion" in out and "lower is better" in out
