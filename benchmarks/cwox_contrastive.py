"""Are CWOX-2s maps more contrastively faithful than plain per-class maps? (CAUC / CDROP)

On the first N shared ImageNet samples (default 20), with EfficientNet-Lite0 and the Grad-CAM
base, every image's top classes (cumulative 0.95, at most 5) are clustered by the published
ResNet-50 tree (cut level 0) and two kinds of maps are scored with the registered contrastive
metrics ``cauc`` (lower is better) and ``cdrop`` (higher is better), both read from one
contrastive deletion curve per map:

* **cluster** pairs (images with two or more clusters): target C_i, competitors C′ = the other
  top classes; CWOX-2s' contrastive cluster map H_i against the plain Grad-CAM map of the
  cluster (with ReLU, the cluster scored by its generalised logit, at the feature layer);
* **class** pairs (members of clusters of two or more): target c, competitors C′ = its cluster
  mates (as the original's evaluation, ``Evaluation/experiments``); CWOX-2s' class map H_ik
  against the plain Grad-CAM map of the class.

A map that is zero everywhere has no salient pixel (n_δ = 0: CAUC 0, CDROP NaN); such pairs
are counted and left out of the comparison. Writes one CSV row per (pair, map) and prints the
summary (mean, median, and the share of pairs where CWOX-2s scores better).

    python benchmarks/cwox_contrastive.py --images 20 --csv benchmarks/results/cwox_contrastive.csv
    python benchmarks/cwox_contrastive.py --summary benchmarks/results/cwox_contrastive.csv

It also counts the images whose top classes the data-free tree of EfficientNet-Lite0 clusters
exactly as the published tree does.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20, help="first N samples (default 20)")
    parser.add_argument("--samples", default=str(SAMPLES), help="folder with labels.csv")
    parser.add_argument("--csv", default=None, help="write the per-map rows here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--pixels-per-step",
        type=int,
        default=16,
        help="pixels deleted per step of the curves (the metric's 16; larger is "
        "proportionally faster)",
    )
    parser.add_argument(
        "--summary",
        default=None,
        metavar="CSV",
        help="only print the summary of an earlier run's CSV",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.summary:
        with open(args.summary) as f:
            rows = [
                dict(
                    r,
                    zero_map=r["zero_map"] == "True",
                    cauc=float(r["cauc"]),
                    cdrop=float(r["cdrop"]),
                )
                for r in csv.DictReader(f)
            ]
        summarise(rows)
        return 0

    import unmask
    import unmask.metrics  # noqa: F401  (registers the metrics)
    from unmask.contrastive import cwox, data_free_tree, load_tree, top_classes
    from unmask.images import load_image
    from unmask.registry import METRICS

    model = unmask.load_model("efficientnet_lite0")
    tree = load_tree("resnet50")
    options = {"batch_size": args.batch_size, "pixels_per_step": args.pixels_per_step}
    cauc = METRICS.get("cauc").build(**options)
    cdrop = METRICS.get("cdrop").build(**options)
    free = data_free_tree(model)
    same_clusters = 0
    assert cauc.shared_key() == cdrop.shared_key()  # one curve serves both
    plain = unmask.make_explainer(model, "gradcam")  # relu=True, the feature layer

    with open(Path(args.samples) / "labels.csv") as f:
        files = [row["file"] for row in csv.DictReader(f)][: args.images]
    rows: list[dict] = []
    start = time.time()
    out = open(args.csv, "w", newline="") if args.csv else None  # noqa: SIM115
    writer = None
    for n, name in enumerate(files):
        x = load_image(Path(args.samples) / name, size=224)
        e = cwox(model, x, tree)
        clusters = e.clusters[0]
        top = [c for cl in clusters for c in cl]
        tops = top_classes(e.probabilities)[0]
        same_clusters += sorted(map(sorted, free.clusters(tops))) == sorted(map(sorted, clusters))
        jobs = []  # (kind, target, competitors, cwox map, plain target)
        if len(clusters) > 1:
            for i, members in enumerate(clusters):
                others = [c for c in top if c not in members]
                jobs.append(("cluster", members, others, e.cluster_maps[0][i], [members]))
        for i, members in enumerate(clusters):
            maps = e.class_maps[0][i]
            if maps is None:
                continue
            for k, c in enumerate(members):
                mates = [m for m in members if m != c]
                jobs.append(("class", [c], mates, maps[k], c))
        for kind, target, competitors, h, plain_target in jobs:
            base = plain.explain(x, plain_target).saliency
            for label, m in (("cwox", h[None, None]), ("plain", base)):
                curve = cauc.shared(model, x, m, [target], competitors=[competitors])
                rows.append(
                    row := {
                        "image": name,
                        "kind": kind,
                        "target": " ".join(map(str, target)),
                        "competitors": " ".join(map(str, competitors)),
                        "map": label,
                        "zero_map": bool(float(m.abs().max()) == 0),
                        "n_delta": int(curve.n_delta[0]),
                        "cauc": float(cauc.reduce(curve)[0]),
                        "cdrop": float(cdrop.reduce(curve)[0]),
                    }
                )
                if out is not None:
                    if writer is None:
                        writer = csv.DictWriter(out, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)
                    out.flush()
        print(
            f"[{n + 1}/{len(files)}] {name}: {len(clusters)} clusters, {len(jobs)} pairs, "
            f"{time.time() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    if out is not None:
        out.close()
    print(
        f"{len(files)} images; the data-free tree of EfficientNet-Lite0 clusters the top "
        f"classes as the published ResNet-50 tree does on {same_clusters} of them"
    )
    summarise(rows)
    return 0


def summarise(rows: list[dict]) -> None:
    """Print, per kind, the paired comparison of CWOX-2s and plain maps."""
    pairs: dict[tuple, dict] = {}
    for r in rows:
        pairs.setdefault((r["image"], r["kind"], r["target"], r["competitors"]), {})[r["map"]] = r
    print(
        "| pairs | kind | left out (zero map) | CAUC cwox | CAUC plain | CWOX better (CAUC) "
        "| CDROP cwox | CDROP plain | CWOX better (CDROP) | median n_δ cwox / plain |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("cluster", "class"):
        ps = [p for k, p in pairs.items() if k[1] == kind and len(p) == 2]
        kept = [p for p in ps if not p["cwox"]["zero_map"] and not p["plain"]["zero_map"]]
        if not kept:
            print(f"| {len(ps)} | {kind} | {len(ps)} | | | | | | | |")
            continue

        def stat(metric: str, which: str, kept: list[dict] = kept) -> str:
            v = [p[which][metric] for p in kept if not math.isnan(p[which][metric])]
            return f"{statistics.mean(v):.4f} (median {statistics.median(v):.4f})"

        better_auc = sum(p["cwox"]["cauc"] < p["plain"]["cauc"] for p in kept)
        valid = [p for p in kept if not math.isnan(p["cwox"]["cdrop"] + p["plain"]["cdrop"])]
        better_drop = sum(p["cwox"]["cdrop"] > p["plain"]["cdrop"] for p in valid)
        print(
            f"| {len(kept)} | {kind} | {len(ps) - len(kept)} | {stat('cauc', 'cwox')} | "
            f"{stat('cauc', 'plain')} | {better_auc}/{len(kept)} | {stat('cdrop', 'cwox')} | "
            f"{stat('cdrop', 'plain')} | {better_drop}/{len(valid)} | "
            f"{statistics.median(int(p['cwox']['n_delta']) for p in kept)} / "
            f"{statistics.median(int(p['plain']['n_delta']) for p in kept)} |"
        )


if __name__ == "__main__":
    sys.exit(main())
