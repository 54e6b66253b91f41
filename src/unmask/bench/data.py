"""Benchmark data sets: an image folder with ``labels.csv``, or an ImageFolder tree.

Layout (documented in ``docs/bench.md``; the synthetic generator writes the same)::

    <root>/labels.csv          file,class_index[,name,...]   (class sets: "3;7"; empty: no label)
    <root>/<image files>       paths relative to <root>
    <root>/boxes.csv           optional: file,xmin,ymin,xmax,ymax (pixels of the file, 0-based,
                               max exclusive; several rows per file = several boxes)
    <root>/masks/<stem>.png    optional: object mask, same size as the image, non-zero = object
    <root>/annotations/<stem>.xml  optional: Pascal VOC boxes (when boxes.csv is absent)

or ``<root>/<class name>/<image>`` (ImageFolder: classes are the sorted folder names), or a
flat folder of images without labels (then ``data.target = "top1"``).

Listing a data set reads only the CSV / XML files; images are read one at a time by
:meth:`Dataset.load`, so an unreadable image fails that image only.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..images import IMAGE_SUFFIXES

__all__ = ["Item", "Sample", "Dataset", "open_dataset", "KINDS"]

KINDS = ("auto", "csv", "imagefolder")


@dataclass(frozen=True)
class Item:
    """One entry of a data set (nothing read yet).

    Attributes:
        file: path relative to the root (the item's identity in the result store).
        label: a class index, a sorted tuple of classes (a set), or None.
        boxes: ground-truth boxes in pixels of the image file, (x_min, y_min, x_max, y_max), max
            exclusive; empty when there are none.
        mask: path of the object mask, or None.
    """

    file: str
    label: int | tuple[int, ...] | None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    mask: str | None = None


@dataclass
class Sample:
    """A loaded item: the image at the benchmark size and its annotations at the same size.

    Attributes:
        x: (1, 3, S, S) float in [0, 1].
        boxes: (N, 4) float64 boxes in pixels of ``x`` (None when the item has none).
        mask: (1, 1, S, S) bool object mask (None when the item has none).
    """

    item: Item
    x: Tensor
    boxes: Tensor | None = None
    mask: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _label(text: str, where: str) -> int | tuple[int, ...] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        classes = sorted({int(c) for c in text.split(";") if c.strip()})
    except ValueError:
        raise ValueError(
            f"{where}: class_index: expected an integer or integers joined by ';', got {text!r}"
        ) from None
    if any(c < 0 for c in classes):
        raise ValueError(f"{where}: class_index: expected classes >= 0, got {text!r}")
    return classes[0] if len(classes) == 1 else tuple(classes)


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header naming at least ``required``; a row with more
    cells than the header, or a file the csv module refuses, is one ValueError naming the line."""
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in required if c not in fields]
            if missing:
                raise ValueError(
                    f"{path}: expected the columns {', '.join(required)}; "
                    f"missing {', '.join(missing)} (header: {', '.join(fields) or 'none'})"
                )
            for row in reader:
                if None in row:  # csv.DictReader's key for the cells beyond the header
                    raise ValueError(
                        f"{path}, line {reader.line_num}: expected at most {len(fields)} "
                        f"cells ({', '.join(fields)}), got {len(fields) + len(row[None])}"
                    )
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 CSV file ({exc})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from None
    return rows


