"""What the sub-commands share: common arguments, their checks, and input loading.

``explain`` and ``evaluate`` take the same images, model, target, size, batch size, seed,
removal and method hyperparameters; both declare them with :func:`add_input_arguments`, check
them with :func:`check_common`, build a method's hyperparameters with :func:`method_hyper` and
load their inputs with :func:`load_inputs`, so that an argument means and checks the same
in both.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Inputs",
    "add_input_arguments",
    "check_common",
    "check_output",
    "load_inputs",
    "load_cli_model",
    "method_hyper",
    "parse_params",
    "read_source",
    "removal_help",
    "resolve_target",
    "target_label",
]


#: Stands for the removal registry's names in a help text: the parser's formatter fills it in
#: when the help is printed (``unmask.cli.HelpFormatter``), so building the parser does not
#: import torch.
REMOVAL_NAMES = "{removal names}"


def removal_help() -> str:
    """The ``--removal`` help text, listing every name of the removal registry."""
    return f"removal strategy (a spec such as blur:5 or noise:seed=3): {REMOVAL_NAMES}"


def add_input_arguments(parser: argparse.ArgumentParser, *, batch_help: str) -> None:
    """The images, model and run arguments both ``explain`` and ``evaluate`` take."""
    from .._examples import EXAMPLES

    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files (any format PIL reads) or .npy arrays (H, W[, C]) in [0, 1] or uint8",
    )
    parser.add_argument(
        "--example",
        action="append",
        default=[],
        choices=EXAMPLES,
        metavar="NAME",
        help=f"a bundled scikit-image example image ({', '.join(EXAMPLES)}); repeatable",
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
        help="a local state dict: required for torchvision models (tv:<arch>); for "
        "an embedded model it replaces the packaged weights",
    )
    parser.add_argument(
        "--target",
        default=None,
        metavar="CLASS",
        help="class to explain: an index (285), a name ('Egyptian cat'), or a comma-separated "
        "set scored as a whole ('tabby,Egyptian cat', '281,285'); default: each image's top-1 "
        "class",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        metavar="N",
        help="centre-crop (the shorter side's square) and resize images to N x N; "
        "default: the model's input size",
    )
    parser.add_argument(
        "--fit",
        default="crop",
        choices=("crop", "resize"),
        help="crop (default): the centred square of the shorter side, scaled to "
        "N x N (keeps the aspect ratio, cuts the sides); resize: the whole image "
        "stretched to N x N",
    )
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help=batch_help)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="random seed of stochastic methods (default 0)",
    )
    parser.add_argument("--removal", default=None, metavar="NAME", help=removal_help())
    parser.add_argument(
        "--layer",
        default=None,
        metavar="NAME",
        help="layer of layer methods (CAMs, mwp); see `unmask layers`; default: "
        "the model's feature layer",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method hyperparameter (value parsed as JSON, else a string); repeatable",
    )


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def resolve_target(text: str | None, class_names: list[str]) -> int | set[int] | None:
    """``--target``: an index, a class name, or a comma-separated set of either.

    A name matches a class's full name or one of its comma-separated synonyms
    (``"tabby, tabby cat"``: "tabby" or "tabby cat"), ignoring case; the whole text is tried as
    one name first. Unknown names get the closest class names in the error.

    Example:
        >>> names = ["tabby, tabby cat", "tiger cat", "Egyptian cat"]
        >>> resolve_target("Egyptian cat", names), resolve_target("tabby,2", names)
        (2, {0, 2})
        >>> resolve_target("tigr cat", names)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --target: no class named 'tigr cat'; closest: 'tiger cat', ...
    """
    if text is None:
        return None
    index: dict[str, set[int]] = {}
    for i, full in enumerate(class_names):
        for key in {full, *full.split(",")}:
            index.setdefault(key.strip().casefold(), set()).add(i)

    def one(part: str) -> int:
        part = part.strip()
        if part.lstrip("-").isdigit():
            return int(part)
        found = index.get(part.casefold())
        if found is None:
            import difflib

            close = difflib.get_close_matches(part.casefold(), list(index), n=3, cutoff=0.5)
            shown = ", ".join(repr(_original(c, class_names)) for c in close)
            raise ValueError(
                f"--target: no class named {part!r}; closest: {shown or '(none)'} "
                "(see the model's class names, or pass an index)"
            )
        if len(found) > 1:
            raise ValueError(
                f"--target: {part!r} names classes {', '.join(map(str, sorted(found)))}; "
                "pass an index"
            )
        return next(iter(found))

    if text.strip().casefold() in index or "," not in text:
        return one(text)
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"--target: expected a class index or name, got {text!r}")
    return {one(p) for p in parts}


def _original(key: str, class_names: list[str]) -> str:
    """The spelling of a (case-folded) name or synonym as the model has it."""
    for full in class_names:
        for name in (full, *full.split(",")):
            if name.strip().casefold() == key:
                return name.strip()
    return key


def target_label(target: Any, class_names: list[str]) -> tuple[int | list[int], str]:
    """One image's target for reports: its class (or sorted set) and name (names joined by
    ``" + "``)."""
    if getattr(target, "dtype", None) is not None and str(target.dtype) == "torch.bool":
        classes = [int(c) for c in target.nonzero().flatten()]
        return classes, " + ".join(class_names[c] for c in classes)
    return int(target), class_names[int(target)]


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["patch_size=16", "removal=blur"]`` -> ``{"patch_size": 16, "removal": "blur"}``."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ValueError(f"--param: expected KEY=VALUE (e.g. patch_size=16), got {item!r}")
        try:
            params[key] = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            params[key] = value
    return params


def read_source(path: str) -> Any:
    """A path, or the array of a .npy file (so that float images, and NaN, can be given)."""
    p = Path(path)
    if p.suffix.lower() == ".npy" and p.is_file():
        import numpy as np

        try:
            arr = np.load(p, allow_pickle=False, mmap_mode="r")  # header first: no copy yet
        except (ValueError, OSError) as exc:
            raise ValueError(f"image: cannot read array {p}: {exc}") from None
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"image: expected one array in {p}")
        return arr
    return p


def check_output(opt: str, value: str | None, suffix: str) -> None:
    """An output file name: its folder exists and it ends in ``suffix`` (what is written)."""
    if value is None:
        return
    path = Path(value)
    if path.suffix.lower() != suffix:
        raise ValueError(f"{opt}: expected a file name ending in {suffix}, got {value!r}")
    if path.is_dir():
        raise ValueError(f"{opt}: is a directory, expected a file name: {value}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{opt}: directory does not exist: {path.parent}")


def check_common(args: argparse.Namespace) -> None:
    """Checks of the shared arguments that need no model (run before any work)."""
    from .._checks import check_positive
    from .._limits import max_size

    if not args.images and not args.example:
        raise ValueError(
            "IMAGE: give at least one image file, or --example NAME (e.g. --example coffee)"
        )
    check_positive(args.batch_size, "--batch-size", integer=True)
    from .._checks import MAX_SEED  # here: --help must not import torch

    if not 0 <= args.seed <= MAX_SEED:
        raise ValueError(f"--seed: expected an integer in [0, 2**63 - 1], got {_short(args.seed)}")
    if args.size is not None:
        check_positive(args.size, "--size", integer=True)
    if args.size is not None and args.size > max_size():
        raise ValueError(
            f"--size: expected at most {max_size()} (the image side limit; raise it "
            f"with the environment variable UNMASK_MAX_SIZE), got {args.size}"
        )
    if args.removal is not None:
        from ..removal import make_removal

        try:
            make_removal(args.removal)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--removal: {str(exc).removeprefix('removal: ')}") from None


def method_hyper(
    entry: Any,
    args: argparse.Namespace,
    size: int,
    progress: bool | None = None,
    removal: bool = True,
) -> dict[str, Any]:
    """A method's hyperparameters: the CLI's defaults (``entry.cli``, e.g. occlusion's 32-pixel
    patches at stride 16), ``--param`` (checked against the method's declaration, at ``size``),
    ``--removal`` (when ``removal``; ``evaluate`` gives it to the metrics instead) and
    ``--batch-size``.

    Refuses a CLI default that does not fit ``--size`` (e.g. the 32-pixel occlusion patch on
    images of --size 16) naming --size, since the user never set that hyperparameter.
    """
    from ..params import params_of, validate_params

    method = entry.name
    given = parse_params(args.param)
    declared = params_of(entry)  # an unknown name is refused by the method itself
    validate_params(entry, {k: v for k, v in given.items() if k in declared}, size, where="--param")
    defaults = entry.cli
    hyper = {**defaults, **given}
    if "patch_size" in defaults and "patch_size" not in given:
        patch = defaults["patch_size"]
        if size < patch:
            raise ValueError(
                f"--size: {size} is smaller than {method}'s {patch} x {patch} patch "
                f"(the command's default); use --size >= {patch}, or a smaller patch "
                "with --param patch_size=K"
            )
    if removal and args.removal is not None:
        if not entry.accepts("removal"):
            raise ValueError(f"--removal: method {method!r} takes no removal strategy")
        from ..removal import make_removal

        hyper["removal"] = make_removal(args.removal)
    if getattr(args, "layer", None) is not None:
        if not entry.accepts("layer"):
            raise ValueError(f"--layer: method {method!r} takes no layer")
        hyper["layer"] = args.layer
    if entry.accepts("batch_size"):
        hyper.setdefault("batch_size", args.batch_size)
    if progress is not None and entry.accepts("progress"):
        hyper.setdefault("progress", progress)
    return hyper


def load_cli_model(args: argparse.Namespace) -> tuple[Any, int]:
    """The model of ``--model`` / ``--weights`` and the image side (``--size`` or its input size).

    Also refuses a ``--batch-size`` whose forward pass would exceed the memory budget.
    """
    from .._limits import batch_bytes, check_memory
    from ..model_specs import make_model

    model = make_model(args.model, weights=args.weights)
    size = args.size
    if size is None:
        size = model.input_size[0] if model.input_size is not None else 224
    check_memory(
        batch_bytes(args.batch_size, 3, size, size, model.input_size),
        "--batch-size",
        f"a batch of {args.batch_size} images of {size}x{size}",
    )
    return model, size


@dataclass
class Inputs:
    """The loaded images: one tensor (1, 3, size, size) per image, and how to name each."""

    tensors: list[Any]
    names: list[str]
    stems: list[str]

    def __len__(self) -> int:
        return len(self.tensors)


def load_inputs(args: argparse.Namespace, size: int) -> Inputs:
    """Load every IMAGE and --example at ``size`` first, so a bad file fails before any work."""
    from ..images import example_image, load_image

    out = Inputs([], [], [])
    for path in args.images:
        out.tensors.append(load_image(read_source(path), size=size, mode=args.fit))
        out.names.append(str(path))
        out.stems.append(Path(path).stem or "image")
    for ex in args.example:
        out.tensors.append(load_image(example_image(ex), size=size, mode=args.fit))
        out.names.append(f"example:{ex}")
        out.stems.append(ex)
    return out
