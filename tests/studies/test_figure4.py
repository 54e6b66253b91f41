"""Smoke test of the Figure 4 pipeline on tiny images with a tiny model (any Classifier works)."""

from __future__ import annotations

import math

import pytest

from unmask.cli import main
from unmask.studies.figure4 import FIELDS, plot, read_rows, run, summarise
from unmask.testing import region_images, region_model

FAST_SMOOTH = {"step": 4, "sigma": 6, "jitter": False}


def test_pipeline_csv_plot_and_resume(tmp_path):
    x = region_images(2, 32)
    images = [("a.png", x[:1]), ("b.png", x[1:])]
    logs = []
    path = run(
        {"region": region_model()},
        images,
        tmp_path,
        areas=(0.1, 0.2),
        steps=3,
        noise_bs=2,
        smooth_steps=3,
        smooth_options=FAST_SMOOTH,
        log=logs.append,
    )
    rows = read_rows(path)
    methods = {"shearletx", "waveletx", "pixelmask", "smoothmask-0.1", "smoothmask-0.2"}
    assert {r["method"] for r in rows} == methods
    assert len(rows) == 2 * len(methods) == len(logs)
    for r in rows:
        assert set(r) == set(FIELDS)
        assert (
            r["target"] == 1
            and 0 < r["p"] <= 1
            and 0 <= r["p_hat"] <= 1
            and 0 <= r["p_hat_max"] <= 1
        )
        assert r["cp_l1"] > 0 and r["cp_entropy"] > 0 and r["cp_l1_pixel"] > 0
        assert r["hs"] >= 0 or math.isnan(r["hs"])
    assert (tmp_path / "figure4_region.png").stat().st_size > 1000
    summary = (tmp_path / "summary.md").read_text()
    assert (
        summary.count("| region |") == len(methods)
        and "ShearletX has the highest CP-ℓ1 on" in summary
    )
    # resumable: a second run computes nothing new
    logs.clear()
    run(
        {"region": region_model()},
        images,
        tmp_path,
        areas=(0.1, 0.2),
        steps=3,
        noise_bs=2,
        smooth_steps=3,
        smooth_options=FAST_SMOOTH,
        log=logs.append,
    )
    assert logs == [] and len(read_rows(path)) == len(rows)
    assert plot(path, tmp_path) == [tmp_path / "figure4_region.png"]