def _read_boxes_csv(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for n, row in enumerate(_read_csv(path, ("file", "xmin", "ymin", "xmax", "ymax")), start=2):
        try:
            box = tuple(float(row[c]) for c in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            raise ValueError(
                f"{path}, line {n}: expected numbers xmin,ymin,xmax,ymax, got "
                f"{[row[c] for c in ('xmin', 'ymin', 'xmax', 'ymax')]}"
            ) from None
        if not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(
                f"{path}, line {n}: expected xmax > xmin and ymax > ymin (max exclusive), "
                f"got {list(box)}"
            )
        out.setdefault(row["file"], []).append(box)  # type: ignore[arg-type]
    return out


def _read_voc(path: Path) -> list[tuple[float, float, float, float]]:
    """Boxes of a Pascal VOC annotation (1-based inclusive corners -> 0-based, max exclusive)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not a Pascal VOC XML file ({exc})") from None
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        try:
            x0, y0, x1, y1 = (float(bb.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            raise ValueError(f"{path}: a <bndbox> without numeric xmin/ymin/xmax/ymax") from None
        boxes.append((x0 - 1, y0 - 1, x1, y1))
    return boxes


def _mask_path(root: Path, file: str) -> str | None:
    rel = Path(file)
    candidate = root / "masks" / rel.parent / f"{rel.stem}.png"
    return str(candidate.relative_to(root)) if candidate.is_file() else None


class Dataset:
    """A benchmark data set: an ordered list of :class:`Item` and a loader.

    Args:
        root: the data set's folder.
        items: its entries, in order.
        kind: ``"csv"`` or ``"imagefolder"``.
        class_names: ImageFolder class names (index = class), else None.
    """

    def __init__(
        self, root: Path, items: list[Item], kind: str, class_names: list[str] | None = None
    ) -> None:
        self.root, self.items, self.kind, self.class_names = root, items, kind, class_names

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_boxes(self) -> bool:
        return any(i.boxes or i.mask for i in self.items)

    def load(self, item: Item, size: int | None, fit: str = "crop") -> Sample:
        """Read ``item``'s image at ``size`` (``fit``: crop or resize) and its boxes / mask.

        Boxes and masks go through the same resize (and centre crop) as the image. Raises
        ValueError naming the file when the image or its mask cannot be read.
        """
        from ..images import load_image

        path = self.root / item.file
        try:
            full = load_image(path, size=None)
        except Exception as exc:  # PIL raises many kinds: report one line naming the file
            raise ValueError(
                f"{item.file}: cannot read the image ({type(exc).__name__}: {exc})"
            ) from None
        h, w = full.shape[-2:]
        x = full if size is None else load_image(path, size=size, mode=fit)
        sy, sx, oy, ox = _geometry(h, w, size, fit)
        boxes = None
        if item.boxes:
            b = torch.tensor(item.boxes, dtype=torch.float64)
            b[:, [0, 2]] = b[:, [0, 2]] * sx - ox
            b[:, [1, 3]] = b[:, [1, 3]] * sy - oy
            side_w, side_h = x.shape[-1], x.shape[-2]
            b[:, [0, 2]] = b[:, [0, 2]].clamp(0, side_w)
            b[:, [1, 3]] = b[:, [1, 3]].clamp(0, side_h)
            keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            boxes = b[keep] if bool(keep.any()) else None
        mask = None
        if item.mask:
            mask = self._load_mask(item, h, w, size, fit)
        return Sample(item, x, boxes, mask)

    def _load_mask(self, item: Item, h: int, w: int, size: int | None, fit: str) -> Tensor:
        from PIL import Image

        path = self.root / str(item.mask)
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L")) > 0
        except Exception as exc:
            raise ValueError(
                f"{item.mask}: cannot read the mask ({type(exc).__name__}: {exc})"
            ) from None
        if arr.shape != (h, w):
            raise ValueError(
                f"{item.mask}: expected a mask of the image's size {w}x{h}, "
                f"got {arr.shape[1]}x{arr.shape[0]}"
            )
        m = torch.from_numpy(arr)[None, None].float()
        if size is not None:
            sy, sx, oy, ox = _geometry(h, w, size, fit)
            out_hw = (round(h * sy), round(w * sx))
            m = torch.nn.functional.interpolate(m, size=out_hw, mode="nearest")
            m = m[..., int(oy) : int(oy) + size, int(ox) : int(ox) + size]
        return m > 0


def _geometry(h: int, w: int, size: int | None, fit: str) -> tuple[float, float, float, float]:
    """(scale_y, scale_x, offset_y, offset_x) of :func:`unmask.images.load_image`'s resize/crop."""
    if size is None:
        return 1.0, 1.0, 0.0, 0.0
    if fit == "resize":
        return size / h, size / w, 0.0, 0.0
    scale = size / min(h, w)
    out_h, out_w = max(size, round(h * scale)), max(size, round(w * scale))
    return out_h / h, out_w / w, float((out_h - size) // 2), float((out_w - size) // 2)


def open_dataset(path: str | Path, kind: str = "auto") -> Dataset:
    """List a data set folder (see the module docstring for the layouts).

    Args:
        path: the folder.
        kind: ``"csv"`` (labels.csv), ``"imagefolder"``, or ``"auto"`` (csv when labels.csv
            exists, else imagefolder).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (8, 8)).save(root / "a.png")
        >>> _ = (root / "labels.csv").write_text("file,class_index\\na.png,3\\n")
        >>> [(i.file, i.label) for i in open_dataset(root).items]
        [('a.png', 3)]
    """
    root = Path(path)
    if kind not in KINDS:
        raise ValueError(f"data.kind: unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"data.path: no such directory {str(root)!r}")
    if kind == "auto":
        kind = "csv" if (root / "labels.csv").is_file() else "imagefolder"
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    if (root / "boxes.csv").is_file():
        boxes = _read_boxes_csv(root / "boxes.csv")
    class_names = None
    if kind == "csv":
        labels = root / "labels.csv"
        if not labels.is_file():
            raise FileNotFoundError(f"data.path: no labels.csv in {str(root)!r}")
        rows = _read_csv(labels, ("file", "class_index"))
        entries: list[tuple[str, int | tuple[int, ...] | None]] = []
        seen: set[str] = set()
        for n, row in enumerate(rows, start=2):
            file = row["file"]
            if not file:
                raise ValueError(f"{labels}, line {n}: empty file name")
            if file in seen:
                raise ValueError(f"{labels}, line {n}: {file!r} is listed twice")
            seen.add(file)
            entries.append((file, _label(row.get("class_index", ""), f"{labels}, line {n}")))
    else:
        class_names = sorted(
            p.name for p in root.iterdir() if p.is_dir() and p.name not in ("masks", "annotations")
        )
        entries = []
        for c, name in enumerate(class_names):
            for p in sorted((root / name).rglob("*")):
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                    entries.append((str(p.relative_to(root)), c))
        if not class_names:  # a flat folder of images: no labels (data.target = "top1")
            class_names = None
            entries = [
                (p.name, None)
                for p in sorted(root.iterdir())
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            ]
    if not entries:
        raise ValueError(f"data.path: no images listed in {str(root)!r} ({kind} layout)")
    unknown = sorted(set(boxes) - {f for f, _ in entries})
    if unknown:
        raise ValueError(
            f"{root / 'boxes.csv'}: boxes for files that are not in the data set: "
            f"{', '.join(unknown[:3])}"
        )
    items = []
    for file, label in entries:
        b = boxes.get(file)
        if b is None and (root / "annotations").is_dir():
            xml = root / "annotations" / Path(file).parent / f"{Path(file).stem}.xml"
            b = _read_voc(xml) if xml.is_file() else None
        items.append(Item(file, label, tuple(b or ()), _mask_path(root, file)))
    return Dataset(root, items, kind, class_names)
