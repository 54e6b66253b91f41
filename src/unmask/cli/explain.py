"""`unmask explain`: explain a classifier's decision on images and draw the result as a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import add_input_arguments, check_common, check_output

__all__ = ["KEEP", "add_arguments", "run"]

COMMAND = "explain"
HELP = "Explain a classifier's decision on images; print the top classes and write a PNG."

#: Fraction of pixels kept in the "top pixels" column of the PNG.
KEEP = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser, batch_help="perturbed images per forward pass (default 16)")
    parser.add_argument(
        "--method",
        default="occlusion",
        help="explanation method (see `unmask methods`); default: occlusion "
        "with patch 32, stride 16",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="PNG",
        help="output PNG (one grid for all images); default: "
        "unmask-<stem>-<method>.png per image in the current directory",
    )
    parser.add_argument(
        "--save-map",
        default=None,
        metavar="NPY",
        help="save the saliency maps as a float32 array (B, H, W) in .npy",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON results")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _unique(path: Path, taken: set[Path]) -> Path:
    out, n = path, 2
    while out in taken:
        out = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    taken.add(out)
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .. import viz
    from .._checks import check_targets
    from ..api import make_explainer
    from ..explanation import Explanation
    from ..registry import METHODS
    from ..scoring import Scorer
    from ._common import load_cli_model, load_inputs, method_hyper, resolve_target, target_label
    from ._cost import announce, evaluations
    from ._engine import choose_engine

    check_common(args)
    check_output("--out", args.out, ".png")
    check_output("--save-map", args.save_map, ".npy")
    entry = METHODS.get(args.method)  # unknown method -> ValueError before any work
    method = entry.name
    model, size = load_cli_model(args)
    hyper = method_hyper(entry, args, size, progress=not args.no_progress)
    inputs = load_inputs(args, size)  # every image first: a bad file fails before any work
    tensors, names, stems = inputs.tensors, inputs.names, inputs.stems
    wanted = resolve_target(args.target, model.class_names)
    target = check_targets(wanted, len(inputs), model.num_classes, "--target")

    explainer = make_explainer(model, method, seed=args.seed, **hyper)
    scorer = Scorer(model, batch_size=args.batch_size)
    # the probabilities of each image, then the method's evaluations on the scoring path
    choose_engine(model, len(inputs) * (1 + entry.scoring_cost(hyper, size, model)))
    # the cost, timed on the engine chosen at the method's batch size
    batch = hyper.get("batch_size")
    announce(
        "explain",
        [(method, evaluations(entry, hyper, size, model))],
        len(inputs),
        model,
        size,
        batch if isinstance(batch, int) else args.batch_size,
    )

    # One batch per image size (all equal after --size, but arrays may differ in dtype only).
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    parts: list[Explanation | None] = [None] * len(tensors)
    probs: list[torch.Tensor] = [torch.empty(0)] * len(tensors)
    for idx in groups.values():
        x = torch.cat([tensors[i] for i in idx])
        p = scorer.probabilities(x).cpu()
        t = p.argmax(dim=1) if target is None else target[idx]  # top-1, without a second pass
        e = explainer.explain(x, t)
        for j, i in enumerate(idx):
            parts[i] = e[j]  # the image's explanation: map, target, spec and extras
            probs[i] = p[j]
    explanations: list[Explanation] = [e for e in parts if e is not None]
    targets = [e.target[0] for e in explanations]

    outputs: list[list[str]] = [[] for _ in tensors]
    taken: set[Path] = set()
    x_all = torch.cat(tensors)
    probs_all = torch.stack(probs)
    grid_kwargs = dict(class_names=model.class_names, keep=KEEP)

    if args.out is not None:
        rows = list(range(len(tensors)))
        path = viz.save_grid(
            args.out,
            x_all,
            Explanation.concat(explanations),
            probabilities=probs_all,
            row_labels=[Path(n).name for n in names],
            **grid_kwargs,
        )
        for i in rows:
            outputs[i].append(str(path))
    else:
        for i in range(len(tensors)):
            path = _unique(Path(f"unmask-{stems[i]}-{method}.png"), taken)
            viz.save_grid(
                path,
                tensors[i],
                explanations[i],
                probabilities=probs_all[i : i + 1],
                row_labels=[Path(names[i]).name],
                **grid_kwargs,
            )
            outputs[i].append(str(path))
    if args.save_map is not None:
        maps = torch.cat([e.saliency.detach().cpu().float() for e in explanations])[:, 0]
        np.save(args.save_map, maps.numpy().astype(np.float32))
        for i in range(len(tensors)):
            outputs[i].append(str(args.save_map))

    results: list[dict[str, Any]] = []
    for i in range(len(tensors)):
        top = torch.topk(probs[i], k=min(5, probs[i].numel()))
        results.append(
            {
                "file": names[i],
                "target": target_label(targets[i], model.class_names)[0],
                "class_name": target_label(targets[i], model.class_names)[1],
                "probability": float(probs[i][targets[i]].sum()),  # a set's: the sum
                "top5": [
                    {"class": int(k), "name": model.class_names[int(k)], "probability": float(v)}
                    for v, k in zip(top.values, top.indices, strict=True)
                ],
                "outputs": outputs[i],
            }
        )
    explanation_params = explanations[0].params
    if args.json:
        print(
            json.dumps(
                {
                    "model": model.name,
                    "method": method,
                    "size": size,
                    "params": _jsonable(explanation_params),
                    "images": results,
                },
                indent=2,
            )
        )
        return 0
    for r in results:
        print(f"{r['file']}: top-5 classes ({model.name})")
        for row in r["top5"]:
            print(f"  {row['class']:>5}  {row['probability']:6.1%}  {row['name']}")
        print(
            f"  explained class {r['target']} ({r['class_name']}, p = {r['probability']:.1%}) "
            f"with {method}"
        )
    for f in dict.fromkeys(f for r in results for f in r["outputs"]):  # unique, in order
        print(f"wrote {f}")
    return 0


def _jsonable(obj: Any) -> Any:
    """Hyperparameters as JSON (tuples -> lists, other objects -> repr)."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return repr(obj)
