"""`unmask layers`: list a model's layer names (for ``--layer``) with their output shapes."""

from __future__ import annotations

import argparse
import json

COMMAND = "layers"
HELP = (
    "List a model's layers (names for --layer) with their output shapes; * marks the default, "
    "token layers show their patch grid."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--depth",
        type=int,
        default=None,
        metavar="N",
        help="only names with at most N dots (e.g. 1: the top blocks)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from .._checks import check_positive
    from ..gradients import resolve_layer
    from ..models import load_model

    if args.depth is not None:
        check_positive(args.depth + 1, "--depth", integer=True)
    torch.set_num_threads(1)
    model = load_model(args.model, weights=args.weights)
    rows = [
        (n, kind, shape)
        for n, kind, shape in model.layers()
        if args.depth is None or n.count(".") <= args.depth
    ]
    try:
        default: str | None = resolve_layer(model, None)
    except ValueError:
        default = None
    size = model.input_size or (224, 224)
    layouts = {n: _layout(shape, size) for n, _, shape in rows}
    if args.json:
        print(
            json.dumps(
                {
                    "model": model.name,
                    "feature_layer": default,
                    "layers": [
                        {
                            "name": n,
                            "type": kind,
                            "shape": list(shape) if shape else None,
                            **({"layout": layouts[n]} if layouts[n] else {}),
                        }
                        for n, kind, shape in rows
                    ],
                },
                indent=2,
            )
        )
        return 0
    width = max(len(n) for n, _, _ in rows) if rows else 4
    kinds = max(len(k) for _, k, _ in rows) if rows else 4
    print(
        f"layers of {model.name} (names for --layer, relative to the network; "
        f"output shapes for one {model.input_size or (224, 224)} image)"
    )
    for n, kind, shape in rows:
        mark = "*" if n == default else " "
        shown = "x".join(str(s) for s in shape) if shape else "-"
        note = f"  {layouts[n]}" if layouts[n] else ""
        print(f"{mark} {n:<{width}}  {kind:<{kinds}}  {shown}{note}".rstrip())
    if default is not None:
        print(f"* default feature layer: {default}")
    return 0


def _layout(shape: tuple[int, ...] | None, size: tuple[int, int]) -> str | None:
    """How layer methods read a layer's output: "tokens: 1 + 14x14" (leading tokens + patch
    grid) for (B, N, C) tokens, "channels-last 7x7" for (B, h, w, C), None otherwise."""
    import torch

    from ..tokens import layout

    if shape is None or len(shape) not in (3, 4):
        return None
    try:
        form = layout(torch.empty(shape, device="meta"), size)
    except ValueError:
        return None
    p, h, w = form.grid
    if form.kind == "tokens":
        return f"tokens: {p} + {h}x{w}"
    if form.kind == "channels_last":
        return f"channels-last {h}x{w}"
    return None
