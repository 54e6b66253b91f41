"""Time one ShearletX explanation at 224² and the share of time spent outside the model.

Method: (1) run ShearletX on one image with the paper's settings (300 steps × 16 noise samples;
``--steps`` to cut); (2) run the same number of model forward+backward passes alone, on a batch
of ``noise_bs`` images that require gradients (what the optimiser feeds the model each step).
Outside share = 1 - model time / explanation time: the transforms, noise, loss and optimiser.
The target is ≤ 25 %. Numbers on a shared CPU are noisy: repeat and report the median.

    python benchmarks/shearletx.py --steps 20 --repeats 3 [--method shearletx] [--profile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import unmask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--noise-bs", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--method", default="shearletx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print the top torch ops")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = unmask.load_model("efficientnet_lite0")
    x = unmask.load_image(unmask.example_image("chelsea"), size=args.size)
    target = int(model(x).argmax())
    explainer = unmask.make_explainer(model, args.method, steps=args.steps, noise_bs=args.noise_bs)
    explainer.explain(x, target)  # warm-up (filters, caches)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            explainer.explain(x, target)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    totals, models = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        explainer.explain(x, target)
        totals.append(time.perf_counter() - start)
        batch = x.expand(args.noise_bs, -1, -1, -1).clone()
        start = time.perf_counter()
        for _ in range(args.steps):
            images = batch.clone().requires_grad_(True)
            prob = torch.softmax(model(images), dim=1)[:, target]
            prob.sum().backward()
        models.append(time.perf_counter() - start)
    total, net = statistics.median(totals), statistics.median(models)
    print(json.dumps({
        "method": args.method, "size": args.size, "steps": args.steps, "noise_bs": args.noise_bs,
        "threads": args.threads, "seconds_total": round(total, 3), "seconds_model": round(net, 3),
        "seconds_per_step": round(total / args.steps, 4),
        "outside_model_share": round(max(0.0, 1 - net / total), 3),
        "projected_seconds_300_steps": round(total / args.steps * 300, 1),
        "totals": [round(t, 3) for t in totals], "models": [round(t, 3) for t in models],
        "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
