"""Time one ShearletX explanation at 224² and the share of time spent outside the model.

Method: (1) run ShearletX on one image with the paper's settings (300 steps × 16 noise samples;
``--steps`` to cut); (2) run the same number of model forward+backward passes alone, on a batch
of ``noise_bs`` images that require gradients (what the optimiser feeds the model each step).
Outside share = 1 - model time / explanation time: the transforms, noise, loss, optimiser and
the one-off set-up (transform of the image, band statistics, filters). The target is ≤ 25 %.

A cross-check free of interference between the two: the same explanation with a stand-in
classifier of negligible cost (global average pool + linear) gives the pure overhead per step,
and ``overhead / (overhead + model per step)`` the share it implies.

A short run over-weights the set-up, so the script also times a 2-step explanation and reports
the per-step share ``1 - model per step / explanation per step`` (from the difference of the
two runs) and the set-up seconds, and projects the share of a 300-step explanation. The two
measurements alternate over ``--repeats`` and the medians are reported (a shared CPU is noisy).

    python benchmarks/shearletx.py --steps 30 --repeats 3 [--method shearletx] [--profile]
    python benchmarks/shearletx.py --autograd channels_last   # the paper setting, channels-last

``--autograd`` chooses how the model's forward + backward runs (``Classifier.fast(autograd=)``):
``eager`` (the default) or ``channels_last`` (the channels-last copy, gradients to the input
only); run both on the idle machine to compare them at the paper setting (300 x 16).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import unmask
import unmask.models


def _explain_seconds(model, method, x, target, steps, noise_bs) -> float:
    explainer = unmask.make_explainer(model, method, steps=steps, noise_bs=noise_bs)
    start = time.perf_counter()
    explainer.explain(x, target)
    return time.perf_counter() - start


def _model_seconds(model, x, target, steps, noise_bs) -> float:
    batch = x.expand(noise_bs, -1, -1, -1).clone()
    start = time.perf_counter()
    for _ in range(steps):
        images = batch.clone().requires_grad_(True)
        prob = torch.softmax(model(images), dim=1)[:, target]
        prob.sum().backward()
    return time.perf_counter() - start


class _Negligible(torch.nn.Module):
    """A classifier of negligible cost: global average pool + linear, 1000 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean((2, 3)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--noise-bs", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--method", default="shearletx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print the top torch ops")
    parser.add_argument(
        "--autograd",
        default="eager",
        choices=unmask.models.AUTOGRADS,
        help="how model(x) runs with gradients (Classifier.fast(autograd=)); default eager",
    )
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps: expected at least 3 (a 2-step run is the set-up reference)")
    torch.set_num_threads(args.threads)
    model = unmask.load_model("efficientnet_lite0")
    model.fast(model.execution, autograd=args.autograd)
    x = unmask.load_image(unmask.example_image("chelsea"), size=args.size)
    target = int(model(x).argmax())
    _explain_seconds(model, args.method, x, target, 2, args.noise_bs)  # warm-up (filters, caches)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _explain_seconds(model, args.method, x, target, args.steps, args.noise_bs)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    stand_in = unmask.Classifier.wrap(_Negligible().eval())
    totals, shorts, models, overheads = [], [], [], []
    for _ in range(args.repeats):
        totals.append(_explain_seconds(model, args.method, x, target, args.steps, args.noise_bs))
        models.append(_model_seconds(model, x, target, args.steps, args.noise_bs))
        shorts.append(_explain_seconds(model, args.method, x, target, 2, args.noise_bs))
        overheads.append(
            _explain_seconds(stand_in, args.method, x, target, args.steps, args.noise_bs)
        )
    total, net = statistics.median(totals), statistics.median(models)
    short = statistics.median(shorts)
    overhead_step = statistics.median(overheads) / args.steps
    per_step = (total - short) / (args.steps - 2)
    model_step = net / args.steps
    setup = max(0.0, short - 2 * per_step)
    projected = setup + 300 * per_step
    print(
        json.dumps(
            {
                "method": args.method,
                "size": args.size,
                "steps": args.steps,
                "noise_bs": args.noise_bs,
                "threads": args.threads,
                "autograd": args.autograd,
                "seconds_total": round(total, 3),
                "seconds_model": round(net, 3),
                "outside_model_share": round(max(0.0, 1 - net / total), 3),
                "seconds_per_step": round(per_step, 4),
                "seconds_model_per_step": round(model_step, 4),
                "outside_model_share_per_step": round(max(0.0, 1 - model_step / per_step), 3),
                "seconds_setup": round(setup, 3),
                "seconds_overhead_per_step_negligible_model": round(overhead_step, 4),
                "outside_share_from_overhead": round(
                    overhead_step / (overhead_step + model_step), 3
                ),
                "projected_seconds_300_steps": round(projected, 1),
                "projected_outside_share_300_steps": round(
                    max(0.0, 1 - 300 * model_step / projected), 3
                ),
                "totals": [round(t, 3) for t in totals],
                "models": [round(t, 3) for t in models],
                "two_step_runs": [round(t, 3) for t in shorts],
                "overhead_runs": [round(t, 3) for t in overheads],
                "torch": torch.__version__,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
