"""Deletion + insertion throughput: unmask vs saliency_maps_metrics 0.0.26 (and quantus).

Same images, maps, targets, model (the embedded EfficientNet-Lite0 with a softmax), the same number
of forward passes (the seed rule: maps at ``--map-size``², at most 196 steps, so ``(steps + 1)``
images per curve) and the same batch size for both (``--batch-size``, default the seed's 20; the
forward time per image depends strongly on it on a CPU: at 224² with one thread, batch 4 ran at ~60
ms/image and batch 20 at ~155 ms/image on the loaded test machine, so compare at equal batch sizes):

- ``unmask``: :mod:`unmask.metrics.compat` ``Deletion()`` + ``Insertion()`` (DAUC, DC, IAUC,
  IC), i.e. the batched engine behind :mod:`unmask.metrics.deletion`;
- ``saliency_maps_metrics`` 0.0.26: its ``Deletion()`` + ``Insertion()``;
- ``quantus`` 0.6.0 ``PixelFlipping`` (deletion only, black baseline). It ranks the (C, H, W)
  features of the map broadcast over the channels and needs ``features_in_step`` to divide
  H·W, so it makes 3× the steps (each channel of a pixel flipped separately): its ratio is
  given per forward pass. It runs when a Python with quantus
  is given by ``--quantus-python`` (quantus pulls opencv-python beside the headless build, so
  here it lives in its own venv: ``/work/venv-quantus``, which reuses /work/venv's torch).

It prints images/s for each (images whose deletion and insertion curves are both computed per
second; quantus: deletion only) and the ratio ``peer time / unmask time`` (> 1: unmask faster), and
checks that unmask and saliency_maps_metrics return the same numbers. The model's own forward time
per image at the same batch size is measured alongside so that overheads can be read off:
``overhead = wall / (forward passes × forward time per image)``.

    python benchmarks/metrics.py                     # 4 images, 28x28 maps (196 steps)
    python benchmarks/metrics.py --quick             # 2 images, 7x7 maps (49 steps)
    python benchmarks/metrics.py --batch-size 4      # every implementation at batch 4

Writes JSON (``--json``, default ``benchmarks/results/metrics[-quick].json``) with every raw
timing, the commit, the versions and the settings. Numbers on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
try:
    import unmask  # noqa: F401
except ImportError:  # a peer's venv without the editable install
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_QUANTUS_PYTHON = "/work/venv-quantus/bin/python"

if not hasattr(np, "trapz"):  # saliency_maps_metrics 0.0.26 and quantus 0.6.0 call it (NumPy 2)
    np.trapz = np.trapezoid


def _version(pkg: str) -> str | None:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def inputs(
    n_images: int, map_size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n_images`` 224² images (ImageNet samples when present, else scikit-image examples) and
    seeded random maps (n, 1, map_size, map_size): timings do not depend on the map content."""
    from unmask.images import example_image, load_image

    samples = ROOT.parent / "shared" / "data" / "imagenet-samples"
    files = sorted(samples.glob("*.JPEG"))[:n_images] if samples.is_dir() else []
    names = [f.name for f in files]
    images = [load_image(f, size=224) for f in files]
    for ex in ("chelsea", "coffee", "astronaut", "rocket", "horse", "camera"):
        if len(images) >= n_images:
            break
        images.append(load_image(example_image(ex), size=224))
        names.append(ex)
    if len(images) < n_images:
        raise SystemExit(f"--images: only {len(images)} images available")
    gen = torch.Generator().manual_seed(seed)
    return torch.cat(images), torch.rand(n_images, 1, map_size, map_size, generator=gen), names


def prob_model() -> torch.nn.Module:
    """The embedded classifier followed by a softmax (the seed package's model contract)."""
    import unmask

    return torch.nn.Sequential(
        unmask.load_model("efficientnet_lite0"), torch.nn.Softmax(dim=1)
    ).eval()


