"""`unmask datasets`: the synthetic ground-truth benchmark (write a split, train its CNN,
measure localisation on it, run ROAR / KAR on it)."""

from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = "datasets"
HELP = (
    "The synthetic shapes benchmark: write a split, train its CNN, measure localisation, "
    "ROAR / KAR."
)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    from .._checks import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63 - 1], got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    sub.required = True

    w = sub.add_parser("write-synthetic", help="write images, labels, boxes and masks of a split")
    w.add_argument("folder", help="output folder (created if needed)")
    w.add_argument("--n", type=_positive, default=100, help="number of images (default 100)")
    w.add_argument("--seed", type=_seed, default=0, help="the benchmark's seed (default 0)")
    w.add_argument("--split", default="test", help="split name: train, val, test... (default test)")
    w.set_defaults(_action=_write)

    t = sub.add_parser(
        "train-synthetic", help="train the small CNN (or ViT) on the synthetic shapes"
    )
    t.add_argument("--out", required=True, help="weights file to write (e.g. weights.pt)")
    t.add_argument(
        "--architecture",
        choices=("cnn", "vit"),
        default="cnn",
        help="the network: cnn (synthetic_cnn, default) or vit (synthetic_vit)",
    )
    t.add_argument(
        "--epochs",
        type=_positive,
        default=None,
        help="passes over the data (default 12 for the CNN, 16 for the ViT)",
    )
    t.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate (default 3e-3 for the CNN, 2e-3 for the ViT)",
    )
    t.add_argument(
        "--seed", type=_seed, default=0, help="seed of the data and the training (default 0)"
    )
    t.add_argument(
        "--n-train",
        type=_positive,
        default=None,
        help="training images (default 12000 for the CNN, 10000 for the ViT)",
    )
    t.add_argument(
        "--n-val",
        type=_positive,
        default=500,
        help="validation images, accuracy printed after each epoch (default 500)",
    )
    t.add_argument(
        "--n-test",
        type=_positive,
        default=1000,
        help="held-out test images for the reported accuracy (default 1000)",
    )
    t.add_argument("--threads", type=_positive, default=1, help="torch threads (default 1)")
    t.set_defaults(_action=_train)

    loc = sub.add_parser("localisation", help="pointing game and localisation error per method")
    loc.add_argument(
        "--methods",
        default=None,
        help="comma-separated methods and baselines (default: "
        "occlusion,rise,lime,extremal,random,centre,whole_image)",
    )
    loc.add_argument("--n-test", type=_positive, default=200, help="test images (default 200)")
    loc.add_argument(
        "--n-heldout",
        type=_positive,
        default=100,
        help="held-out images that choose alpha (default 100)",
    )
    loc.add_argument("--seed", type=_seed, default=0, help="the benchmark's seed (default 0)")
    loc.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    loc.add_argument(
        "--architecture",
        choices=("cnn", "vit"),
        default="cnn",
        help="the explained model: cnn (synthetic_cnn, default) or vit (synthetic_vit)",
    )
    loc.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    loc.add_argument("--threads", type=_positive, default=1, help="torch threads (default 1)")
    loc.add_argument("--progress", action="store_true", help="show progress bars")
    loc.set_defaults(_action=_localisation)

    ro = sub.add_parser(
        "roar",
        help="ROAR / KAR: retrain the CNN on images ablated by each "
        "method's maps, test accuracy against k",
    )
    ro.add_argument(
        "--methods",
        default=None,
        help="comma-separated methods, baselines and 'oracle' (default: "
        "random,oracle,gradient,gradcam,integrated_gradients)",
    )
    ro.add_argument(
        "--ks",
        default="10,30,50,70,90",
        help="comma-separated percentages in 1..99 (default 10,30,50,70,90)",
    )
    ro.add_argument("--modes", default="roar,kar", help="roar, kar or both (default roar,kar)")
    ro.add_argument(
        "--n-train",
        type=_positive,
        default=3000,
        help="training images of each retraining (default 3000)",
    )
    ro.add_argument("--n-test", type=_positive, default=500, help="test images (default 500)")
    ro.add_argument(
        "--epochs", type=_positive, default=8, help="epochs of each retraining (default 8)"
    )
    ro.add_argument(
        "--repeats",
        type=_positive,
        default=1,
        help="training runs per point, seeds seed..seed+repeats-1 (default 1)",
    )
    ro.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed of the retraining, the random map and the ties (default 0)",
    )
    ro.add_argument(
        "--removal",
        default=None,
        help="removal spec (default: the per-channel mean of the training images, "
        "as the paper; e.g. blur:sigma=4, road)",
    )
    ro.add_argument(
        "--weights",
        default=None,
        help="weights of the explained model (default: the shipped model)",
    )
    ro.add_argument("--json", default=None, help="write the result to this JSON file")
    ro.add_argument("--csv", default=None, help="write the rows to this CSV file")
    ro.add_argument("--threads", type=_positive, default=1, help="torch threads (default 1)")
    ro.add_argument("--progress", action="store_true", help="show a progress bar")
    ro.set_defaults(_action=_roar)


