"""Small models and images with a known answer, for tests of explainers and metrics.

:class:`RegionModel` is a classifier whose output depends only on a known box of the image, so a
faithful explanation must put its mass in that box and a faithful metric must rank a map that
points at the box above a random one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .models import Classifier

__all__ = ["RegionModel", "region_model", "region_images", "REGION"]

#: The box the model looks at, as fractions (top, left, bottom, right) of the image.
REGION = (0.25, 0.25, 0.5, 0.5)


def region_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The model's box in pixels (top, left, bottom, right) for an image of this size."""
    t, l, b, r = REGION
    return round(t * height), round(l * width), round(b * height), round(r * width)


def region_mask(height: int, width: int) -> Tensor:
    """(1, 1, H, W) boolean mask of the model's box."""
    t, l, b, r = region_box(height, width)
    m = torch.zeros(1, 1, height, width, dtype=torch.bool)
    m[..., t:b, l:r] = True
    return m


class RegionModel(nn.Module):
    """Two-class toy network: class 1's logit grows with the redness of the box, class 0 falls.

    ``logit_1 = gain * (mean over the box of (red - (green + blue) / 2) - 0.25)`` and
    ``logit_0 = -logit_1``; nothing outside the box matters. Differentiable, with parameters.
    """

    def __init__(self, gain: float = 4.0, classes: int = 2) -> None:
        super().__init__()
        if classes not in (2, 3):
            raise ValueError(f"classes: expected 2 or 3, got {classes!r}")
        self.classes = classes
        self.weight = nn.Parameter(torch.tensor([1.0, -0.5, -0.5]) * gain)
        self.bias = nn.Parameter(torch.tensor(-0.25 * gain))

    def forward(self, x: Tensor) -> Tensor:
        t, l, b, r = region_box(*x.shape[-2:])
        box = x[..., t:b, l:r].mean(dim=(-2, -1))  # (B, 3)
        z = box @ self.weight + self.bias
        if self.classes == 3:  # a third class that also likes the red box, half as much
            return torch.stack([-z, z, z / 2], dim=1)
        return torch.stack([-z, z], dim=1)


def region_model(classes: int = 2) -> Classifier:
    """:class:`RegionModel` wrapped as a Classifier (no normalisation, any input size).

    With ``classes=3`` a third class, "reddish", has logit z / 2: the set {red box, reddish}
    is a cluster that the box decides, for tests of set targets.
    """
    names = ["not red", "red box", "reddish"][:classes]
    return Classifier(RegionModel(classes=classes), mean=(0.0,) * 3, std=(1.0,) * 3,
                      input_size=None, class_names=names, name=f"region{classes if classes != 2 else ''}")


def region_images(batch: int = 2, size: int = 32, seed: int = 0) -> Tensor:
    """(B, 3, size, size) random images whose model box is bright red (class 1 wins clearly)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=gen) * 0.6 + 0.2
    t, l, b, r = region_box(size, size)
    x[:, 0, t:b, l:r] = 0.95
    x[:, 1:, t:b, l:r] = 0.1 + 0.1 * torch.rand(batch, 2, b - t, r - l, generator=gen)
    return x
