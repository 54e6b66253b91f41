"""The command line: `unmask explain`, `methods`, `models`, and one clear line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unmask.models
from unmask.cli import main

#: Four 112x112 patches: a handful of forward passes per image.
FAST = ["--param", "patch_size=112", "--param", "stride=112", "--no-progress"]


def _tiny_imagenet_model() -> unmask.models.Classifier:
    """A microsecond-fast stand-in with the 1000 ImageNet classes, for tests of the command's
    behaviour; the real embedded model runs in the tests that check its answers."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 1000)
    )
    return unmask.models.Classifier.wrap(net, input_size=None, name="tiny")


@pytest.fixture(autouse=True)
def models(monkeypatch, request):
    """The CLI loads models by name at every run: serve the tiny model for "efficientnet_lite0"
    unless a test asks for the real one (``real_model`` fixture), which is loaded once."""
    real = unmask.models.load_model
    chosen = (
        request.getfixturevalue("real_model")
        if "real_model" in request.fixturenames
        else _tiny_imagenet_model()
    )

    def load(name="efficientnet_lite0", **kw):
        if name == "efficientnet_lite0" and not kw.get("weights"):
            return chosen
        return real(name, **kw)

    monkeypatch.setattr(unmask.models, "load_model", load)


@pytest.fixture
def cat_png(tmp_path) -> Path:
    from unmask.images import example_image

    path = tmp_path / "cat.png"
    Image.fromarray(example_image("chelsea")).save(path)
    return path


def _error(capsys, argv) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unmask: error: "), err
    assert "Traceback" not in err and out == ""
    return lines[0]


def test_explain_example_prints_top_classes(tmp_path, monkeypatch, capsys, real_model):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--example", "chelsea", *FAST]) == 0
    out = capsys.readouterr().out
    assert "example:chelsea: top-5 classes (efficientnet_lite0)" in out
    assert "Egyptian cat" in out and "explained class 285" in out
    assert "wrote unmask-chelsea-occlusion.png" in out
    with Image.open(tmp_path / "unmask-chelsea-occlusion.png") as img:
        assert img.format == "PNG" and img.width > 500


