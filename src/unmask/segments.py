"""Superpixel segmentations of images, shared by explainers (LIME) and metrics (IROF).

SLIC (Achanta et al., "SLIC superpixels compared to state-of-the-art superpixel methods",
TPAMI 2012) from scikit-image, one image at a time; labels relabelled to 0..S_b-1 per image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["slic_segments", "relabel"]


def slic_segments(
    x: Tensor, n_segments: int = 50, compactness: float = 30.0, sigma: float = 3.0
) -> Tensor:
    """SLIC superpixels (Achanta et al. 2012, scikit-image) of each image.

    Args:
        x: images (B, 3, H, W) in [0, 1].
        n_segments, compactness, sigma: :func:`skimage.segmentation.slic` arguments (LIME's
            settings in Agarwal & Nguyen 2020: 50, 30, 3; scikit-image's defaults, which
            quantus' IROF uses: 100, 10, 0).

    Returns:
        (B, H, W) long labels, consecutive from 0 within each image.
    """
    from skimage.segmentation import slic

    images = x.detach().permute(0, 2, 3, 1).cpu().double().numpy()
    labels = [
        slic(
            img,
            n_segments=n_segments,
            compactness=compactness,
            sigma=sigma,
            start_label=0,
            channel_axis=-1 if img.shape[-1] > 1 else None,
        )
        for img in images
    ]
    return relabel(torch.from_numpy(np.stack(labels)))


def relabel(segments: Tensor) -> Tensor:
    """Relabel each image's segments (B, H, W) to 0..S_b-1, keeping the order of the labels."""
    out = torch.empty(segments.shape, dtype=torch.long)
    for b, seg in enumerate(segments):  # one image at a time: unique() is per image
        _, inverse = torch.unique(seg, return_inverse=True)
        out[b] = inverse
    return out
