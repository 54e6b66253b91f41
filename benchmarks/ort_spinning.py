"""Should ONNX Runtime's intra-op threads spin after a run? Interleaved A/B on the scoring path.

ONNX Runtime's CPU threads busy-wait after each run by default
(``session.intra_op.allow_spinning = 1``); between two runs unmask's scorer runs its own torch
ops (masks, blends) on the same cores. This times RISE 500, occlusion 29/8, LIME 200 and the
bare forward at batch 16 on the embedded model and the chelsea image with spinning on and off,
interleaved over ``--repeats``, in one process (a new ORT session per setting).
``unmask.onnx_engine`` sets it off; this script is the measurement behind that choice.

    python benchmarks/ort_spinning.py [--repeats 3] [--threads 2]

Writes ``benchmarks/results/ort-spinning.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import onnxruntime as ort
import torch
from common import ROOT, environment

import unmask
import unmask.models
import unmask.onnx_engine

TASKS = {
    "rise": {"masks": 500},
    "occlusion": {"patch_size": 29, "stride": 8},
    "lime": {"samples": 200},
}


SPIN = "session.intra_op.allow_spinning"


def _options(spin: str) -> type:
    """SessionOptions whose spinning entry is ``spin`` whatever the engine sets."""
    base = ort.SessionOptions

    class Options(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            super().add_session_config_entry(SPIN, spin)

        def add_session_config_entry(self, key: str, value: str) -> None:
            if key != SPIN:
                super().add_session_config_entry(key, value)

    return Options


def run(model, x: torch.Tensor, spin: str, target: int) -> dict[str, float]:
    original = ort.SessionOptions
    ort.SessionOptions = _options(spin)
    try:
        unmask.models._FAST.pop(model, None)  # a new session with these options
        out = {}
        for name, params in TASKS.items():
            explainer = unmask.make_explainer(model, name, batch_size=16, **params)
            explainer.explain(x, target)  # warm-up (the session, the segments)
            start = time.perf_counter()
            explainer.explain(x, target)
            out[name] = time.perf_counter() - start
        xb = x.expand(16, -1, -1, -1).contiguous()
        with torch.inference_mode():
            model.infer(xb)
            start = time.perf_counter()
            for _ in range(20):
                model.infer(xb)
            out["forward_ms_per_image"] = (time.perf_counter() - start) / 320 * 1e3
        return out
    finally:
        ort.SessionOptions = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = unmask.load_model()
    unmask.onnx_engine.prepare(model)
    x = unmask.load_image(unmask.example_image("chelsea"), size=224)
    target = int(model(x).argmax())
    before = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {"1": [], "0": []}
    for _ in range(args.repeats):
        for spin in runs:
            runs[spin].append(run(model, x, spin, target))
    report = {
        "benchmark": "ort_spinning",
        "threads": args.threads,
        "load": {"before": before, "after": os.getloadavg()},
        "environment": environment(),
        "runs": runs,
        "medians": {
            spin: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for spin, rs in runs.items()
        },
    }
    print(json.dumps(report["medians"], indent=1), json.dumps(report["load"]))
    (ROOT / "benchmarks" / "results" / "ort-spinning.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
