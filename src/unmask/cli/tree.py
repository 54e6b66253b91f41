"""`unmask tree`: learn a label confusion tree (CWOX-2s), or cut one into clusters."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

COMMAND = "tree"
HELP = "Learn a label confusion tree (CWOX-2s) or show how it clusters classes."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tree_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True

    learn = sub.add_parser(
        "learn",
        help="learn a tree from images, a documents file, or the "
        "model's last-layer weights (data-free)",
        description="Learn a label tree and write it as JSON in the format of "
        "the published CWOX trees.",
    )
    src = learn.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--images",
        metavar="DIR",
        help="a folder of images the model classifies; "
        "every image's top-K classes (passing 95%% of the probability) is a document",
    )
    src.add_argument(
        "--documents",
        metavar="FILE",
        help="a JSON file of documents: {image: "
        "[classes]} (as labels_resnet50.json) or a list of class lists",
    )
    src.add_argument(
        "--data-free",
        action="store_true",
        help="no data: group classes by the cosine similarity of the model's last linear layer",
    )
    learn.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="model name (see `unmask models`) for --images and --data-free; "
        "default: efficientnet_lite0",
    )
    learn.add_argument("--out", required=True, metavar="TREE.json", help="output JSON file")
    learn.add_argument(
        "--method",
        default="average",
        choices=("average", "hlta"),
        help="learner for --images / --documents: average (size-constrained "
        "average linkage of co-occurrence PPMI, default) or hlta (HLTA's island "
        "finding re-implemented)",
    )
    learn.add_argument(
        "--levels",
        type=int,
        default=None,
        metavar="N",
        help="the most latent levels (default: until a level has at most 15 nodes)",
    )
    learn.add_argument(
        "--num-classes",
        type=int,
        default=None,
        metavar="N",
        help="number of classes for --documents (default: the largest class + 1)",
    )
    learn.add_argument(
        "--mass",
        type=float,
        default=0.95,
        metavar="P",
        help="probability mass the top-K classes of an image pass (default 0.95)",
    )
    learn.add_argument(
        "--max-k",
        type=int,
        default=None,
        metavar="K",
        help="with --images: at most K classes per document (default: no cap, "
        "the paper's rule; the published ResNet-50 documents are cut at 5)",
    )
    learn.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="images per forward pass for --images (default 32)",
    )
    learn.add_argument(
        "--save-documents",
        default=None,
        metavar="FILE",
        help="with --images: also write the documents as JSON",
    )
    learn.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    learn.add_argument("--no-progress", action="store_true", help="hide progress bars")

    show = sub.add_parser(
        "show",
        help="cut a tree and print the clusters of some classes",
        description="Print the label confusion clusters of classes, cutting "
        "a tree at a level (0 = the lowest latent level).",
    )
    show.add_argument(
        "tree",
        metavar="TREE",
        help="a tree JSON file, or 'resnet50' (the published ResNet-50 tree shipped with unmask)",
    )
    show.add_argument(
        "--classes",
        default=None,
        metavar="C1,C2,...",
        help="comma-separated class indices, e.g. 486,889,402 (default: print a "
        "summary of the tree)",
    )
    show.add_argument(
        "--cut-level",
        type=int,
        default=0,
        metavar="N",
        help="the level to cut at: 0 = the lowest latent level (default 0)",
    )
    show.add_argument("--json", action="store_true", help="print JSON (clusters and the subtree)")


def _renamed(exc: Exception, old: str, new: str) -> Exception:
    """The same error with the message's argument name ``old`` replaced by ``new``."""
    msg = str(exc)
    if msg.startswith(old + ":"):
        msg = new + msg[len(old) :]
    return type(exc)(msg)


def _check_out(path: str, option: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option}: expected a file name, got a directory: {p}")
    if not p.parent.exists():
        raise ValueError(f"{option}: the directory {p.parent} does not exist")
    return p


