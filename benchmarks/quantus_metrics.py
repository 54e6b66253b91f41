"""unmask's multi-perturbation metrics against quantus 0.6.0 on the same work.

    python benchmarks/quantus_metrics.py --quick     # small settings, to check the script
    python benchmarks/quantus_metrics.py             # the full settings
    python benchmarks/quantus_metrics.py --force     # run (and mark BUSY) on a loaded machine

The embedded model (``efficientnet_lite0``), ImageNet sample images at 224² from
``shared/data/imagenet-samples`` and unmask's gradient maps (``max_c |∂z/∂x_c|``). quantus runs
in the side venv that the reference tests build (``tests/reference/_quantus_venv.py``: quantus
pulls opencv-python, which must not go beside unmask), in a long-lived side process that gets
the model as a ``torch.export`` program and the inputs, maps and unmask's random draws as an
``.npz``, and times its own metric call (``time.perf_counter`` around the call, the data
already in memory), as this process times unmask's. Runs are **interleaved**: unmask, quantus,
unmask, quantus, ... over ``--repeats``; the table gives medians and the spread (min-max), and
``quantus / unmask`` of the medians (> 1: unmask faster).

Settings make the definitions coincide where they can (as in ``tests/reference``): black = 0
(quantus' ``"black"`` is the image minimum), the same subsets (faithfulness correlation) and
noise draws (sensitivities, Lipschitz estimate); the values are then compared (max absolute
difference; relative for infidelity, whose values are large). quantus counts features over the
channels of the broadcast map and wants ``features_in_step`` to divide H·W = 224², which 3
does not divide: it cannot step by whole
pixels. Pixel flipping there runs 3 quantus steps per unmask step (``features_in_step`` = the
pixels of an unmask step; after 3 steps the same pixels are gone, so every third point of
quantus' curve is compared); faithfulness estimate and monotonicity correlation correlate per
step, so their values differ and are not compared (timed on the same step count).

``model-bound s``: the images each library puts through the model × the best per-image time of
a batched forward (batch ``--batch-size``; forward + backward for explainer metrics) measured
in this process; ``unmask / bound`` shows how far each is from the model.

Load: ``os.getloadavg()`` before and after; **BUSY** (numbers not results) as
``benchmarks/run.py``: 1-minute load before > half the cores or after > cores; refused unless
``--force``. Writes ``benchmarks/results/quantus_metrics[-quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "src", ROOT / "tests" / "reference"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _quantus_venv import QuantusSide, export_model  # noqa: E402
from common import best_forward, spread  # noqa: E402

import unmask  # noqa: E402
from unmask.metrics import METRICS  # noqa: E402
from unmask.metrics.faithfulness import (  # noqa: E402
    _DrawnNoise,  # noqa: E402
    faithfulness_correlation,
    monotonicity_correlation,
    region_curve,
    region_perturbation,
)
from unmask.metrics.infidelity import infidelity  # noqa: E402
from unmask.metrics.irof import irof_curves  # noqa: E402
from unmask.metrics.robustness import (  # noqa: E402
    avg_sensitivity,
    local_lipschitz_estimate,
    max_sensitivity,
)

SAMPLES = ROOT.parent / "shared" / "data" / "imagenet-samples"
if not SAMPLES.exists():
    SAMPLES = Path("/work/shared/data/imagenet-samples")
BUSY_BEFORE = 0.5
SIZE = 224
#: (quick, full) settings.
SETTINGS = {
    "images": (2, 4),
    "pixel_flipping": ({"pixels_per_step": 3136}, {"pixels_per_step": 1024}),  # 16 / 49 steps
    "region_perturbation": ({"patch": 8, "regions": 20}, {"patch": 8, "regions": 100}),
    "faithfulness_correlation": (
        {"runs": 20, "subset_size": 224},
        {"runs": 100, "subset_size": 224},
    ),
    "faithfulness_estimate": ({"pixels_per_step": 3136}, {"pixels_per_step": 1024}),
    "monotonicity_correlation": (
        {"pixels_per_step": 3136, "samples": 3},
        {"pixels_per_step": 1024, "samples": 10},
    ),
    "selectivity": ({"patch": 32}, {"patch": 16}),  # 49 / 196 regions, all removed
    "irof": ({}, {}),  # SLIC, 100 segments
    "infidelity": ({"patch": 32}, {"patch": 16}),  # quantus' cumulative row-major patches
    "max_sensitivity": ({"samples": 4}, {"samples": 50}),
    "avg_sensitivity": ({"samples": 4}, {"samples": 50}),
    "local_lipschitz_estimate": ({"samples": 4}, {"samples": 50}),
}


def load_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = list(csv.DictReader(open(SAMPLES / "labels.csv")))[:n]
    x = torch.cat([unmask.load_image(SAMPLES / r["file"], size=SIZE) for r in rows])
    return x, torch.tensor([int(r["class_index"]) for r in rows])


def deltas(samples: int, radius: float, seed: int, gaussian: bool) -> np.ndarray:
    """unmask's robustness draws (16 at a time from one generator, the same for every image)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, samples, 16):
        shape = (min(16, samples - start), 3, SIZE, SIZE)
        out.append(
            torch.randn(shape, generator=gen) * radius
            if gaussian
            else (torch.rand(shape, generator=gen) * 2 - 1) * radius
        )
    return torch.cat(out).numpy()


