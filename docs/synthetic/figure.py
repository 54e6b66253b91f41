"""Draw docs/synthetic/examples.png: test images of the synthetic benchmark with the label
object's box, and the maps of each method for them.

    PYTHONPATH=src python docs/synthetic/figure.py [--methods occlusion,rise,lime,extremal]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import unmask  # noqa: E402
from unmask.datasets import evaluate, synthetic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="occlusion,rise,lime,extremal")
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--out", default=str(Path(__file__).with_name("examples.png")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    methods = [m for m in args.methods.split(",") if m]
    model = unmask.load_model("synthetic_cnn")
    batch = synthetic.generate(args.n, seed=0, split="test")
    maps = {m: evaluate.saliency_maps(model, batch.images, batch.labels, m) for m in methods}
    pred = model(batch.images).argmax(1)
    rows = 1 + len(methods)
    fig, axes = plt.subplots(rows, args.n, figsize=(1.6 * args.n, 1.6 * rows), squeeze=False)
    for j in range(args.n):
        ax = axes[0, j]
        ax.imshow(batch.images[j].permute(1, 2, 0).numpy())
        x0, y0, x1, y1 = batch.boxes[j].tolist()
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   color="white", lw=1))
        label, guess = synthetic.CLASSES[int(batch.labels[j])], synthetic.CLASSES[int(pred[j])]
        ax.set_title(f"{label} (pred {guess})", fontsize=6)
        for i, m in enumerate(methods, start=1):
            axes[i, j].imshow(maps[m][j, 0].numpy(), cmap="jet")
            axes[i, j].contour(batch.masks[j, 0].numpy(), levels=[0.5], colors="white",
                               linewidths=0.5)
            if j == 0:
                axes[i, j].set_ylabel(m, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    image = Image.open(buffer).convert("RGB")  # 256 colours: a third of the file size
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
