"""Why ShearletX's explanation image can lose the class: what the model sees under each fill.

ShearletX optimises its mask against *noise-filled* images T⁻¹(m ⊙ c + (1 - m) ⊙ v) but
returns the *zero-filled* x̂ = T⁻¹(m ⊙ c). This script explains one image and prints the target
probability under each fill of the dropped coefficients, with the same mask:

    python docs/shearletx/fill_diagnosis.py [--steps 300 --noise-bs 16 --image chelsea --size 256]

Used for the diagnosis in docs/shearletx.md (skimage's chelsea resized to 256², Lite0).
"""

from __future__ import annotations

import argparse

import torch

import unmask
from unmask.representations import Shearlets
from unmask.representations.base import apply_mask, band_statistics, gray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--noise-bs", type=int, default=16)
    parser.add_argument("--image", default="chelsea", help="an example name or an image path")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--draws", type=int, default=8, help="noise draws for the noise fills")
    parser.add_argument("--save", help="save x, x̂ / max x̂ and the mask's max over bands as a PNG")
    args = parser.parse_args()
    model = unmask.load_model("efficientnet_lite0")
    source = unmask.example_image(args.image) if "." not in args.image else args.image
    x = unmask.load_image(source, size=args.size, mode="resize")
    e = unmask.explain(model, x, "shearletx", steps=args.steps, noise_bs=args.noise_bs, progress=True)
    t, mask = int(e.target[0]), e.extras["keep_mask"]
    rep, size = Shearlets(), tuple(x.shape[-2:])
    with torch.no_grad():
        c = rep.forward(x)[0]
        (mean, std), = band_statistics(rep.forward(gray(x)))
        kept = rep.inverse(apply_mask([c], [mask]), size)
        g = torch.Generator().manual_seed(1)
        v = (mean - std) + 2 * std * torch.rand((args.draws, *mean.shape[1:-2], *size), generator=g)
        fills = {
            "x (original)": x,
            "x̂ = T⁻¹(m ⊙ c), dropped = 0 (the explanation)": kept,
            "x̂ / max x̂ (what the authors' Figure 4 script classifies)": kept.clamp(0, 1) / kept.clamp(0, 1).max(),
            "dropped = band mean": kept + rep.inverse([(1 - mask) * mean.expand_as(mask)], size),
            "dropped = uniform noise (what the optimiser sees)": kept + rep.inverse([(1 - mask) * v], size),
            "all coefficients noise (m = 0)": rep.inverse([v], size).expand(-1, 3, -1, -1),
        }
        print(f"target {t} ({model.class_names[t]}); mask mean {float(mask.mean()):.4f}, "
              f"{float((mask > 0.5).float().mean()):.2%} of coefficients > 0.5")
        for name, images in fills.items():
            p = torch.softmax(model(images.clamp(0, 1)), 1)
            top = p.argmax(1)
            print(f"{name:62s} p_target median {float(p[:, t].median()):.3f}   "
                  f"top-1 {int(top[0])} ({model.class_names[int(top[0])]}) {float(p.max(1).values[0]):.3f}")
    if args.save:
        from PIL import Image

        shown = kept.clamp(0, 1) / kept.clamp(0, 1).max()
        strip = torch.cat([x[0], shown[0], mask[0, 0].amax(0).expand(3, -1, -1)], dim=2)
        Image.fromarray((strip.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(args.save)


if __name__ == "__main__":
    main()
