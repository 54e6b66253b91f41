"""The synthetic ground-truth benchmark: generator, files, shipped model, training, CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import unmask
from unmask.cli import main
from unmask.datasets import cnn, evaluate, synthetic
from unmask.metrics.localisation import boxes_from_masks

# ----------------------------------------------------------------------------- generator


def _equal(a: synthetic.SyntheticBatch, b: synthetic.SyntheticBatch) -> bool:
    return (
        torch.equal(a.images, b.images)
        and torch.equal(a.labels, b.labels)
        and torch.equal(a.masks, b.masks)
        and torch.equal(a.boxes, b.boxes)
        and a.names == b.names
    )


def test_same_seed_same_images_bit_for_bit():
    a = synthetic.generate(6, seed=3, split="test")
    b = synthetic.generate(6, seed=3, split="test")
    assert _equal(a, b)
    # image i does not depend on the batch it is generated in
    part = synthetic.generate(2, seed=3, split="test", start=4)
    assert torch.equal(part.images, a.images[4:]) and torch.equal(part.masks, a.masks[4:])
    assert part.names == ["test_000004", "test_000005"]


def test_seed_and_split_change_the_images():
    a = synthetic.generate(3, seed=0, split="test").images
    assert not torch.equal(a, synthetic.generate(3, seed=1, split="test").images)
    assert not torch.equal(a, synthetic.generate(3, seed=0, split="train").images)


def test_images_are_in_unit_range_and_quantised():
    b = synthetic.generate(4, seed=0, split="test")
    assert b.images.dtype == torch.float32 and b.images.shape == (4, 3, 64, 64)
    assert float(b.images.min()) >= 0 and float(b.images.max()) <= 1
    assert torch.equal(torch.round(b.images * 255) / 255, b.images)
    assert b.masks.dtype == torch.bool and b.boxes.dtype == torch.long


def test_masks_match_boxes_and_cover_a_fair_share():
    b = synthetic.generate(40, seed=1, split="val")
    assert torch.equal(boxes_from_masks(b.masks).long(), b.boxes)
    box_area = (b.boxes[:, 2] - b.boxes[:, 0]) * (b.boxes[:, 3] - b.boxes[:, 1]) / 64**2
    assert float(box_area.min()) > 0.05 and float(box_area.max()) < 0.35
    # the object lies inside the image, away from its border
    assert int(b.boxes[:, :2].min()) >= 1 and int(b.boxes[:, 2:].max()) <= 63


def test_the_label_object_is_the_largest_and_the_only_one_of_its_class():
    seen_distractors = 0
    for i in range(60):
        s = synthetic.sample(i, seed=2, split="rule")
        area = int(s.mask.sum())
        assert s.label not in s.distractors
        assert len(s.distractors) == s.distractor_masks.shape[0] <= 2
        for other in s.distractor_masks:
            seen_distractors += 1
            assert int(other.sum()) < area / 2  # worst pair (disc beside triangle): 0.49
            assert not (other & s.mask).any()  # never touches or hides the label object
        # the label object is drawn last and never occluded: its pixels are exactly the mask
        assert s.mask.any()
    assert seen_distractors > 30


def test_every_class_occurs():
    labels = synthetic.generate(60, seed=0, split="train").labels
    assert set(labels.tolist()) == set(range(len(synthetic.CLASSES)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n:"),
        ({"n": 2, "seed": -1}, "seed:"),
        ({"n": 2, "split": ""}, "split:"),
        ({"n": 2, "size": 16}, "size:"),
        ({"n": 2, "start": -3}, "start:"),
        ({"n": 2, "max_distractors": -1}, "max_distractors:"),
    ],
)
def test_bad_generator_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        synthetic.generate(**kwargs)


def test_write_and_read_round_trip(tmp_path):
    root = synthetic.write(tmp_path / "syn", 5, seed=4, split="test")
    back = synthetic.read(root)
    assert _equal(back, synthetic.generate(5, seed=4, split="test"))
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "class_index", "name"]
    assert rows[0]["file"] == "test_000000.png" and rows[0]["name"] in synthetic.CLASSES
    assert (root / "masks" / "test_000000.png").is_file()
    assert (root / "classes.txt").read_text().split() == list(synthetic.CLASSES)


# ----------------------------------------------------------------------------- the shipped model


def test_shipped_model_loads_with_weights_only_and_classifies_fresh_images():
    ckpt = torch.load(cnn.default_weights(), map_location="cpu", weights_only=True)
    assert ckpt["format"] == cnn.WEIGHTS_FORMAT
    assert cnn.default_weights().stat().st_size < 2_000_000
    model = unmask.load_model("synthetic_cnn")
    assert model.class_names == list(synthetic.CLASSES) and model.input_size == (64, 64)
    assert "synthetic_cnn" in unmask.list_models()
    fresh = synthetic.generate(48, seed=0, split="fresh")  # a split the model never saw
    assert cnn.accuracy(model, fresh.images, fresh.labels) >= 0.9
    assert isinstance(model.net.features, torch.nn.Sequential)  # the layer for CAMs
    assert model.feature_layer == "features"
    assert model.net.features(torch.zeros(1, 3, 64, 64)).shape == (1, 64, 16, 16)


def test_training_is_seeded():
    before = torch.random.get_rng_state()
    a, info = cnn.train(n_train=16, epochs=1, seed=5, batch_size=8, n_val=4)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random state is kept
    b, _ = cnn.train(n_train=16, epochs=1, seed=5, batch_size=8, n_val=4)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert info["epochs"] == 1 and 0 <= info["val_accuracy"] <= 1


def test_weights_file_round_trips(tmp_path):
    model, info = cnn.train(n_train=8, epochs=1, seed=0, batch_size=8, n_val=2)
    path = cnn.save(model, tmp_path / "w.pt", info)
    back = cnn.load(path)
    x = synthetic.generate(2, seed=0, split="x").images
    assert torch.equal(back(x), model(x))
    torch.save({"not": "weights"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="weights:"):
        cnn.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="weights:"):
        cnn.load(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- localisation


def test_benchmark_baselines_and_occlusion_beats_random():
    model = unmask.load_model("synthetic_cnn")
    rows = evaluate.localisation_benchmark(
        model,
        ["occlusion", "random", "whole_image"],
        n_test=12,
        n_heldout=6,
        settings={"occlusion": {"patch_size": 12, "stride": 4}},
    )
    by = {r.method: r for r in rows}
    # a blank map boxes the whole image: every object box is far below half of it
    assert by["whole_image"].localisation_error == 1.0
    assert by["occlusion"].pointing_game > by["random"].pointing_game
    assert by["occlusion"].energy_pointing_game > by["random"].energy_pointing_game
    assert "| occlusion |" in evaluate.format_table(rows)


def test_settings_are_hyperparameters_of_their_methods():
    from unmask.registry import METHODS

    for name, params in evaluate.SETTINGS.items():
        if name in METHODS.names(aliases=True):  # "gradcam" is registered on another branch
            entry = METHODS.get(name)
            assert all(entry.accepts(k) for k in params), name
    assert set(evaluate.METHODS) - set(evaluate.BASELINES) <= set(METHODS.names(aliases=True))


def test_benchmark_rejects_unknown_methods():
    with pytest.raises(ValueError, match="methods: unknown method 'nope'"):
        evaluate.localisation_benchmark(None, ["nope"], n_test=1, n_heldout=1)


# ----------------------------------------------------------------------------- CLI


def test_cli_train_one_tiny_epoch(tmp_path, capsys):
    out = tmp_path / "w.pt"
    assert (
        main(
            [
                "datasets",
                "train-synthetic",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--n-train",
                "16",
                "--n-val",
                "4",
                "--n-test",
                "4",
            ]
        )
        == 0
    )
    assert "test accuracy" in capsys.readouterr().out
    model = cnn.load(out)
    assert model.class_names == list(synthetic.CLASSES)


def test_cli_write_synthetic(tmp_path, capsys):
    argv = ["datasets", "write-synthetic", str(tmp_path / "d"), "--n", "3", "--split", "val"]
    assert main(argv) == 0
    assert len(list((tmp_path / "d").glob("val_*.png"))) == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["datasets", "train-synthetic", "--out", "w.pt", "--epochs", "0"], "--epochs"),
        (["datasets", "train-synthetic", "--out", "w.pt", "--seed", "x"], "--seed"),
        (["datasets", "train-synthetic"], "--out"),
        (["datasets", "write-synthetic", "d", "--n", "-2"], "--n"),
        (["datasets"], "ACTION"),
    ],
)
def test_cli_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_bad_paths_and_methods(tmp_path, capsys):
    assert main(["datasets", "train-synthetic", "--out", str(tmp_path)]) == 2
    assert "--out:" in capsys.readouterr().err
    assert main(["datasets", "train-synthetic", "--out", str(tmp_path / "no" / "w.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (
        main(["datasets", "localisation", "--methods", "nope", "--n-test", "1", "--n-heldout", "1"])
        == 2
    )
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_random_baseline_is_seeded():
    x = torch.zeros(2, 3, 8, 8)
    a = evaluate.saliency_maps(None, x, torch.zeros(2, dtype=torch.long), "random", seed=1)
    b = evaluate.saliency_maps(None, x, torch.zeros(2, dtype=torch.long), "random", seed=1)
    assert torch.equal(a, b) and a.shape == (2, 1, 8, 8)
    centre = evaluate.saliency_maps(None, torch.zeros(1, 3, 64, 64), None, "centre")
    assert np.isclose(float(centre.amax()), 1.0, atol=0.01)
    assert int(centre.flatten().argmax()) in (
        31 * 64 + 31,
        31 * 64 + 32,
        32 * 64 + 31,
        32 * 64 + 32,
    )
