"""Input checks used at the public boundary.

Every public function validates its arguments with these helpers so that a bad input fails
early with one clear message naming the argument, what was expected and what was given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "check_images",
    "check_mask",
    "check_targets",
    "check_positive",
    "check_probability",
    "check_choice",
]


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_images(x: object, name: str = "x", channels: int | None = None) -> Tensor:
    """Check a batch of images: a float tensor (B, C, H, W), finite, non-empty.

    Args:
        x: the object to check.
        name: the argument name used in the error message.
        channels: the required number of channels C, if any.

    Returns:
        ``x`` itself.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name}: expected shape (B, C, H, W), got {_shape(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {_shape(x)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels (B, {channels}, H, W), got {_shape(x)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def check_mask(mask: object, x: Tensor, name: str = "mask") -> Tensor:
    """Check a removal mask against images ``x`` (B, C, H, W).

    The mask must be a float tensor (B', 1, H, W) with values in [0, 1], where B' equals B or
    either of them is 1 (broadcast).
    """
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, 1, H, W), got {type(mask).__name__}")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"{name}: expected shape (B, 1, {x.shape[-2]}, {x.shape[-1]}) matching the images "
            f"{_shape(x)}, got {_shape(mask)}"
        )
    if mask.shape[0] != x.shape[0] and 1 not in (mask.shape[0], x.shape[0]):
        raise ValueError(
            f"{name}: batch size {mask.shape[0]} does not match the images' batch size {x.shape[0]} "
            "(expected equal sizes, or one of them 1)"
        )
    if not mask.is_floating_point():
        mask = mask.to(x.dtype)
    if not bool(torch.isfinite(mask).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    values = mask.detach()  # no autograd warning for masks being optimised
    if values.numel() and (float(values.min()) < 0 or float(values.max()) > 1):
        raise ValueError(
            f"{name}: expected values in [0, 1] (1 = removed), got range "
            f"[{float(values.min()):.3g}, {float(values.max()):.3g}]"
        )
    return mask


def check_targets(
    target: object, batch: int, num_classes: int, name: str = "target"
) -> Tensor | None:
    """Normalise ``target`` to a long tensor (B,), or None to mean "the model's top-1".

    Accepts None, an int (same class for every image), a sequence of ints or a tensor of
    shape () or (B,). Every class must lie in [0, num_classes).
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError(f"{name}: expected an int, a sequence of ints or a tensor, got bool")
    if isinstance(target, int):
        t = torch.full((batch,), target, dtype=torch.long)
    elif isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex():
            raise TypeError(f"{name}: expected an integer tensor, got dtype {target.dtype}")
        t = target.reshape(-1).long().cpu()
        if t.numel() == 1 and batch != 1:
            t = t.expand(batch).clone()
    elif isinstance(target, Sequence) and not isinstance(target, str):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in target):
            raise TypeError(f"{name}: expected a sequence of ints, got {list(target)!r}")
        t = torch.tensor(list(target), dtype=torch.long)
    else:
        raise TypeError(
            f"{name}: expected None, an int, a sequence of ints or a tensor, got {type(target).__name__}"
        )
    if t.numel() != batch:
        raise ValueError(f"{name}: expected one class per image ({batch}), got {t.numel()}")
    bad = (t < 0) | (t >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"{name}: class {int(t[bad][0])} is outside [0, {num_classes}) for this model"
        )
    return t


def check_positive(value: object, name: str, integer: bool = False, allow_zero: bool = False) -> None:
    """Check that a hyperparameter is a positive number (an int when ``integer``)."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an int" if integer else "a number"
        raise TypeError(f"{name}: expected {what}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a value {bound}, got {value!r}")


def check_probability(value: object, name: str, open_low: bool = False, open_high: bool = False) -> None:
    """Check that ``value`` is a number in [0, 1] (optionally open at either end)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a number in [0, 1], got {value!r}")
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        lo = "(0" if open_low else "[0"
        hi = "1)" if open_high else "1]"
        raise ValueError(f"{name}: expected a value in {lo}, {hi}, got {value!r}")


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value  # type: ignore[return-value]
