"""`unmask explain`: explain a classifier's decision on images and draw the result as a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import removal_help

COMMAND = "explain"
HELP = "Explain a classifier's decision on images; print the top classes and write a PNG."

#: Defaults the CLI uses instead of the paper's, so the first run takes seconds on a CPU:
#: occlusion with 32x32 patches at stride 16 is 13x13 = 169 forward passes at 224x224
#: (the paper's 29/3 setting is 4356 passes). Set them with --param patch_size=29 --param stride=3.
CLI_DEFAULTS: dict[str, dict[str, Any]] = {
    "occlusion": {"patch_size": 32, "stride": 16},
    "sp-g": {"patch_size": 32, "stride": 16},
}

#: Fraction of pixels kept in the "top pixels" column of the PNG.
KEEP = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..images import EXAMPLES

    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files (any format PIL reads) or .npy arrays (H, W[, C]) in [0, 1] or uint8")
    parser.add_argument("--example", action="append", default=[], choices=EXAMPLES, metavar="NAME",
                        help=f"explain a bundled scikit-image example ({', '.join(EXAMPLES)}); repeatable")
    parser.add_argument("--method", default="occlusion",
                        help="explanation method (see `unmask methods`); default: occlusion "
                        "with patch 32, stride 16")
    parser.add_argument("--model", default="efficientnet_lite0",
                        help="model name (see `unmask models`); default: efficientnet_lite0")
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="local weights file for a torchvision model (tv:<arch>)")
    parser.add_argument("--target", type=int, default=None, metavar="K",
                        help="class to explain (default: each image's top-1 class)")
    parser.add_argument("--out", default=None, metavar="PNG",
                        help="output PNG (one grid for all images); default: "
                        "unmask-<stem>-<method>.png per image in the current directory")
    parser.add_argument("--save-map", default=None, metavar="NPY",
                        help="save the saliency maps as a float32 array (B, H, W) in .npy")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON results")
    parser.add_argument("--size", type=int, default=None, metavar="N",
                        help="resize (shorter side) and centre-crop images to N x N; default: "
                        "the model's input size")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N",
                        help="perturbed images per forward pass (default 16)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="layer of layer methods (CAMs, mwp); see `unmask layers`; default: "
                        "the model's feature layer")
    parser.add_argument("--removal", default=None, metavar="NAME",
                        help=removal_help())
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a method hyperparameter (value parsed as JSON, else a string); repeatable")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ValueError(f"--param: expected KEY=VALUE (e.g. patch_size=16), got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _read_source(path: str) -> Any:
    """A path, or the array of a .npy file (so that float images, and NaN, can be given)."""
    p = Path(path)
    if p.suffix.lower() == ".npy" and p.is_file():
        import numpy as np

        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"image: cannot read array {p}: {exc}") from None
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"image: expected one array in {p}")
        return arr
    return p


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
    from .._checks import check_positive, check_targets
    from ..api import make_explainer
    from ..images import example_image, load_image
    from ..models import load_model
    from ..registry import METHODS
    from ..scoring import Scorer

    if not args.images and not args.example:
        raise ValueError("IMAGE: give at least one image file, or --example NAME (e.g. --example chelsea)")
    check_positive(args.batch_size, "--batch-size", integer=True)
    if args.size is not None:
        check_positive(args.size, "--size", integer=True)
    if args.save_map is not None and not str(args.save_map).endswith(".npy"):
        raise ValueError(f"--save-map: expected a file name ending in .npy, got {args.save_map!r}")
    for opt, value in (("--out", args.out), ("--save-map", args.save_map)):
        if value is not None:
            parent = Path(value).parent
            if not parent.is_dir():
                raise FileNotFoundError(f"{opt}: directory does not exist: {parent}")

    from ..registry import spec_of

    entry = METHODS.get(args.method)  # unknown method -> ValueError before any work
    method = entry.name
    hyper = {**CLI_DEFAULTS.get(method, {}), **_parse_params(args.param)}
    if args.removal is not None:
        if not entry.accepts("removal"):
            raise ValueError(f"--removal: method {method!r} takes no removal strategy")
        from ..removal import make_removal

        hyper["removal"] = make_removal(args.removal)
    if args.layer is not None:
        if not entry.accepts("layer"):
            raise ValueError(f"--layer: method {method!r} takes no layer")
        hyper["layer"] = args.layer
    if entry.accepts("batch_size"):
        hyper.setdefault("batch_size", args.batch_size)
    if entry.accepts("progress"):
        hyper.setdefault("progress", not args.no_progress)

    model = load_model(args.model, weights=args.weights)
    size = args.size
    if size is None:
        size = model.input_size[0] if model.input_size is not None else 224

    # Load every image first, so a bad file fails before minutes of work.
    names: list[str] = []
    stems: list[str] = []
    tensors = []
    for path in args.images:
        tensors.append(load_image(_read_source(path), size=size))
        names.append(str(path))
        stems.append(Path(path).stem or "image")
    for ex in args.example:
        tensors.append(load_image(example_image(ex), size=size))
        names.append(f"example:{ex}")
        stems.append(ex)
    target = check_targets(args.target, len(tensors), model.num_classes, "--target")

    explainer = make_explainer(model, method, seed=args.seed, **hyper)
    scorer = Scorer(model, batch_size=args.batch_size)

    # One batch per image size (all equal after --size, but arrays may differ in dtype only).
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    saliency: list[torch.Tensor] = [torch.empty(0)] * len(tensors)
    targets = [0] * len(tensors)
    probs: list[torch.Tensor] = [torch.empty(0)] * len(tensors)
    for idx in groups.values():
        x = torch.cat([tensors[i] for i in idx])
        p = scorer.probabilities(x).cpu()
        t = p.argmax(dim=1) if target is None else target[idx]  # top-1, without a second pass
        e = explainer.explain(x, t)
        for j, i in enumerate(idx):
            saliency[i] = e.saliency[j : j + 1].detach().cpu().float()
            targets[i] = int(e.target[j])
            probs[i] = p[j]
    explanation_params = {k: v for k, v in spec_of(explainer).items() if k != "method"}

    outputs: list[list[str]] = [[] for _ in tensors]
    taken: set[Path] = set()
    x_all = torch.cat(tensors)
    probs_all = torch.stack(probs)
    grid_kwargs = dict(class_names=model.class_names, keep=KEEP)

    def explanation_of(rows: list[int]) -> Any:
        from ..explanation import Explanation

        return Explanation(torch.cat([saliency[i] for i in rows]),
                           torch.tensor([targets[i] for i in rows]), method)

    if args.out is not None:
        rows = list(range(len(tensors)))
        path = viz.save_grid(args.out, x_all, explanation_of(rows), probabilities=probs_all,
                             row_labels=[Path(n).name for n in names], **grid_kwargs)
        for i in rows:
            outputs[i].append(str(path))
    else:
        for i in range(len(tensors)):
            path = _unique(Path(f"unmask-{stems[i]}-{method}.png"), taken)
            viz.save_grid(path, tensors[i], explanation_of([i]), probabilities=probs_all[i : i + 1],
                          row_labels=[Path(names[i]).name], **grid_kwargs)
            outputs[i].append(str(path))
    if args.save_map is not None:
        np.save(args.save_map, torch.cat(saliency)[:, 0].numpy().astype(np.float32))
        for i in range(len(tensors)):
            outputs[i].append(str(args.save_map))

    results = []
    for i in range(len(tensors)):
        top = torch.topk(probs[i], k=min(5, probs[i].numel()))
        results.append({
            "file": names[i],
            "target": targets[i],
            "class_name": model.class_names[targets[i]],
            "probability": float(probs[i][targets[i]]),
            "top5": [{"class": int(k), "name": model.class_names[int(k)], "probability": float(v)}
                     for v, k in zip(top.values, top.indices, strict=True)],
            "outputs": outputs[i],
        })
    if args.json:
        print(json.dumps({"model": model.name, "method": method, "size": size,
                          "params": _jsonable(explanation_params), "images": results}, indent=2))
        return 0
    for r in results:
        print(f"{r['file']}: top-5 classes ({model.name})")
        for row in r["top5"]:
            print(f"  {row['class']:>5}  {row['probability']:6.1%}  {row['name']}")
        print(f"  explained class {r['target']} ({r['class_name']}, p = {r['probability']:.1%}) "
              f"with {method}")
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