def forward_per_image(
    model: torch.nn.Module, x: torch.Tensor, batch_size: int, batches: int = 2
) -> float:
    batch = x[:1].expand(batch_size, -1, -1, -1).contiguous()
    times = []
    with torch.inference_mode():
        for _ in range(batches):
            t = time.perf_counter()
            model(batch)
            times.append((time.perf_counter() - t) / batch_size)
    return statistics.median(times)


def run_pair(
    deletion: Any,
    insertion: Any,
    model: Any,
    x: torch.Tensor,
    maps: torch.Tensor,
    target: torch.Tensor,
) -> tuple[float, dict[str, float]]:
    t = time.perf_counter()
    out = {**deletion(model, x, maps, target), **insertion(model, x, maps, target)}
    return time.perf_counter() - t, {k: float(v) for k, v in out.items()}


def quantus_worker(args: argparse.Namespace) -> None:
    """Runs inside the quantus venv: time PixelFlipping, print one JSON line."""
    import quantus

    x, maps, _ = inputs(args.images, args.map_size, args.seed)
    model = prob_model()[0]  # quantus applies the softmax itself (softmax=True)
    with torch.inference_mode():
        target = model(x).argmax(1)
    steps = min(196, args.map_size**2)
    # quantus broadcasts the map over the channels and flips (C, H, W) features one by one, but
    # requires features_in_step to divide H * W: with H * W / steps features per step it makes
    # 3 * steps forward passes per image (each channel of a pixel flipped separately)
    full = torch.nn.functional.interpolate(maps, size=(224, 224), mode="nearest")
    per_step = 224 * 224 // steps
    metric = quantus.PixelFlipping(
        features_in_step=per_step,
        perturb_baseline="black",
        return_auc_per_sample=True,
        disable_warnings=True,
    )
    walls, fwd = [], []
    for _ in range(args.repeats):
        fwd.append(forward_per_image(model, x, args.images))
        t = time.perf_counter()
        aucs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=target.numpy(),
            a_batch=full.numpy(),
            device="cpu",
            softmax=True,
            batch_size=args.images,
        )
        walls.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "walls": walls,
                "forward_s_per_image": statistics.median(fwd),
                "batch_size": args.images,
                "forward_passes": args.images * 3 * steps,
                "steps": 3 * steps,
                "features_in_step": per_step,
                "mean_auc": float(np.mean(aucs)),
                "version": _version("quantus"),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--map-size", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=20,
        help="forward batch of unmask and saliency_maps_metrics (the seed's default "
        "20); quantus batches the images (= --images)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 images, 7x7 maps (49 steps)")
    parser.add_argument(
        "--quantus-python",
        default=DEFAULT_QUANTUS_PYTHON,
        help="a Python with quantus installed ('' to skip)",
    )
    parser.add_argument("--json", default=None)
    parser.add_argument("--quantus-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.images, args.map_size = 2, 7
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quantus_worker:
        quantus_worker(args)
        return

    from saliency_maps_metrics import multi_step_metrics as sm

    from unmask.metrics import compat

    x, maps, names = inputs(args.images, args.map_size, args.seed)
    model = prob_model()
    with torch.inference_mode():
        target = model(x).argmax(1)
    steps = min(196, args.map_size**2)
    passes = args.images * 2 * (steps + 1)
    bs = args.batch_size
    rows: dict[str, Any] = {}
    impls = {
        "unmask": (compat.Deletion(batch_size=bs), compat.Insertion(batch_size=bs)),
        "saliency_maps_metrics": (sm.Deletion(batch_size=bs), sm.Insertion(batch_size=bs)),
    }
    fwd = []
    walls: dict[str, list[float]] = {name: [] for name in impls}
    values: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):  # interleaved, so that load drift hits every implementation
        for name, (d, i) in impls.items():
            fwd.append(forward_per_image(model, x, bs))
            wall, values[name] = run_pair(d, i, model, x, maps, target)
            walls[name].append(wall)
    for name in impls:
        med = statistics.median(walls[name])
        rows[name] = {
            "walls": walls[name],
            "median": med,
            "images_per_s": args.images / med,
            "forward_passes": passes,
            "values": values[name],
        }
    forward = statistics.median(fwd)
    for row in rows.values():
        row["overhead"] = row["median"] / (row["forward_passes"] * forward)
    diff = max(
        abs(rows["unmask"]["values"][k] - rows["saliency_maps_metrics"]["values"][k])
        for k in rows["unmask"]["values"]
    )

    quantus_row: dict[str, Any] | None = None
    quantus_note = None
    if args.quantus_python and Path(args.quantus_python).is_file():
        cmd = [
            args.quantus_python,
            __file__,
            "--quantus-worker",
            "--images",
            str(args.images),
            "--map-size",
            str(args.map_size),
            "--repeats",
            str(args.repeats),
            "--seed",
            str(args.seed),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
        )
        if proc.returncode == 0:
            quantus_row = json.loads(proc.stdout.strip().splitlines()[-1])
            quantus_row["median"] = statistics.median(quantus_row["walls"])
            quantus_row["images_per_s"] = args.images / quantus_row["median"]
            quantus_row["overhead"] = quantus_row["median"] / (
                quantus_row["forward_passes"] * quantus_row["forward_s_per_image"]
            )
        else:
            quantus_note = f"quantus worker failed: {proc.stderr.strip().splitlines()[-1:]}"
    else:
        quantus_note = f"no quantus Python at {args.quantus_python!r} (pass --quantus-python)"

    u = rows["unmask"]
    print(
        f"{args.images} images 224x224, maps {args.map_size}x{args.map_size} -> {steps} steps, "
        f"batch {bs}, torch threads {torch.get_num_threads()}, model forward "
        f"{forward * 1e3:.1f} ms/image"
    )
    print(
        f"{'implementation':<34} {'wall s':>8} {'images/s':>9} {'overhead':>9} {'peer/unmask':>11}"
    )
    for name, row in rows.items():
        print(
            f"{name + ' (del+ins)':<34} {row['median']:>8.2f} {row['images_per_s']:>9.3f} "
            f"{row['overhead']:>9.2f} {row['median'] / u['median']:>11.2f}"
        )
    if quantus_row is not None:
        # quantus: deletion only, 3x the forward passes: the ratio is per forward pass
        ratio = (quantus_row["median"] / quantus_row["forward_passes"]) / (
            u["median"] / u["forward_passes"]
        )
        quantus_row["ratio_per_forward_pass_vs_unmask"] = ratio
        print(
            f"{'quantus PixelFlipping (del only)':<34} {quantus_row['median']:>8.2f} "
            f"{quantus_row['images_per_s']:>9.3f} {quantus_row['overhead']:>9.2f} {ratio:>11.2f}"
            f"  (per forward pass; {quantus_row['steps']} steps per image)"
        )
    else:
        print(f"quantus: skipped ({quantus_note})")
    print(f"max |unmask - saliency_maps_metrics| over dauc, dc, iauc, ic: {diff:.2e}")

    result = {
        "benchmark": "metrics: deletion + insertion throughput",
        "commit": _commit(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "unmask": _version("unmask"),
            "saliency-maps-metrics": _version("saliency-maps-metrics"),
            "quantus": quantus_row.get("version") if quantus_row else None,
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "torch_threads": torch.get_num_threads(),
        },
        "settings": {
            "images": names,
            "map_size": args.map_size,
            "steps": steps,
            "batch_size": bs,
            "repeats": args.repeats,
            "seed": args.seed,
        },
        "forward_s_per_image": forward,
        "results": {**rows, **({"quantus_pixel_flipping": quantus_row} if quantus_row else {})},
        "quantus_note": quantus_note,
        "max_abs_difference_unmask_vs_reference": diff,
    }
    out = (
        Path(args.json)
        if args.json
        else ROOT
        / "benchmarks"
        / "results"
        / ("metrics-quick.json" if args.quick else "metrics.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
