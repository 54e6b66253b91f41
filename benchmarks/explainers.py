"""Time every registered explainer on the embedded model for one 224² image; overhead ratios.

For each method (paper defaults; ``--quick`` cuts sample counts and steps) the script reports
the wall time (median and range over ``--repeats``), the number of model evaluations the
method's scoring engine made (``explainer.scorer.evaluations``), and the model's own batched
forward time per image, measured in the same run at the same batch size, right before each
repeat (so load drift on a shared machine hits both alike). For black-box methods it prints
the overhead ratio::

    ratio = wall / (evaluations × per-image forward time)       (target ≤ 1.15)

and, measured inside the same run with forward hooks (immune to load drift between the
forward timing and the run), ``wall / time inside the model``. It also runs the peers that
are installed on the same image with the same settings: captum
``Occlusion`` and ``Lime`` (same SLIC segments, cosine kernel, ridge), and xaitk-saliency
``SlidingWindowStack`` / ``RISEStack`` (xaitk needs its own environment here, see the docs).

    python benchmarks/explainers.py --quick --repeats 3
    python benchmarks/explainers.py --methods occlusion,lime,rise --repeats 1
    /tmp/xaitk-venv/bin/python benchmarks/explainers.py --quick --peers-only   # with xaitk

Writes JSON (``--json``, default ``benchmarks/results/explainers[-quick].json``) with every
raw timing, the commit, the versions and the settings. Numbers on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import unmask
from unmask.registry import METHODS

#: Reduced settings for --quick, per method (methods not listed: the generic rules below).
QUICK: dict[str, dict[str, Any]] = {
    "occlusion": {"stride": 8},
    "sp-g": {"stride": 8},
    "lime": {"samples": 200},
    "lime-g": {"samples": 200},
    "rise": {"masks": 500},
}
#: Generic --quick cuts for methods without a QUICK row (applied when the parameter exists).
QUICK_RULES = {"steps": 30, "iterations": 30, "samples": 200, "masks": 500}

ROOT = Path(__file__).resolve().parents[1]


def _median_range(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def forward_per_image(
    model: torch.nn.Module, x: torch.Tensor, batch_size: int, batches: int = 3
) -> float:
    """Median seconds per image of the model's forward pass on batches of ``batch_size``."""
    batch = x.expand(batch_size, -1, -1, -1).contiguous()
    times = []
    with torch.inference_mode():
        for _ in range(batches):
            start = time.perf_counter()
            model(batch)
            times.append((time.perf_counter() - start) / batch_size)
    return statistics.median(times)


class CountingForward:
    """``images -> softmax probabilities`` of the model, counting the images it sees (peers)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.evaluations = model, 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.evaluations += images.shape[0]
        with torch.no_grad():
            return torch.softmax(self.model(images), dim=1)


def quick_settings(name: str) -> dict[str, Any]:
    if name in QUICK:
        return dict(QUICK[name])
    entry = METHODS.get(name)
    return {k: v for k, v in QUICK_RULES.items() if k in entry.parameters()}


class ModelClock:
    """Accumulates the wall and CPU time spent inside ``model.forward`` (forward hooks)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.wall = self.cpu = 0.0
        self._start = (0.0, 0.0)
        self._handles = [
            model.register_forward_pre_hook(self._pre),
            model.register_forward_hook(self._post),
        ]

    def _pre(self, *_: Any) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def _post(self, *_: Any) -> None:
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += time.process_time() - self._start[1]

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def time_repeats(
    run: Callable[[], int | None],
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int,
    repeats: int,
) -> dict[str, Any]:
    """Run ``run()`` (returns its evaluation count or None) ``repeats`` times, with forwards.

    Besides the wall time, records the time spent inside the model during the run (forward
    hooks): ``wall / in_model`` is the overhead measured within one run, immune to load drift.
    """
    walls, cpus, forwards, evals, in_model, in_model_cpu = [], [], [], [], [], []
    for _ in range(repeats):
        forwards.append(forward_per_image(model, x, batch_size))
        clock = ModelClock(model)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            n = run()
        finally:
            clock.close()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        in_model.append(clock.wall)
        in_model_cpu.append(clock.cpu)
        evals.append(n)
    out: dict[str, Any] = {
        "wall_s": _median_range(walls),
        "walls_s": walls,
        "cpu_s": _median_range(cpus),
        "forward_per_image_s": _median_range(forwards),
        "evaluations": evals[0],
        "in_model_s": _median_range(in_model),
        "wall_over_in_model": _median_range([w / m for w, m in zip(walls, in_model, strict=True)]),
        "cpu_over_in_model_cpu": _median_range(
            [c / m for c, m in zip(cpus, in_model_cpu, strict=True)]
        ),
    }
    if evals[0]:
        ratios = [w / (e * f) for w, e, f in zip(walls, evals, forwards, strict=True)]
        out["overhead_ratio"] = _median_range(ratios)
    return out


