"""How soon a cancel lands in the explorer, per job kind: the longest gap between two
cancellation checks of a job (issue 25: "within a second").

A running job checks whether it was cancelled before every forward pass of the model (the
explorer's pre-hook) and at every progress tick; a DELETE lands at the next check. This plans
each kind of job with the explorer's own planner (:func:`unmask.serve.planners.plan`, under
its per-job memory budget, so the batch sizes are the served ones), runs it with a progress
recorder that notes the time of every check, stops it after ``--seconds`` and prints the
longest gap (wall clock) and the first one (warm-ups: a copy built, an import).

    python benchmarks/cancel_latency.py                 # EfficientNet-Lite0, 2 threads, 6 s
    python benchmarks/cancel_latency.py --smoke         # the synthetic CNN, 1 s per kind

Measured on a loaded 2-core machine (load 2-3, 2 threads, Lite0 at 224²): the longest gap
about 0.35 s for every kind; the first mask optimisation of a process (extremal) spends 1.3 s
importing ``torch._dynamo`` (``torch.optim.SGD``) before its first check.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import environment  # noqa: F401  (the sources on the path)

KINDS = {
    "occlusion": ("explain", {"method": "occlusion", "params": {"patch_size": 8, "stride": 2}}),
    "rise": ("explain", {"method": "rise", "params": {"masks": 4000}}),
    "lime": ("explain", {"method": "lime", "params": {"samples": 1000}}),
    "integrated_gradients": (
        "explain",
        {"method": "integrated_gradients", "params": {"steps": 200}},
    ),
    "smoothgrad": ("explain", {"method": "smoothgrad", "params": {"samples": 100}}),
    "scorecam": ("explain", {"method": "scorecam", "params": {}}),
    "extremal": ("explain", {"method": "extremal", "params": {}}),
    "mp": ("explain", {"method": "mp", "params": {}}),
    "fido": ("explain", {"method": "fido", "params": {}}),
    "cwox_gradcam": ("cwox", {"method": "gradcam", "clusters": [[k] for k in range(100)]}),
    "cwox_rise": ("cwox", {"method": "rise", "clusters": [[0, 1], [2, 3], [4]]}),
    "metrics": (
        "metrics",
        {"metrics": [{"name": "deletion", "params": {"max_steps": 1000}}, "irof"]},
    ),
}


class _Recorder:
    """A job's progress: notes the time of every check, stops the job after ``seconds``."""

    def __init__(self, seconds: float, stop: type[Exception]) -> None:
        self.times = [time.perf_counter()]
        self.seconds, self.stop = seconds, stop

    def check(self) -> None:
        self.times.append(time.perf_counter())
        if self.times[-1] - self.times[0] > self.seconds:
            raise self.stop("enough")

    def __call__(self, done: int, total: int) -> None:
        self.check()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--seconds", type=float, default=6.0, help="run each job this long")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="synthetic_cnn, 1 s per kind")
    parser.add_argument("--verbose", action="store_true", help="print every gap")
    parser.add_argument("--kinds", nargs="*", choices=list(KINDS), help="default: every kind")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.seconds = "synthetic_cnn", 1.0
    from unmask.serve import create_app
    from unmask.serve.jobs import Cancelled
    from unmask.serve.planners import plan
    from unmask.serve.schemas import CwoxJob, ExplainJob, MetricsJob

    torch.set_num_threads(args.threads)
    state = create_app([args.model], max_job_seconds=1e6).state.served
    rng = np.random.default_rng(0)
    image_id = state.images.put(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    source_key, source_run = plan(
        state, ExplainJob(kind="explain", image_id=image_id, method="gradcam", target=1)
    )
    source_run(_Recorder(1e9, Cancelled))
    bodies = {"explain": ExplainJob, "cwox": CwoxJob, "metrics": MetricsJob}
    print(f"{args.model}, {args.threads} threads, each job stopped after {args.seconds:g} s")
    for name, (kind, fields) in KINDS.items():
        if args.kinds and name not in args.kinds:
            continue
        extra = {"target": 1} if kind == "explain" else {}
        extra = {"result": source_key} if kind == "metrics" else extra
        if kind == "cwox":  # the model's classes only (the synthetic CNN has 6)
            classes = next(iter(state.models.values())).num_classes
            fields = {
                **fields,
                "clusters": [[c for c in cl if c < classes] for cl in fields["clusters"]],
            }
            fields["clusters"] = [cl for cl in fields["clusters"] if cl]
        body = bodies[kind](kind=kind, image_id=image_id, **fields, **extra)
        try:
            _, run = plan(state, body)
        except ValueError as exc:  # refused (its cost, its memory)
            print(f"{name:22s} refused: {str(exc)[:120]}")
            continue
        recorder = _Recorder(args.seconds, Cancelled)
        ended = "stopped"
        try:
            run(recorder)
            ended = "done"
        except Cancelled:
            pass
        recorder.times.append(time.perf_counter())
        gaps = np.diff(recorder.times)
        print(
            f"{name:22s} {ended:8s} {len(gaps):5d} checks, longest gap {gaps.max():5.2f} s, "
            f"first {gaps[0]:5.2f} s, median {float(np.median(gaps)):5.2f} s",
            flush=True,
        )
        if args.verbose:
            print("   gaps:", " ".join(f"{g:.2f}" for g in gaps))
    state.close()


if __name__ == "__main__":
    main()