def test_explain_files_json_out_and_map(tmp_path, cat_png, capsys):
    out_png, npy = tmp_path / "grid.png", tmp_path / "maps.npy"
    arr = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)  # a float image as .npy
    np.save(tmp_path / "img.npy", arr)
    argv = [
        "explain",
        str(cat_png),
        str(tmp_path / "img.npy"),
        "--example",
        "coffee",
        "--json",
        "--out",
        str(out_png),
        "--save-map",
        str(npy),
        "--target",
        "285",
        "--size",
        "64",
        "--param",
        "patch_size=32",
        "--param",
        "stride=32",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "occlusion" and result["model"] == "tiny"
    assert result["params"]["patch_size"] == 32 and result["size"] == 64
    first, npy_image, second = result["images"]
    assert first["file"] == str(cat_png) and second["file"] == "example:coffee"
    assert npy_image["file"] == str(tmp_path / "img.npy")
    assert first["target"] == 285 and first["class_name"] == "Egyptian cat"
    assert second["target"] == 285  # --target applies to every image
    assert len(first["top5"]) == 5 and len({r["class"] for r in first["top5"]}) == 5
    probs = [r["probability"] for r in first["top5"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    assert 0 < first["probability"] <= probs[0]
    assert first["outputs"] == [str(out_png), str(npy)]
    maps = np.load(npy)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32 and np.isfinite(maps).all()
    assert out_png.is_file()


def test_explain_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [
        "explain",
        "--example",
        "coffee",
        "--example",
        "coffee",
        "--removal",
        "blur:5",
        "--batch-size",
        "2",
        "--seed",
        "3",
        "--method",
        "sp",
        "--json",
        *FAST,
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "occlusion" and result["params"]["removal"] == "blur:5"
    files = [r["outputs"][0] for r in result["images"]]
    assert files == ["unmask-coffee-occlusion.png", "unmask-coffee-occlusion-2.png"]  # no overwrite
    assert all((tmp_path / f).is_file() for f in files)
    top = result["images"][0]["top5"][0]  # target None: the top-1 class
    assert (result["images"][0]["target"], result["images"][0]["class_name"]) == (
        top["class"],
        top["name"],
    )


# --------------------------------------------------------------------------- bad input


def test_missing_image(tmp_path, capsys):
    line = _error(capsys, ["explain", str(tmp_path / "nope.jpg"), *FAST])
    assert "image: file not found" in line


def test_unreadable_image(tmp_path, capsys):
    assert "image: not a file" in _error(capsys, ["explain", str(tmp_path), *FAST])
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert "image: cannot read image" in _error(
        capsys, ["explain", str(tmp_path / "cut.png"), *FAST]
    )


def test_non_image_file(tmp_path, capsys):
    (tmp_path / "notes.jpg").write_text("not a picture")
    assert "image: not an image file" in _error(
        capsys, ["explain", str(tmp_path / "notes.jpg"), *FAST]
    )


def test_zero_size_image(tmp_path, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "image: empty file (0 bytes)" in _error(
        capsys, ["explain", str(tmp_path / "empty.png"), *FAST]
    )
    np.save(tmp_path / "zero.npy", np.zeros((0, 4, 3), np.uint8))
    assert "image: zero-size image" in _error(
        capsys, ["explain", str(tmp_path / "zero.npy"), *FAST]
    )


def test_nan_input(tmp_path, capsys):
    arr = np.full((8, 8, 3), 0.5, np.float32)
    arr[2, 3, 1] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    assert "image: contains NaN" in _error(capsys, ["explain", str(tmp_path / "nan.npy"), *FAST])
    Image.fromarray(arr[..., 1], mode="F").save(tmp_path / "nan.tif")  # a float image file
    assert "image: contains NaN" in _error(capsys, ["explain", str(tmp_path / "nan.tif"), *FAST])


@pytest.mark.parametrize("target", ["1000", "-1"])
def test_target_out_of_range(target, capsys):
    line = _error(capsys, ["explain", "--example", "chelsea", "--target", target, *FAST])
    assert f"--target: class {target} is outside [0, 1000)" in line


def test_target_by_name_and_set(capsys):
    argv = ["explain", "--example", "chelsea", "--json", "--size", "112", *FAST]

    def run(target: str) -> dict:
        assert main([*argv, "--target", target]) == 0
        return json.loads(capsys.readouterr().out)["images"][0]

    one = run("egyptian cat")  # case is ignored
    assert (one["target"], one["class_name"]) == (285, "Egyptian cat")
    both = run("tabby,285")  # a synonym of "tabby, tabby cat" and an index: a set
    assert both["target"] == [281, 285]
    assert both["class_name"] == "tabby, tabby cat + Egyptian cat"
    tabby = run("tabby, tabby cat")  # a full name with a comma is one class
    assert tabby["target"] == 281
    assert both["probability"] == pytest.approx(one["probability"] + tabby["probability"])


@pytest.mark.parametrize(
    "target,expected",
    [
        ("Egyptain cat", "--target: no class named 'Egyptain cat'; closest: 'Egyptian cat'"),
        ("crane", "--target: 'crane' names classes 134, 517; pass an index"),
        ("tabby,zebrra", "--target: no class named 'zebrra'; closest: 'zebra'"),
    ],
)
def test_target_names_with_typos_get_the_closest(target, expected, capsys):
    line = _error(capsys, ["explain", "--example", "chelsea", "--target", target, *FAST])
    assert expected in line


def test_evaluate_takes_target_names(capsys):
    argv = ["evaluate", "--example", "chelsea", "--json", "--size", "64", "--metrics", "deletion"]
    assert main([*argv, "--method", "gradient", "--target", "tabby,Egyptian cat"]) == 0
    image = json.loads(capsys.readouterr().out)["images"][0]
    assert image["target"] == [281, 285] and image["class_name"].endswith("+ Egyptian cat")


def test_unknown_method_and_model(capsys):
    line = _error(capsys, ["explain", "--example", "chelsea", "--method", "magic", *FAST])
    assert "method: unknown method 'magic'; expected one of:" in line and "occlusion" in line
    line = _error(capsys, ["explain", "--example", "chelsea", "--model", "resnet9000", *FAST])
    assert "model: unknown model 'resnet9000'" in line
    line = _error(capsys, ["explain", "--example", "chelsea", "--model", "tv:resnet18", *FAST])
    assert "tv:resnet18" in line


def test_bad_options(tmp_path, capsys):
    assert "IMAGE: give at least one image file" in _error(capsys, ["explain"])
    assert "--param: expected KEY=VALUE" in _error(
        capsys, ["explain", "--example", "chelsea", "--param", "oops"]
    )
    line = _error(
        capsys, ["explain", "--example", "chelsea", "--param", "colour=3", "--no-progress"]
    )
    assert "colour: not a hyperparameter of 'occlusion'" in line
    assert "removal: unknown removal 'fog'" in _error(
        capsys, ["explain", "--example", "chelsea", "--removal", "fog"]
    )
    assert "--size: expected a value > 0" in _error(
        capsys, ["explain", "--example", "chelsea", "--size", "0"]
    )
    assert "--batch-size" in _error(
        capsys, ["explain", "--example", "chelsea", "--batch-size", "0"]
    )
    line = _error(
        capsys, ["explain", "--example", "chelsea", "--out", str(tmp_path / "no" / "x.png")]
    )
    assert "--out: directory does not exist" in line
    assert "--save-map: expected a file name ending in .npy" in _error(
        capsys, ["explain", "--example", "chelsea", "--save-map", "maps.txt"]
    )
    line = _error(capsys, ["explain", "--example", "chelsea", "--size", "32", *FAST])
    # checked against occlusion's declaration (a side in [1, --size]) before any work
    assert "--param.patch_size: expected an integer in [1, 32], got 112" in line


def test_argparse_errors_are_one_line(capsys):
    for argv in (["explain", "--size", "big"], ["explain", "--example", "eagle"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1].startswith("unmask: error:") and "Traceback" not in err


# --------------------------------------------------------------------------- other commands


def test_methods_and_models(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "occlusion" in out and "sp-g" in out
    assert main(["methods", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert {"occlusion", "sp-g"} <= names
    assert main(["models"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    assert "efficientnet_lite0" in json.loads(capsys.readouterr().out)


def test_installed_console_script(tmp_path):
    """The `unmask` entry point installed beside this Python runs end to end."""
    script = Path(sys.executable).parent / "unmask"
    assert script.is_file(), f"console script not installed at {script}"
    proc = subprocess.run(
        [str(script), "explain", "--example", "chelsea", "--json", *FAST],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert 281 <= result["images"][0]["target"] <= 285
    assert (tmp_path / result["images"][0]["outputs"][0]).is_file()


def test_json_names_the_layer_actually_used(monkeypatch, tmp_path, capsys):
    """Issue 26: Grad-CAM's --json record says which layer ran, not ``"layer": null``."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 1000),
    )
    conv = unmask.models.Classifier.wrap(net, input_size=None, name="conv", feature_layer="0")
    monkeypatch.setattr(unmask.models, "load_model", lambda name="x", **kw: conv)
    argv = ["explain", "--example", "coffee", "--method", "gradcam", "--json", "--no-progress"]
    assert main([*argv, "--size", "32", "--out", str(tmp_path / "g.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"]["layer"] == "0"


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["--help"], 0), (["--version"], 0), (["explain", "--no-such-option"], 2), ([], 2)],
)
def test_help_version_and_argument_errors_do_not_import_torch(argv, code):
    """Issue 26: the parser is built from light modules only (torch loads in ``run``)."""
    script = (
        "import sys\n"
        "from unmask.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy, 'CODE', code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert f"HEAVY [] CODE {code}" in done.stdout, done.stdout + done.stderr


def test_subcommand_help_lists_the_removals(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    out = capsys.readouterr().out
    assert "blur" in out and "telea" in out and "{removal names}" not in out


def test_long_commands_print_their_cost_first(capsys):
    """explain and evaluate print their model evaluations and a time estimate to stderr."""
    assert main(["explain", "--example", "coffee", "--json", "--size", "224", *FAST]) == 0
    out, err = capsys.readouterr()
    json.loads(out)  # stdout stays JSON
    # 112 x 112 patches at stride 112 on 224 x 224: 2 x 2 positions, and the image itself
    assert "explain: occlusion 5 model evaluations per image x 1 image = 5; about" in err
    # timed on the engine the job runs (nothing cached: channels_last) at its batch size
    assert "ms per forward at 224x224 in batches of 16 through channels_last, measured here" in err


def test_evaluate_has_a_progress_bar_and_no_progress(tmp_path, capsys):
    maps = tmp_path / "m.npy"
    np.save(maps, np.random.default_rng(0).random((32, 32)).astype(np.float32))
    argv = ["evaluate", "--example", "coffee", "--maps", str(maps), "--size", "32"]
    argv += ["--metrics", "deletion,insertion", "--max-steps", "4"]
    assert main([*argv, "--no-progress"]) == 0
    quiet = capsys.readouterr().err
    assert main(argv) == 0
    shown = capsys.readouterr().err
    assert "metrics:" in shown and "/2 " in shown and "metrics:" not in quiet
