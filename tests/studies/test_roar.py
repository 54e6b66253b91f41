"""ROAR / KAR (Hooker et al. 2019) on the synthetic benchmark: ranking, ablation, the oracle map,
the known answer (the object mask against a random map), determinism, bad inputs, the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from unmask.cli import main
from unmask.datasets import cnn, synthetic
from unmask.removal import Constant
from unmask.studies import RoarResult, roar
from unmask.studies.roar import _removal, ablate, oracle_maps, pixel_ranks


def _model(size: int = 32):
    """An untrained synthetic CNN at ``size``: the random and oracle maps do not use it, and
    32² images make every retraining four times cheaper than 64²."""
    torch.manual_seed(0)
    return cnn._classifier(cnn.SyntheticCNN(), size, list(synthetic.CLASSES))


# ----------------------------------------------------------------------------- the pieces


def test_pixel_ranks_match_a_sort_and_break_ties_by_seed():
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 1, 5, 7, generator=gen)
    ranks = pixel_ranks(maps, seed=4)
    for i in range(3):  # distinct values: rank = position in the descending order
        order = sorted(range(35), key=lambda j: -float(maps[i].flatten()[j]))
        naive = torch.empty(35, dtype=torch.long)
        naive[torch.tensor(order)] = torch.arange(35)
        assert torch.equal(ranks[i].flatten(), naive)
    flat = torch.zeros(2, 1, 4, 4)
    flat[:, :, 0, :2] = 1.0  # two tied winners, then 14 tied pixels
    a, b = pixel_ranks(flat, seed=1), pixel_ranks(flat, seed=1)
    assert torch.equal(a, b)
    for r in a:
        assert sorted(r.flatten().tolist()) == list(range(16))
        assert set(r[0, 0, :2].tolist()) == {0, 1}
    assert not torch.equal(pixel_ranks(flat, seed=1), pixel_ranks(flat, seed=2))


@pytest.mark.parametrize("mode", ["roar", "kar"])
@pytest.mark.parametrize("k", [10, 30, 90])
def test_ablate_removes_exactly_the_top_or_the_rest(mode, k):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 10, 10, generator=gen) * 0.5 + 0.5  # never equal to the fill 0.1
    maps = torch.rand(4, 1, 10, 10, generator=gen)
    out = ablate(x, pixel_ranks(maps), k, mode, Constant(0.1), chunk=3)
    removed = (out == 0.1).all(1)  # (4, 10, 10)
    top = maps[:, 0] >= maps.flatten(1).topk(k, dim=1).values[:, -1, None, None]
    assert torch.equal(removed, top if mode == "roar" else ~top)
    assert torch.equal(out[~removed[:, None].expand_as(x)], x[~removed[:, None].expand_as(x)])


def test_oracle_map_ranks_the_object_then_nearest_pixels():
    masks = torch.zeros(2, 1, 9, 11)
    masks[0, 0, 2:4, 3:6] = 1
    masks[1, 0, 7, 10] = 1
    got = oracle_maps(masks)
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    for i in range(2):
        on = masks[i, 0] > 0.5
        oy, ox = ys[on], xs[on]
        dist = ((ys[..., None] - oy) ** 2 + (xs[..., None] - ox) ** 2).sqrt().amin(-1)
        want = torch.where(on, torch.ones(()), -dist)
        assert torch.allclose(got[i, 0], want, atol=1e-5)
    # the top-|object| pixels of the oracle are exactly the object
    ranks = pixel_ranks(got)
    assert torch.equal(ranks[0] < 6, masks[0] > 0.5)


def test_default_removal_is_the_per_channel_training_mean():
    gen = torch.Generator().manual_seed(2)
    imgs = torch.rand(5, 3, 6, 6, generator=gen)
    removal, spec = _removal(None, imgs)
    assert spec == "dataset_mean"
    fill = removal(imgs[:1], torch.ones(1, 1, 6, 6))
    assert torch.allclose(fill[0, :, 0, 0], imgs.mean(dim=(0, 2, 3)))
    assert _removal("blur:sigma=2", imgs)[1].startswith("blur")


# ----------------------------------------------------------------------------- known answer


@pytest.fixture(scope="module")
def small_study() -> RoarResult:
    # 400 images of 32², 6 epochs: about 2,400 image steps per retraining, 5 retrainings
    return roar(
        _model(),
        ["random", "oracle"],
        ks=(50,),
        n_train=400,
        n_test=300,
        epochs=6,
        lr=0.01,
        batch_size=32,
        seed=0,
    )


def test_oracle_hurts_roar_and_helps_kar_more_than_random(small_study):
    acc = small_study.accuracy
    # removing the object (and what is nearest to it) leaves nothing to learn: near chance (1/6)
    assert acc["roar"]["oracle"][50] < acc["roar"]["random"][50] - 0.05
    assert acc["roar"]["oracle"][50] < 0.25
    # keeping it (on a blank background) is easier than keeping half of the pixels at random
    assert acc["kar"]["oracle"][50] > acc["kar"]["random"][50] + 0.05
    assert acc["kar"]["oracle"][50] > small_study.unmodified - 0.05


def test_result_tables_and_files(small_study, tmp_path):
    r = small_study
    rows = r.rows()
    assert len(rows) == 1 + 2 * 2 * 1 and rows[0]["method"] == "unmodified"
    assert "| ROAR | oracle |" in r.format_table()
    assert len(r.seconds["retrain"]) == 5 and set(r.seconds["maps"]) == {"random", "oracle"}
    assert r.settings["removal"] == "dataset_mean" and r.settings["n_train"] == 400
    data = json.loads(r.write_json(tmp_path / "r.json").read_text())
    assert data["accuracy"]["kar"]["oracle"]["50"] == r.accuracy["kar"]["oracle"][50]
    with open(r.write_csv(tmp_path / "r.csv")) as f:
        table = list(csv.DictReader(f))
    assert [t["mode"] for t in table] == ["none", "roar", "roar", "kar", "kar"]
    assert np.isclose(float(table[2]["accuracy"]), r.accuracy["roar"]["oracle"][50])


def test_same_seed_same_accuracies_and_repeats_use_their_own_seeds():
    kw = dict(
        ks=(30, 70), modes=("roar",), n_train=48, n_test=40, epochs=1, batch_size=16, repeats=2
    )
    a = roar(_model(), ["random", "oracle"], seed=3, **kw)
    b = roar(_model(), ["random", "oracle"], seed=3, **kw)
    assert a.runs == b.runs and a.unmodified_runs == b.unmodified_runs
    assert a.accuracy["roar"]["random"][30] == np.mean(a.runs["roar"]["random"][30])
    assert len(a.runs["roar"]["oracle"][70]) == 2


def test_fit_is_the_training_loop_of_train():
    data = synthetic.generate(24, seed=0, split="train", size=32)
    val = synthetic.generate(8, seed=0, split="val", size=32)
    a, info = cnn.fit(
        data.images, data.labels, epochs=1, batch_size=8, val=(val.images, val.labels)
    )
    b, _ = cnn.train(n_train=24, epochs=1, size=32, batch_size=8, n_val=8)
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert info["val_accuracy"] is not None and info["size"] == 32


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"ks": (0,)}, ValueError, "ks:"),
        ({"ks": (100,)}, ValueError, "ks:"),
        ({"ks": (10, 10)}, ValueError, "ks:"),
        ({"ks": ()}, TypeError, "ks:"),
        ({"ks": (12.5,)}, ValueError, "ks:"),
        ({"methods": ["nope"]}, ValueError, "methods:"),
        ({"methods": []}, ValueError, "methods:"),
        ({"methods": ["random", "random"]}, ValueError, "methods:"),
        ({"methods": [3]}, TypeError, "methods:"),
        ({"modes": ("keep",)}, ValueError, "modes:"),
        ({"modes": ()}, TypeError, "modes:"),
        ({"n_train": 0}, ValueError, "n_train:"),
        ({"epochs": 1.5}, TypeError, "epochs:"),
        ({"seed": -1}, ValueError, "seed:"),
        ({"repeats": 0}, ValueError, "repeats:"),
        ({"lr": 0}, ValueError, "lr:"),
        ({"settings": [1]}, TypeError, "settings:"),
        ({"progress": "yes"}, TypeError, "progress:"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, error, name):
    args = {"methods": ["random"], "ks": (50,), "n_train": 8, "n_test": 4, "epochs": 1, **kwargs}
    with pytest.raises(error, match=name):
        roar(_model(), **args)


def test_bad_model_and_removal():
    with pytest.raises(TypeError, match="model"):
        roar(42, ["random"], ks=(50,), n_train=8, n_test=4, epochs=1)
    with pytest.raises(ValueError, match="removal|unknown"):
        roar(_model(), ["random"], ks=(50,), n_train=8, n_test=4, epochs=1, removal="nope")


def test_fit_checks_its_inputs():
    x = torch.rand(4, 3, 16, 16)
    with pytest.raises(ValueError, match="labels:"):
        cnn.fit(x, torch.zeros(3, dtype=torch.long), epochs=1)
    with pytest.raises(ValueError, match="labels:"):
        cnn.fit(x, torch.full((4,), 6), epochs=1)
    with pytest.raises(TypeError, match="labels:"):
        cnn.fit(x, [0, 1, 2, 3], epochs=1)
    with pytest.raises(ValueError, match="images:"):
        cnn.fit(torch.rand(4, 3, 16, 12), torch.zeros(4, dtype=torch.long), epochs=1)
    with pytest.raises(TypeError, match="val:"):
        cnn.fit(x, torch.zeros(4, dtype=torch.long), epochs=1, val=x)


# ----------------------------------------------------------------------------- CLI


def test_cli_roar_writes_json_and_csv(tmp_path, capsys):
    argv = [
        "datasets",
        "roar",
        "--methods",
        "random,oracle",
        "--ks",
        "50",
        "--modes",
        "kar",
        "--n-train",
        "16",
        "--n-test",
        "8",
        "--epochs",
        "1",
        "--json",
        str(tmp_path / "r.json"),
        "--csv",
        str(tmp_path / "r.csv"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| KAR | oracle |" in out and "trainings" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["modes"] == ["kar"] and set(data["accuracy"]["kar"]) == {"random", "oracle"}
    assert (tmp_path / "r.csv").read_text().startswith("mode,method,k,accuracy,runs")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ks", "0"], "--ks:"),
        (["--ks", "a,b"], "--ks:"),
        (["--methods", "nope"], "--methods:"),
        (["--modes", "keep"], "--modes:"),
        (["--removal", "nope"], "--removal"),
        (["--json", "/no/such/folder/r.json"], "--json:"),
    ],
)
def test_cli_roar_bad_arguments(argv, message, capsys):
    assert main(["datasets", "roar", "--n-train", "8", "--n-test", "4", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_shipped_model_gradcam_and_oracle_under_roar():
    """The shipped model's Grad-CAM maps at 64² with a larger budget (a few CPU minutes)."""
    r = roar(
        cnn.load(),
        ["random", "oracle", "gradcam"],
        ks=(50,),
        n_train=1500,
        n_test=300,
        epochs=6,
        seed=0,
    )
    acc = r.accuracy
    assert acc["roar"]["oracle"][50] < acc["roar"]["random"][50]
    assert acc["kar"]["oracle"][50] > acc["kar"]["random"][50]
    assert r.unmodified > 0.3
