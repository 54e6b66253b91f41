"""Input checks used at the public boundary.

Every public function validates its arguments with these helpers so that a bad input fails
early with one clear message naming the argument, what was expected and what was given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_images",
    "check_unit_range",
    "check_mask",
    "check_targets",
    "ScoreTarget",
    "check_positive",
    "check_probability",
    "check_choice",
    "check_not_meta",
    "check_seed",
    "MAX_SEED",
]

#: Seeds are 64-bit (torch's generators take [0, 2**63 - 1]).
MAX_SEED = 2**63 - 1


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_not_meta(t: Tensor, name: str) -> None:
    """Refuse a tensor on the ``meta`` device: it has a shape but no values to compute with.

    Example:
        >>> check_not_meta(torch.empty(2, device="meta"), "x")
        Traceback (most recent call last):
        ...
        ValueError: x: a meta tensor holds no values; expected a tensor on the CPU or a GPU
    """
    if t.is_meta:
        raise ValueError(
            f"{name}: a meta tensor holds no values; expected a tensor on the CPU or a GPU"
        )


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
        raise TypeError(
            f"{name}: expected a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}"
        )
    check_not_meta(x, name)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected shape (B, C, H, W), got {_shape(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {_shape(x)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name}: expected {channels} channels (B, {channels}, H, W), got {_shape(x)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


#: How far outside [0, 1] image values may lie (resampling overshoot) before they are refused.
RANGE_TOLERANCE = 1e-2


def check_unit_range(x: Tensor, name: str = "x", tolerance: float = RANGE_TOLERANCE) -> Tensor:
    """Check that images hold values in [0, 1] (within ``tolerance``), as every model expects.

    Images scaled to [0, 255] or centred at 0 would be explained without a word otherwise: the
    model normalises them a second time and sees something else.

    Example:
        >>> check_unit_range(torch.full((1, 3, 2, 2), 255.0))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: x: expected image values in [0, 1], got range [255, 255] (images in ...: ...
    """
    values = x.detach()
    lo, hi = float(values.min()), float(values.max())
    if lo < -tolerance or hi > 1 + tolerance:
        hint = (
            " (images in [0, 255]: divide by 255)"
            if hi > 1.5 and lo >= -tolerance
            else " (normalised images: pass them in [0, 1]; the Classifier normalises itself)"
            if lo < -tolerance
            else ""
        )
        raise ValueError(
            f"{name}: expected image values in [0, 1], got range [{lo:.3g}, {hi:.3g}]{hint}"
        )
    return x


def check_mask(mask: object, x: Tensor, name: str = "mask") -> Tensor:
    """Check a removal mask against images ``x`` (B, C, H, W).

    The mask must be a float tensor (B', 1, H, W) with values in [0, 1], where B' equals B or
    either of them is 1 (broadcast).
    """
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor of shape (B, 1, H, W), got {type(mask).__name__}"
        )
    check_not_meta(mask, name)
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"{name}: expected shape (B, 1, {x.shape[-2]}, {x.shape[-1]}) matching the images "
            f"{_shape(x)}, got {_shape(mask)}"
        )
    if mask.shape[0] != x.shape[0] and 1 not in (mask.shape[0], x.shape[0]):
        raise ValueError(
            f"{name}: batch size {mask.shape[0]} does not match the images' batch size "
            f"{x.shape[0]} "
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


class ScoreTarget:
    """A target given as a score function of the logits: ``f(logits (N, K)) -> (N,)``.

    What ``target=`` becomes when it is a callable (one for every image) or a list of callables
    (one per image), as pytorch-grad-cam's target objects; each function must score every row of
    the logits it is given on its own (rows are images, perturbed copies or noisy samples of
    them) and keep autograd's graph (gradient methods differentiate the score). The function
    defines the score, so the method's ``score=`` (probability, logit) does not apply.

    It stands where a target tensor (N,) stands: it can be indexed, repeated and moved like
    one, each row keeping its image's function.

    Example:
        >>> t = ScoreTarget([lambda z: z[:, 1] - z[:, 0]], rows=torch.zeros(2, dtype=torch.long))
        >>> t.scores(torch.tensor([[0.0, 2.0], [1.0, 1.0]]))
        tensor([2., 0.])
    """

    def __init__(self, functions: Sequence[Callable[[Tensor], Tensor]], rows: Tensor) -> None:
        self.functions = tuple(functions)
        self.rows = rows.detach().to("cpu", torch.long).reshape(-1)

    def _same(self, rows: Tensor) -> ScoreTarget:
        return ScoreTarget(self.functions, rows)

    def __getitem__(self, key: object) -> ScoreTarget:
        key = key.cpu() if isinstance(key, Tensor) else key
        return self._same(self.rows[key].reshape(-1))  # type: ignore[index]

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __repr__(self) -> str:
        return f"ScoreTarget({len(self.functions)} function(s), {len(self)} rows)"

    @property
    def shape(self) -> torch.Size:
        return self.rows.shape

    @property
    def ndim(self) -> int:
        return 1

    @property
    def dtype(self) -> None:
        """None: neither a class (long) nor a set (bool)."""
        return None

    def numel(self) -> int:
        return len(self)

    def to(self, *args: object, **kwargs: object) -> ScoreTarget:
        return self

    def cpu(self) -> ScoreTarget:
        return self

    def detach(self) -> ScoreTarget:
        return self

    def clone(self) -> ScoreTarget:
        return self._same(self.rows.clone())

    def reshape(self, *shape: object) -> ScoreTarget:
        return self

    def repeat(self, *sizes: int) -> ScoreTarget:
        return self._same(self.rows.repeat(sizes[0]))

    def repeat_interleave(self, repeats: int, dim: int | None = None) -> ScoreTarget:
        return self._same(self.rows.repeat_interleave(repeats))

    def expand(self, *sizes: int) -> ScoreTarget:
        return self._same(self.rows.expand(sizes[0]))

    def scores(self, logits: Tensor) -> Tensor:
        """The score (N,) of each row of ``logits`` (N, K), by its image's function."""
        if logits.shape[0] != len(self):
            raise ValueError(f"target: {len(self)} rows for {logits.shape[0]} rows of logits")
        if len(self.functions) == 1:
            return self._check(self.functions[0](logits), logits.shape[0], 0)
        out = logits.new_empty(logits.shape[0])
        parts = []
        for i in self.rows.unique().tolist():
            where = (self.rows == i).nonzero().flatten().to(logits.device)
            parts.append((where, self._check(self.functions[i](logits[where]), len(where), i)))
        # index_put keeps autograd's graph through every function's scores
        for where, score in parts:
            out = out.index_put((where,), score.to(out.dtype))
        return out

    def _check(self, score: object, n: int, i: int) -> Tensor:
        name = "target" if len(self.functions) == 1 else f"target[{i}]"
        if not isinstance(score, Tensor) or score.shape != (n,):
            shape = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
            raise ValueError(
                f"{name}: a target function must return one score per row of the logits "
                f"(({n},) for logits ({n}, K)), got {shape}"
            )
        return score


def check_targets(
    target: object,
    batch: int,
    num_classes: int,
    name: str = "target",
    no_functions: str | None = None,
) -> Tensor | None:
    """Normalise ``target``: one class or one set of classes per image, or None (top-1).

    Accepts None; an int (numpy integers too: the same class for every image); a sequence with
    one entry per image, each an int or a set of ints (a list, tuple or set: the image's
    target is that *cluster* of classes); a long tensor () or (B,); a boolean membership tensor
    (B, K) or (K,). A single entry (one int or one set) is used for every image. A callable
    ``f(logits (N, K)) -> (N,)`` (or a list of them, one per image) is a score function: see
    :class:`ScoreTarget`.

    Returns:
        None, a long tensor (B,) when every target is one class, a boolean membership tensor
        (B, K) with K = ``num_classes`` when any target is a set (classes lie in [0, K)), or a
        :class:`ScoreTarget` (B rows) for score functions (typed as a Tensor: it stands where
        the target tensor stands).

    ``no_functions``, when given, is why a target function cannot apply to the caller: a
    callable target is then refused with it.

    Example:
        >>> check_targets([3, 1], 2, 10)
        tensor([3, 1])
        >>> check_targets([[1, 2]], 2, 4)
        tensor([[False,  True,  True, False],
                [False,  True,  True, False]])
        >>> check_targets({1, 2}, 2, 4).tolist() == check_targets([[1, 2]], 2, 4).tolist()
        True
    """
    if target is None:
        return None
    if isinstance(target, Tensor):
        return _target_tensor(target, batch, num_classes, name)
    functions = isinstance(target, ScoreTarget) or callable(target)
    functions |= isinstance(target, list | tuple) and any(callable(f) for f in target)
    if functions and no_functions is not None:
        raise TypeError(
            f"{name}: a target function (callable) does not apply here: {no_functions}; pass a "
            "class or a set of classes"
        )
    if isinstance(target, ScoreTarget):
        if len(target) != batch:
            raise ValueError(
                f"{name}: expected a target for each of {batch} images, got {len(target)}"
            )
        return cast(Tensor, target)
    if callable(target):
        return cast(Tensor, ScoreTarget([target], torch.zeros(batch, dtype=torch.long)))
    if isinstance(target, list | tuple) and target and all(callable(f) for f in target):
        if len(target) not in (1, batch):
            raise ValueError(
                f"{name}: expected one target function per image ({batch}), got {len(target)}"
            )
        rows = torch.arange(batch) if len(target) == batch else torch.zeros(batch, dtype=torch.long)
        return cast(Tensor, ScoreTarget(list(target), rows))
    if isinstance(target, list | tuple) and any(callable(f) for f in target):
        raise TypeError(
            f"{name}: expected either target functions for every image or classes / sets, "
            f"not a mix, got {target!r}"
        )
    if isinstance(target, np.ndarray):
        if target.dtype == bool:
            return _target_tensor(torch.from_numpy(target.copy()), batch, num_classes, name)
        if not np.issubdtype(target.dtype, np.integer):
            raise TypeError(
                f"{name}: expected integer class indices, got an array of dtype {target.dtype}"
            )
        target = target.tolist()
    # one int or one set (a set has no order: never one entry per image) is every image's target
    entries = [target] if _is_class(target) or isinstance(target, set | frozenset) else target
    if isinstance(entries, str) or not isinstance(entries, Sequence | set | frozenset):
        raise TypeError(
            f"{name}: expected None, an int, a set of ints, one int or set per image, or a tensor, "
            f"got {type(target).__name__}"
        )
    entries = list(entries)
    if len(entries) == 1 and batch != 1:
        entries = entries * batch
    if len(entries) != batch:
        raise ValueError(
            f"{name}: expected one class (or set of classes) per image ({batch}), "
            f"got {len(entries)}"
        )
    classes = [_class_set(v, num_classes, name) for v in entries]
    if all(isinstance(c, int) for c in classes):
        return torch.tensor(classes, dtype=torch.long)
    member = torch.zeros(batch, num_classes, dtype=torch.bool)
    for i, c in enumerate(classes):
        member[i, [c] if isinstance(c, int) else sorted(c)] = True
    return member


def _is_class(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _class_index(value: object, num_classes: int, name: str) -> int:
    if not _is_class(value):
        raise TypeError(f"{name}: expected class indices (ints), got {value!r}")
    v = int(value)  # type: ignore[call-overload]
    if not 0 <= v < num_classes:
        raise ValueError(f"{name}: class {v} is outside [0, {num_classes}) for this model")
    return v


def _class_set(value: object, num_classes: int, name: str) -> int | frozenset[int]:
    if _is_class(value):
        return _class_index(value, num_classes, name)
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset | np.ndarray):
        raise TypeError(f"{name}: expected an int or a set of ints per image, got {value!r}")
    members = frozenset(_class_index(v, num_classes, name) for v in value)
    if not members:
        raise ValueError(f"{name}: expected a non-empty set of classes, got {value!r}")
    return members


def _target_tensor(target: Tensor, batch: int, num_classes: int, name: str) -> Tensor:
    check_not_meta(target, name)
    target = target.detach().cpu()
    if target.dtype == torch.bool:
        member = target.reshape(1, -1) if target.ndim == 1 else target
        if member.ndim != 2 or member.shape[1] != num_classes:
            raise ValueError(
                f"{name}: expected a membership mask (B, {num_classes}), got shape {_shape(target)}"
            )
        if member.shape[0] == 1 and batch != 1:
            member = member.expand(batch, -1)
        if member.shape[0] != batch:
            raise ValueError(
                f"{name}: expected one set of classes per image ({batch}), got {member.shape[0]}"
            )
        if not bool(member.any(dim=1).all()):
            raise ValueError(f"{name}: every image needs at least one class in its set")
        return member.clone()
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"{name}: expected an integer or boolean tensor, got dtype {target.dtype}")
    t = target.reshape(-1).long()
    if t.numel() == 1 and batch != 1:
        t = t.expand(batch).clone()
    if t.numel() != batch:
        raise ValueError(f"{name}: expected one class per image ({batch}), got {t.numel()}")
    bad = (t < 0) | (t >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"{name}: class {int(t[bad][0])} is outside [0, {num_classes}) for this model"
        )
    return t


def check_seed(seed: object, name: str = "seed") -> int:
    """A seed for torch's and numpy's generators: an int (numpy ints too) in [0, 2**63 - 1].

    Example:
        >>> check_seed(3)
        3
    """
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name}: expected an int, got {seed!r}")
    if not 0 <= int(seed) <= MAX_SEED:
        text = str(seed)
        shown = text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"
        raise ValueError(f"{name}: expected an int in [0, 2**63 - 1], got {shown}")
    return int(seed)


def check_positive(
    value: object, name: str, integer: bool = False, allow_zero: bool = False
) -> None:
    """Check that a hyperparameter is a positive number (an int when ``integer``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        what = "an int" if integer else "a number"
        raise TypeError(f"{name}: expected {what}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a value {bound}, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name}: expected a finite value, got {value!r}")


def check_probability(
    value: object, name: str, open_low: bool = False, open_high: bool = False
) -> None:
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
