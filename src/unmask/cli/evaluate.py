"""`unmask evaluate`: score saliency maps (saved, or computed by a method) with metrics.

    unmask evaluate cat.png dog.png --maps maps.npy --metrics deletion,insertion
    unmask evaluate cat.png --method occlusion --param patch_size=32 --metrics deletion,ad --json

Maps are ``.npy`` arrays (H, W) for one image or (B, H, W) for B images, in the order of the
images, at any resolution. The metrics run through :func:`unmask.metrics.evaluate`: each reads
the maps at its kind's resolution (deletion / insertion rank them at their own resolution with
the seed rule, the single-step metrics upsample them bicubically, ...), and metrics reading the
same curve share it. Every metric whose kind needs only a model, images and maps (the
faithfulness kind) can be used (see ``--metrics list``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ._common import (
    add_input_arguments,
    check_common,
    load_cli_model,
    load_inputs,
    method_hyper,
    resolve_target,
    target_label,
)
from ._engine import choose_engine

COMMAND = "evaluate"
HELP = "Score saliency maps (saved .npy, or a method run now) with faithfulness metrics."

DEFAULT_METRICS = "deletion,insertion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser, batch_help="images per forward pass (default 16)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--maps",
        nargs="+",
        metavar="NPY",
        help="saved maps: .npy files of (H, W) or (B, H, W), one map per image in order",
    )
    source.add_argument(
        "--method",
        metavar="NAME",
        help="compute the maps now with this method (see `unmask methods`)",
    )
    parser.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        metavar="A,B,...",
        help=f"comma-separated metric names (default {DEFAULT_METRICS}); "
        "'list' prints the usable ones",
    )
    parser.add_argument(
        "--rule",
        default=None,
        choices=("seed", "rise"),
        help="deletion/insertion step rule (default: seed)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="deletion/insertion: at most N steps (seed rule; default 196)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


#: What the command line has for every image: the model, the images and one map each.
_CLI_INPUTS = ("model", "x", "saliency")


def model_metrics() -> list[str]:
    """Registered metrics whose kind needs only a model, images and maps (see
    :mod:`unmask.metrics.kinds`): the ones ``unmask evaluate`` can run."""
    from ..metrics import METRICS
    from ..metrics.kinds import kind_of

    return sorted(e.name for e in METRICS if set(kind_of(e).needs()) <= set(_CLI_INPUTS))


def _metric_names(spec: str) -> list[str]:
    from ..metrics import METRICS

    usable = model_metrics()
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--metrics: expected comma-separated names, got {spec!r}")
    out = []
    for n in names:
        if n not in METRICS:
            raise ValueError(
                f"--metrics: unknown metric {n!r}; expected some of: {', '.join(usable)}"
            )
        name = METRICS.get(n).name
        if name not in usable:
            raise ValueError(
                f"--metrics: {n!r} does not score a map with a model (it needs other "
                f"inputs); expected some of: {', '.join(usable)}"
            )
        out.append(name)
    return list(dict.fromkeys(out))


def _load_maps(paths: list[str]) -> Any:
    import numpy as np
    import torch

    from .._files import check_file
    from .._limits import max_pixels

    maps = []
    for p in map(Path, paths):
        if p.suffix.lower() != ".npy":
            raise ValueError(f"--maps: expected .npy files, got {str(p)!r}")
        p = check_file(p, "--maps")
        try:
            arr = np.load(p, allow_pickle=False, mmap_mode="r")  # the header first, no copy
        except (ValueError, OSError) as exc:
            raise ValueError(f"--maps: cannot read {p}: {exc}") from None
        if arr.ndim and math.prod(arr.shape) > max_pixels() * 4:
            raise ValueError(
                f"--maps: {p} holds {math.prod(arr.shape):,} values (shape "
                f"{arr.shape}), above four times the pixel limit of {max_pixels():,} "
                "(UNMASK_MAX_PIXELS)"
            )
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.dtype.kind not in "fiub" or 0 in arr.shape:
            raise ValueError(
                f"--maps: expected a real array (H, W) or (B, H, W) in {p}, got "
                f"shape {arr.shape} dtype {arr.dtype}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"--maps: {p} contains NaN or infinite values")
        maps.append((p, torch.from_numpy(arr.astype(np.float32))))
    shapes = {tuple(m.shape[-2:]) for _, m in maps}
    if len(shapes) > 1:
        raise ValueError(f"--maps: all maps must have the same (H, W); got {sorted(shapes)}")
    return torch.cat([m for _, m in maps])[:, None]


def _metric_kwargs(entry: Any, args: argparse.Namespace) -> dict[str, Any]:
    from ..removal import make_removal as resolve_substrate

    kw: dict[str, Any] = {}
    if args.removal is not None and entry.accepts("removal"):
        kw["removal"] = resolve_substrate(args.removal)
    if args.rule is not None and entry.accepts("rule"):
        kw["rule"] = args.rule
    if args.max_steps is not None and entry.accepts("max_steps"):
        kw["max_steps"] = args.max_steps
    if entry.accepts("batch_size"):
        kw["batch_size"] = args.batch_size
    return kw


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def run(args: argparse.Namespace) -> int:
    import torch

    from .._checks import check_positive, check_targets
    from ..api import make_explainer
    from ..metrics import METRICS, evaluate
    from ..registry import METHODS
    from ._cost import announce, evaluations

    if args.metrics.strip() == "list":
        for name in model_metrics():
            e = METRICS.get(name)
            hib = (
                "higher is better"
                if getattr(e.factory, "higher_is_better", True)
                else "lower is better"
            )
            print(f"{name:<16} ({hib})  {e.summary}")
        return 0
    check_common(args)
    if args.maps is None and args.method is None:
        raise ValueError(
            "--maps: give saved maps (--maps NPY...) or a method to run (--method NAME)"
        )
    names = _metric_names(args.metrics)
    if args.max_steps is not None:
        check_positive(args.max_steps, "--max-steps", integer=True)
    if args.param and args.method is None:
        raise ValueError("--param: only with --method")
    n_images = len(args.images) + len(args.example)
    saliency = None
    if args.maps is not None:
        saliency = _load_maps(args.maps)
        if saliency.shape[0] != n_images:
            raise ValueError(
                f"--maps: {saliency.shape[0]} maps for {n_images} images (expected one per image)"
            )
    else:
        METHODS.get(args.method)  # unknown method -> ValueError before loading anything
    metrics = {}
    costs: list[tuple[str, Any]] = []
    for name in names:
        entry = METRICS.get(name)
        kwargs = _metric_kwargs(entry, args)
        metrics[name] = entry.build(**kwargs)
        costs.append((name, (entry, kwargs)))

    model, size = load_cli_model(args)
    hyper = None
    if args.method is not None:
        hyper = method_hyper(
            METHODS.get(args.method), args, size, removal=False, progress=not args.no_progress
        )
    # per image: the top-1 pass, the method's and every metric's evaluations on the scoring
    # path (metrics sharing a curve counted each: an upper bound)
    per_image = 1 + sum(e.scoring_cost(kw, size, model) for _, (e, kw) in costs)
    if hyper is not None:
        per_image += METHODS.get(args.method).scoring_cost(hyper, size, model)
    inputs = load_inputs(args, size)
    parts = [(n, evaluations(e, kw, size, model)) for n, (e, kw) in costs]
    if args.method is not None:
        parts.insert(
            0, (args.method, evaluations(METHODS.get(args.method), hyper or {}, size, model))
        )
    wanted = resolve_target(args.target, model.class_names)
    target = check_targets(wanted, n_images, model.num_classes, "--target")  # before any work
    if saliency is not None:  # the one rule of maps on images (unmask.metrics._prepare)
        from ..metrics._prepare import check_grid

        check_grid(tuple(saliency.shape[-2:]), (size, size), "--maps")
    choose_engine(model, n_images * per_image)  # after every input check, before any work
    announce("evaluate", parts, n_images, model, size, args.batch_size)
    labels = inputs.names
    x = torch.cat(inputs.tensors)
    if target is None:
        from ..scoring import Scorer

        target = Scorer(model, batch_size=args.batch_size).top1(x)
    method = None
    if saliency is None:
        method = METHODS.get(args.method).name
        saliency = (
            make_explainer(model, method, seed=args.seed, **(hyper or {}))
            .explain(x, target)
            .saliency
        )
        saliency = saliency.detach().cpu().float()

    # every metric through its kind, at its kind's map resolution; DAUC and DC (IAUC and IC,
    # IIC and AD) share one curve
    values = {
        name: v.double().cpu()
        for name, v in evaluate(
            model, x, saliency, metrics, target=target, progress=not args.no_progress
        ).items()
    }
    higher = {name: bool(getattr(m, "higher_is_better", True)) for name, m in metrics.items()}
    means = {
        name: float(v[torch.isfinite(v)].mean()) if bool(torch.isfinite(v).any()) else float("nan")
        for name, v in values.items()
    }

    if args.json:
        print(
            json.dumps(
                {
                    "model": model.name,
                    "size": size,
                    "maps": args.maps,
                    "method": method,
                    "metrics": {
                        name: {
                            "higher_is_better": higher[name],
                            "mean": _finite(means[name]),
                            "values": [_finite(float(v)) for v in values[name]],
                        }
                        for name in names
                    },
                    "images": [
                        {
                            "file": labels[i],
                            "target": target_label(target[i], model.class_names)[0],
                            "class_name": target_label(target[i], model.class_names)[1],
                            **{name: _finite(float(values[name][i])) for name in names},
                        }
                        for i in range(n_images)
                    ],
                },
                indent=2,
            )
        )
        return 0
    heads = [f"{n} {'↑' if higher[n] else '↓'}" for n in names]
    first = max(len("mean"), *(len(Path(s).name) for s in labels))
    widths = [max(len(h), 8) for h in heads]
    print(
        f"{'image':<{first}}  {'class':>5}  "
        + "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
    )
    for i in range(n_images):
        cells = "  ".join(
            f"{float(values[n][i]):>{w}.4f}" for n, w in zip(names, widths, strict=True)
        )
        label = target_label(target[i], model.class_names)[0]
        shown = ",".join(map(str, label)) if isinstance(label, list) else str(label)
        print(f"{Path(labels[i]).name:<{first}}  {shown:>5}  {cells}")
    cells = "  ".join(f"{means[n]:>{w}.4f}" for n, w in zip(names, widths, strict=True))
    print(f"{'mean':<{first}}  {'':>5}  {cells}")
    return 0