def build(
    model: Any, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, q: int, bs: int
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The arrays for the side process and one entry per metric: unmask's call, quantus' case,
    the images each puts through the model and how their values compare."""
    b, n = x.shape[0], SIZE * SIZE
    arrays = {"x": x.numpy(), "y": y.numpy(), "a": maps.numpy()}
    black = {"perturb_baseline": 0.0, "normalise": False, "abs": False}
    explainer = unmask.make_explainer(model, "gradient")
    jobs: list[dict] = []

    def job(name, ours, case, images, compare="values", note=""):
        case = {"name": name, **case, "call": {"channel_first": True, **case.get("call", {})}}
        jobs.append(
            {
                "name": name,
                "unmask": ours,
                "case": case,
                "images": images,
                "compare": compare,
                "note": note,
            }
        )

    s = SETTINGS["pixel_flipping"][q]
    per = s["pixels_per_step"]
    pf = METRICS.get("pixel_flipping").build(
        rule="rise", pixels_per_step=per, removal="black", batch_size=bs
    )
    job(
        "pixel_flipping",
        lambda pf=pf: pf.curve(model, x, maps, y).scores[:, 1:].numpy(),
        {
            "metric": "PixelFlipping",
            "init": {"features_in_step": per, **black},
            "call": {"softmax": True},
            "a": "a",
        },
        {"unmask": b * (n // per + 1), "quantus": b * 3 * (n // per)},
        "every_third",
        f"{n // per} steps of {per} pixels; quantus 3 x {n // per} steps of {per} features",
    )

    s = SETTINGS["region_perturbation"][q]
    job(
        "region_perturbation",
        lambda s=s: region_perturbation(
            model, x, maps, y, removal="black", batch_size=bs, **s
        ).numpy(),
        {
            "metric": "RegionPerturbation",
            "init": {
                "patch_size": s["patch"],
                "order": "morf",
                "regions_evaluation": s["regions"],
                **black,
            },
            "call": {"softmax": True},
            "a": "a",
        },
        {"unmask": b * (s["regions"] + 1), "quantus": b * (s["regions"] + 1)},
        "aopc",
        f"{s['regions']} regions of {s['patch']}x{s['patch']} px",
    )

    s = SETTINGS["faithfulness_correlation"][q]
    chosen = torch.rand(s["runs"], n, generator=torch.Generator().manual_seed(0))
    chosen = chosen.argsort(dim=1)[:, : s["subset_size"]]
    feats = torch.cat([chosen + c * n for c in range(3)], dim=1)
    arrays["subsets"] = feats.repeat_interleave(b, dim=0).numpy()
    job(
        "faithfulness_correlation",
        lambda s=s: faithfulness_correlation(model, x, maps, y, seed=0, batch_size=bs, **s).numpy(),
        {
            "metric": "FaithfulnessCorrelation",
            "init": {
                "nr_runs": s["runs"],
                "subset_size": 3 * s["subset_size"],
                "return_aggregate": False,
                **black,
            },
            "call": {"softmax": False},
            "a": "a",
            "subsets": "subsets",
        },
        {"unmask": b * (s["runs"] + 1), "quantus": b * (s["runs"] + 1)},
        "values",
        f"{s['runs']} runs of {s['subset_size']} pixels, the same subsets",
    )

    s = SETTINGS["faithfulness_estimate"][q]
    per = s["pixels_per_step"]
    fe = METRICS.get("faithfulness_estimate").build(
        rule="rise", pixels_per_step=per, removal="black", batch_size=bs
    )
    job(
        "faithfulness_estimate",
        lambda fe=fe: fe(model, x, maps, y).numpy(),
        {
            "metric": "FaithfulnessEstimate",
            "init": {"features_in_step": per, **black},
            "call": {"softmax": False},
            "a": "a",
        },
        {"unmask": b * (n // per + 1), "quantus": b * (3 * (n // per) + 1)},
        None,
        f"{n // per} blocks of {per} pixels; quantus 3 x as many steps (thirds of a block)",
    )

    s = SETTINGS["monotonicity_correlation"][q]
    per, k = s["pixels_per_step"], s["samples"]
    arrays["mc_noise"] = _DrawnNoise(k, 0).fill(x[:1].expand(k, -1, -1, -1)).float().numpy()
    job(
        "monotonicity_correlation",
        lambda per=per, k=k: monotonicity_correlation(
            model, x, maps, y, pixels_per_step=per, samples=k, seed=0, batch_size=bs
        ).numpy(),
        {
            "metric": "MonotonicityCorrelation",
            "init": {"features_in_step": per, "nr_samples": k, "abs": True, "normalise": False},
            "call": {"softmax": True},
            "a": "a",
            "perturb": {"kind": "noise_image", "array": "mc_noise"},
        },
        {"unmask": b * (n // per * k + 1), "quantus": b * (3 * (n // per) * k + 1)},
        None,
        f"{n // per} blocks x {k} draws; quantus 3 x as many blocks",
    )

    p = SETTINGS["selectivity"][q]["patch"]
    regions = (SIZE // p) ** 2
    job(
        "selectivity",
        lambda p=p: (
            region_curve(model, x, maps, y, patch=p, regions=None, removal="black", batch_size=bs)
            .scores[:, 1:]
            .numpy()
        ),
        {
            "metric": "Selectivity",
            "init": {"patch_size": p, **black},
            "call": {"softmax": True},
            "a": "a",
        },
        {"unmask": b * (regions + 1), "quantus": b * (regions + 1)},
        "values",
        f"all {regions} regions of {p}x{p} px, the curve compared",
    )

    from unmask.segments import slic_segments

    counts = slic_segments(x, 100, 10.0, 0.0).flatten(1).amax(1) + 1  # superpixels per image
    job(
        "irof",
        lambda: irof_curves(model, x, maps, y, removal="black", batch_size=bs),
        {
            "metric": "IROF",
            "init": {
                "segmentation_method": "slic",
                "return_aggregate": False,
                "abs": False,
                "normalise": False,
            },
            "call": {"softmax": True},
            "a": "a",
            "perturb": {"kind": "mask_fill", "value": 0.0},
        },
        {"unmask": int(counts.sum()) + b, "quantus": int(counts.max()) * b + b},
        "irof",
        "SLIC superpixels (100 asked), all removed; quantus' S - trapz of its padded curve",
    )

    p = SETTINGS["infidelity"][q]["patch"]
    side = SIZE // p
    union = torch.zeros(side * side, 1, SIZE, SIZE)
    for k in range(side * side):  # M_k = the first k + 1 row-major patches
        r, c = divmod(k, side)
        union[k:, :, p * r : p * r + p, p * c : p * c + p] = 1
    job(
        "infidelity",
        lambda: infidelity(
            model, x, maps, y, masks=union, removal="black", normalise=False, batch_size=bs
        ).numpy(),
        {
            "metric": "Infidelity",
            "init": {
                "perturb_patch_sizes": [p],
                "n_perturb_samples": 1,
                "loss_func": "mse",
                **black,
            },
            "call": {"softmax": False},
            "a": "a",
        },
        {"unmask": b * (side * side + 1), "quantus": b * (side * side + 1)},
        "relative",
        f"{side * side} cumulative row-major {p}x{p} patches, 1 sample; relative difference "
        "(values ~1e7: squared logit gaps)",
    )

    for name, fn, gaussian, metric in [
        ("max_sensitivity", max_sensitivity, False, "MaxSensitivity"),
        ("avg_sensitivity", avg_sensitivity, False, "AvgSensitivity"),
        ("local_lipschitz_estimate", local_lipschitz_estimate, True, "LocalLipschitzEstimate"),
    ]:
        k = SETTINGS[name][q]["samples"]
        key = "gauss" if gaussian else "uniform"
        arrays[key] = deltas(k, 0.1 if gaussian else 0.2, 0, gaussian)
        job(
            name,
            lambda fn=fn, k=k: fn(model, x, explainer, y, samples=k, batch_size=bs).numpy(),
            {
                "metric": metric,
                "init": {"nr_samples": k, "normalise": False, "abs": False},
                "a": "a",
                "explain": "gradient",
                "perturb": {"kind": "add_noise", "array": key},
            },
            {"unmask": b * (k + 1), "quantus": b * (k + 1)},
            "values",
            f"{k} perturbations, gradient explainer (images = explained images)",
        )
    return arrays, jobs


def compare(how: str | None, ours: np.ndarray, theirs: np.ndarray) -> float | None:
    if how is None:
        return None
    if how == "irof":  # quantus: S - trapz of the curves padded with zeros to the longest
        longest = max(len(c) - 1 for c in ours)
        expected = []
        for c in ours:
            padded = np.zeros(longest)
            padded[: len(c) - 1] = np.asarray(c[1:])
            expected.append((len(c) - 1) - np.trapezoid(padded, dx=1))
        return float(np.nanmax(np.abs(np.asarray(expected) - np.asarray(theirs))))
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if how == "every_third":
        theirs = theirs[:, 2::3]
    elif how == "aopc":
        theirs = theirs.sum(1) / (theirs.shape[1] + 1)
    elif how == "relative":
        theirs = theirs.reshape(ours.shape)
        return float(np.nanmax(np.abs(ours - theirs)) / np.nanmax(np.abs(theirs)))
    return float(np.nanmax(np.abs(ours - theirs.reshape(ours.shape))))


def table(report: dict[str, Any]) -> str:
    load = report["load"]
    lines = [
        (
            f"{'BUSY (taken under load, not results): ' if report['busy'] else ''}"
            f"unmask {report['unmask']} ({report['commit'][:10]}) vs quantus "
            f"{report['versions'].get('quantus')}, efficientnet_lite0, {report['images']} "
            f"ImageNet samples at 224², gradient maps, torch threads {report['threads']} "
            f"(both), batch {report['batch_size']}, {report['repeats']} interleaved repeats"
            f"{', --quick' if report['quick'] else ''}; load (1, 5, 15 min) before "
            f"{', '.join(f'{v:.2f}' for v in load['before'])}, after "
            f"{', '.join(f'{v:.2f}' for v in load['after'])}."
        ),
        "",
        "| metric | work | unmask s (min-max) | quantus s (min-max) | quantus / unmask "
        "| images unmask / quantus | model-bound s unmask / quantus | max diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        u, q = r["unmask_s"], r["quantus_s"]
        diff = "not compared" if r["max_diff"] is None else f"{r['max_diff']:.1e}"
        lines.append(
            f"| {r['metric']} | {r['note']} | {u['median']:.2f} ({u['min']:.2f}-{u['max']:.2f})"
            f" | {q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f}) | "
            f"{q['median'] / u['median']:.1f} | {r['images']['unmask']} / "
            f"{r['images']['quantus']} | {r['model_bound_s']['unmask']:.2f} / "
            f"{r['model_bound_s']['quantus']:.2f} | {diff} |"
        )
    lines += [
        "",
        f"Model: best per-image forward {report['forward_s_per_image']:.4f} s, "
        f"forward + backward {report['backward_s_per_image']:.4f} s (batch "
        f"{report['batch_size']}, this process).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both (1)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--metrics", help="comma-separated subset")
    parser.add_argument("--force", action="store_true", help="run on a busy machine (BUSY)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    before = os.getloadavg()
    busy = before[0] > BUSY_BEFORE * cores
    if busy and not args.force:
        raise SystemExit(
            f"BUSY: 1-minute load {before[0]:.2f} > {BUSY_BEFORE * cores:.1f}; "
            "wait for an idle machine or pass --force (the run is marked BUSY)"
        )
    torch.set_num_threads(args.threads)
    q = 0 if args.quick else 1
    model = unmask.load_model("efficientnet_lite0")
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = load_images(SETTINGS["images"][q])
    maps = unmask.make_explainer(model, "gradient").explain(x, y).saliency.detach()
    arrays, jobs = build(model, x, y, maps, q, args.batch_size)
    if args.metrics:
        jobs = [j for j in jobs if j["name"] in set(args.metrics.split(","))]
    fwd = best_forward(model, x, args.batch_size, False)
    bwd = best_forward(model, x, args.batch_size, True)
    results = []
    with tempfile.TemporaryDirectory() as tmp, QuantusSide(threads=args.threads) as side:
        np.savez(Path(tmp) / "data.npz", **arrays)
        eager = unmask.load_model("efficientnet_lite0", execution="eager")
        program = export_model(eager, x[:1], Path(tmp) / "model.pt2")
        versions = {}
        for j in jobs:
            print(f"... {j['name']}", file=sys.stderr, flush=True)
            ours_t, theirs_t = [], []
            j["unmask"]()  # warm-up
            reply = side.run(Path(tmp) / "data.npz", program, [j["case"]])  # warm-up
            for _ in range(args.repeats):
                start = time.perf_counter()
                ours = j["unmask"]()
                ours_t.append(time.perf_counter() - start)
                reply = side.run(Path(tmp) / "data.npz", program, [j["case"]])
                theirs_t += reply["seconds"][j["name"]]
            versions = reply["versions"]
            per = bwd if "explain" in j["case"] else fwd
            results.append(
                {
                    "metric": j["name"],
                    "note": j["note"],
                    "unmask_s": spread(ours_t),
                    "quantus_s": spread(theirs_t),
                    "unmask_walls_s": ours_t,
                    "quantus_walls_s": theirs_t,
                    "images": j["images"],
                    "model_bound_s": {k: v * per for k, v in j["images"].items()},
                    "max_diff": compare(j["compare"], ours, reply["values"][j["name"]]),
                    "unmask_values": (
                        [np.asarray(c).tolist() for c in ours]
                        if isinstance(ours, list)
                        else np.asarray(ours).tolist()
                    ),
                    "quantus_values": reply["values"][j["name"]],
                }
            )
    after = os.getloadavg()
    busy = busy or after[0] > cores
    import subprocess

    commit = (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    report = {
        "benchmark": "quantus_metrics",
        "quick": args.quick,
        "busy": busy,
        "busy_rule": f"1-minute load before > {BUSY_BEFORE} x cores or after > cores",
        "load": {"before": before, "after": after},
        "repeats": args.repeats,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "images": SETTINGS["images"][q],
        "unmask": unmask.__version__,
        "commit": commit,
        "versions": versions,
        "forward_s_per_image": fwd,
        "backward_s_per_image": bwd,
        "settings": {k: v[q] for k, v in SETTINGS.items()},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quantus_metrics-quick" if args.quick else "quantus_metrics"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    text = table(report)
    (args.out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
