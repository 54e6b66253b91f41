"""Do the mask optimisations give the same maps through the channels-last autograd path?

For each method, one image, the paper's settings: the mask with ``autograd="eager"`` and with
``autograd="channels_last"`` (same seed), and, as the yardstick of optimisation noise, the
eager mask with another seed. Reported, on the saliency maps: the max absolute difference,
the Pearson correlation and the IoU of the top 10 %; channels-last is "within optimisation
noise" when it is closer to the eager map than another seed's is (Pearson higher, top-10 %
IoU higher). Also the wall time of each run (not interleaved with peers: a side product).

    python benchmarks/autograd_agreement.py                       # ShearletX 300 x 16, extremal 800
    python benchmarks/autograd_agreement.py --methods shearletx --steps 30   # a quick look

Writes ``benchmarks/results/autograd_agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from common import ROOT, environment, map_pearson, top_iou

import unmask
import unmask.models

#: method -> its parameters at the paper's settings (steps replaced by --steps when given).
PAPER = {
    "shearletx": {"steps": 300, "noise_bs": 16},
    "waveletx": {"steps": 300, "noise_bs": 16},
    "extremal": {"steps": 800, "areas": 0.1},
}


def run(model, method: str, params: dict, x, target: int, autograd: str, seed: int):
    model.fast(model.execution, autograd=autograd)
    explainer = unmask.make_explainer(model, method, seed=seed, **params)
    start = time.perf_counter()
    e = explainer.explain(x, target)
    return e.saliency[0, 0].detach().float(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="shearletx,extremal")
    parser.add_argument("--steps", type=int, help="override the paper's steps (stated)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--example", default="chelsea")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = unmask.load_model()
    x = unmask.load_image(unmask.example_image(args.example), size=224)
    target = int(model(x).argmax())
    rows = []
    load_before = os.getloadavg()
    for method in args.methods.split(","):
        params = dict(PAPER[method])
        if args.steps:
            params["steps"] = args.steps
        eager, t_eager = run(model, method, params, x, target, "eager", 0)
        fast, t_fast = run(model, method, params, x, target, "channels_last", 0)
        other, _ = run(model, method, params, x, target, "eager", 1)
        row = {
            "method": method,
            "params": params,
            "seconds_eager": round(t_eager, 1),
            "seconds_channels_last": round(t_fast, 1),
            "channels_last_vs_eager": {
                "max_abs": float((fast - eager).abs().max()),
                "pearson": map_pearson(fast, eager),
                "top10_iou": top_iou(fast, eager),
            },
            "seed1_vs_seed0_eager": {
                "max_abs": float((other - eager).abs().max()),
                "pearson": map_pearson(other, eager),
                "top10_iou": top_iou(other, eager),
            },
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "benchmark": "autograd_agreement",
        "image": args.example,
        "threads": args.threads,
        "load": {"before": load_before, "after": os.getloadavg()},
        "environment": environment(),
        "rows": rows,
    }
    out = ROOT / "benchmarks" / "results" / "autograd_agreement.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
