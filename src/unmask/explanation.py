"""The result of an explanation method."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._checks import ScoreTarget
from ._types import Model, Target
from .registry import EXECUTION_PARAMS

__all__ = ["Explanation", "result_key", "image_digest", "target_json"]


def image_digest(image: Tensor) -> str:
    """SHA-256 of one image's content (its shape, and its values as float32), hex."""
    data = image.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(json.dumps(list(data.shape)).encode())
    h.update(data.numpy().tobytes())
    return h.hexdigest()


def target_json(target: Tensor | ScoreTarget) -> int | list[int]:
    """One image's target as JSON: a class index, or the sorted classes of a set."""
    if isinstance(target, ScoreTarget):
        raise TypeError(
            "target: a target function (callable) has no stable key; results are keyed by "
            "class or set of classes"
        )
    if target.dtype == torch.bool:
        return [int(c) for c in target.nonzero().flatten()]
    return int(target)


def result_key(spec: dict[str, Any], model: str, image: Tensor | str, target: Target) -> str:
    """A stable key of (method spec, model name, image content, target), hex SHA-256.

    ``spec`` is ``{"method": name, **params}`` (execution settings such as ``batch_size`` are
    ignored), ``image`` one image (C, H, W) / (1, C, H, W) or its :func:`image_digest`,
    ``target`` a class, a list of classes (a set) or a target tensor of one image.

    Example:
        >>> x = torch.zeros(3, 2, 2)
        >>> k = result_key({"method": "rise", "seed": 0, "batch_size": 8}, "m", x, 1)
        >>> k == result_key({"method": "rise", "seed": 0, "batch_size": 64}, "m", x, 1)
        True
    """
    if isinstance(target, Tensor | ScoreTarget):
        target = target_json(target)
    elif isinstance(target, list | tuple | set | frozenset):
        target = sorted(int(c) for c in target)
    digest = image if isinstance(image, str) else image_digest(image)
    payload = {
        "spec": {k: v for k, v in spec.items() if k not in EXECUTION_PARAMS},
        "model": model,
        "image": digest,
        "target": target,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class Explanation:
    """Saliency maps for a batch of images.

    Attributes:
        saliency: (B, 1, H, W) float tensor at the input resolution; higher = more important
            for the target class.
        target: the explained target of each image: (B,) long (a class) or (B, K) bool (a set
            of classes, scored as a whole), or a :class:`unmask._checks.ScoreTarget` (score
            functions of the logits).
        method: the registered method name (``"sp-g"``, not the class it runs).
        params: the resolved hyperparameters (JSON-serialisable; removals by their spec), so
            that ``unmask.make_explainer(model, **e.spec)`` rebuilds the same explainer.
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
        extras = {
            k: (v[sl] if isinstance(v, Tensor) and v.ndim and v.shape[0] == len(self) else v)
            for k, v in self.extras.items()
        }
        return Explanation(
            self.saliency[sl], self.target[sl], self.method, dict(self.params), extras
        )

    @property
    def spec(self) -> dict[str, Any]:
        """``{"method": name, **params}``: what :func:`unmask.make_explainer` rebuilds from."""
        return {"method": self.method, **self.params}

    def keys(self, x: Tensor, model: Model) -> list[str]:
        """One :func:`result_key` per image of ``x`` (B, C, H, W), for ``model`` (or its name)."""
        name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
        if x.shape[0] != len(self):
            raise ValueError(f"x: expected the {len(self)} explained images, got {x.shape[0]}")
        return [result_key(self.spec, name, x[i], self.target[i]) for i in range(len(self))]

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
            if (
                isinstance(v, Tensor)
                and v.ndim
                and all(
                    isinstance(p.extras.get(k), Tensor) and p.extras[k].shape[1:] == v.shape[1:]
                    for p in parts
                )
            ):
                extras[k] = torch.cat([p.extras[k] for p in parts])
            else:
                extras[k] = [p.extras.get(k) for p in parts]
        return Explanation(
            torch.cat([p.saliency for p in parts]),
            torch.cat([p.target for p in parts]),
            parts[0].method,
            dict(parts[0].params),
            extras,
        )
