"""How many samples do RISE, LIME and occlusion need? Convergence against the sample count.

    python benchmarks/convergence.py --images 4 --verify occlusion,lime   # collect + analyse
    python benchmarks/convergence.py --images 4 --analyse-only            # cached runs only
    python benchmarks/convergence.py --images 4 --collect-only --runs lime,occ,lime_ref

On the embedded model (EfficientNet-Lite0, 224²) and the shared ImageNet samples (the labelled
class of each image is explained), for each method:

- **RISE** (paper default N = 4,000 masks): one run of 4,000 masks (seed 0); its partial
  estimates after n = 250, 500, ... masks (the first n masks of the run, the sum divided by n·p)
  are compared with an independent **16,000-mask** reference (4× longer): ``--rise-chunks``
  4 runs of 4,000 masks, seeds 1-4, averaged.
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
the same map (``--verify``).

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
from unmask.explainers.converge import Convergence, map_change  # noqa: E402
from unmask.explainers.lime import Lime, lime_kernel, weighted_ridge  # noqa: E402
from unmask.explainers.occlusion import Occlusion, coarse_step  # noqa: E402
from unmask.explainers.rise import Rise  # noqa: E402
from unmask.metrics.deletion import deletion_curve  # noqa: E402

SAMPLES = Path(
    os.environ.get("UNMASK_SAMPLES", ROOT.parent / "shared" / "data" / "imagenet-samples")
)
RISE_N, RISE_REF, RISE_STEP = 4000, 16000, 250  # reference in 4 runs of 4,000
LIME_N, LIME_REF, LIME_STEP = 1000, 4000, 50
OCC_PATCH, OCC_STRIDE = 29, 3
BATCH = 16
RUNS = ("rise", "lime", "occ", "lime_ref", "rise_ref")


def pick_images(count: int) -> list[tuple[str, int, str]]:
    """``count`` images spread over the 100 samples: rows 0, 100/count, 2·100/count, ..."""
    with open(SAMPLES / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    step = max(1, len(rows) // count)
    return [(r["file"], int(r["class_index"]), r["name"]) for r in rows[::step][:count]]


def _cached(cache: Path, name: str, run, log, compute: bool = True) -> dict | None:
    """One run's raw output, computed once and kept in ``cache/name.pt`` (None when it is not
    cached and ``compute`` is False)."""
    out = cache / f"{name}.pt"
    if out.exists():
        return torch.load(out, weights_only=False)
    if not compute:
        return None
    t0 = time.time()
    raw = run()
    raw["seconds"], raw["load"] = time.time() - t0, os.getloadavg()[0]
    torch.save(raw, out)
    log(f"{name}: {raw['seconds']:.0f} s")
    return raw


def collect(
    model,
    path: Path,
    label: int,
    cache: Path,
    log,
    rise_chunks: int,
    compute: bool = True,
    runs_wanted: tuple[str, ...] = RUNS,
) -> dict:
    """The raw runs of one image (each cached): scores and maps.

    The RISE reference is ``rise_chunks`` independent runs of ``RISE_REF / 4`` masks (seeds 1,
    2, ...) averaged: RISE's estimate is a mean over masks, so the average of k runs of m masks
    is the estimate from k·m masks.
    """
    x = unmask.load_image(path)
    stem = path.stem

    def lime(n: int, seed: int) -> dict:
        e = Lime(model, samples=n, seed=seed, batch_size=BATCH).explain(x, label)
        return {
            "saliency": e.saliency,
            **{k: e.extras[k] for k in ("segments", "samples", "sample_scores")},
        }

    def occ() -> dict:
        e = Occlusion(model, patch_size=OCC_PATCH, stride=OCC_STRIDE, batch_size=BATCH)
        e = e.explain(x, label)
        return {"saliency": e.saliency, "grid": e.extras["grid"]}

    def rise(n: int, seed: int) -> dict:
        e = Rise(model, masks=n, seed=seed, batch_size=BATCH).explain(x, label)
        return {"saliency": e.saliency, "mask_scores": e.extras["mask_scores"]}

    raw = {"file": path.name, "label": label, "x": x}
    runs = {
        "rise": lambda: rise(RISE_N, 0),
        "lime": lambda: lime(LIME_N, 0),
        "occ": occ,
        "lime_ref": lambda: lime(LIME_REF, 1),
    }
    for key, run in runs.items():
        got = _cached(
            cache, f"{stem}-{key.replace('_', '-')}", run, log, compute and key in runs_wanted
        )
        if got is not None:
            raw[key] = got
    refs = [
        _cached(
            cache,
            f"{stem}-rise-ref{k}",
            lambda k=k: rise(RISE_REF // 4, k),
            log,
            compute and "rise_ref" in runs_wanted,
        )
        for k in range(1, rise_chunks + 1)
    ]
    raw["rise_ref"] = [r for r in refs if r is not None]
    return raw


# ---- analysis -----------------------------------------------------------------------------------

RISE_COUNTS = [250, 500, 1000, 1500, 2000, 3000, 4000]
LIME_COUNTS = [100, 200, 300, 400, 500, 700, 1000]
TOLERANCES = {
    "rise": [1e-2, 3e-3, 1e-3],
    "lime": [1e-2, 3e-3, 1e-3],
    "occlusion": [3e-2, 1e-2, 3e-3],
}
DEFAULTS = {
    "rise": {"check_every": 250, "patience": 2},
    "lime": {"check_every": 100, "patience": 2},
    "occlusion": {"patience": 1},
}


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(1 - map_change(a.flatten(), b.flatten()))


def rise_partials(model, raw: dict, counts: list[int]) -> dict[int, torch.Tensor]:
    """RISE estimates (1, 1, H, W) from the first n masks of the seed-0 run, n in ``counts``."""
    masks = Rise(model, masks=RISE_N, seed=0).sample((224, 224))
    scores = raw["mask_scores"][0].double()
    total, out, done = torch.zeros(224 * 224, dtype=torch.float64), {}, 0
    for n in sorted(counts):
        for c0 in range(done, n, 80):
            c1 = min(c0 + 80, n)
            total += scores[c0:c1] @ masks.render(c0, c1).reshape(-1, 224 * 224).double()
        done = n
        out[n] = (total / (n * 0.5)).float().reshape(1, 1, 224, 224)
    return out


def lime_partials(raw: dict, counts: list[int]) -> dict[int, torch.Tensor]:
    """LIME maps from the ridge fit on the first n samples of the seed-0 run."""
    z, seg, y = raw["samples"], raw["segments"], raw["sample_scores"]
    valid = torch.ones(1, z.shape[2], dtype=torch.bool)
    kernel = lime_kernel(z, valid, 0.25)
    out = {}
    for n in counts:
        coef = weighted_ridge(z[:, :n].double(), y[:, :n].double(), kernel[:, :n], 1.0)[0]
        out[n] = coef.float().gather(1, seg.reshape(1, -1)).reshape(1, 1, 224, 224)
    return out


def occlusion_levels(raw: dict) -> dict[int, torch.Tensor]:
    """Occlusion maps of the stride-3 lattice's levels (step m -> stride 3·m), by evaluations."""
    grid = raw["grid"][0]
    pos = torch.arange(0, 224 - OCC_PATCH + 1, OCC_STRIDE)
    pixels = torch.arange(224)
    ind = ((pixels >= pos[:, None]) & (pixels < pos[:, None] + OCC_PATCH)).float()
    coarsest = coarse_step((OCC_PATCH,) * 2, (OCC_STRIDE,) * 2, (len(pos),) * 2)
    out = {}
    for m in [coarsest >> k for k in range(coarsest.bit_length())]:
        r, g = ind[::m], grid[::m, ::m]
        count = r.sum(0)[:, None] * r.sum(0)[None, :]
        total = r.T @ g @ r
        out[g.numel()] = torch.where(
            count > 0, total / count.clamp(min=1), torch.zeros_like(total)
        ).reshape(1, 1, 224, 224)
    return out


