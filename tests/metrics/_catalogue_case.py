"""The case the catalogue's naive-loop tests share: the region model, two images, partly right
maps, and the model's scores computed directly."""

from __future__ import annotations

import torch

from unmask.testing import region_images, region_mask, region_model

SIZE = 16


def setup():
    model, x = region_model(), region_images(2, SIZE, seed=2)
    gen = torch.Generator().manual_seed(5)
    maps = torch.rand(2, 1, SIZE, SIZE, generator=gen, dtype=torch.float64)
    maps += 2 * region_mask(SIZE, SIZE).double()  # partly right
    return model, x, maps


def scores(model, images, target, kind="logit"):
    with torch.no_grad():
        z = model(images).double()
    if kind == "prob":
        z = torch.softmax(z, dim=1)
    return z[:, target].numpy()
