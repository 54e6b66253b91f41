"""The result of an explanation method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Explanation"]


@dataclass
class Explanation:
    """Saliency maps for a batch of images.

    Attributes:
        saliency: (B, 1, H, W) float tensor at the input resolution; higher = more important
            for the target class.
        target: (B,) long tensor, the explained class of each image.
        method: the registered method name.
        params: the hyperparameters used (JSON-serialisable where possible).
        extras: the method's raw outputs (patch grid, segment weights, optimised mask,
            explanation image...), each with a leading batch dimension B when it is a tensor.
    """

    saliency: Tensor
    target: Tensor
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.saliency.shape[0])

    def __getitem__(self, i: int | slice) -> Explanation:
        """The explanation of image ``i`` (or a slice of images), batch dimension kept."""
        sl = slice(i, i + 1) if isinstance(i, int) else i
        if isinstance(i, int) and not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} explanations")
        extras = {k: (v[sl] if isinstance(v, Tensor) and v.ndim and v.shape[0] == len(self) else v)
                  for k, v in self.extras.items()}
        return Explanation(self.saliency[sl], self.target[sl], self.method, dict(self.params), extras)

    def numpy(self) -> np.ndarray:
        """The saliency maps as a numpy array (B, H, W)."""
        return self.saliency[:, 0].detach().cpu().numpy()

    @staticmethod
    def concat(parts: list[Explanation]) -> Explanation:
        """Concatenate explanations of the same method along the batch."""
        if not parts:
            raise ValueError("parts: expected at least one explanation")
        extras: dict[str, Any] = {}
        for k, v in parts[0].extras.items():
            if isinstance(v, Tensor) and v.ndim and all(
                isinstance(p.extras.get(k), Tensor) and p.extras[k].shape[1:] == v.shape[1:] for p in parts
            ):
                extras[k] = torch.cat([p.extras[k] for p in parts])
            else:
                extras[k] = [p.extras.get(k) for p in parts]
        return Explanation(torch.cat([p.saliency for p in parts]), torch.cat([p.target for p in parts]),
                           parts[0].method, dict(parts[0].params), extras)