def replay(
    maps: dict[int, torch.Tensor], checks: list[int], tolerance: float, patience: int
) -> int:
    """The sample count the early-stopping rule picks, replayed on the partial maps ``checks``
    (the last count is the budget)."""
    rule = Convergence(tolerance, patience, images=1)
    for n in checks[:-1]:
        if rule.update(torch.tensor([0]), maps[n].reshape(1, 1, -1)):
            return n
    return checks[-1]


def deletion_aucs(model, x: torch.Tensor, label: int, maps: list[torch.Tensor]) -> list[float]:
    """Deletion AUC (RISE rule) of each map, one engine call."""
    curve = deletion_curve(
        model,
        x.expand(len(maps), -1, -1, -1),
        torch.cat(maps),
        label,
        rule="rise",
        batch_size=BATCH,
    )
    return curve.auc().tolist()


def analyse(model, raw: dict) -> list[dict]:
    """Rows (method, image, samples, correlation with the reference, deletion AUC, marks)."""
    x, label, rows = raw["x"], raw["label"], []
    methods = {}
    if "rise" in raw and raw.get("rise_ref"):
        checks = list(range(250, RISE_N + 1, 250))
        maps = rise_partials(model, raw["rise"], sorted(set(RISE_COUNTS) | set(checks)))
        ref = torch.stack([r["saliency"] for r in raw["rise_ref"]]).mean(0)
        methods["rise"] = (maps, checks, ref, RISE_REF // 4 * len(raw["rise_ref"]))
    if "lime" in raw and "lime_ref" in raw:
        checks = list(range(100, LIME_N + 1, 100))
        maps = lime_partials(raw["lime"], sorted(set(LIME_COUNTS) | set(checks)))
        methods["lime"] = (maps, checks, raw["lime_ref"]["saliency"], LIME_REF)
    if "occ" in raw:
        maps = occlusion_levels(raw["occ"])
        methods["occlusion"] = (maps, sorted(maps), raw["occ"]["saliency"], "stride 3")
    full = {"rise": ("rise", RISE_N), "lime": ("lime", LIME_N), "occlusion": ("occ", None)}
    for name, (maps, checks, ref, ref_size) in methods.items():
        key, n = full[name]
        replayed = maps[n if n is not None else max(maps)]
        if not torch.allclose(replayed, raw[key]["saliency"], atol=1e-5, rtol=1e-4):
            raise RuntimeError(f"{name}: the replayed full-budget map differs from the run's map")
        grid = {"rise": RISE_COUNTS, "lime": LIME_COUNTS}.get(name, sorted(maps))
        chosen = {t: replay(maps, checks, t, DEFAULTS[name]["patience"]) for t in TOLERANCES[name]}
        counts = sorted(set(grid) | set(chosen.values()))
        aucs = dict(
            zip(
                counts + ["ref"],
                deletion_aucs(model, x, label, [maps[n] for n in counts] + [ref]),
                strict=True,
            )
        )
        for n in counts:
            rows.append(
                {
                    "method": name,
                    "image": raw["file"],
                    "samples": n,
                    "correlation": pearson(maps[n], ref),
                    "deletion_auc": aucs[n],
                    "reference": ref_size,
                    "reference_auc": aucs["ref"],
                    "chosen_by": [t for t, c in chosen.items() if c == n],
                }
            )
    return rows


def verify(model, raw: dict, rows: list[dict], methods: list[str], cache: Path) -> list[dict]:
    """Re-run one image with the early-stopping option itself (the middle tolerance of each
    of ``methods``): it must stop at the replayed count, with the replayed partial map.
    Each check is cached in ``cache``."""
    x, label, out = raw["x"], raw["label"], []
    makers = {
        "rise": lambda t: Rise(model, masks=RISE_N, seed=0, batch_size=BATCH, tolerance=t),
        "lime": lambda t: Lime(model, samples=LIME_N, seed=0, batch_size=BATCH, tolerance=t),
        "occlusion": lambda t: Occlusion(
            model, patch_size=OCC_PATCH, stride=OCC_STRIDE, batch_size=BATCH, tolerance=t
        ),
    }
    for name, make in makers.items():
        mine = [r for r in rows if r["method"] == name and r["image"] == raw["file"]]
        if not mine or name not in methods:
            continue
        t = TOLERANCES[name][1]
        done = cache / f"{Path(raw['file']).stem}-verify-{name}-{t:g}.json"
        if done.exists():
            out.append(json.loads(done.read_text()))
            continue
        replayed = next(r["samples"] for r in mine if t in r["chosen_by"])
        t0 = time.time()
        e = make(t).explain(x, label)
        used = int(e.extras["samples_used"][0])
        if name == "rise":
            ref = rise_partials(model, raw["rise"], [used])[used]
        elif name == "lime":
            ref = lime_partials(raw["lime"], [used])[used]
        else:
            ref = occlusion_levels(raw["occ"])[used]
        out.append(
            {
                "method": name,
                "image": raw["file"],
                "tolerance": t,
                "samples_used": used,
                "replayed_samples": replayed,
                "converged": bool(e.extras["converged"][0]),
                "max_abs_difference_to_replayed_map": float((e.saliency - ref).abs().max()),
                "seconds": time.time() - t0,
            }
        )
        done.write_text(json.dumps(out[-1]))
    return out


def summarise(rows: list[dict]) -> dict:
    """Per method and sample count: mean correlation / AUC over the images; per tolerance: the
    mean chosen count, correlation and AUC."""
    out: dict = {}
    for name in ("rise", "lime", "occlusion"):
        mine = [r for r in rows if r["method"] == name]
        if not mine:
            continue
        images = sorted({r["image"] for r in mine})
        grid = {"rise": RISE_COUNTS, "lime": LIME_COUNTS}.get(name)
        counts = sorted({r["samples"] for r in mine}) if grid is None else grid
        curve = []
        for n in counts:
            at = [r for r in mine if r["samples"] == n]
            if len(at) == len(images):
                curve.append(
                    {
                        "samples": n,
                        "correlation": sum(r["correlation"] for r in at) / len(at),
                        "min_correlation": min(r["correlation"] for r in at),
                        "deletion_auc": sum(r["deletion_auc"] for r in at) / len(at),
                    }
                )
        stops = []
        for t in TOLERANCES[name]:
            at = [r for r in mine if t in r["chosen_by"]]
            stops.append(
                {
                    "tolerance": t,
                    **DEFAULTS[name],
                    "samples": [r["samples"] for r in at],
                    "mean_samples": sum(r["samples"] for r in at) / len(at),
                    "correlation": sum(r["correlation"] for r in at) / len(at),
                    "min_correlation": min(r["correlation"] for r in at),
                    "deletion_auc": sum(r["deletion_auc"] for r in at) / len(at),
                }
            )
        ref_auc = {r["image"]: r["reference_auc"] for r in mine}
        out[name] = {
            "images": images,
            "reference": mine[0]["reference"],
            "reference_auc": sum(ref_auc.values()) / len(ref_auc),
            "curve": curve,
            "early_stopping": stops,
        }
    return out


def plot(summary: dict, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("rise", "lime", "occlusion") if n in summary]
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.4), squeeze=False)
    for j, name in enumerate(names):
        s, mine = summary[name], [r for r in rows if r["method"] == name]
        for k, key in enumerate(("correlation", "deletion_auc")):
            ax = axes[k, j]
            for img in s["images"]:
                pts = sorted((r["samples"], r[key]) for r in mine if r["image"] == img)
                ax.plot(*zip(*pts, strict=True), color="0.8", lw=0.8)
            ax.plot(
                [c["samples"] for c in s["curve"]],
                [c[key] for c in s["curve"]],
                "k-o",
                ms=3,
                label=f"mean of {len(s['images'])} image(s)",
            )
            for stop, colour in zip(
                s["early_stopping"], ("tab:red", "tab:orange", "tab:green"), strict=False
            ):
                ax.plot(
                    stop["mean_samples"],
                    stop[key],
                    "D",
                    color=colour,
                    ms=5,
                    alpha=0.8,
                    label=f"tolerance {stop['tolerance']:g}: {stop['mean_samples']:,.0f} (mean)",
                )
            if key == "deletion_auc":
                ax.axhline(s["reference_auc"], color="tab:blue", ls="--", lw=0.8, label="reference")
            ax.set_xscale("log")
            ticks = [c["samples"] for c in s["curve"]]
            ax.set_xticks(
                ticks, [f"{t / 1000:g}k" if t >= 1000 else str(t) for t in ticks], fontsize=7
            )
            ax.minorticks_off()
            ax.set_xlabel("model evaluations" if name == "occlusion" else "samples")
            ax.set_ylabel(
                "correlation with the reference" if k == 0 else "deletion AUC (lower = better)"
            )
            ax.set_title(f"{name} (reference: {s['reference']})" if k == 0 else name, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/unmask-convergence"))
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument(
        "--runs",
        default=",".join(RUNS),
        help="the runs to compute when missing (comma-separated; default all)",
    )
    ap.add_argument(
        "--verify",
        default="",
        help="methods (comma-separated) to re-run on the first image with the "
        "early-stopping option (costs up to one default run each)",
    )
    ap.add_argument(
        "--analyse-only",
        action="store_true",
        help="use the cached runs only (an image's missing runs are left out)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--rise-chunks",
        type=int,
        default=4,
        help="RISE reference = this many independent 4,000-mask runs (4 = 16,000)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", flush=True)

    model = unmask.load_model()
    images = pick_images(args.images)
    wanted = tuple(args.runs.split(","))
    raws = [
        collect(
            model,
            SAMPLES / f,
            label,
            args.cache,
            log,
            args.rise_chunks,
            not args.analyse_only,
            wanted,
        )
        for f, label, _ in images
    ]
    if args.collect_only:
        return
    t0 = time.time()
    rows = [r for raw in raws for r in analyse(model, raw)]
    summary = summarise(rows)
    checked = verify(model, raws[0], rows, args.verify.split(","), args.cache)
    load = os.getloadavg()
    spent = sum(r["seconds"] for raw in raws for r in _runs(raw))
    result = {
        "command": "python benchmarks/convergence.py " + " ".join(sys.argv[1:]),
        "model": "efficientnet_lite0 (unmask.load_model())",
        "threads": args.threads,
        "images": [f for f, _, _ in images],
        "batch_size": BATCH,
        "collection_seconds": spent,
        "analysis_seconds": time.time() - t0,
        "load_during_collection": [r["load"] for raw in raws for r in _runs(raw)],
        "load_at_analysis": load,
        "deletion": "deletion_curve(rule='rise'): ImageNet-mean "
        "substrate, 8*224 pixels per step (28 steps)",
        "summary": summary,
        "verified": checked,
        "rows": rows,
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "convergence.json").write_text(json.dumps(result, indent=1))
    with open(results / "convergence.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "chosen_by": " ".join(f"{t:g}" for t in r["chosen_by"])})
    plot(summary, rows, ROOT / "docs" / "images" / "convergence.png")
    (results / "convergence.md").write_text(markdown(summary))
    print(markdown(summary))
    for v in checked:
        print("verified:", v)
    for name, s in summary.items():
        print(name, len(s["images"]), "image(s); reference", s["reference"])
        for c in s["curve"]:
            print(
                f"  {c['samples']:>5}  r={c['correlation']:.4f} "
                f"(min {c['min_correlation']:.4f})  "
                f"DAUC={c['deletion_auc']:.4f}"
            )
        for e in s["early_stopping"]:
            print(
                f"  tol {e['tolerance']:g}: samples {e['samples']} r={e['correlation']:.4f} "
                f"(min {e['min_correlation']:.4f}) DAUC={e['deletion_auc']:.4f}"
            )


def markdown(summary: dict) -> str:
    """The docs' tables: the curve per method, then the early-stopping choices."""
    lines = []
    for name, s in summary.items():
        unit = "evaluations" if name == "occlusion" else "samples"
        lines += [
            f"**{name}** ({len(s['images'])} image(s); reference: {s['reference']}"
            f"{'' if name == 'occlusion' else ' ' + unit}; reference deletion AUC "
            f"{s['reference_auc']:.4f})",
            "",
            f"| {unit} | correlation with the reference (mean / min) | deletion AUC |",
            "|---|---|---|",
        ]
        for c in s["curve"]:
            lines.append(
                f"| {c['samples']:,} | {c['correlation']:.4f} / {c['min_correlation']:.4f}"
                f" | {c['deletion_auc']:.4f} |"
            )
        lines += [
            "",
            f"| early stopping | {unit} used | correlation (mean / min) | deletion AUC |",
            "|---|---|---|---|",
        ]
        for e in s["early_stopping"]:
            opts = ", ".join(f"{k}={v}" for k, v in e.items() if k in ("check_every", "patience"))
            used = ", ".join(f"{n:,}" for n in e["samples"])
            lines.append(
                f"| tolerance={e['tolerance']:g}, {opts} | {used} | "
                f"{e['correlation']:.4f} / {e['min_correlation']:.4f} | "
                f"{e['deletion_auc']:.4f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _runs(raw: dict) -> list[dict]:
    runs = [raw[k] for k in ("rise", "lime", "occ", "lime_ref") if k in raw]
    return runs + raw.get("rise_ref", [])


if __name__ == "__main__":
    main()
