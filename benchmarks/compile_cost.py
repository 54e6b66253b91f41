"""Speed of each execution mode and the set-up cost of ``"compiled"``, cold and with a warm cache.

    python benchmarks/compile_cost.py [--batch 16] [--threads 2] [--force]

Each mode runs in a fresh process (``--child``): EfficientNet-Lite0, ``--batch`` random 224²
images, ``model.fast(mode).infer(x)`` under ``torch.inference_mode()``: the first call (the
copy, the trace or the compilation) is timed, then the best of ``--repeats`` calls per image,
and the largest difference to eager logits relative to the largest |logit|. ``"compiled"`` runs
twice with one fresh ``TORCHINDUCTOR_CACHE_DIR``: once cold (empty cache), once warm (a second
process, inductor's on-disk FX graph cache filled by the first). Load is recorded before and
after; a busy machine (1-minute load > half the cores before) is refused unless ``--force``, and
a forced run is marked BUSY. Writes ``benchmarks/results/compile-cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(args) -> None:
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    import unmask

    torch.set_num_threads(args.threads)
    model = unmask.load_model("efficientnet_lite0", execution="eager")
    x = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        eager = model(x)
    model.fast(args.child, batch_size=args.batch)  # batch_size: the compiled batch
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.infer(x)
        first = time.perf_counter() - start
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.infer(x)
            best = min(best, time.perf_counter() - start)
    diff = float((out - eager).abs().max() / eager.abs().max())
    print(
        json.dumps(
            {
                "mode": args.child,
                "first_call_s": first,
                "ms_per_image": 1e3 * best / args.batch,
                "max_rel_diff": diff,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    cores = os.cpu_count() or 1
    before = os.getloadavg()
    busy = before[0] > 0.5 * cores
    if busy and not args.force:
        raise SystemExit(
            f"BUSY: 1-minute load {before[0]:.2f} > {0.5 * cores:.1f}; "
            "wait for an idle machine or pass --force (marked BUSY)"
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="unmask-inductor-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONWARNINGS": "ignore"}
        for mode, label in (
            ("eager", "eager"),
            ("channels_last", "channels_last"),
            ("frozen", "frozen"),
            ("compiled", "compiled, cold cache"),
            ("compiled", "compiled, warm cache (second process)"),
        ):
            print(f"... {label}", file=sys.stderr, flush=True)
            cmd = [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--batch",
                str(args.batch),
                "--threads",
                str(args.threads),
                "--repeats",
                str(args.repeats),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                rows.append(
                    {"mode": mode, "label": label, "error": proc.stderr.strip().splitlines()[-1:]}
                )
                continue
            rows.append({"label": label, **json.loads(proc.stdout.strip().splitlines()[-1])})
    after = os.getloadavg()
    busy = busy or after[0] > cores
    eager = next(r["ms_per_image"] for r in rows if r["label"] == "eager")
    lines = [
        f"{'BUSY (not results): ' if busy else ''}EfficientNet-Lite0, batch {args.batch}, "
        f"{args.threads} threads; load before {before[0]:.2f}, after {after[0]:.2f}",
        "",
        "| mode | first call s | ms / image | speed-up vs eager | max rel. diff |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | failed: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['label']} | {r['first_call_s']:.1f} | {r['ms_per_image']:.1f} | "
            f"{eager / r['ms_per_image']:.2f} | {r['max_rel_diff']:.1e} |"
        )
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compile-cost.json").write_text(
        json.dumps(
            {
                "batch": args.batch,
                "threads": args.threads,
                "busy": busy,
                "load": {"before": before, "after": after},
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
