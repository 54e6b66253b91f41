"""Draw docs/images/synthetic-cnn-vit.png: the maps of every method of the CNN-vs-ViT table
(docs/synthetic-benchmark.md) on a few test images, for ``synthetic_cnn`` and ``synthetic_vit``
side by side.

Each image gets two columns (CNN, ViT); each method a row. The maps are the table's
(:func:`unmask.datasets.evaluate.saliency_maps`: the same hyperparameters, the label object's
class as the target, maps upsampled to 64 x 64), coloured with the package's rule
(:func:`unmask.viz.heatmap`: each map on its own scale anchored at 0, viridis for a
non-negative map, RdBu_r for a signed one), the label object's outline drawn over them
(white, black on a signed map). A method that does not apply to a model (the attention
explainers on the CNN) leaves its panel empty. The same ``--seed`` gives the same images and
maps::

    PYTHONPATH=src python docs/synthetic/cnn_vit_figure.py [--n 3] [--seed 0] [--methods ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

import unmask
from unmask import viz
from unmask.attention import attention_layers
from unmask.datasets import synthetic
from unmask.datasets.evaluate import saliency_maps

#: The methods of the table, in its order (the baselines left out: they look at no model).
METHODS = (
    "gradcam,gradcam++,xgradcam,layercam,hirescam,eigencam,scorecam,ablationcam,mwp,c-mwp,"
    "rollout,chefer,gradient,input_x_gradient,integrated_gradients,smoothgrad,occlusion,rise,"
    "lime,extremal"
)
OUT = Path(__file__).resolve().parents[1] / "images" / "synthetic-cnn-vit.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=METHODS, help="comma-separated method names")
    parser.add_argument("--n", type=int, default=3, help="test images (the first n)")
    parser.add_argument("--seed", type=int, default=0, help="data set and method seed")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    torch.set_num_threads(1)
    methods = [m for m in args.methods.split(",") if m]
    models = {
        "CNN": unmask.load_model("synthetic_cnn", execution="eager"),
        "ViT": unmask.load_model("synthetic_vit", execution="eager"),
    }
    batch = synthetic.generate(args.n, seed=args.seed, split="test")
    maps: dict[tuple[str, str], torch.Tensor] = {}
    for kind, model in models.items():
        for m in methods:
            if m in ("rollout", "chefer") and not attention_layers(model):
                continue
            maps[kind, m] = saliency_maps(model, batch.images, batch.labels, m, seed=args.seed)
            print(f"{kind} {m}", flush=True)
    with torch.no_grad():
        preds = {kind: model(batch.images).argmax(1) for kind, model in models.items()}

    cols, rows = 2 * args.n, 1 + len(methods)
    fig = Figure(figsize=(0.95 * cols + 0.9, 0.95 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for j in range(args.n):
        label = synthetic.CLASSES[int(batch.labels[j])]
        mask = batch.masks[j, 0].numpy()
        for k, kind in enumerate(models):
            col = 2 * j + k
            ax = axes[0, col]
            ax.imshow(batch.images[j].permute(1, 2, 0).numpy())
            ax.contour(mask, levels=[0.5], colors="white", linewidths=0.6)
            guess = synthetic.CLASSES[int(preds[kind][j])]
            ax.set_title(f"{label}\n{kind}: {guess}", fontsize=6)
            for i, m in enumerate(methods, start=1):
                ax = axes[i, col]
                if col == 0:
                    ax.set_ylabel(m, fontsize=6)
                s = maps.get((kind, m))
                if s is None:
                    ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=6)
                    continue
                signed = viz.is_signed(s[j : j + 1])
                ax.imshow(viz.heatmap(s[j : j + 1])[0].permute(1, 2, 0).numpy())
                ax.contour(
                    mask, levels=[0.5], colors="black" if signed else "white", linewidths=0.5
                )
    viz.bare_axes(axes)
    fig.subplots_adjust(left=0.08, right=0.99, top=0.97, bottom=0.01, wspace=0.05, hspace=0.08)
    print(f"wrote {viz.save_figure(fig, args.out, dpi=100)}")


if __name__ == "__main__":
    main()
