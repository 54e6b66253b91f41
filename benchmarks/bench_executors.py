"""Benchmark throughput: the local executor vs Ray with 1 and 2 workers, and the store's cost.

One small benchmark (the embedded EfficientNet-Lite0 at 224², the first ``--images`` ImageNet
samples, occlusion with 56-pixel patches at stride 28 and RISE with 64 masks, deletion with 16
steps) is run into a fresh store by each executor, one torch thread per worker. Printed and
written to JSON: wall seconds, units (image × method run) per minute, and for Ray the start-up
(cluster + actors loading the model) apart from the steady state. The store's cost per unit is
timed separately: writing a unit (a 224×224 map, compressed, and its metric rows, one
transaction) averaged over ``--writes`` units, next to the mean compute time of a unit.

    python benchmarks/bench_executors.py                      # 4 images, local + ray 1 + ray 2
    python benchmarks/bench_executors.py --images 2 --no-ray  # local only

Duration: the default run is 8 units per executor. On the shared 2-core machine under a load
of 7-15 it took about 8 minutes (170 + 140 + 128 s of runs, Ray start-up included); ``--images
1 --writes 5`` took about 4 minutes at a load of 12. Idle it should take less. Each executor is
bounded by ``--max-seconds`` (default 900): past it, that executor's entry records the timeout
and the next one starts, so the script always ends (at most 3 x 900 s plus the store timing).
The machine's load average is recorded before and after: on a shared CPU the numbers are noisy,
so run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(
    os.environ.get("UNMASK_SAMPLES", ROOT.parent / "shared" / "data" / "imagenet-samples")
)

CONFIG = """
name = "throughput"
[model]
name = "efficientnet_lite0"
[data]
path = "{data}"
[[methods]]
method = "occlusion"
params = {{ patch_size = 56, stride = 28, batch_size = 16 }}
[[methods]]
method = "rise"
params = {{ masks = 64, batch_size = 16 }}
[[metrics]]
metric = "deletion"
params = {{ max_steps = 16, batch_size = 17 }}
"""


def _data(folder: Path, n: int) -> Path:
    """The first ``n`` ImageNet samples with their labels, as a labels.csv folder."""
    lines = (SAMPLES / "labels.csv").read_text().splitlines()
    data = folder / "data"
    data.mkdir()
    for line in lines[1 : n + 1]:
        name = line.split(",", 1)[0]
        (data / name).symlink_to(SAMPLES / name)
    (data / "labels.csv").write_text("\n".join(lines[: n + 1]) + "\n")
    return data


def _time_run(plan, store: Path, executor) -> dict:  # noqa: ANN001
    from unmask.bench import run

    start = time.perf_counter()
    first: list[float] = []
    summary = run(
        plan,
        store,
        executor=executor,
        threads=1,
        progress=False,
        log=None,
        on_unit=lambda u: first.append(time.perf_counter()) if not first else None,
    )
    wall = time.perf_counter() - start
    return {
        "units": summary.written,
        "wall_s": round(wall, 2),
        "units_per_min": round(60 * summary.written / wall, 2),
        "first_unit_s": round(first[0] - start, 2) if first else None,
        "steady_units_per_min": round(60 * (summary.written - 1) / (wall - (first[0] - start)), 2)
        if first and summary.written > 1
        else None,
    }


class _Timeout(Exception):
    pass


def _bounded(seconds: int, fn):  # noqa: ANN001, ANN202
    """``fn()``, or ``{"error": ...}`` when it takes more than ``seconds`` (SIGALRM)."""

    def alarm(*_):  # noqa: ANN002, ANN202
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn()
    except _Timeout:
        return {"error": f"stopped after {seconds} s (--max-seconds)"}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _store_cost(writes: int, folder: Path) -> dict:
    from unmask.bench.store import ResultRecord, Store, UnitRecord

    store = Store.create_or_resume(folder / "cost.sqlite", {"name": "cost"}, "h")
    rng = np.random.default_rng(0)
    maps = rng.random((writes, 224, 224), dtype=np.float32)
    start = time.perf_counter()
    for i in range(writes):
        store.write_unit(
            UnitRecord(
                f"f{i}",
                "m",
                "done",
                key=f"k{i}",
                spec={"method": "m"},
                saliency=maps[i],
                results=[
                    ResultRecord(
                        f"metric{j}", f"k{i}{j}", "done", float(j), {"scores": list(range(17))}
                    )
                    for j in range(5)
                ],
            )
        )
    per = (time.perf_counter() - start) / writes
    size = (folder / "cost.sqlite").stat().st_size + sum(
        p.stat().st_size for p in folder.glob("cost.sqlite-*")
    )
    store.close()
    return {"write_ms_per_unit": round(1000 * per, 3), "bytes_per_unit": int(size / writes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument(
        "--max-seconds", type=int, default=900, help="bound on each executor's run (default 900)"
    )
    parser.add_argument(
        "--json", default=str(ROOT / "benchmarks" / "results" / "bench-executors.json")
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from unmask.bench import load_plan
    from unmask.bench.executors import LocalExecutor, RayExecutor

    out: dict = {
        "load_before": os.getloadavg(),
        "images": args.images,
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    try:
        out["commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        out["commit"] = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = _data(tmp_path, args.images)
        (tmp_path / "b.toml").write_text(CONFIG.format(data=data))
        plan = load_plan(tmp_path / "b.toml")
        runs = {"local": lambda: LocalExecutor()}
        if not args.no_ray:
            runs["ray-1"] = lambda: RayExecutor(workers=1)
            runs["ray-2"] = lambda: RayExecutor(workers=2)
        for name, make in runs.items():
            out[name] = _bounded(
                args.max_seconds,
                lambda name=name, make=make: _time_run(plan, tmp_path / f"{name}.sqlite", make()),
            )
            print(name, out[name], flush=True)
        from unmask.bench import Store

        units = [u for u in Store.open(tmp_path / "local.sqlite").units() if u["seconds"]]
        out["unit_compute_ms_mean"] = round(1000 * float(np.mean([u["seconds"] for u in units])), 1)
        if "error" in out["local"]:
            print("local:", out["local"]["error"], "(unit time from the units stored)")
        out["store"] = _store_cost(args.writes, tmp_path)
    out["store"]["share_of_unit"] = round(
        out["store"]["write_ms_per_unit"] / out["unit_compute_ms_mean"], 5
    )
    out["load_after"] = os.getloadavg()
    print("store", out["store"], "unit compute ms", out["unit_compute_ms_mean"])
    Path(args.json).write_text(json.dumps(out, indent=1))
    print("wrote", args.json)


if __name__ == "__main__":
    main()
