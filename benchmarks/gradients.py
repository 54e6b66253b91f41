"""Time the gradient and CAM methods on the embedded model against the model's own passes.

For each gradient method (input gradients, gradient CAMs, MWP) the reference is the model's
own forward + backward on the same batch: ``torch.autograd.grad`` of the summed target logits
with respect to the input, parameters' gradients off (what a hand-written saliency does); a
method that makes P such passes (integrated gradients: ``steps``, SmoothGrad: ``samples``) is
compared with P references::

    ratio = wall / (passes × reference forward+backward time)        (target ≤ 1.10)

For Score-CAM and Ablation-CAM (forward passes only) the reference is model-bound time::

    ratio = wall / (evaluations × per-image forward time at the method's batch size)

Repeats are interleaved (reference, method, reference, method...) and the median ratio over
repeats is printed, so that load drift on a shared machine hits both alike.

    python benchmarks/gradients.py --repeats 3
    python benchmarks/gradients.py --methods gradcam,mwp --batch 8

Writes JSON (``--json``, default ``benchmarks/results/gradients.json``) with every timing, the
commit, the versions, the settings and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

import unmask
from unmask.images import example_image, load_image
from unmask.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]

#: name -> (hyperparameters, backward passes per image batch) for the gradient methods.
GRADIENT: dict[str, tuple[dict[str, Any], int]] = {
    "gradient": ({}, 1),
    "input_x_gradient": ({}, 1),
    "integrated_gradients": ({"steps": 8}, 8),
    "smoothgrad": ({"samples": 8}, 8),
    "gradcam": ({}, 1),
    "gradcam++": ({}, 1),
    "xgradcam": ({}, 1),
    "layercam": ({}, 1),
    "hirescam": ({}, 1),
    "eigencam": ({}, 1),
    "mwp": ({}, 1),
    "c-mwp": ({}, 2),
}
#: The forward-only CAMs, timed against evaluations × per-image forward time.
PERTURBATION = {"scorecam": {}, "ablationcam": {}}


def reference_pass(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
    """Seconds of one forward + backward (to the input, no parameter gradients) on ``x``."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        start = time.perf_counter()
        xx = x.clone().requires_grad_(True)
        logits = model(xx)
        torch.autograd.grad(logits.gather(1, target[:, None]).sum(), xx)
        return time.perf_counter() - start
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)


def forward_per_image(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> float:
    batch = x[:1].expand(batch_size, -1, -1, -1).contiguous()
    with torch.inference_mode():
        start = time.perf_counter()
        model(batch)
    return (time.perf_counter() - start) / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join([*GRADIENT, *PERTURBATION]))
    parser.add_argument("--batch", type=int, default=4, help="images per batch (gradient methods)")
    parser.add_argument(
        "--perturbation-batch",
        type=int,
        default=64,
        help="batch_size of Score-CAM / Ablation-CAM (one image)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/gradients.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = unmask.load_model("efficientnet_lite0")
    img = load_image(example_image("chelsea"), size=224)
    x = img.expand(args.batch, -1, -1, -1).contiguous()
    target = torch.full((args.batch,), 285)
    load_before = os.getloadavg()
    rows = []
    for name in args.methods.split(","):
        METHODS.get(name)
        runs = []
        if name in GRADIENT:
            params, passes = GRADIENT[name]
            if "batch_size" in METHODS.get(name).parameters():
                params = {**params, "batch_size": args.batch}  # one pass = the reference batch
            explainer = unmask.make_explainer(model, name, **params)
            explainer.explain(x[:1], target[:1])  # warm-up
            for _ in range(args.repeats):
                ref = reference_pass(model, x, target)
                start = time.perf_counter()
                explainer.explain(x, target)
                wall = time.perf_counter() - start
                runs.append(
                    {"wall": wall, "reference": ref * passes, "ratio": wall / (ref * passes)}
                )
            kind = f"{passes} x forward+backward of {args.batch} images"
        else:
            bs = args.perturbation_batch
            explainer = unmask.make_explainer(model, name, batch_size=bs, **PERTURBATION[name])
            for _ in range(args.repeats):
                per_image = forward_per_image(model, x, bs)
                explainer.scorer.evaluations = 0
                start = time.perf_counter()
                explainer.explain(x[:1], target[:1])
                wall = time.perf_counter() - start
                n = explainer.scorer.evaluations
                runs.append(
                    {
                        "wall": wall,
                        "evaluations": n,
                        "per_image": per_image,
                        "ratio": wall / (n * per_image),
                    }
                )
            kind = f"evaluations x forward per image (batch {bs}), 1 image"
        ratio = statistics.median(r["ratio"] for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        rows.append(
            {
                "method": name,
                "reference": kind,
                "median_ratio": ratio,
                "median_wall": wall,
                "runs": runs,
            }
        )
        print(f"{name:<22} {wall:8.3f} s   ratio {ratio:5.2f}   ({kind})", flush=True)
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    out = {
        "commit": commit,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "batch": args.batch,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": load_after,
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