def bench_unmask(name: str, model, x, target, args) -> dict[str, Any]:
    settings = quick_settings(name) if args.quick else {}
    entry = METHODS.get(name)
    if entry.accepts("batch_size"):
        settings["batch_size"] = args.batch_size
    explainer = unmask.make_explainer(model, name, seed=0, **settings)
    scorer = getattr(explainer, "scorer", None)

    def run() -> int | None:
        before = scorer.evaluations if scorer is not None else 0
        explainer.explain(x, target)
        return (scorer.evaluations - before) if scorer is not None else None

    result = time_repeats(run, model, x, args.batch_size, args.repeats)
    result.update(
        {
            "method": name,
            "library": "unmask",
            "settings": {k: str(v) for k, v in settings.items()},
            "params": {k: str(v) for k, v in explainer.params.items()},
        }
    )
    if scorer is None:
        result["note"] = "optimisation method: calls the model under autograd, no scoring engine"
    return result


def bench_peers(model, x, target, args) -> list[dict[str, Any]]:
    results = []
    fill = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1).expand_as(x)
    occ_stride = 8 if args.quick else 3
    try:
        import captum.attr as ca
    except ImportError:
        ca = None
    if ca is not None and _wanted("captum-occlusion", args):
        fwd = CountingForward(model)

        def run_occlusion() -> int:
            fwd.evaluations = 0
            ca.Occlusion(fwd).attribute(
                x,
                sliding_window_shapes=(3, 29, 29),
                strides=(3, occ_stride, occ_stride),
                baselines=fill,
                target=target,
                perturbations_per_eval=args.batch_size,
            )
            return fwd.evaluations

        r = time_repeats(run_occlusion, model, x, args.batch_size, args.repeats)
        r.update(
            {
                "method": "occlusion",
                "library": f"captum {md.version('captum')}",
                "settings": {"patch_size": 29, "stride": occ_stride},
            }
        )
        results.append(r)
    sklearn_ok = importlib.util.find_spec("sklearn") is not None
    if ca is not None and _wanted("captum-lime", args) and not sklearn_ok:
        # captum 0.9's SGD ridge fallback rejects alpha=; LIME's reference ridge is sklearn's.
        print("captum-lime: skipped (needs scikit-learn for captum's SkLearnRidge)")
    if ca is not None and _wanted("captum-lime", args) and sklearn_ok:
        from captum._utils.models.linear_model import SkLearnRidge

        from unmask.explainers.lime import slic_segments

        ridge, ridge_name = SkLearnRidge(alpha=1.0), "SkLearnRidge(alpha=1)"
        seg = slic_segments(x)[:, None].expand(-1, 3, -1, -1)
        samples = 200 if args.quick else 1000

        def similarity(original, perturbed, interpretable, **_) -> float:
            z = interpretable.float().flatten()
            cos = float(z.sum() / (z.norm() * z.numel() ** 0.5)) if z.any() else 0.0
            return float(torch.exp(torch.tensor(-((1 - cos) ** 2) / (2 * 0.25**2))))

        fwd = CountingForward(model)

        def run_lime() -> int:
            fwd.evaluations = 0
            ca.Lime(fwd, interpretable_model=ridge, similarity_func=similarity).attribute(
                x,
                baselines=fill,
                target=target,
                feature_mask=seg,
                n_samples=samples,
                perturbations_per_eval=args.batch_size,
            )
            return fwd.evaluations

        r = time_repeats(run_lime, model, x, args.batch_size, args.repeats)
        r.update(
            {
                "method": "lime",
                "library": f"captum {md.version('captum')}",
                "settings": {
                    "samples": samples,
                    "segments": "slic(50, 30, 3)",
                    "model": ridge_name,
                },
            }
        )
        results.append(r)
    try:
        import numpy as np
        from smqtk_classifier import ClassifyImage
        from xaitk_saliency.impls.gen_image_classifier_blackbox_sal.rise import RISEStack
        from xaitk_saliency.impls.gen_image_classifier_blackbox_sal.slidingwindow import (
            SlidingWindowStack,
        )
    except ImportError:
        print("xaitk-saliency not importable: xaitk peers skipped", file=sys.stderr)
        return results

    class TargetProbability(ClassifyImage):
        """xaitk black box: one label, the target's softmax probability (batched forwards)."""

        def __init__(self) -> None:
            self.evaluations = 0

        def get_labels(self):
            return ["target"]

        def get_config(self):
            return {}

        def classify_images(self, img_iter):
            batch: list = []
            for img in img_iter:
                batch.append(img)
                if len(batch) == args.batch_size:
                    yield from self._flush(batch)
                    batch = []
            if batch:
                yield from self._flush(batch)

        def _flush(self, batch):
            t = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
            self.evaluations += t.shape[0]
            with torch.inference_mode():
                p = torch.softmax(model(t), dim=1)[:, target]
            return [{"target": float(v)} for v in p]

    image = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    version = f"xaitk-saliency {md.version('xaitk-saliency')}"
    for method, make, settings in (
        (
            "occlusion",
            lambda: SlidingWindowStack((29, 29), (occ_stride, occ_stride)),
            {"patch_size": 29, "stride": occ_stride},
        ),
        (
            "rise",
            lambda: RISEStack(500 if args.quick else 4000, 7, 0.5, seed=0, debiased=False),
            {"masks": 500 if args.quick else 4000, "s": 7, "p": 0.5},
        ),
    ):
        if not _wanted(f"xaitk-{method}", args):
            continue
        blackbox = TargetProbability()
        generator = make()

        def run_xaitk(generator=generator, blackbox=blackbox) -> int:
            blackbox.evaluations = 0
            generator.generate(image, blackbox)
            return blackbox.evaluations

        r = time_repeats(run_xaitk, model, x, args.batch_size, args.repeats)
        r.update({"method": method, "library": version, "settings": settings})
        results.append(r)
    return results


