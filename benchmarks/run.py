"""One benchmark of unmask against its peers on the embedded model, 224² images.

    python benchmarks/run.py --quick          # reduced sample counts
    python benchmarks/run.py                  # paper-size settings
    python benchmarks/run.py --force          # run (and mark BUSY) on a loaded machine

Methods: the black-box methods (occlusion, RISE, LIME), the gradient methods (gradient,
integrated gradients, Grad-CAM) and deletion + insertion. Each runs beside the installed peers
that implement the same thing (captum ``Occlusion``, ``Lime``, ``Saliency``,
``IntegratedGradients``, ``LayerGradCam``; ``saliency_maps_metrics`` ``Deletion`` /
``Insertion``); a method without an installed peer gets a line saying why. Runs are
**interleaved** (unmask, peer, unmask, peer... over ``--repeats``); the table gives medians and
the spread (min-max). Outputs are checked equal where the definitions coincide (max relative
difference; LIME's samples are random in each library, so its maps are not compared).

Columns: ``unmask s``: median wall time; ``model-bound s``: images through the model × the
model's best per-image time measured in the same run (batched forward at ``--batch-size`` for
forward-only methods; forward + backward at the method's batch for gradient methods);
``overhead``: unmask / model-bound; for each peer its median time and ``peer / unmask`` (> 1:
unmask faster); ``peak MB``: the peak resident memory of one run in a fresh process, above the
process after loading the model, building the task and one warm-up forward (Linux: VmHWM reset
through ``/proc/self/clear_refs``; elsewhere the growth of ``resource.getrusage`` ru_maxrss);
``--no-memory`` skips it.

Load: ``os.getloadavg()`` is recorded before and after. The run is **BUSY** when the 1-minute
load before it exceeds half the number of cores (1.0 on a 2-core machine: another process
already holds half a core), or when it ends above ``cores`` (1.0 + this run's own threads
would not explain more); a BUSY run is refused unless ``--force``, and a forced one is marked
BUSY in the JSON and the table: its numbers are not results.

Writes ``benchmarks/results/run[-quick].json`` (every raw timing, settings, versions, load) and
``benchmarks/results/run[-quick].md`` (the table).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import unmask  # noqa: E402
from unmask.removal import Constant  # noqa: E402

if not hasattr(np, "trapz"):  # saliency_maps_metrics 0.0.26 calls it (NumPy 2)
    np.trapz = np.trapezoid

#: Fraction of the cores whose 1-minute load before the run makes it BUSY.
BUSY_BEFORE = 0.5
XAITK = ("not run here: xaitk-saliency needs its own environment on this machine; "
         "benchmarks/explainers.py --peers-only runs it there")
#: Settings: (quick, full).
SETTINGS = {
    "occlusion": ({"patch_size": 29, "stride": 8}, {"patch_size": 29, "stride": 3}),
    "rise": ({"masks": 500}, {"masks": 4000}),
    "lime": ({"samples": 200}, {"samples": 1000}),
    "integrated_gradients": ({"steps": 16}, {"steps": 50}),
    "deletion+insertion": ({"images": 1, "map_size": 7}, {"images": 2, "map_size": 28}),
}


class Counting(torch.nn.Module):
    """A module that counts the images it sees (``probs=True``: returns softmax probabilities)."""

    def __init__(self, model: torch.nn.Module, probs: bool = False) -> None:
        super().__init__()
        self.model, self.probs, self.images = model, probs, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        z = self.model(x)
        return torch.softmax(z, dim=1) if self.probs else z


@dataclass
class Task:
    """One method: unmask's run and the peers' runs; each returns (output, images through model)."""

    name: str
    kind: str  # "forward" (model-bound = forward time) or "backward" (forward + backward)
    batch: int  # the batch of the model-bound reference time
    settings: dict[str, Any]
    unmask: Callable[[], tuple[Any, int]]
    peers: dict[str, Callable[[], tuple[Any, int]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # peer -> why not run
    compare: Callable[[Any, Any], float] | None = None  # max relative difference
    compare_note: str = ""


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def build_tasks(model: unmask.Classifier, x: torch.Tensor, target: int, args) -> list[Task]:
    q = 0 if args.quick else 1
    bs = args.batch_size
    t = torch.tensor([target])
    tasks: list[Task] = []
    try:
        import captum
        import captum.attr as ca
        captum_name = f"captum {captum.__version__}"
    except ImportError:
        ca, captum_name = None, "captum"
    no_captum = {captum_name: "not installed (pip install 'unmask[test]')"} if ca is None else {}
    mean_fill = Constant("mean").fill(x)

    def fwd_probs() -> Counting:
        return Counting(model, probs=True)

    # occlusion
    s = SETTINGS["occlusion"][q]
    occ = unmask.make_explainer(model, "occlusion", batch_size=bs, **s)

    def run_occ():
        before = occ.scorer.evaluations
        e = occ.explain(x, target)
        return e.saliency[0, 0], occ.scorer.evaluations - before

    peers, skipped = {}, dict(no_captum)
    if ca is not None:
        def run_captum_occ(s=s):
            f = fwd_probs()
            patch, stride = (3, s["patch_size"], s["patch_size"]), (3, s["stride"], s["stride"])
            a = ca.Occlusion(f).attribute(x, sliding_window_shapes=patch, strides=stride,
                                          baselines=mean_fill, target=target,
                                          perturbations_per_eval=bs)
            return a[0, 0], f.images
        peers[captum_name] = run_captum_occ
    skipped["xaitk-saliency"] = XAITK
    tasks.append(Task("occlusion", "forward", bs, s, run_occ, peers, skipped, _rel,
                      "mean-colour patches, averaged over covering patches (captum's convention)"))

    # RISE
    s = SETTINGS["rise"][q]
    rise = unmask.make_explainer(model, "rise", batch_size=bs, seed=0, **s)

    def run_rise():
        before = rise.scorer.evaluations
        e = rise.explain(x, target)
        return e.saliency[0, 0], rise.scorer.evaluations - before

    tasks.append(Task("rise", "forward", bs, s, run_rise, {},
                      {"captum": "has no RISE", "xaitk-saliency RISEStack": XAITK}))

    # LIME
    s = SETTINGS["lime"][q]
    lime = unmask.make_explainer(model, "lime", batch_size=bs, seed=0, **s)

    def run_lime():
        before = lime.scorer.evaluations
        e = lime.explain(x, target)
        return e.saliency[0, 0], lime.scorer.evaluations - before

    peers, skipped = {}, dict(no_captum)
    try:
        import sklearn  # noqa: F401
        has_sklearn = True
    except ImportError:
        has_sklearn = False
        if ca is not None:
            skipped[captum_name] = "captum's Lime needs scikit-learn (SkLearnRidge)"
    if ca is not None and has_sklearn:
        from captum._utils.models.linear_model import SkLearnRidge

        from unmask.explainers.lime import slic_segments

        seg = slic_segments(x)[:, None].expand(-1, 3, -1, -1)

        def similarity(original, perturbed, interpretable, **_) -> float:
            z = interpretable.float().flatten()
            cos = float(z.sum() / (z.norm() * z.numel() ** 0.5)) if z.any() else 0.0
            return float(np.exp(-((1 - cos) ** 2) / (2 * 0.25**2)))

        def run_captum_lime(s=s):
            f = fwd_probs()
            lime_peer = ca.Lime(f, interpretable_model=SkLearnRidge(alpha=1.0),
                                similarity_func=similarity)
            a = lime_peer.attribute(
                x, baselines=mean_fill, target=target, feature_mask=seg, n_samples=s["samples"],
                perturbations_per_eval=bs)
            return a[0, 0], f.images
        peers[captum_name] = run_captum_lime
    tasks.append(Task("lime", "forward", bs, s, run_lime, peers, skipped, None,
                      "same SLIC segments, cosine kernel, ridge; random samples differ: "
                      "not compared"))

    # gradient methods: compared on the (1, 3, H, W) attribution / the low-resolution CAM
    grad = unmask.make_explainer(model, "gradient")

    def run_grad():
        return grad.explain(x, target).extras["attribution"][0], 1

    peers = {}
    if ca is not None:
        def run_captum_saliency():
            f = Counting(model)
            a = ca.Saliency(f).attribute(x.clone().requires_grad_(True), target=target, abs=True)
            return a[0].detach(), f.images
        peers[captum_name] = run_captum_saliency
    tasks.append(Task("gradient", "backward", 1, {"score": "logit"}, run_grad, peers,
                      dict(no_captum),
                      _rel, "|d logit / dx| (captum Saliency(abs=True))"))

    s = SETTINGS["integrated_gradients"][q]
    ig = unmask.make_explainer(model, "integrated_gradients", batch_size=bs, **s)

    def run_ig(s=s):
        return ig.explain(x, target).extras["attribution"][0], s["steps"]

    peers = {}
    if ca is not None:
        def run_captum_ig(s=s):
            f = Counting(model)
            a = ca.IntegratedGradients(f).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                    n_steps=s["steps"], internal_batch_size=bs)
            return a[0].detach(), f.images
        peers[captum_name] = run_captum_ig
    tasks.append(Task("integrated_gradients", "backward", min(bs, s["steps"]), s, run_ig, peers,
                      dict(no_captum), _rel,
                      "black baseline, Gauss-Legendre rule (captum's default)"))

    cam = unmask.make_explainer(model, "gradcam")

    def run_cam():
        return cam.explain(x, target).extras["cam"][0, 0], 1

    peers = {}
    if ca is not None:
        layer = dict(model.net.named_modules())[model.feature_layer]

        def run_captum_cam():
            f = Counting(model)
            a = ca.LayerGradCam(f, layer).attribute(x, target=target, relu_attributions=True)
            return a[0, 0].detach(), f.images
        peers[captum_name] = run_captum_cam
    tasks.append(Task("gradcam", "backward", 1, {"layer": model.feature_layer}, run_cam, peers,
                      dict(no_captum), _rel, "the 7x7 CAM at the feature layer, ReLU"))

    # deletion + insertion
    s = SETTINGS["deletion+insertion"][q]
    from unmask.metrics import compat

    images = x.expand(s["images"], -1, -1, -1).contiguous()
    if s["images"] > 1:
        images = torch.cat([x, x.flip(-1)])[: s["images"]]
    maps = torch.rand(s["images"], 1, s["map_size"], s["map_size"],
                      generator=torch.Generator().manual_seed(0))
    targets = t.expand(s["images"]).contiguous()

    def metric_runner(module) -> Callable[[], tuple[Any, int]]:
        deletion, insertion = module.Deletion(batch_size=bs), module.Insertion(batch_size=bs)

        def run():
            f = fwd_probs().eval()
            out = {**deletion(f, images, maps, targets), **insertion(f, images, maps, targets)}
            return torch.tensor([float(out[k]) for k in ("dauc", "dc", "iauc", "ic")]), f.images
        return run

    peers, skipped = {}, {}
    try:
        from saliency_maps_metrics import multi_step_metrics as sm
        peers[f"saliency_maps_metrics {md.version('saliency-maps-metrics')}"] = metric_runner(sm)
    except ImportError:
        skipped["saliency_maps_metrics"] = "not installed (pip install 'unmask[test]')"
    skipped["quantus"] = "deletion only: the pixel_flipping task"
    tasks.append(Task("deletion+insertion", "forward", bs, s, metric_runner(compat), peers, skipped,
                      lambda a, b: float((a - b).abs().max()),
                      "DAUC, DC, IAUC, IC (max absolute difference), blur substrate, random maps"))
    tasks.append(pixel_flipping_task(model, images, maps, targets, bs, args))
    return tasks


def pixel_flipping_task(model, images, maps, targets, bs: int, args) -> Task:
    """Deletion curves against quantus' PixelFlipping, run in its side venv
    (``benchmarks/_peer_quantus.py``); skipped with the reason when the venv cannot be built."""
    import _peer_quantus as pq

    t = pq.pixel_flipping_task(model, images, maps, targets, bs)
    why = None if args.child_task else pq.availability()
    peers = {} if why else {pq.NAME: t["peer"]}
    return Task("pixel_flipping", "forward", bs, t["settings"], t["unmask"], peers,
                {pq.NAME: why} if why else {}, t["compare"],
                t["note"] + "; quantus' peak MB: the driving process only")


def best_forward(model, x: torch.Tensor, batch: int, backward: bool, tries: int = 3) -> float:
    """The best per-image seconds of a batched forward (+ backward to the input) of ``batch``."""
    xb = x[:1].expand(batch, -1, -1, -1).contiguous()
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        if backward:
            xx = xb.clone().requires_grad_(True)
            torch.autograd.grad(model(xx)[:, 0].sum(), xx)
        else:
            with torch.inference_mode():
                model(xb)
        best = min(best, (time.perf_counter() - start) / batch)
    return best


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def setup(args):
    torch.set_num_threads(args.threads)
    model = unmask.load_model("efficientnet_lite0", execution=args.execution)
    for p in model.parameters():
        p.requires_grad_(False)  # gradients to the input only, for every library
    x = unmask.load_image(unmask.example_image("chelsea"), size=224)
    with torch.inference_mode():
        target = int(model(x).argmax())
    return model, x, target


def _status_kib(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def child(args) -> None:
    """One run of one (task, library) in this fresh process: print its peak memory as JSON.

    Linux: the peak resident set (VmHWM) is reset after the set-up (``/proc/self/clear_refs``)
    and the result is VmHWM after the run minus VmRSS before it. Elsewhere (or when the reset is
    refused): the growth of ``ru_maxrss``, which misses peaks below the set-up's own.
    """
    model, x, target = setup(args)
    task = next(t for t in build_tasks(model, x, target, args) if t.name == args.child_task)
    run = task.unmask if args.child_lib == "unmask" else task.peers[args.child_lib]
    best_forward(model, x, 1, False, tries=1)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = _status_kib("VmHWM") is not None
    except OSError:
        reset = False
    base = _status_kib("VmRSS") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": (peak - base) / 1024, "how": "VmHWM" if reset else "ru_maxrss"}))


def peak_memory(args, task: str, lib: str) -> float | None:
    if lib.startswith("quantus"):  # runs in its side process, not in the child
        return None
    cmd = [sys.executable, __file__, "--child-task", task, "--child-lib", lib,
           "--threads", str(args.threads), "--batch-size", str(args.batch_size),
           "--execution", args.execution] + (["--quick"] if args.quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        print(f"  memory of {task} / {lib}: child failed: {proc.stderr.strip()[-300:]}",
              file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "src", "benchmarks"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", None
    versions = {}
    for pkg in ("torch", "numpy", "captum", "saliency-maps-metrics", "scikit-learn",
                "scikit-image"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"commit": commit, "dirty": dirty, "unmask": unmask.__version__,
            "python": platform.python_version(), "versions": versions, "cpu": cpu,
            "cores": os.cpu_count(), "platform": platform.platform()}


def table(report: dict[str, Any]) -> str:
    env, load = report["environment"], report["load"]
    head = (f"{'BUSY (not results): ' if report['busy'] else ''}unmask {env['unmask']} "
            f"({env['commit'][:10]}{', dirty' if env['dirty'] else ''}), {env['cpu']}, "
            f"{env['cores']} cores, torch {env['versions'].get('torch')} with "
            f"{report['threads']} threads, execution {report['execution']!r}, "
            f"{'--quick, ' if report['quick'] else ''}{report['repeats']} interleaved repeats, "
            f"batch {report['batch_size']}; load (1, 5, 15 min) before "
            f"{', '.join(f'{v:.2f}' for v in load['before'])}, after "
            f"{', '.join(f'{v:.2f}' for v in load['after'])}.")
    lines = [head, "", "| method | settings | unmask s (min-max) | images | model-bound s "
             "| overhead | peer | peer s (min-max) | peer / unmask | equal (max rel. diff) "
             "| peak MB unmask / peer |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        u = r["unmask"]
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        first = (f"| {r['method']} | {settings} | {u['wall_s']['median']:.2f} "
                 f"({u['wall_s']['min']:.2f}-{u['wall_s']['max']:.2f}) | {u['images']} | "
                 f"{r['model_bound_s']:.2f} | {r['overhead']:.2f} ")
        mem_u = "-" if u.get("peak_mb") is None else f"{u['peak_mb']:.0f}"
        if not r["peers"]:
            lines.append(first + f"| - | - | - | - | {mem_u} |")
        for name, p in r["peers"].items():
            diff = "not compared" if p.get("max_diff") is None else f"{p['max_diff']:.1e}"
            mem_p = "-" if p.get("peak_mb") is None else f"{p['peak_mb']:.0f}"
            lines.append(first + f"| {name} | {p['wall_s']['median']:.2f} "
                         f"({p['wall_s']['min']:.2f}-{p['wall_s']['max']:.2f}) | "
                         f"{p['wall_s']['median'] / u['wall_s']['median']:.2f} | {diff} | "
                         f"{mem_u} / {mem_p} |")
            first = "| | | | | | "
    lines.append("")
    for r in report["results"]:
        for name, why in r["skipped"].items():
            lines.append(f"- {r['method']}: {name} skipped: {why}")
        if r["compare_note"]:
            lines.append(f"- {r['method']}: {r['compare_note']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sample counts")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 3, quick 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--execution", default="eager", choices=unmask.models.EXECUTIONS,
                        help="unmask's scoring path (Classifier.fast); peers use the model eagerly")
    parser.add_argument("--methods", help="comma-separated subset of the task names")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--force", action="store_true", help="run on a busy machine (marked BUSY)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--child-task", help=argparse.SUPPRESS)
    parser.add_argument("--child-lib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_task:
        child(args)
        return
    repeats = args.repeats or 3
    cores = os.cpu_count() or 1
    before = os.getloadavg()
    busy = before[0] > BUSY_BEFORE * cores
    if busy and not args.force:
        raise SystemExit(f"BUSY: 1-minute load {before[0]:.2f} > {BUSY_BEFORE * cores:.1f} "
                         f"({BUSY_BEFORE} x {cores} cores); wait for an idle machine or pass "
                         "--force (the run is then marked BUSY)")
    model, x, target = setup(args)
    tasks = build_tasks(model, x, target, args)
    if args.methods:
        wanted = set(args.methods.split(","))
        tasks = [t for t in tasks if t.name in wanted]
    results = []
    for task in tasks:
        print(f"... {task.name}", file=sys.stderr, flush=True)
        libs = {"unmask": task.unmask, **task.peers}
        for run in libs.values():  # warm-up (and the frozen trace, if any)
            run()
        walls: dict[str, list[float]] = {lib: [] for lib in libs}
        refs, outputs, images = [], {}, {}
        for _ in range(repeats):
            refs.append(best_forward(model, x, task.batch, task.kind == "backward"))
            for lib, run in libs.items():
                start = time.perf_counter()
                outputs[lib], images[lib] = run()
                walls[lib].append(time.perf_counter() - start)
        per_image = min(refs)
        bound = images["unmask"] * per_image
        row: dict[str, Any] = {
            "method": task.name, "settings": task.settings, "kind": task.kind,
            "reference_batch": task.batch, "model_s_per_image_best": per_image,
            "model_s_per_image_all": refs, "model_bound_s": bound,
            "unmask": {"wall_s": _spread(walls["unmask"]), "walls_s": walls["unmask"],
                       "images": images["unmask"]},
            "peers": {}, "skipped": task.skipped, "compare_note": task.compare_note}
        row["overhead"] = row["unmask"]["wall_s"]["median"] / bound
        for lib in task.peers:
            diff = task.compare(outputs["unmask"], outputs[lib]) if task.compare else None
            row["peers"][lib] = {"wall_s": _spread(walls[lib]), "walls_s": walls[lib],
                                 "images": images[lib], "max_diff": diff}
        if not args.no_memory:
            row["unmask"]["peak_mb"] = peak_memory(args, task.name, "unmask")
            for lib in task.peers:
                row["peers"][lib]["peak_mb"] = peak_memory(args, task.name, lib)
        results.append(row)
    after = os.getloadavg()
    busy = busy or after[0] > cores
    report = {"benchmark": "run", "model": "efficientnet_lite0",
              "image": "skimage chelsea, 224x224",
              "target": target, "quick": args.quick, "repeats": repeats, "threads": args.threads,
              "batch_size": args.batch_size, "execution": args.execution, "busy": busy,
              "busy_rule": f"1-minute load before > {BUSY_BEFORE} x cores or after > cores",
              "load": {"before": before, "after": after}, "environment": environment(),
              "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "run-quick" if args.quick else "run"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    md_text = table(report)
    (args.out / f"{stem}.md").write_text(md_text)
    print(md_text)
    print(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
