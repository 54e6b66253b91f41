"""`unmask models`: list the loadable models, or export one to ONNX Runtime ahead of time."""

from __future__ import annotations

import argparse
import json

COMMAND = "models"
HELP = "List the models that load offline; --prepare NAME exports one to ONNX Runtime."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--prepare",
        nargs="?",
        const="efficientnet_lite0",
        default=None,
        metavar="NAME",
        help="export model NAME (default efficientnet_lite0) to ONNX, check it against PyTorch "
        "and cache it (UNMASK_CACHE_DIR, default ~/.cache/unmask), so that every later run "
        "scores through ONNX Runtime",
    )
    parser.add_argument(
        "--weights",
        default=None,
        metavar="FILE",
        help="with --prepare: a local state dict (as for explain)",
    )


def run(args: argparse.Namespace) -> int:
    from ..models import list_models

    if args.prepare is not None:
        return _prepare(args)
    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
    else:
        width = max(map(len, models))
        for name, desc in models.items():
            print(f"{name:<{width}}  {desc}")
        for name, desc in (
            ("tv:<arch>", "a torchvision architecture with --weights FILE (needs torchvision)"),
            ("timm:<arch>", "a timm architecture with --weights FILE (needs unmask[timm])"),
            ("hf:<dir>", "a Hugging Face save_pretrained directory (needs unmask[transformers])"),
        ):
            print(f"{name:<{width}}  {desc}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    import sys
    import time
    import warnings

    from .. import models
    from ..onnx_engine import prepare

    model = models.load_model(args.prepare, weights=args.weights)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        path = prepare(model)
    seconds = time.perf_counter() - start
    if path is None:  # cannot export, or cannot write the cache: the warning says which
        why = "; ".join(str(w.message) for w in caught) or "not cached"
        raise ValueError(f"--prepare: {why}")
    for w in caught:  # e.g. a corrupt cached file exported again
        print(f"unmask: warning: {w.message}", file=sys.stderr)
    print(f"{model.name}: ONNX graph checked against PyTorch in {seconds:.1f} s -> {path}")
    return 0
