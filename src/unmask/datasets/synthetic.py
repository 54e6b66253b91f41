"""A synthetic benchmark with ground truth: the class is the shape of one object on clutter.

Every image shows one **label object** (a disc, square, triangle, cross, ring or a square of
stripes, in a random colour, size, position and rotation) on a cluttered background (smooth
colour noise, soft colour blobs, thin lines), with up to ``max_distractors`` smaller
**distractor** objects of other classes. The label is decided by the object's *shape*, never
by its colour, and the rule that says which object decides it is true by construction:

* **The label object is the largest object.** Its radius (of the circle the shape is inscribed
  in) is ``r ∈ [0.18, 0.26] · size`` (11.5-16.6 px at 64²; its box covers 8-27 % of the
  image); every distractor has a radius of at most ``0.45 · r`` (so its area is at most 20 % of
  the label object's for the same shape, and below half of it for the worst pair, a disc
  beside a triangle: 0.45² π / (3√3 / 4) = 0.49), a class different from the label, and lies outside
  the label object's circle (with a 2 px margin), so it never touches the label object.
* The label object is drawn last, fully inside the image and never occluded: its per-pixel
  mask is exactly the set of pixels painted with it, and its box is the mask's bounding box
  ``(x_min, y_min, x_max, y_max)``, max exclusive (the convention of
  :mod:`unmask.metrics.localisation`).

Image ``i`` of split ``s`` with seed ``seed`` is always the same (its random stream is seeded
by ``(seed, crc32(s), i)``), whatever batch it is generated in. Images are quantised to
multiples of 1/255, so a PNG written by :func:`write` reads back bit for bit.

Example:
    >>> batch = generate(4, seed=0, split="test")
    >>> batch.images.shape, batch.masks.shape, batch.boxes.shape, batch.labels.shape
    (torch.Size([4, 3, 64, 64]), torch.Size([4, 1, 64, 64]), torch.Size([4, 4]), torch.Size([4]))
    >>> bool((generate(1, seed=0, split="test", start=2).images == batch.images[2:3]).all())
    True
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from .._checks import check_positive, check_seed

__all__ = [
    "CLASSES",
    "DEFAULT_SIZE",
    "SyntheticBatch",
    "Sample",
    "sample",
    "generate",
    "write",
    "read",
]

#: The class names, in label order: the label is the index of the label object's shape.
CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring", "stripes")

#: The default image side in pixels (the shipped model's input size).
DEFAULT_SIZE = 64

#: Radius of the label object as a fraction of the image side.
LABEL_RADIUS = (0.18, 0.26)
#: Largest distractor radius as a fraction of the label object's radius.
DISTRACTOR_RATIO = 0.45
#: Smallest distractor radius as a fraction of the label object's radius.
DISTRACTOR_MIN_RATIO = 0.3


class Sample(NamedTuple):
    """One image: ``image`` (3, H, W) float32 in [0, 1], ``label`` int, ``mask`` (H, W) bool of
    the label object, ``box`` (4,) int (x_min, y_min, x_max, y_max) max exclusive, and
    ``distractors`` the classes of the distractor objects, ``distractor_masks`` (K, H, W) bool
    the pixels each was painted on."""

    image: np.ndarray
    label: int
    mask: np.ndarray
    box: tuple[int, int, int, int]
    distractors: tuple[int, ...]
    distractor_masks: np.ndarray


class SyntheticBatch(NamedTuple):
    """A batch: ``images`` (B, 3, H, W) float32 in [0, 1], ``labels`` (B,) long, ``masks``
    (B, 1, H, W) bool (the label object), ``boxes`` (B, 4) long (x_min, y_min, x_max, y_max)
    max exclusive, ``names`` the file stems (``<split>_<index>``)."""

    images: Tensor
    labels: Tensor
    masks: Tensor
    boxes: Tensor
    names: list[str]


# ----------------------------------------------------------------------------- shapes
def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray, ring_inner: float) -> np.ndarray:
    """Membership of the object-frame coordinates (u, v) (unit = the radius) in shape ``cls``."""
    name = CLASSES[cls]
    if name == "disc":
        return u * u + v * v <= 1.0
    if name == "ring":
        d = u * u + v * v
        return (d <= 1.0) & (d >= ring_inner * ring_inner)
    if name in ("square", "stripes"):
        half = 1.0 / np.sqrt(2.0)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if name == "triangle":  # equilateral, inscribed in the unit circle, apex up (v < 0)
        inside = v <= 0.5
        for angle in (np.pi / 6, 5 * np.pi / 6):  # the two slanted edges
            nx, ny = np.cos(angle), -np.sin(angle)
            inside &= u * nx + v * ny <= 0.5
        return inside
    if name == "cross":
        arm, reach = 0.3, 0.93
        au, av = np.abs(u), np.abs(v)
        return ((au <= arm) & (av <= reach)) | ((av <= arm) & (au <= reach))
    raise ValueError(f"class index {cls} is not a shape")  # pragma: no cover


def _draw_object(
    img: np.ndarray,
    rng: np.random.Generator,
    cls: int,
    cx: float,
    cy: float,
    r: float,
    yy: np.ndarray,
    xx: np.ndarray,
) -> np.ndarray:
    """Paint shape ``cls`` centred at (cx, cy) with radius ``r`` on ``img`` (3, H, W); returns
    the painted pixels (H, W) bool."""
    theta = rng.uniform(0, 2 * np.pi)
    ct, st = np.cos(theta), np.sin(theta)
    dx, dy = (xx + 0.5 - cx) / r, (yy + 0.5 - cy) / r  # pixel centres, in radii
    u, v = ct * dx + st * dy, -st * dx + ct * dy
    mask = _shape_mask(cls, u, v, ring_inner=rng.uniform(0.45, 0.62))
    if not mask.any():  # a tiny distractor may fall between pixel centres: paint its centre
        mask = np.zeros_like(mask)
        mask[min(int(cy), mask.shape[0] - 1), min(int(cx), mask.shape[1] - 1)] = True
    under = img[:, mask].mean(1)
    colour = _contrasting_colour(rng, under)
    # A gentle shading across the object, so that it is not a flat colour.
    shade = 1.0 + rng.uniform(-0.12, 0.12) * u + rng.uniform(-0.12, 0.12) * v
    paint = np.clip(colour[:, None, None] * shade[None], 0.0, 1.0)
    if CLASSES[cls] == "stripes":
        second = _contrasting_colour(rng, colour)
        period = rng.uniform(0.35, 0.5)
        band = np.floor((u + 1.0) / period).astype(np.int64) % 2 == 1
        paint = np.where(band[None], second[:, None, None], paint)
    img[:, mask] = paint[:, mask]
    return mask


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> np.ndarray:
    """A random RGB colour whose mean absolute difference from ``against`` (3,) is >= 0.3."""
    best, best_d = None, -1.0
    for _ in range(20):
        c = rng.random(3)
        d = float(np.abs(c - against).mean())
        if d >= 0.3:
            return c
        if d > best_d:
            best, best_d = c, d
    # Rare: fall back to the far corner of the colour cube.
    far = np.where(against > 0.5, 0.0, 1.0)
    return 0.5 * far + 0.5 * best if best is not None else far


# ----------------------------------------------------------------------------- background
def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Clutter (3, H, W): smooth colour noise, soft colour blobs, thin lines."""
    grid = int(rng.integers(3, 7))
    coarse = rng.random((3, grid, grid))
    img = np.stack(
        [ndimage.zoom(c, size / grid, order=3, mode="nearest")[:size, :size] for c in coarse]
    )
    lo, hi = sorted(rng.uniform(0.0, 1.0, 2))
    hi = max(hi, lo + 0.25)
    img = lo + (hi - lo) * (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    for _ in range(int(rng.integers(2, 6))):  # soft blobs
        cy, cx = rng.uniform(0, size, 2)
        sy, sx = rng.uniform(0.06, 0.2, 2) * size
        bump = np.exp(-0.5 * (((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
        weight = rng.uniform(0.3, 0.7) * bump
        img = (1 - weight) * img + weight * rng.random(3)[:, None, None]
    for _ in range(int(rng.integers(1, 5))):  # thin lines
        (x0, y0), (x1, y1) = rng.uniform(0, size, (2, 2))
        ex, ey = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * ex + (yy - y0) * ey) / max(ex * ex + ey * ey, 1e-6), 0, 1)
        dist = np.hypot(xx - x0 - t * ex, yy - y0 - t * ey)
        on = dist <= rng.uniform(0.4, 1.0)
        img[:, on] = rng.random(3)[:, None]
    return np.clip(img, 0.0, 1.0)


# ----------------------------------------------------------------------------- one image
def _stream(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index]))


def _check(seed: object, split: object, size: object, max_distractors: object) -> None:
    check_seed(seed)
    if not isinstance(split, str) or not split:
        raise TypeError(f"split: expected a non-empty string such as 'train', got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 32:
        raise ValueError(f"size: expected an image side of at least 32 pixels, got {size!r}")
    if (
        isinstance(max_distractors, bool)
        or not isinstance(max_distractors, int | np.integer)
        or max_distractors < 0
    ):
        raise ValueError(f"max_distractors: expected an integer >= 0, got {max_distractors!r}")


def sample(
    index: int,
    seed: int = 0,
    split: str = "train",
    size: int = DEFAULT_SIZE,
    max_distractors: int = 2,
) -> Sample:
    """Image ``index`` of ``split`` (deterministic in (seed, split, index, size, max_distractors)).

    Returns:
        A :class:`Sample` with the image (3, size, size) float32 in [0, 1], its label, the label
        object's mask (size, size) and box, the distractors' classes and their masks.
    """
    _check(seed, split, size, max_distractors)
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
        raise ValueError(f"index: expected an integer >= 0, got {index!r}")
    rng = _stream(int(seed), split, int(index))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    label = int(rng.integers(len(CLASSES)))
    r = rng.uniform(*LABEL_RADIUS) * size
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    img = _background(rng, size, yy, xx)
    distractors: list[int] = []
    painted: list[np.ndarray] = []
    for _ in range(int(rng.integers(0, max_distractors + 1))):
        cls = int(rng.choice([c for c in range(len(CLASSES)) if c != label]))
        rd = rng.uniform(DISTRACTOR_MIN_RATIO, DISTRACTOR_RATIO) * r
        for _attempt in range(20):  # a place clear of the label object's circle
            dx, dy = rng.uniform(rd, size - rd, 2)
            if np.hypot(dx - cx, dy - cy) > r + rd + 2:
                painted.append(_draw_object(img, rng, cls, dx, dy, rd, yy, xx))
                distractors.append(cls)
                break
    mask = _draw_object(img, rng, label, cx, cy, r, yy, xx)
    img = img + rng.normal(0.0, 0.02, img.shape)  # sensor noise
    img = (np.round(np.clip(img, 0.0, 1.0) * 255) / 255).astype(np.float32)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    others = np.stack(painted) if painted else np.zeros((0, size, size), dtype=bool)
    return Sample(img, label, mask, box, tuple(distractors), others)


def generate(
    n: int,
    seed: int = 0,
    split: str = "train",
    size: int = DEFAULT_SIZE,
    start: int = 0,
    max_distractors: int = 2,
) -> SyntheticBatch:
    """Images ``start .. start + n - 1`` of ``split`` as one batch.

    Args:
        n: number of images.
        seed: the benchmark's seed (the same seed and split give the same images).
        split: any name; ``"train"``, ``"val"`` and ``"test"`` are the ones the shipped model
            and the localisation benchmark use (the model was trained on ``"train"`` only).
        size: image side in pixels (the shipped model takes 64).
        start: index of the first image.
        max_distractors: the number of distractors is uniform in ``0 .. max_distractors``.

    Returns:
        A :class:`SyntheticBatch`.
    """
    check_positive(n, "n", integer=True)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start: expected an integer >= 0, got {start!r}")
    items = [sample(i, seed, split, size, max_distractors) for i in range(start, start + n)]
    return SyntheticBatch(
        images=torch.from_numpy(np.stack([s.image for s in items])),
        labels=torch.tensor([s.label for s in items], dtype=torch.long),
        masks=torch.from_numpy(np.stack([s.mask for s in items]))[:, None],
        boxes=torch.tensor([s.box for s in items], dtype=torch.long),
        names=[_name(split, i) for i in range(start, start + n)],
    )


def _name(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


# ----------------------------------------------------------------------------- files
def write(
    folder: str | Path,
    n: int,
    seed: int = 0,
    split: str = "test",
    size: int = DEFAULT_SIZE,
    max_distractors: int = 2,
) -> Path:
    """Write images ``0 .. n - 1`` of ``split`` to ``folder`` (created if needed).

    The layout is the one ``unmask bench`` reads (an image folder with a labels CSV);
    ``<name>`` is ``<split>_<index:06d>``::

        folder/<name>.png            the RGB image (8 bit)
        folder/masks/<name>.png      the label object's mask (8 bit, 255 = object, 0 = not)
        folder/labels.csv            file,class_index,name        (file = <name>.png)
        folder/boxes.csv             file,xmin,ymin,xmax,ymax     (pixels, max exclusive)
        folder/classes.txt           the class names, one per line, in label order

    ``boxes.csv`` has one row per image: the label object's box (distractors are not the
    object of the class, so they have no box).

    Returns:
        The folder.
    """
    from PIL import Image

    _check(seed, split, size, max_distractors)
    check_positive(n, "n", integer=True)
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise ValueError(f"folder: {root} exists and is not a directory")
    (root / "masks").mkdir(parents=True, exist_ok=True)
    labels, boxes = [], []
    for i in range(n):
        s = sample(i, seed, split, size, max_distractors)
        name = _name(split, i)
        rgb = np.round(s.image.transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(root / f"{name}.png")
        Image.fromarray(s.mask.astype(np.uint8) * 255, "L").save(root / "masks" / f"{name}.png")
        labels.append((f"{name}.png", s.label, CLASSES[s.label]))
        boxes.append((f"{name}.png", *s.box))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_index", "name"])
        w.writerows(labels)
    with open(root / "boxes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "xmin", "ymin", "xmax", "ymax"])
        w.writerows(boxes)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def read(folder: str | Path) -> SyntheticBatch:
    """Read a folder written by :func:`write` back into a :class:`SyntheticBatch`."""
    from PIL import Image

    root = Path(folder)
    if not (root / "labels.csv").is_file():
        raise FileNotFoundError(
            f"folder: {root} has no labels.csv (write one with unmask.datasets.synthetic.write)"
        )
    with open(root / "labels.csv", newline="") as f:
        rows = {r["file"]: int(r["class_index"]) for r in csv.DictReader(f)}
    with open(root / "boxes.csv", newline="") as f:
        box_rows = {
            r["file"]: tuple(int(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            for r in csv.DictReader(f)
        }
    names = list(rows)
    images, masks = [], []
    for file in names:
        rgb = np.asarray(Image.open(root / file).convert("RGB"), dtype=np.float32) / 255
        images.append(rgb.transpose(2, 0, 1))
        masks.append(np.asarray(Image.open(root / "masks" / f"{Path(file).stem}.png")) > 0)
    return SyntheticBatch(
        images=torch.from_numpy(np.stack(images)),
        labels=torch.tensor([rows[f] for f in names], dtype=torch.long),
        masks=torch.from_numpy(np.stack(masks))[:, None],
        boxes=torch.tensor([box_rows[f] for f in names], dtype=torch.long),
        names=[Path(f).stem for f in names],
    )
