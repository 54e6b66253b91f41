"""Which map should ranking metrics read for explanation-image methods? x̂ vs kept energy.

On the region model (its output depends only on a known box; ``unmask.testing``), 4 images
with a white patch outside the box and a darker red box: ShearletX, WaveletX and PixelMask (40
steps, 2 noise samples) explain class 1; the energy pointing game (mass of the map inside the
box, higher is better) and deletion (16 steps, lower is better) read either the gray
explanation image x̂ (the methods' saliency) or the kept-energy relevance map
(:func:`unmask.bench.maps.relevance_map`). The same setting as tests/bench/test_maps.py.

    python benchmarks/fair_maps.py
"""

from __future__ import annotations

import torch

import unmask
from unmask.bench.maps import relevance_map
from unmask.metrics import METRICS
from unmask.testing import region_box, region_images, region_model

METHODS = {
    "shearletx": {"representation": "shearlets:scales=2,directions=[4,4]"},
    "waveletx": {"representation": "wavelets:levels=3"},
    "pixelmask": {},
}


def main() -> None:
    torch.set_num_threads(1)
    model = region_model()
    x = region_images(4, 32, seed=1)
    t, l, b, r = region_box(32, 32)  # noqa: E741
    x[:, :, 18:30, 16:30] = 1.0
    x[:, :, t:b, l:r] *= 0.7
    gt = torch.zeros(4, 1, 32, 32)
    gt[..., t:b, l:r] = 1
    inside = METRICS.get("energy_pointing_game").build()
    deletion = METRICS.get("deletion").build(max_steps=16)
    print(
        "| method | mass in box: x̂ | mass in box: relevance | deletion: x̂ | deletion: relevance |"
    )
    print("|---|---|---|---|---|")
    for name, params in METHODS.items():
        e = unmask.explain(model, x, name, target=1, steps=40, noise_bs=2, **params)
        rel = relevance_map(x, e.extras["image"])
        print(
            f"| {name} | {inside(e.saliency, gt).mean():.3f} | {inside(rel, gt).mean():.3f} | "
            f"{deletion(model, x, e.saliency, e.target).mean():.3f} | "
            f"{deletion(model, x, rel, e.target).mean():.3f} |"
        )


if __name__ == "__main__":
    main()
