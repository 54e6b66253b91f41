"""`unmask cwox`: contrastive whole-output explanation (CWOX-2s) of the top classes of images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parser must not import torch
    from .._types import Model


COMMAND = "cwox"
HELP = (
    "Explain the top classes of images contrastively (CWOX-2s): cluster maps, then class maps "
    "within each cluster; write a PNG."
)

BASES = ("gradcam", "mwp", "rise", "lime")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)"
    )
    parser.add_argument(
        "--base",
        default="gradcam",
        choices=BASES,
        help="base explainer of both stages, with the original CWOX settings (default gradcam)",
    )
    parser.add_argument(
        "--tree",
        default=None,
        metavar="resnet50|data-free|FILE",
        help="label tree that clusters the top classes: 'resnet50' (the "
        "published tree, shipped), 'data-free' (from the model's last layer), or "
        "a tree JSON file; default: resnet50 for 1000-class models, else data-free",
    )
    parser.add_argument(
        "--clusters",
        default=None,
        metavar="C1,C2;C3",
        help="explicit clusters instead of a tree, e.g. '486,889;402,420,546' "
        "(the same for every image)",
    )
    parser.add_argument(
        "--cut-level",
        type=int,
        default=0,
        metavar="N",
        help="tree level to cut at: 0 = the lowest latent level (default 0)",
    )
    parser.add_argument(
        "--delta",
        type=float,
        default=None,
        metavar="D",
        help="support percentile δ in [0, 100] (default: gradcam 50, mwp 60, rise 70, lime 85)",
    )
    top = parser.add_mutually_exclusive_group()
    top.add_argument(
        "--top", type=int, default=None, metavar="K", help="explain the K most probable classes"
    )
    top.add_argument(
        "--top-p",
        type=float,
        default=None,
        metavar="P",
        help="explain the fewest top classes whose probabilities sum to P "
        "(default 0.95, at most --max-top)",
    )
    parser.add_argument(
        "--max-top",
        type=int,
        default=5,
        metavar="K",
        help="the most classes --top-p chooses (default 5)",
    )
    parser.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="model name (see `unmask models`); default: efficientnet_lite0",
    )
    parser.add_argument(
        "--weights",
        default=None,
        metavar="FILE",
        help="local weights file for a torchvision model (tv:<arch>)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        metavar="N",
        help="resize and centre-crop images to N x N (default: the model's size)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="PNG",
        help="output PNG (one figure for all images); default: "
        "unmask-<stem>-cwox-<base>.png per image in the current directory",
    )
    parser.add_argument(
        "--dpi", type=int, default=100, metavar="N", help="resolution of the PNG (default 100)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON: clusters, classes, probabilities, files"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        metavar="N",
        help="images per forward pass (default 16)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")


def _parse_clusters(text: str) -> list[list[int]]:
    clusters = []
    for part in text.split(";"):
        items = [s.strip() for s in part.split(",") if s.strip()]
        if not items:
            raise ValueError(f"--clusters: empty cluster in {text!r} (expected e.g. '486,889;402')")
        try:
            clusters.append([int(s) for s in items])
        except ValueError:
            raise ValueError(f"--clusters: expected class indices, got {part!r}") from None
    return clusters


def _tree(name: str | None, model: Model) -> Any:
    from ..contrastive import data_free_tree, load_tree

    if name is None:
        name = "resnet50" if model.num_classes == 1000 else "data-free"
    if name == "data-free":
        return data_free_tree(model), "data-free"
    try:
        return load_tree(name, num_classes=model.num_classes), name
    except (ValueError, TypeError, FileNotFoundError) as exc:
        msg = str(exc)
        raise type(exc)(
            "--tree: " + (msg[len("tree: ") :] if msg.startswith("tree: ") else msg)
        ) from None


def run(args: argparse.Namespace) -> int:
    import torch

    from .._checks import check_positive, check_probability
    from ..contrastive import CWOX, save_cwox
    from ..images import load_image
    from ..models import load_model
    from ._engine import choose_engine, explainer_scoring_cost

    check_positive(args.batch_size, "--batch-size", integer=True)
    check_positive(args.max_top, "--max-top", integer=True)
    check_positive(args.dpi, "--dpi", integer=True)
    if args.size is not None:
        check_positive(args.size, "--size", integer=True)
    if args.top is not None:
        check_positive(args.top, "--top", integer=True)
    if args.top_p is not None:
        check_probability(args.top_p, "--top-p", open_low=True)
    if args.delta is not None and not 0 <= args.delta <= 100:
        raise ValueError(f"--delta: expected a percentile in [0, 100], got {args.delta}")
    if args.cut_level < 0:
        raise ValueError(f"--cut-level: expected an int >= 0, got {args.cut_level}")
    if args.clusters is not None and args.tree is not None:
        raise ValueError("--clusters: give either --clusters or --tree, not both")
    if args.out is not None:
        out = Path(args.out)
        if out.is_dir():
            raise ValueError(f"--out: expected a file name, got a directory: {out}")
        if not out.parent.is_dir():
            raise FileNotFoundError(f"--out: directory does not exist: {out.parent}")
    clusters = _parse_clusters(args.clusters) if args.clusters is not None else None

    model = load_model(args.model, weights=args.weights)
    size = args.size or (model.input_size[0] if model.input_size is not None else 224)
    x = torch.cat([load_image(Path(p), size=size) for p in args.images])
    tree, tree_name = (None, None) if clusters is not None else _tree(args.tree, model)
    if tree is not None and args.cut_level >= tree.depth:
        raise ValueError(
            f"--cut-level: expected an int in [0, {tree.depth - 1}] for this tree "
            f"({tree.depth} levels), got {args.cut_level}"
        )
    explainer = CWOX(model, args.base, delta=args.delta, batch_size=args.batch_size, seed=args.seed)
    top_p = args.top_p if args.top_p is not None else 0.95
    from .._checks import check_positive, check_probability
    from ..contrastive.cwox import _check_clusters
    from ..registry import METHODS, spec_of
    from ._cost import announce, evaluations

    # the checks explain() makes, first: bad input fails before the cost line
    if args.top is not None:
        check_positive(args.top, "--top", integer=True)
    if args.top_p is not None:
        check_probability(args.top_p, "--top-p", open_low=True)
    if clusters is not None:
        try:
            _check_clusters(clusters, x.shape[0], model.num_classes)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"--{exc}") from None

    stages = [("cluster stage", explainer.cluster_explainer)]
    if explainer.class_explainer is not explainer.cluster_explainer:  # else one pass for both
        stages.append(("class stage", explainer.class_explainer))
    # the engine: the probabilities, then one pass per stage (every target at once)
    per_image = 1 + sum(explainer_scoring_cost(ex, size, model) for _, ex in stages)
    choose_engine(model, x.shape[0] * per_image)
    announce(
        "cwox",
        [
            (f"{args.base} {what}", evaluations(METHODS.get(args.base), spec_of(ex), size, model))
            for what, ex in stages
        ],
        x.shape[0],
        model,
        size,
        args.batch_size,
    )
    try:
        e = explainer.explain(
            x,
            clusters,
            tree=tree,
            cut_level=args.cut_level,
            top=args.top,
            top_p=top_p,
            max_top=args.max_top,
        )
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        if msg.startswith("clusters"):
            raise type(exc)("--" + msg) from None
        raise

    labels = [Path(p).name for p in args.images]
    files: list[list[str]] = [[] for _ in args.images]
    if args.out is not None:
        path = save_cwox(
            args.out, x, e, class_names=model.class_names, row_labels=labels, dpi=args.dpi
        )
        files = [[str(path)] for _ in args.images]
    else:
        taken: set[Path] = set()
        for i, p in enumerate(args.images):
            path = Path(f"unmask-{Path(p).stem or 'image'}-cwox-{args.base}.png")
            n = 2
            while path in taken:
                path = Path(f"unmask-{Path(p).stem or 'image'}-{n}-cwox-{args.base}.png")
                n += 1
            taken.add(path)
            save_cwox(
                path,
                x[i : i + 1],
                e[i],
                class_names=model.class_names,
                row_labels=[labels[i]],
                dpi=args.dpi,
            )
            files[i] = [str(path)]

    summary = e.summary(model.class_names)
    for i, image in enumerate(summary["images"]):
        image["file"] = args.images[i]
        image["outputs"] = files[i]
    summary.update(
        {
            "model": model.name,
            "base": args.base,
            "size": size,
            "tree": tree_name,
            "cut_level": args.cut_level if tree is not None else None,
        }
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    for image in summary["images"]:
        print(
            f"{image['file']}: {len(image['clusters'])} clusters ({model.name}, {args.base}, "
            f"delta {summary['delta']:g}, tree {tree_name or 'given clusters'})"
        )
        for j, c in enumerate(image["clusters"]):
            names = ", ".join(
                f"{n.split(',')[0]} {q:.1%}"
                for n, q in zip(c["names"], c["class_probabilities"], strict=True)
            )
            print(f"  cluster {j + 1} ({c['probability']:.1%}): {names}")
    for f in dict.fromkeys(f for image in summary["images"] for f in image["outputs"]):
        print(f"wrote {f}")
    return 0