def _wanted(peer: str, args) -> bool:
    return args.peers is None or peer in args.peers


def _environment() -> dict[str, Any]:
    from common import environment

    packages = (
        "torch",
        "numpy",
        "scikit-image",
        "opencv-python-headless",
        "captum",
        "xaitk-saliency",
    )
    return {
        **environment(packages),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", help="comma-separated registered names (default: all)")
    parser.add_argument("--quick", action="store_true", help="cut sample counts and steps")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--peers",
        help="comma-separated subset of captum-occlusion, captum-lime, "
        "xaitk-occlusion, xaitk-rise (default: all installed); 'none' to skip",
    )
    parser.add_argument("--peers-only", action="store_true", help="run only the peers")
    parser.add_argument("--json", type=Path, help="output file")
    args = parser.parse_args()
    args.peers = None if args.peers is None else set(args.peers.split(","))
    torch.set_num_threads(args.threads)
    names = unmask.list_methods() if args.methods is None else args.methods.split(",")
    model = unmask.load_model("efficientnet_lite0")
    x = unmask.load_image(unmask.example_image("chelsea"), size=224)
    target = int(model(x).argmax())
    forward_per_image(model, x, args.batch_size)  # warm-up
    results = []
    if not args.peers_only:
        for name in names:
            print(f"... {name}", file=sys.stderr, flush=True)
            results.append(bench_unmask(name, model, x, target, args))
    if args.peers != {"none"}:
        print("... peers", file=sys.stderr, flush=True)
        results += bench_peers(model, x, target, args)

    print(
        f"\n{'method':<12} {'library':<22} {'wall s (min-max)':<24} {'evals':>6} "
        f"{'fwd ms/img':>10} {'ratio':>6} {'wall/in-model':>13}"
    )
    for r in results:
        w = r["wall_s"]
        ratio = f"{r['overhead_ratio']['median']:.3f}" if "overhead_ratio" in r else "-"
        evals = r["evaluations"] if r["evaluations"] is not None else "-"
        print(
            f"{r['method']:<12} {r['library'][:22]:<22} "
            f"{w['median']:8.2f} ({w['min']:.2f}-{w['max']:.2f}){'':<5} {evals:>6} "
            f"{1000 * r['forward_per_image_s']['median']:10.1f} {ratio:>6} "
            f"{r['wall_over_in_model']['median']:13.3f}"
        )
    out = (
        args.json
        or ROOT / "benchmarks" / "results" / f"explainers{'-quick' if args.quick else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "explainers",
        "image": "skimage chelsea, 224x224",
        "model": "efficientnet_lite0",
        "target": target,
        "quick": args.quick,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "seed": 0,
        "environment": _environment(),
        "results": results,
    }
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