def run(args: argparse.Namespace) -> int:
    return int(args._action(args) or 0)


def _write(args: argparse.Namespace) -> int:
    from ..datasets import synthetic

    root = synthetic.write(args.folder, args.n, seed=args.seed, split=args.split)
    print(f"wrote {args.n} images of split {args.split!r} (seed {args.seed}) to {root}")
    return 0


def _check_out(path: Path, name: str) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{name}: {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{name}: the folder {path.parent} does not exist")


def _train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out(out, "--out")  # before minutes of training
    from ..datasets import cnn, synthetic

    vit = args.architecture == "vit"
    lr = args.lr if args.lr is not None else (2e-3 if vit else 3e-3)
    if not lr > 0:
        raise ValueError(f"--lr: expected a positive number, got {args.lr}")
    model, info = cnn.train(
        n_train=args.n_train if args.n_train is not None else (10000 if vit else 12000),
        epochs=args.epochs if args.epochs is not None else (16 if vit else 12),
        seed=args.seed,
        lr=lr,
        n_val=args.n_val,
        threads=args.threads,
        log=print,
        architecture=args.architecture,
    )
    test = synthetic.generate(args.n_test, seed=args.seed, split="test")
    info["test_accuracy"] = cnn.accuracy(model, test.images, test.labels)
    info["n_test"] = args.n_test
    cnn.save(model, out, info)
    print(
        f"test accuracy {info['test_accuracy']:.4f} on {args.n_test} images of split 'test'; "
        f"wrote {out} ({out.stat().st_size // 1024} KB)"
    )
    return 0


def _localisation(args: argparse.Namespace) -> int:
    import torch

    from ..datasets import cnn, evaluate

    methods = (
        evaluate.METHODS
        if args.methods is None
        else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    try:
        methods = evaluate.check_methods(methods)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None
    if args.csv is not None:
        _check_out(Path(args.csv), "--csv")
    model = cnn.load(args.weights, architecture=args.architecture)
    old = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        rows = evaluate.localisation_benchmark(
            model,
            methods,
            n_test=args.n_test,
            n_heldout=args.n_heldout,
            seed=args.seed,
            progress=args.progress,
        )
    finally:
        torch.set_num_threads(old)
    print(evaluate.format_table(rows))
    if args.csv is not None:
        evaluate.write_csv(rows, args.csv)
    return 0


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated integers, got {text!r}") from None


def _roar(args: argparse.Namespace) -> int:
    import torch

    from ..datasets import cnn
    from ..studies.roar import METHODS, MODES, _check_methods, check_ks, roar

    names = (
        METHODS
        if args.methods is None
        else [m.strip() for m in args.methods.split(",") if m.strip()]
    )
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    ks = _ints(args.ks, "--ks")
    try:  # before minutes of work
        _check_methods(names)
        check_ks(ks)
        for m in modes:
            if m not in MODES:
                raise ValueError(f"modes: expected roar and/or kar, got {m!r}")
        if args.removal is not None and args.removal != "dataset_mean":
            from ..removal import make_removal

            make_removal(args.removal)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"--{exc}") from None
    for path, flag in ((args.json, "--json"), (args.csv, "--csv")):
        if path is not None:
            _check_out(Path(path), flag)
    model = cnn.load(args.weights)
    old = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        result = roar(
            model,
            names,
            ks,
            modes=modes,
            n_train=args.n_train,
            n_test=args.n_test,
            epochs=args.epochs,
            seed=args.seed,
            repeats=args.repeats,
            removal=args.removal,
            threads=args.threads,
            progress=args.progress,
        )
    finally:
        torch.set_num_threads(old)
    print(result.format_table())
    fits = result.seconds["retrain"]
    print(
        f"{len(fits)} trainings, {sum(fits) / len(fits):.1f} s each on average; "
        f"total {result.seconds['total']:.0f} s"
    )
    if args.json is not None:
        result.write_json(args.json)
    if args.csv is not None:
        result.write_csv(args.csv)
    return 0
