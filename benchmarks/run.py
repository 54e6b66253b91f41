"""One benchmark of unmask against its peers on the embedded model, 224² images.

    python benchmarks/run.py --quick          # reduced sample counts (prints its time estimate)
    python benchmarks/run.py                  # paper-size settings
    python benchmarks/run.py --force          # run (and mark BUSY) on a loaded machine
    python benchmarks/run.py --smoke --force  # tiny counts: does every peer run and agree?
    python benchmarks/run.py --execution compiled   # unmask's scoring path under torch.compile

Methods: the black-box methods (occlusion, RISE, LIME), the gradient methods (gradient,
integrated gradients, Grad-CAM), extremal perturbation and deletion + insertion. Each runs
beside the peers that implement the same thing: captum ``Occlusion``, ``Lime``, ``Saliency``,
``IntegratedGradients``, ``LayerGradCam``; the ``lime`` package's ``LimeImageExplainer``;
TorchRay's ``rise`` and ``extremal_perturbation``; ``saliency_maps_metrics`` ``Deletion`` /
``Insertion``; xaitk-saliency's ``SlidingWindowStack`` and ``RISEStack``, which pin packages the
project's environment does not have, from a side venv that the script builds once in a cache
directory (``benchmarks/_sidevenv.py``: torch 2.13.0, the project's core dependencies and the
peer; ``--no-side`` skips it) and calls between unmask's runs: the side process times itself.
A peer that is not installed, cannot be built or fails gets a "skipped: why" line. Runs are
**interleaved** (unmask, peer, unmask, peer... over ``--repeats``); the table gives medians and
the spread (min-max). Outputs are checked equal where the definitions coincide (max relative
difference); TorchRay's RISE is checked once, outside the timings, on unmask's own masks
(``filter_masks``); LIME's samples are random in each library (its maps get a Pearson
correlation), xaitk's masks too and xaitk normalises its maps (not compared); the extremal
masks (different optimisation paths) are compared by the IoU of their top 10 %.

Columns: ``unmask s``: median wall time; ``model-bound s``: images through the model × the
eager model's best per-image time measured in the same run (batched forward at
``--batch-size`` for forward-only methods; forward + backward at the method's batch for
gradient and optimisation methods): the peers' limit; ``engine-bound s``: the same with
unmask's scoring path (``model.infer`` in the execution mode) for forward-only methods;
``overhead``: unmask / engine-bound; for each peer its median time and ``peer / unmask`` (> 1:
unmask faster); ``peak MB``: the peak resident memory of one run in a fresh process, above the
process after loading the model, building the task and one warm-up forward (Linux: VmHWM reset
through ``/proc/self/clear_refs``; elsewhere the growth of ``resource.getrusage`` ru_maxrss;
side-venv peers: VmHWM of their first run in their server); ``--no-memory`` skips it.

Time: the script prints an estimate before it starts (the model's per-image time × the
planned images × libraries × runs, plus the memory children) and records the estimate and the
elapsed time in the JSON. The first run that needs the xaitk side venv builds it (minutes, once).

Load: ``os.getloadavg()`` is recorded before and after. The run is **BUSY** when the 1-minute
load before it exceeds half the number of cores (1.0 on a 2-core machine: another process
already holds half a core), or when it ends above ``cores`` (1.0 + this run's own threads
would not explain more); a BUSY run is refused unless ``--force``, and a forced one is marked
BUSY in the JSON and the table: its numbers are not results.

Writes ``benchmarks/results/run[-quick|-smoke].json`` (every raw timing, settings, versions,
load, side venvs) and ``benchmarks/results/run[-quick|-smoke].md`` (the table).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
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
from common import ROOT, best_forward, environment, map_pearson, spread, top_iou

import unmask
import unmask.models
from unmask.removal import Constant

if not hasattr(np, "trapz"):  # saliency_maps_metrics 0.0.26 calls it (NumPy 2)
    np.trapz = np.trapezoid

#: Fraction of the cores whose 1-minute load before the run makes it BUSY.
BUSY_BEFORE = 0.5
#: The side venv of xaitk-saliency (it pins setuptools<82 and pulls the smqtk packages).
XAITK_REQUIREMENTS = ["xaitk-saliency==0.15.0"]
#: Settings: (quick, full, smoke). ``--smoke``: tiny counts that only check that every peer runs
#: and agrees (its timings mean nothing); written to run-smoke.json / .md.
SETTINGS = {
    "occlusion": (
        {"patch_size": 29, "stride": 8},
        {"patch_size": 29, "stride": 3},
        {"patch_size": 56, "stride": 56},
    ),
    "rise": ({"masks": 500}, {"masks": 4000}, {"masks": 32}),
    "lime": ({"samples": 200}, {"samples": 1000}, {"samples": 24}),
    "integrated_gradients": ({"steps": 16}, {"steps": 50}, {"steps": 4}),
    "extremal": (
        {"areas": 0.1, "steps": 40},
        {"areas": 0.1, "steps": 300},
        {"areas": 0.1, "steps": 4},
    ),
    "deletion+insertion": (
        {"images": 1, "map_size": 7},
        {"images": 2, "map_size": 28},
        {"images": 1, "map_size": 4},
    ),
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
    # peer -> a check run once outside the timings (e.g. the peer fed unmask's own random
    # masks): returns the max relative difference, or (measure, value) for a similarity
    checks: dict[str, Callable[[], Any]] = field(default_factory=dict)
    images_hint: int = 0  # images one unmask run puts through the model (for the estimate)
    side: set[str] = field(default_factory=set)  # peers served from a side venv (own timing)


def _outcome(result: tuple) -> tuple[Any, int, dict[str, Any]]:
    """(output, images, extra) of a run: a side peer adds {"wall_s", "peak_mb"} of its own."""
    return (result[0], result[1], result[2] if len(result) > 2 else {})


class SidePeer:
    """A peer served from a side venv (benchmarks/_sidevenv.py), started on its first call."""

    def __init__(self, python, script: Path, args: list[str], request: dict[str, Any]) -> None:
        self.python, self.script, self.args, self.request = python, script, args, request
        self.server = None

    def __call__(self) -> tuple[Any, int, dict[str, Any]]:
        from _sidevenv import Server

        if self.server is None:
            self.server = SERVERS.get((str(self.python), str(self.script)))
            if self.server is None:
                self.server = Server(self.python, self.script, self.args)
                SERVERS[(str(self.python), str(self.script))] = self.server
        reply = self.server.call(self.request)
        return (
            torch.tensor(reply["output"]),
            reply["images"],
            {"wall_s": reply["wall_s"], "peak_mb": reply.get("peak_mb")},
        )


#: Running side servers, shared by the peers of one script; closed at the end of main().
SERVERS: dict[tuple[str, str], Any] = {}


def side_python(name: str, requirements: list[str], args) -> tuple[Any, str | None]:
    """The python of side venv ``name`` (built once, cached), or None and the reason."""
    if args.no_side or args.child_task:
        return None, "--no-side" if args.no_side else "child"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _sidevenv import SideVenvError, ensure_venv

    try:
        return ensure_venv(name, requirements), None
    except SideVenvError as exc:
        return None, f"side environment not built: {exc}"


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@dataclass
class _Context:
    """What every method's tasks share: the model, the image and its target, the settings row
    ``q`` (0 quick, 1 full, 2 smoke), captum (None when missing) and the xaitk side venv."""

    model: Any
    x: torch.Tensor
    target: int
    t: torch.Tensor
    q: int
    bs: int
    args: Any
    ca: Any
    captum_name: str
    no_captum: dict[str, str]
    mean_fill: torch.Tensor
    xaitk_py: Any
    xaitk_why: str | None
    xaitk_args: list[str]

    def fwd_probs(self) -> Counting:
        return Counting(self.model, probs=True)


def _context(model: unmask.Classifier, x: torch.Tensor, target: int, args) -> _Context:
    try:
        import captum
        import captum.attr as ca

        captum_name = f"captum {captum.__version__}"
    except ImportError:
        ca, captum_name = None, "captum"
    no_captum = {captum_name: "not installed (pip install 'unmask[test]')"} if ca is None else {}
    xaitk_py, xaitk_why = side_python("xaitk", XAITK_REQUIREMENTS, args)
    return _Context(
        model,
        x,
        target,
        torch.tensor([target]),
        2 if args.smoke else 0 if args.quick else 1,
        args.batch_size,
        args,
        ca,
        captum_name,
        no_captum,
        Constant("mean").fill(x),
        xaitk_py,
        xaitk_why,
        ["--threads", str(args.threads)],
    )


def _occlusion_tasks(c: _Context) -> list[Task]:
    tasks: list[Task] = []
    # occlusion
    s = SETTINGS["occlusion"][c.q]
    occ = unmask.make_explainer(c.model, "occlusion", batch_size=c.bs, **s)

    def run_occ():
        before = occ.scorer.evaluations
        e = occ.explain(c.x, c.target)
        return e.saliency[0, 0], occ.scorer.evaluations - before

    peers, skipped = {}, dict(c.no_captum)
    if c.ca is not None:

        def run_captum_occ(s=s):
            f = c.fwd_probs()
            patch, stride = (3, s["patch_size"], s["patch_size"]), (3, s["stride"], s["stride"])
            a = c.ca.Occlusion(f).attribute(
                c.x,
                sliding_window_shapes=patch,
                strides=stride,
                baselines=c.mean_fill,
                target=c.target,
                perturbations_per_eval=c.bs,
            )
            return a[0, 0], f.images

        peers[c.captum_name] = run_captum_occ
    fill255 = [float(v) * 255 for v in c.mean_fill.flatten()[:3]]
    side, occ_checks = set(), {}
    if c.xaitk_py is None:
        if c.xaitk_why != "child":
            skipped["xaitk-saliency SlidingWindowStack"] = c.xaitk_why
    else:
        name = "xaitk-saliency SlidingWindowStack"
        peers[name] = SidePeer(
            c.xaitk_py,
            ROOT / "benchmarks" / "_peer_xaitk.py",
            c.xaitk_args,
            {"op": "occlusion", "batch_size": c.bs, "fill": fill255, **s},
        )
        side.add(name)
        occ_checks = {name: lambda: None}  # xaitk normalises its maps its own way
    positions = (-(-(224 - s["patch_size"]) // s["stride"]) + 1) ** 2
    tasks.append(
        Task(
            "occlusion",
            "forward",
            c.bs,
            s,
            run_occ,
            peers,
            skipped,
            _rel,
            "mean-colour patches, averaged over covering patches (captum's convention); "
            "xaitk: uint8 image, its own normalisation, not compared",
            checks=occ_checks,
            images_hint=positions + 1,
            side=side,
        )
    )
    return tasks


def _rise_tasks(c: _Context) -> list[Task]:
    tasks: list[Task] = []
    # RISE
    s = SETTINGS["rise"][c.q]
    rise = unmask.make_explainer(c.model, "rise", batch_size=c.bs, seed=0, **s)

    def run_rise():
        before = rise.scorer.evaluations
        e = rise.explain(c.x, c.target)
        return e.saliency[0, 0], rise.scorer.evaluations - before

    peers, skipped, checks, side = {}, {"captum": "has no RISE"}, {}, set()
    try:
        from torchray.attribution.rise import rise as torchray_rise

        tr_name = f"torchray {md.version('torchray')} rise"
    except ImportError:
        torchray_rise = None
        skipped["torchray rise"] = "not installed (pip install --no-deps torchray==1.0.0.2)"
    if torchray_rise is not None:

        class BlendProbability(torch.nn.Module):
            """TorchRay multiplies its input by the masks and takes a sigmoid of the output:
            fed ``x - fill`` and adding ``fill`` back, the model sees unmask's blend
            ``x·M + fill·(1 - M)``; returning ``logit(p)``, TorchRay's sigmoid is the softmax
            probability (unmask's score)."""

            def __init__(self) -> None:
                super().__init__()
                self.images = 0

            def forward(self, u: torch.Tensor) -> torch.Tensor:
                self.images += u.shape[0]
                logp = torch.log_softmax(c.model(u + c.mean_fill), dim=1)  # eager, as every peer
                return logp - torch.log1p(-logp.exp().clamp(max=1 - 1e-7))

        def run_torchray_rise(s=s):
            f = BlendProbability()
            with torch.no_grad():
                sal = torchray_rise(
                    f,
                    c.x - c.mean_fill,
                    seed=0,
                    num_masks=s["masks"],
                    num_cells=7,
                    batch_size=c.bs,
                    p=0.5,
                )
            return sal[0, c.target], f.images

        def check_torchray_rise(s=s):
            """Both on unmask's own n masks: TorchRay's sum / N is unmask's sum / (N p)."""
            n = min(s["masks"], 500)
            ours = unmask.make_explainer(c.model, "rise", masks=n, batch_size=c.bs, seed=0)
            keep = ours.sample((224, 224)).render()
            with torch.no_grad():
                theirs = torchray_rise(
                    BlendProbability(),
                    c.x - c.mean_fill,
                    num_masks=n,
                    filter_masks=keep,
                    batch_size=c.bs,
                    p=0.5,
                )[0, c.target]
            return _rel(ours.explain(c.x, c.target).saliency[0, 0] * 0.5, theirs)

        peers[tr_name], checks[tr_name] = run_torchray_rise, check_torchray_rise
    if c.xaitk_py is None:
        if c.xaitk_why != "child":
            skipped["xaitk-saliency RISEStack"] = c.xaitk_why
    else:
        name = "xaitk-saliency RISEStack"
        peers[name] = SidePeer(
            c.xaitk_py,
            ROOT / "benchmarks" / "_peer_xaitk.py",
            c.xaitk_args,
            {"op": "rise", "batch_size": c.bs, "s": 7, "p": 0.5, "seed": 0, "masks": s["masks"]},
        )
        side.add(name)
    tasks.append(
        Task(
            "rise",
            "forward",
            c.bs,
            s,
            run_rise,
            peers,
            skipped,
            None,
            "TorchRay: checked on unmask's own masks (its sigmoid of logit(p) = p, "
            "x - fill fed and fill added back = the mean-colour blend); its own masks "
            "in the timings; xaitk: its own masks, uint8 image, not compared",
            checks=checks,
            images_hint=s["masks"] + 1,
            side=side,
        )
    )
    return tasks


def _lime_tasks(c: _Context) -> list[Task]:
    tasks: list[Task] = []
    # LIME
    s = SETTINGS["lime"][c.q]
    lime = unmask.make_explainer(c.model, "lime", batch_size=c.bs, seed=0, **s)

    def run_lime():
        before = lime.scorer.evaluations
        e = lime.explain(c.x, c.target)
        return e.saliency[0, 0], lime.scorer.evaluations - before

    peers, skipped = {}, dict(c.no_captum)
    try:
        import sklearn  # noqa: F401

        has_sklearn = True
    except ImportError:
        has_sklearn = False
        if c.ca is not None:
            skipped[c.captum_name] = "captum's Lime needs scikit-learn (SkLearnRidge)"
    if c.ca is not None and has_sklearn:
        from captum._utils.models.linear_model import SkLearnRidge

        from unmask.explainers.lime import slic_segments

        seg = slic_segments(c.x)[:, None].expand(-1, 3, -1, -1)

        def similarity(original, perturbed, interpretable, **_) -> float:
            z = interpretable.float().flatten()
            cos = float(z.sum() / (z.norm() * z.numel() ** 0.5)) if z.any() else 0.0
            return float(np.exp(-((1 - cos) ** 2) / (2 * 0.25**2)))

        def run_captum_lime(s=s):
            f = c.fwd_probs()
            lime_peer = c.ca.Lime(
                f, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity
            )
            a = lime_peer.attribute(
                c.x,
                baselines=c.mean_fill,
                target=c.target,
                feature_mask=seg,
                n_samples=s["samples"],
                perturbations_per_eval=c.bs,
            )
            return a[0, 0], f.images

        peers[c.captum_name] = run_captum_lime
    try:
        import lime.lime_image as lime_image
        from lime.lime_image import LimeImageExplainer

        lime_image.tqdm = lambda iterable, **_: iterable  # its unconditional progress bar
        lime_name = f"lime {md.version('lime')}"
    except ImportError:
        LimeImageExplainer = None
        skipped["lime"] = "not installed (pip install 'unmask[test]')"
    if LimeImageExplainer is not None:
        from unmask.explainers.lime import slic_segments as _slic

        seg_np = _slic(c.x)[0].numpy()
        image_np = c.x[0].permute(1, 2, 0).double().numpy()
        fill_np = c.mean_fill.flatten()[:3].double().numpy()

        def run_lime_package(s=s):
            f = c.fwd_probs()

            def classify(batch: np.ndarray) -> np.ndarray:
                t = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
                with torch.inference_mode():
                    return f(t).numpy()

            explainer = LimeImageExplainer(kernel_width=0.25, random_state=0)
            exp = explainer.explain_instance(
                image_np,
                classify,
                labels=(c.target,),
                top_labels=None,
                hide_color=fill_np,
                num_samples=s["samples"],
                batch_size=c.bs,
                segmentation_fn=lambda _: seg_np,
            )
            weights = torch.zeros(int(seg_np.max()) + 1, dtype=torch.float64)
            for k, w in exp.local_exp[c.target]:
                weights[k] = w
            return weights[torch.from_numpy(seg_np)], f.images

        peers[lime_name] = run_lime_package
    tasks.append(
        Task(
            "lime",
            "forward",
            c.bs,
            s,
            run_lime,
            peers,
            skipped,
            lambda a, b: ("Pearson r", map_pearson(a, b)),
            "same SLIC segments, mean-colour fill, cosine kernel (width 0.25), "
            "Ridge(alpha=1); random samples differ: the maps' Pearson correlation, "
            "not a difference",
            images_hint=s["samples"],
        )
    )
    return tasks


def _gradients_tasks(c: _Context) -> list[Task]:
    tasks: list[Task] = []
    # gradient methods: compared on the (1, 3, H, W) attribution / the low-resolution CAM
    grad = unmask.make_explainer(c.model, "gradient")

    def run_grad():
        return grad.explain(c.x, c.target).extras["attribution"][0], 1

    peers = {}
    if c.ca is not None:

        def run_captum_saliency():
            f = Counting(c.model)
            a = c.ca.Saliency(f).attribute(
                c.x.clone().requires_grad_(True), target=c.target, abs=True
            )
            return a[0].detach(), f.images

        peers[c.captum_name] = run_captum_saliency
    tasks.append(
        Task(
            "gradient",
            "backward",
            1,
            {"score": "logit"},
            run_grad,
            peers,
            dict(c.no_captum),
            _rel,
            "|d logit / dx| (captum Saliency(abs=True))",
            images_hint=1,
        )
    )

    s = SETTINGS["integrated_gradients"][c.q]
    ig = unmask.make_explainer(c.model, "integrated_gradients", batch_size=c.bs, **s)

    def run_ig(s=s):
        return ig.explain(c.x, c.target).extras["attribution"][0], s["steps"]

    peers = {}
    if c.ca is not None:

        def run_captum_ig(s=s):
            f = Counting(c.model)
            a = c.ca.IntegratedGradients(f).attribute(
                c.x,
                baselines=torch.zeros_like(c.x),
                target=c.target,
                n_steps=s["steps"],
                internal_batch_size=c.bs,
            )
            return a[0].detach(), f.images

        peers[c.captum_name] = run_captum_ig
    tasks.append(
        Task(
            "integrated_gradients",
            "backward",
            min(c.bs, s["steps"]),
            s,
            run_ig,
            peers,
            dict(c.no_captum),
            _rel,
            "black baseline, Gauss-Legendre rule (captum's default)",
            images_hint=s["steps"],
        )
    )

    cam = unmask.make_explainer(c.model, "gradcam")

    def run_cam():
        return cam.explain(c.x, c.target).extras["cam"][0, 0], 1

    peers = {}
    if c.ca is not None:
        layer = dict(c.model.net.named_modules())[c.model.feature_layer]

        def run_captum_cam():
            f = Counting(c.model)
            a = c.ca.LayerGradCam(f, layer).attribute(c.x, target=c.target, relu_attributions=True)
            return a[0, 0].detach(), f.images

        peers[c.captum_name] = run_captum_cam
    tasks.append(
        Task(
            "gradcam",
            "backward",
            1,
            {"layer": c.model.feature_layer},
            run_cam,
            peers,
            dict(c.no_captum),
            _rel,
            "the 7x7 CAM at the feature layer, ReLU",
            images_hint=1,
        )
    )
    return tasks


def _extremal_tasks(c: _Context) -> list[Task]:
    tasks: list[Task] = []
    s = SETTINGS["extremal"][c.q]
    ext = unmask.make_explainer(c.model, "extremal", areas=s["areas"], steps=s["steps"])

    def run_extremal(s=s):
        return ext.explain(c.x, c.target).extras["keep_masks"][0, 0], s["steps"]

    peers, skipped = {}, {}
    try:
        from torchray.attribution.extremal_perturbation import extremal_perturbation

        peers_name = f"torchray {md.version('torchray')} extremal_perturbation"
    except ImportError:
        extremal_perturbation = None
        skipped["torchray extremal_perturbation"] = (
            "not installed (pip install --no-deps torchray==1.0.0.2)"
        )
    if extremal_perturbation is not None:

        def run_torchray_extremal(s=s):
            f = Counting(c.model)
            masks, _ = extremal_perturbation(
                f, c.x, c.target, areas=[s["areas"]], max_iter=s["steps"]
            )
            return masks[0, 0].detach(), f.images

        peers[peers_name] = run_torchray_extremal
    tasks.append(
        Task(
            "extremal",
            "backward",
            1,
            s,
            run_extremal,
            peers,
            skipped,
            lambda a, b: ("top-10% IoU", top_iou(a, b)),
            "preserve game, blur pyramid, TorchRay's defaults but the steps; "
            "optimisation paths differ (jitter, schedules): the top-10 % IoU of the "
            "masks, not a difference (tests/explainers/test_extremal.py)",
            images_hint=s["steps"],
        )
    )
    return tasks


def _deletion_tasks(c: _Context) -> list[Task]:
    tasks: list[Task] = []
    # deletion + insertion
    s = SETTINGS["deletion+insertion"][c.q]
    from unmask.metrics import compat

    images = c.x.expand(s["images"], -1, -1, -1).contiguous()
    if s["images"] > 1:
        images = torch.cat([c.x, c.x.flip(-1)])[: s["images"]]
    maps = torch.rand(
        s["images"], 1, s["map_size"], s["map_size"], generator=torch.Generator().manual_seed(0)
    )
    targets = c.t.expand(s["images"]).contiguous()

    def metric_runner(module, engine: bool = False) -> Callable[[], tuple[Any, int]]:
        """The peer gets the eager network returning probabilities; unmask's drop-in
        (``engine=True``) gets the Classifier itself (its softmax is used), so that it scores
        through its engine; a pre-hook counts its images (``infer`` calls it too)."""
        deletion, insertion = module.Deletion(batch_size=c.bs), module.Insertion(batch_size=c.bs)

        def run():
            if engine:
                seen = [0]
                hook = c.model.register_forward_pre_hook(
                    lambda _m, args: seen.__setitem__(0, seen[0] + args[0].shape[0])
                )
                f: Any = c.model
            else:
                f = c.fwd_probs().eval()
            try:
                out = {**deletion(f, images, maps, targets), **insertion(f, images, maps, targets)}
            finally:
                if engine:
                    hook.remove()
            values = torch.tensor([float(out[k]) for k in ("dauc", "dc", "iauc", "ic")])
            return values, seen[0] if engine else f.images

        return run

    peers, skipped = {}, {}
    try:
        from saliency_maps_metrics import multi_step_metrics as sm

        peers[f"saliency_maps_metrics {md.version('saliency-maps-metrics')}"] = metric_runner(sm)
    except ImportError:
        skipped["saliency_maps_metrics"] = "not installed (pip install 'unmask[test]')"
    skipped["quantus"] = "deletion only: the pixel_flipping task"
    tasks.append(
        Task(
            "deletion+insertion",
            "forward",
            c.bs,
            s,
            metric_runner(compat, engine=True),
            peers,
            skipped,
            lambda a, b: float((a - b).abs().max()),
            "DAUC, DC, IAUC, IC (max absolute difference), blur substrate, random maps",
            images_hint=2 * s["images"] * (s["map_size"] ** 2 + 1),
        )
    )
    tasks.append(pixel_flipping_task(c.model, images, maps, targets, c.bs, c.args))
    return tasks


#: Per method, the function that builds its tasks (unmask and its peers on the same input).
TASK_BUILDERS: dict[str, Callable[[_Context], list[Task]]] = {
    "occlusion": _occlusion_tasks,
    "rise": _rise_tasks,
    "lime": _lime_tasks,
    "gradients": _gradients_tasks,
    "extremal": _extremal_tasks,
    "deletion": _deletion_tasks,
}


def build_tasks(model: unmask.Classifier, x: torch.Tensor, target: int, args) -> list[Task]:
    """Every task, in the table's order."""
    c = _context(model, x, target, args)
    return [task for build in TASK_BUILDERS.values() for task in build(c)]


def pixel_flipping_task(model, images, maps, targets, bs: int, args) -> Task:
    """Deletion curves against quantus' PixelFlipping, run in its side venv
    (``benchmarks/_peer_quantus.py``); skipped with the reason when the venv cannot be built."""
    import _peer_quantus as pq

    t = pq.pixel_flipping_task(model, images, maps, targets, bs)
    why = None if args.child_task else "--no-side" if args.no_side else pq.availability()
    peers = {} if why else {pq.NAME: t["peer"]}
    return Task(
        "pixel_flipping",
        "forward",
        bs,
        t["settings"],
        t["unmask"],
        peers,
        {pq.NAME: why} if why else {},
        t["compare"],
        t["note"] + "; quantus' peak MB: not measured (its side process)",
        images_hint=t["settings"]["images"] * t["settings"]["steps"],
        side={pq.NAME},
    )


#: Minutes a --quick run is designed to take on an idle 2-core machine (checked by the JSON's
#: elapsed_s on the integrator's idle run).
QUICK_BOUND_MIN = 15
#: Seconds of one memory child's own set-up (interpreter, model, tasks), for the estimate.
CHILD_SETUP_S = 8.0


def estimate_s(tasks: list[Task], model, x: torch.Tensor, args, repeats: int) -> float:
    """A rough wall-time estimate of the run: every library of a task is assumed to cost the
    task's planned images x the model's per-image time (peers are slower or faster than that),
    over the warm-up + ``repeats`` runs, plus the memory children."""
    fwd = best_forward(model, x, args.batch_size, False, tries=1)
    bwd = best_forward(model, x, 1, True, tries=1)
    total = 0.0
    for t in tasks:
        libs = 1 + len(t.peers)
        one = t.images_hint * (bwd if t.kind == "backward" else fwd)
        total += one * libs * (repeats + 1)
        if not args.no_memory:
            total += (one + CHILD_SETUP_S) * (libs - len(t.side))
    return total


def setup(args):
    torch.set_num_threads(args.threads)
    kwargs = {} if args.execution is None else {"execution": args.execution}
    model = unmask.load_model("efficientnet_lite0", **kwargs)
    if model.execution == "compiled":  # compiled for the benchmark's batch size
        model.fast("compiled", batch_size=args.batch_size)
    args.execution = model.execution
    if model.execution == "auto":  # the steady state: the graph exported once, then cached
        from unmask.onnx_engine import prepare

        start = time.perf_counter()
        prepare(model)
        args.prepare_s = time.perf_counter() - start
    for p in model.parameters():
        p.requires_grad_(False)  # gradients to the input only, for every library
    x = unmask.load_image(unmask.example_image("chelsea"), size=224)
    with torch.inference_mode():
        target = int(model(x).argmax())
    args.engine = engine_name(model, x)
    return model, x, target


def engine_name(model, x: torch.Tensor) -> str:
    """What ``model.infer`` runs on ``x``: the execution mode, with ``"auto"`` and ``"onnx"``
    resolved to ``"onnx"`` (ONNX Runtime) or ``"channels_last"`` (nothing cached, or the
    fallback)."""
    if model.execution not in ("onnx", "auto"):
        return model.execution
    with torch.inference_mode():
        return "onnx" if model._onnx(model.preprocess(x)) is not None else "channels_last"


#: The README's first command (``unmask explain --example coffee``), for the first-run case.
FIRST_COMMAND = ["explain", "--example", "coffee", "--no-progress"]
#: Python run in a fresh process for each variant of the first-run case.
FIRST_CODE = {
    "default, fresh cache": "",
    "channels_last (before the engine)": (
        "import unmask.models as m; m.load_model.__kwdefaults__['execution'] = 'channels_last'; "
    ),
    "default, prepared cache": "",
}


def first_run(args, repeats: int) -> dict[str, Any]:
    """The README's first command in fresh processes, interleaved ``repeats`` times: the
    default (``"auto"``) on an empty ``UNMASK_CACHE_DIR``, channels_last (the default before
    the engine) and the default after ``unmask models --prepare`` (the steady state)."""
    import tempfile

    walls: dict[str, list[float]] = {name: [] for name in FIRST_CODE}
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "OMP_NUM_THREADS": str(args.threads),
            "PYTHONWARNINGS": "ignore",
        }
        prepared = Path(tmp) / "prepared"
        proc = subprocess.run(
            [sys.executable, "-m", "unmask.cli", "models", "--prepare"],
            env={**env, "UNMASK_CACHE_DIR": str(prepared)},
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"unmask models --prepare failed: {proc.stderr.strip()[-300:]}")
        for i in range(repeats):
            for name, code in FIRST_CODE.items():
                cache = prepared if "prepared" in name else Path(tmp) / f"fresh-{i}"
                script = (
                    f"{code}from unmask.cli import main; raise SystemExit(main({FIRST_COMMAND!r}))"
                )
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-c", script],
                    cwd=tmp,
                    env={**env, "UNMASK_CACHE_DIR": str(cache)},
                    capture_output=True,
                    text=True,
                )
                walls[name].append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise RuntimeError(f"first run ({name}) failed: {proc.stderr.strip()[-300:]}")
    return {"command": "unmask " + " ".join(FIRST_COMMAND), "walls_s": walls}


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
    cmd = [
        sys.executable,
        __file__,
        "--child-task",
        task,
        "--child-lib",
        lib,
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
        "--execution",
        args.execution,
    ] + (["--quick"] if args.quick else [])
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if proc.returncode != 0:
        print(
            f"  memory of {task} / {lib}: child failed: {proc.stderr.strip()[-300:]}",
            file=sys.stderr,
        )
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def table(report: dict[str, Any]) -> str:
    env, load = report["environment"], report["load"]
    head = (
        f"{'BUSY (not results): ' if report['busy'] else ''}unmask {env['unmask']} "
        f"({env['commit'][:10]}{', dirty' if env['dirty'] else ''}), {env['cpu']}, "
        f"{env['cores']} cores, torch {env['versions'].get('torch')} with "
        f"{report['threads']} threads, execution {report['execution']!r}, "
        f"{'--smoke, ' if report.get('smoke') else ''}"
        f"{'--quick, ' if report['quick'] else ''}{report['repeats']} interleaved repeats, "
        f"batch {report['batch_size']}; load (1, 5, 15 min) before "
        f"{', '.join(f'{v:.2f}' for v in load['before'])}, after "
        f"{', '.join(f'{v:.2f}' for v in load['after'])}."
    )
    lines = [
        head,
        "",
        "| method | settings | unmask s (min-max) | images | engine | model-bound s "
        "| engine-bound s | overhead | peer | peer s (min-max) | peer / unmask "
        "| equal (max rel. diff) | peak MB unmask / peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        u = r["unmask"]
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        first = (
            f"| {r['method']} | {settings} | {u['wall_s']['median']:.2f} "
            f"({u['wall_s']['min']:.2f}-{u['wall_s']['max']:.2f}) | {u['images']} | "
            f"{r.get('engine', '-')} | {r['model_bound_s']:.2f} | {r['engine_bound_s']:.2f} | "
            f"{r['overhead']:.2f} "
        )
        mem_u = "-" if u.get("peak_mb") is None else f"{u['peak_mb']:.0f}"
        if not r["peers"]:
            lines.append(first + f"| - | - | - | - | {mem_u} |")
        for name, p in r["peers"].items():
            diff = p.get("max_diff")
            if diff is None:
                diff = "not compared"
            elif isinstance(diff, dict):
                diff = f"{diff['measure']} {diff['value']:.2f}"
            else:
                diff = f"{diff:.1e}"
            mem_p = "-" if p.get("peak_mb") is None else f"{p['peak_mb']:.0f}"
            lines.append(
                first + f"| {name} | {p['wall_s']['median']:.2f} "
                f"({p['wall_s']['min']:.2f}-{p['wall_s']['max']:.2f}) | "
                f"{p['wall_s']['median'] / u['wall_s']['median']:.2f} | {diff} | "
                f"{mem_u} / {mem_p} |"
            )
            first = "| | | | | | | | "
    lines.append("")
    if report.get("prepare_s") is not None:
        lines.append(
            f"- engine: {report['engine']!r}; the ONNX graph was loaded or exported and checked "
            f"in {report['prepare_s']:.1f} s before the timings (cached for later runs)"
        )
    first = report.get("first_run")
    if first:
        cells = ", ".join(
            f"{name} {statistics.median(w):.2f} s ({min(w):.2f}-{max(w):.2f})"
            for name, w in first["walls_s"].items()
        )
        lines.append(f"- first run, `{first['command']}` in fresh processes: {cells}")
    for r in report["results"]:
        for name, why in r["skipped"].items():
            lines.append(f"- {r['method']}: {name} skipped: {why}")
        if r["compare_note"]:
            lines.append(f"- {r['method']}: {r['compare_note']}")
    return "\n".join(lines) + "\n"


def run_task(task: Task, model, x: torch.Tensor, args, repeats: int) -> dict[str, Any]:
    """Warm up, run unmask and the peers interleaved ``repeats`` times, check, measure memory."""
    print(f"... {task.name} ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    libs = {"unmask": task.unmask, **task.peers}
    skipped = dict(task.skipped)
    side_peak: dict[str, float | None] = {}
    for lib, run in list(libs.items()):  # warm-up (the frozen trace or the compile, if any)
        try:
            side_peak[lib] = _outcome(run())[2].get("peak_mb")
        except Exception as exc:  # a peer that fails is reported, not fatal
            if lib == "unmask":
                raise
            skipped[lib] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            del libs[lib]
    walls: dict[str, list[float]] = {lib: [] for lib in libs}
    refs, engine, outputs, images = [], [], {}, {}
    for _ in range(repeats):
        refs.append(best_forward(model, x, task.batch, task.kind == "backward"))
        if task.kind == "forward":
            engine.append(best_forward(model, x, task.batch, False, engine=True))
        for lib, run in libs.items():
            start = time.perf_counter()
            outputs[lib], images[lib], extra = _outcome(run())
            walls[lib].append(extra.get("wall_s", time.perf_counter() - start))
    per_image = min(refs)
    engine_per_image = min(engine) if engine else per_image
    bound = images["unmask"] * per_image
    engine_bound = images["unmask"] * engine_per_image
    row: dict[str, Any] = {
        "method": task.name,
        "settings": task.settings,
        "kind": task.kind,
        "reference_batch": task.batch,
        "model_s_per_image_best": per_image,
        "model_s_per_image_all": refs,
        "model_bound_s": bound,
        "engine_s_per_image_best": engine_per_image,
        "engine_s_per_image_all": engine,
        "engine_bound_s": engine_bound,
        "engine": getattr(args, "engine", args.execution)
        if task.kind == "forward"
        else "eager (autograd)",
        "unmask": {
            "wall_s": spread(walls["unmask"]),
            "walls_s": walls["unmask"],
            "images": images["unmask"],
        },
        "peers": {},
        "skipped": skipped,
        "compare_note": task.compare_note,
    }
    row["overhead"] = row["unmask"]["wall_s"]["median"] / engine_bound
    for lib in libs:
        if lib == "unmask":
            continue
        if lib in task.checks:
            diff = task.checks[lib]()
        else:
            diff = task.compare(outputs["unmask"], outputs[lib]) if task.compare else None
        if isinstance(diff, tuple):
            diff = {"measure": diff[0], "value": diff[1]}
        row["peers"][lib] = {
            "wall_s": spread(walls[lib]),
            "walls_s": walls[lib],
            "images": images[lib],
            "max_diff": diff,
            "side_venv": lib in task.side,
        }
    if not args.no_memory:
        row["unmask"]["peak_mb"] = peak_memory(args, task.name, "unmask")
        for lib in row["peers"]:
            row["peers"][lib]["peak_mb"] = (
                side_peak.get(lib) if lib in task.side else peak_memory(args, task.name, lib)
            )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sample counts")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts, 1 repeat, no memory: checks the script and the "
        "peers' agreement only (timings mean nothing)",
    )
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 3, quick 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--execution",
        default=None,
        choices=unmask.models.EXECUTIONS,
        help="unmask's scoring path (Classifier.fast; default: load_model's "
        "default); peers use the model eagerly",
    )
    parser.add_argument(
        "--no-side",
        action="store_true",
        help="do not build or use the side venvs (their peers are skipped)",
    )
    parser.add_argument("--methods", help="comma-separated subset of the task names")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument(
        "--no-first-run",
        action="store_true",
        help="skip the first-run case (the README's first command in fresh processes)",
    )
    parser.add_argument("--force", action="store_true", help="run on a busy machine (marked BUSY)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--child-task", help=argparse.SUPPRESS)
    parser.add_argument("--child-lib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for opt in ("threads", "batch_size", "repeats"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            parser.error(f"--{opt.replace('_', '-')}: expected a positive integer, got {value}")
    if args.child_task:
        child(args)
        return
    if args.smoke:
        args.no_memory, args.repeats = True, args.repeats or 1
    repeats = args.repeats or 3
    cores = os.cpu_count() or 1
    before = os.getloadavg()
    busy = before[0] > BUSY_BEFORE * cores
    if busy and not args.force:
        raise SystemExit(
            f"BUSY: 1-minute load {before[0]:.2f} > {BUSY_BEFORE * cores:.1f} "
            f"({BUSY_BEFORE} x {cores} cores); wait for an idle machine or pass "
            "--force (the run is then marked BUSY)"
        )
    started = time.perf_counter()
    model, x, target = setup(args)
    tasks = build_tasks(model, x, target, args)
    if args.methods:
        wanted = set(args.methods.split(","))
        tasks = [t for t in tasks if t.name in wanted]
    estimate = estimate_s(tasks, model, x, args, repeats)
    print(
        f"estimated time: ~{estimate / 60:.1f} min on this machine now (the model's "
        "per-image time x planned images x libraries x runs; peers may differ)"
        + (
            f"; above the {QUICK_BOUND_MIN} min --quick is designed for: a slower or busy machine"
            if args.quick and estimate > QUICK_BOUND_MIN * 60
            else ""
        ),
        file=sys.stderr,
        flush=True,
    )
    results = []
    first = None
    try:
        if not args.no_first_run:
            print(f"... first run ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
            first = first_run(args, repeats)
        for task in tasks:
            results.append(run_task(task, model, x, args, repeats))
    finally:
        side_venvs = {
            Path(script).stem: {"python": py, **server.ready}
            for (py, script), server in SERVERS.items()
        }
        for server in SERVERS.values():
            server.close()
    after = os.getloadavg()
    busy = busy or after[0] > cores
    report = {
        "benchmark": "run",
        "model": "efficientnet_lite0",
        "image": "skimage chelsea, 224x224",
        "target": target,
        "quick": args.quick,
        "smoke": args.smoke,
        "repeats": repeats,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "execution": model.execution,
        "engine": args.engine,
        "prepare_s": getattr(args, "prepare_s", None),
        "first_run": first,
        "busy": busy,
        "estimate_s": estimate,
        "elapsed_s": time.perf_counter() - started,
        "busy_rule": f"1-minute load before > {BUSY_BEFORE} x cores or after > cores",
        "load": {"before": before, "after": after},
        "environment": environment(),
        "side_venvs": side_venvs,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "run-smoke" if args.smoke else "run-quick" if args.quick else "run"
    stem += "" if args.batch_size == 16 else f"-b{args.batch_size}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    md_text = table(report)
    (args.out / f"{stem}.md").write_text(md_text)
    print(md_text)
    print(
        f"wrote {args.out / stem}.json and .md ({report['elapsed_s'] / 60:.1f} min, "
        f"estimated {estimate / 60:.1f})"
    )


if __name__ == "__main__":
    main()
