"""`unmask figure4`: the Figure 4 study of ShearletX (CP scores vs hallucination score).

It runs the bench preset ``figure4`` (``unmask bench run preset:figure4``) with these options,
one bench store per model (``OUT/figure4-<model>.sqlite``, resumable), and writes from the
stores what it always wrote: ``figure4.csv``, ``figure4_<model>.png`` and ``summary.md``."""

from __future__ import annotations

import argparse

COMMAND = "figure4"
HELP = (
    "Figure 4 of Kolek et al. 2023: ShearletX, WaveletX, PixelMask, SmoothMask; CP-l1 / "
    "CP-entropy vs hallucination score (CSV + PNG, resumable)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of images")
    parser.add_argument(
        "--models",
        default="efficientnet_lite0",
        metavar="A,B",
        help="comma-separated model names (see `unmask models`, or "
        "module:function returning a Classifier)",
    )
    parser.add_argument(
        "--areas",
        default="0.05,0.1,0.2",
        metavar="A,B",
        help="SmoothMask areas (default 0.05,0.1,0.2)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="first N images (sorted)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (CSV, PNG)")
    parser.add_argument(
        "--steps",
        type=int,
        default=300,
        metavar="N",
        help="ShearletX/WaveletX/PixelMask steps (paper 300)",
    )
    parser.add_argument(
        "--noise-bs", type=int, default=16, metavar="N", help="noise samples per step (paper 16)"
    )
    parser.add_argument(
        "--smooth-steps",
        type=int,
        default=800,
        metavar="N",
        help="SmoothMask (extremal) iterations (TorchRay 800)",
    )
    parser.add_argument(
        "--size", type=int, default=256, metavar="N", help="image side N x N (paper 256)"
    )
    parser.add_argument(
        "--fit",
        default="resize",
        choices=("resize", "crop"),
        help="resize: stretch to N x N (the paper's Resize((256, 256)), default); "
        "crop: shorter side to N, centre crop",
    )
    parser.add_argument(
        "--methods", default="shearletx,waveletx,pixelmask,smoothmask", metavar="A,B"
    )
    parser.add_argument(
        "--detector",
        default="shearlet",
        choices=("shearlet", "canny"),
        help="edge detector of the hallucination score",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from ..studies.figure4 import list_images

    areas = _floats(args.areas, "areas")
    if not areas or any(not 0 < a <= 1 for a in areas):
        raise ValueError(f"areas: expected numbers in (0, 1], got {args.areas!r}")
    for name in ("steps", "noise_bs", "smooth_steps", "size"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}"
            )
    if args.limit is not None and args.limit < 1:
        raise ValueError(
            f"--limit: expected a positive integer (the first N images), got {args.limit}"
        )
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads: expected a positive integer, got {args.threads}")
    from .._checks import MAX_SEED

    if not 0 <= args.seed <= MAX_SEED:
        raise ValueError("--seed: expected an integer in [0, 2**63 - 1]")
    from .._limits import max_size

    if args.size > max_size():
        raise ValueError(
            f"size: expected at most {max_size()} (the image side limit; raise "
            f"it with the environment variable UNMASK_MAX_SIZE), got {args.size}"
        )
    list_images(args.images, args.limit)  # a missing or empty folder: "images: ..."
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from pathlib import Path

    from ..bench import Store, parse_plan
    from ..bench import run as run_bench
    from ..bench.figure4 import bench_config, rows_from_store
    from ..studies.figure4 import plot, summarise, write_rows

    out = Path(args.out)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    plans = []
    for name in names:
        config = bench_config(
            name,
            args.images,
            areas=areas,
            steps=args.steps,
            noise_bs=args.noise_bs,
            smooth_steps=args.smooth_steps,
            methods=methods,
            detector=args.detector,
            seed=args.seed,
            size=args.size,
            fit=args.fit,
        )
        plan = parse_plan(config, allow_code=True)  # --models: the user's own command line
        store = out / f"figure4-{name.replace(':', '_').replace('/', '_')}.sqlite"
        try:
            Store.check_path(store, plan.config, plan.config_hash)
        except ValueError as exc:
            raise ValueError(
                f"out: {exc}; or use a new --out folder".replace("--store: ", "", 1)
            ) from None
        plans.append((name, plan, store))
    rows = []
    for name, plan, store in plans:
        run_bench(plan, store, limit=args.limit, threads=args.threads, progress=True)
        rows += rows_from_store(store, name)
    path = write_rows(rows, out / "figure4.csv")
    plot(path, out)
    (out / "summary.md").write_text(summarise(rows))
    print((out / "summary.md").read_text(), end="")
    print(
        f"wrote {path}, summary.md and figure4_<model>.png in {args.out} (bench stores: "
        f"{', '.join(p.name for _, _, p in plans)}; `unmask bench report STORE` draws the "
        "report)"
    )
    return 0