def _learn(args: argparse.Namespace) -> int:
    from .._checks import check_positive, check_probability
    from ..contrastive import data_free_tree, documents_from_images, learn_tree, read_documents
    from ..models import load_model

    out = _check_out(args.out, "--out")
    if args.levels is not None:
        check_positive(args.levels, "--levels", integer=True)
    if args.num_classes is not None:
        check_positive(args.num_classes, "--num-classes", integer=True)
    check_probability(args.mass, "--mass", open_low=True, open_high=True)
    check_positive(args.batch_size, "--batch-size", integer=True)
    if args.max_k is not None:
        check_positive(args.max_k, "--max-k", integer=True)
        if not args.images:
            raise ValueError("--max-k: only with --images")
    if args.documents and args.model:
        raise ValueError(
            "--model: not used with --documents (the documents already hold the "
            "model's top classes); use --num-classes for the number of classes"
        )
    if args.save_documents and not args.images:
        raise ValueError("--save-documents: only with --images")
    save_docs = _check_out(args.save_documents, "--save-documents") if args.save_documents else None
    docs: dict[str, list[int]] | list[list[int]]
    progress = not args.no_progress
    if args.data_free:
        model = load_model(args.model or "efficientnet_lite0")
        tree = data_free_tree(model, levels=args.levels)
        source = f"the last linear layer of {model.name}"
    elif args.images:
        folder = Path(args.images)
        if not folder.is_dir():
            raise ValueError(f"--images: not a directory: {folder}")
        model = load_model(args.model or "efficientnet_lite0")
        docs = documents_from_images(
            model,
            folder,
            mass=args.mass,
            batch_size=args.batch_size,
            max_k=args.max_k,
            progress=progress,
        )
        longest = max((len(d) for d in docs.values()), default=0)
        if args.max_k is None and longest > 10:
            print(
                f"unmask: warning: --images: documents of up to {longest} classes (the model's "
                "probabilities have a flat tail); consider --max-k 5, as the published "
                "ResNet-50 documents",
                file=sys.stderr,
            )
        if save_docs is not None:
            save_docs.write_text(json.dumps(docs) + "\n")
        if not docs:
            raise ValueError(
                f"--images: no image in {folder} has two or more top classes "
                f"passing {args.mass} (nothing to learn from)"
            )
        tree = learn_tree(
            docs,
            num_classes=model.num_classes,
            method=args.method,
            levels=args.levels,
            seed=args.seed,
            class_names=model.class_names,
            progress=progress,
        )
        source = f"{len(docs)} documents of {model.name} on {folder}"
    else:
        try:
            docs = read_documents(args.documents)
        except (FileNotFoundError, ValueError) as exc:
            raise _renamed(exc, "documents", "--documents") from None
        try:
            tree = learn_tree(
                docs,
                num_classes=args.num_classes,
                method=args.method,
                levels=args.levels,
                seed=args.seed,
                progress=progress,
            )
        except ValueError as exc:
            renamed = _renamed(exc, "documents", "--documents")
            raise _renamed(renamed, "num_classes", "--num-classes") from None
        source = f"{len(docs)} documents from {args.documents}"
    tree.save(out)
    sizes = "/".join(str(len(tree.level_nodes(lv))) for lv in range(tree.depth, 0, -1))
    plural = "s" if tree.depth != 1 else ""
    print(
        f"wrote {out}: {len(tree.classes)} of {tree.num_classes} classes, {tree.depth} "
        f"level{plural} ({sizes} nodes, top to bottom), learned from {source}"
    )
    return 0


def _parse_classes(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if not parts:
            raise ValueError
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"--classes: expected comma-separated class indices (e.g. 486,889,402), got {text!r}"
        ) from None


def _show(args: argparse.Namespace) -> int:
    from ..contrastive import load_tree

    try:
        tree = load_tree(args.tree)
    except (FileNotFoundError, ValueError) as exc:
        raise _renamed(exc, "tree", "TREE") from None
    if args.classes is None:
        sizes = [len(tree.level_nodes(lv)) for lv in range(1, tree.depth + 1)]
        if args.json:
            print(
                json.dumps(
                    {
                        "num_classes": tree.num_classes,
                        "classes_in_tree": len(tree.classes),
                        "nodes_per_level": sizes,
                    }
                )
            )
        else:
            print(
                f"{args.tree}: {len(tree.classes)} of {tree.num_classes} classes, {tree.depth} "
                f"latent levels; nodes per level (1 = lowest): "
                + ", ".join(f"{lv}: {n}" for lv, n in enumerate(sizes, start=1))
            )
        return 0
    classes = _parse_classes(args.classes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            clusters = tree.clusters(classes, cut_level=args.cut_level)
        except (TypeError, ValueError) as exc:
            renamed = _renamed(exc, "top_k", "--classes")
            raise _renamed(renamed, "cut_level", "--cut-level") from None
        subtree = tree.subtree(classes)
    for w in caught:
        if "not in the label tree; each" in str(w.message):
            print(
                f"unmask: warning: {_renamed(Exception(str(w.message)), 'top_k', '--classes')}",
                file=sys.stderr,
            )
    if args.json:
        print(
            json.dumps(
                {
                    "cut_level": args.cut_level,
                    "clusters": [
                        [{"class": c, "name": tree.class_names[c]} for c in cl] for cl in clusters
                    ],
                    "subtree": subtree,
                }
            )
        )
        return 0
    print(
        f"{len(clusters)} cluster{'s' if len(clusters) != 1 else ''} of {len(classes)} classes, "
        f"cut at level {args.cut_level} (0 = lowest, {tree.depth - 1} = roots):"
    )
    for i, cl in enumerate(clusters, start=1):
        print(f"  cluster {i}: " + ", ".join(f"{c} {tree.class_names[c]}" for c in cl))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.tree_command == "learn":
        return _learn(args)
    return _show(args)
