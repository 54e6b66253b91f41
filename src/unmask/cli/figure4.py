"""`unmask figure4`: the Figure 4 study of ShearletX (CP scores vs hallucination score)."""

from __future__ import annotations

import argparse

COMMAND = "figure4"
HELP = ("Figure 4 of Kolek et al. 2023: ShearletX, WaveletX, PixelMask, SmoothMask; CP-l1 / "
        "CP-entropy vs hallucination score (CSV + PNG, resumable).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of images")
    parser.add_argument("--models", default="efficientnet_lite0", metavar="A,B",
                        help="comma-separated model names (see `unmask models`)")
    parser.add_argument("--areas", default="0.05,0.1,0.2", metavar="A,B",
                        help="SmoothMask areas (default 0.05,0.1,0.2)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N images (sorted)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (CSV, PNG)")
    parser.add_argument("--steps", type=int, default=300, metavar="N",
                        help="ShearletX/WaveletX/PixelMask steps (paper 300)")
    parser.add_argument("--noise-bs", type=int, default=16, metavar="N", help="noise samples per step (paper 16)")
    parser.add_argument("--smooth-steps", type=int, default=800, metavar="N",
                        help="SmoothMask (extremal) iterations (TorchRay 800)")
    parser.add_argument("--size", type=int, default=256, metavar="N",
                        help="image side N x N (paper 256)")
    parser.add_argument("--fit", default="resize", choices=("resize", "crop"),
                        help="resize: stretch to N x N (the paper's Resize((256, 256)), default); "
                             "crop: shorter side to N, centre crop")
    parser.add_argument("--methods", default="shearletx,waveletx,pixelmask,smoothmask", metavar="A,B")
    parser.add_argument("--detector", default="shearlet", choices=("shearlet", "canny"),
                        help="edge detector of the hallucination score")
    parser.add_argument("--seed", type=int, default=0, metavar="N")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import torch

    from ..studies.figure4 import list_images
    from ..studies.figure4 import run as run_study
    from ..images import load_image
    from ..models import load_model

    areas = _floats(args.areas, "areas")
    if not areas or any(not 0 < a <= 1 for a in areas):
        raise ValueError(f"areas: expected numbers in (0, 1], got {args.areas!r}")
    for name in ("steps", "noise_bs", "smooth_steps", "size"):
        if getattr(args, name) < 1:
            raise ValueError(f"{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit: expected a positive integer (the first N images), "
                         f"got {args.limit}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads: expected a positive integer, got {args.threads}")
    if not 0 <= args.seed < 2**63:
        raise ValueError("--seed: expected an integer in [0, 2**63 - 1]")
    from .._limits import max_size

    if args.size > max_size():
        raise ValueError(f"size: expected at most {max_size()} (the image side limit; raise "
                         f"it with the environment variable UNMASK_MAX_SIZE), got {args.size}")
    files = list_images(args.images, args.limit)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {name.strip(): load_model(name.strip()) for name in args.models.split(",") if name.strip()}
    images = [(p.name, load_image(p, size=args.size, mode=args.fit)) for p in files]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    path = run_study(models, images, args.out, areas=areas, steps=args.steps, noise_bs=args.noise_bs,
                     smooth_steps=args.smooth_steps, methods=methods, detector=args.detector,
                     seed=args.seed, settings={"size": args.size, "fit": args.fit},
                     log=lambda line: print(line, flush=True))
    print((path.parent / "summary.md").read_text(), end="")
    print(f"wrote {path}, summary.md and figure4_<model>.png in {args.out}")
    return 0