def test_cli_bad_input(tmp_path, capsys):
    assert main(["figure4", "--images", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "images: " in capsys.readouterr().err
    assert (
        main(["figure4", "--images", str(tmp_path), "--out", str(tmp_path), "--areas", "0,2"]) == 2
    )
    assert "areas: " in capsys.readouterr().err


def test_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="^methods: "):
        run(
            {"region": region_model()}, [("a", region_images(1, 32))], tmp_path, methods=["gradcam"]
        )


def test_old_csv_header_is_refused(tmp_path):
    (tmp_path / "figure4.csv").write_text("model,image,method\n")
    with pytest.raises(ValueError, match="^out: .*new output folder"):
        run(
            {"region": region_model()},
            [("a", region_images(1, 32))],
            tmp_path,
            methods=["pixelmask"],
            steps=1,
            noise_bs=1,
        )


def test_summary_medians_and_claim_counts():
    base = {
        "model": "m",
        "target": 1,
        "p": 0.5,
        "p_hat_max": 0.5,
        "cp_l1_pixel": 1.0,
        "seconds": 1.0,
        "steps": 1,
        "noise_bs": 1,
        "size": 8,
    }
    rows = []
    for image, (shx, pix) in {
        "a": ((3.0, 0.1), (1.0, 2.0)),
        "b": ((0.5, 0.3), (2.0, 0.2)),
        "c": ((4.0, 0.0), (1.0, 1.0)),
    }.items():
        rows.append(
            {
                **base,
                "image": image,
                "method": "shearletx",
                "cp_l1": shx[0],
                "cp_entropy": shx[0],
                "hs": shx[1],
                "p_hat": 0.01 if image == "b" else 0.5,
            }
        )
        rows.append(
            {
                **base,
                "image": image,
                "method": "pixelmask",
                "cp_l1": pix[0],
                "cp_entropy": pix[0],
                "hs": pix[1],
                "p_hat": 0.5,
            }
        )
    text = summarise(rows)
    assert "| m | shearletx | 3 | 3 | 3 | 1 | 0.1 | 1 | 1 | 1 |" in text  # medians; one image < 0.1
    assert "highest CP-ℓ1 on 2 of 3 images" in text
    assert "below pixelmask's on 2 of 3 images" in text


def test_summary_of_several_models_is_one_table_then_the_claims():
    row = {
        "target": 1,
        "p": 0.5,
        "p_hat": 0.5,
        "p_hat_max": 0.5,
        "cp_l1_pixel": 1.0,
        "cp_l1": 1.0,
        "cp_entropy": 1.0,
        "hs": 0.1,
        "seconds": 1.0,
        "steps": 1,
        "noise_bs": 1,
        "size": 8,
        "image": "a",
    }
    rows = [
        {**row, "model": model, "method": method, "hs": hs}
        for model in ("m1", "m2")
        for method, hs in (("shearletx", 0.1), ("pixelmask", 0.2))
    ]
    lines = summarise(rows).splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    assert table == list(range(6))  # header, rule, 2 models x 2 methods, no break in between
    assert lines[6] == "" and all(line.startswith("- m") for line in lines[7:])
    assert "- m2: ShearletX's HS is below pixelmask's on 1 of 1 images" in lines


def test_resuming_with_other_settings_is_refused(tmp_path):
    kwargs = {"methods": ["pixelmask"], "noise_bs": 1, "log": None}
    images = [("a", region_images(1, 32))]
    run({"region": region_model()}, images, tmp_path, steps=1, settings={"fit": "crop"}, **kwargs)
    with pytest.raises(ValueError, match="^out: .*steps=1 \\(now 2\\)"):
        run(
            {"region": region_model()},
            images,
            tmp_path,
            steps=2,
            settings={"fit": "crop"},
            **kwargs,
        )
    with pytest.raises(ValueError, match="fit='crop' \\(now 'resize'\\)"):
        run(
            {"region": region_model()},
            images,
            tmp_path,
            steps=1,
            settings={"fit": "resize"},
            **kwargs,
        )
    run(
        {"region": region_model()}, images, tmp_path, steps=1, settings={"fit": "crop"}, **kwargs
    )  # same: fine


def test_a_row_scores_x_and_x_hat_once_and_reuses_the_coefficients():
    """The three CP scores come from one scoring of x and of x̂ (plus x̂ / max x̂ for p_hat_max),
    with the explainer's own coefficients; the values equal three separate cp_score calls."""
    import torch

    from unmask.metrics.cp import cp_score
    from unmask.studies.figure4 import _explain_mask_method, _row

    model, x = region_model(), region_images(1, 32)
    target = torch.tensor([1])
    x_hat, coeffs, rep = _explain_mask_method("waveletx", model, x, target, 2, 1, 0)
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    row = _row(
        "region", "a", "waveletx", model, x, x_hat, target, coeffs, rep, 0.5, 1.0, 2, 1, "canny"
    )
    assert sum(seen) == 3
    for info in ("l1_pixel", "l1", "entropy"):
        ref = cp_score(model, x, x_hat, target, info=info, representation=rep, coefficients=coeffs)
        assert row[f"cp_{info}"] == pytest.approx(float(ref[0]), rel=1e-12)


def test_cli_runs_the_bench_preset_and_writes_the_study_csv(tmp_path):
    """`unmask figure4` runs the bench preset figure4 (one store per model); its CSV equals the
    in-memory study's row for row (every number but the timing), and a rerun resumes."""
    import numpy as np
    from PIL import Image

    from unmask.bench import Store
    from unmask.images import load_image

    folder = tmp_path / "images"
    folder.mkdir()
    x = region_images(2, 32)
    for i in range(2):
        arr = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")
    options = [
        "--methods",
        "shearletx,pixelmask,smoothmask",
        "--areas",
        "0.2",
        "--steps",
        "2",
        "--noise-bs",
        "1",
        "--smooth-steps",
        "2",
        "--size",
        "32",
    ]
    name = "unmask.testing:region_model"
    assert (
        main(
            [
                "figure4",
                "--images",
                str(folder),
                "--models",
                name,
                "--out",
                str(tmp_path / "new"),
                *options,
            ]
        )
        == 0
    )
    store = tmp_path / "new" / "figure4-unmask.testing_region_model.sqlite"
    assert {r["metric"] for r in Store.open(store).results()} >= {
        "cp_l1",
        "hallucination_score",
        "retained_probability",
        "retained_probability[scale=max]",
    }
    images = [(p.name, load_image(p, size=32, mode="resize")) for p in sorted(folder.iterdir())]
    run(
        {name: region_model()},
        images,
        tmp_path / "old",
        methods=["shearletx", "pixelmask", "smoothmask"],
        areas=(0.2,),
        steps=2,
        noise_bs=1,
        smooth_steps=2,
        log=None,
    )

    def rows(folder):
        return sorted(
            (
                {k: v for k, v in r.items() if k != "seconds"}
                for r in read_rows(folder / "figure4.csv")
            ),
            key=lambda r: (r["image"], r["method"]),
        )

    new, old = rows(tmp_path / "new"), rows(tmp_path / "old")
    assert len(new) == 6 and new == old
    assert (tmp_path / "new" / "figure4_unmask.testing:region_model.png").is_file()
    assert (tmp_path / "new" / "summary.md").read_text() == summarise(
        read_rows(tmp_path / "new" / "figure4.csv")
    )
    # resumed: nothing recomputed; other settings on the same folder: refused
    assert (
        main(
            [
                "figure4",
                "--images",
                str(folder),
                "--models",
                name,
                "--out",
                str(tmp_path / "new"),
                *options,
            ]
        )
        == 0
    )
    assert len(Store.open(store).sessions()) == 2 and len(Store.open(store).units()) == 6
    assert (
        main(
            [
                "figure4",
                "--images",
                str(folder),
                "--models",
                name,
                "--out",
                str(tmp_path / "new"),
                *options[:-2],
                "--size",
                "48",
            ]
        )
        == 2
    )
