"""Data-set loaders: labels.csv (class sets too), ImageFolder, boxes CSV / Pascal VOC / mask
PNGs, resized and cropped with the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unmask.bench import open_dataset


def _image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (10, 200, 30)).save(path)


def test_labels_csv_boxes_and_masks_follow_the_crop(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", 40, 20)  # landscape: resize to 32 high (64 wide), crop 16 each side
    _image(tmp_path / "sub" / "b.png", 20, 20)
    (tmp_path / "labels.csv").write_text("file,class_index,name\na.png,3,x\nsub/b.png,1;4,y\n")
    (tmp_path / "boxes.csv").write_text("file,xmin,ymin,xmax,ymax\na.png,10,0,20,10\n")
    mask = np.zeros((20, 20), np.uint8)
    mask[5:10, 0:4] = 255
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    Image.fromarray(mask).save(tmp_path / "masks" / "sub" / "b.png")
    ds = open_dataset(tmp_path)
    assert [(i.file, i.label) for i in ds.items] == [("a.png", 3), ("sub/b.png", (1, 4))]
    a = ds.load(ds.items[0], 32)
    assert a.x.shape == (1, 3, 32, 32)
    # x: 10..20 -> 16..32 at scale 1.6, minus the 16 px crop offset -> 0..16; y: 0..16
    torch.testing.assert_close(a.boxes, torch.tensor([[0.0, 0.0, 16.0, 16.0]], dtype=torch.float64))
    b = ds.load(ds.items[1], 40)
    assert b.boxes is None and b.mask.shape == (1, 1, 40, 40)
    assert b.mask[0, 0, 10:20, 0:8].all() and int(b.mask.sum()) == 80


def test_imagefolder_and_voc(tmp_path: Path) -> None:
    _image(tmp_path / "dog" / "1.jpg", 16, 16)
    _image(tmp_path / "cat" / "2.jpg", 16, 16)
    (tmp_path / "annotations" / "dog").mkdir(parents=True)
    (tmp_path / "annotations" / "dog" / "1.xml").write_text(
        "<annotation><object><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>8</xmax><ymax>9</ymax>"
        "</bndbox></object></annotation>"
    )
    ds = open_dataset(tmp_path)
    assert ds.kind == "imagefolder" and ds.class_names == ["cat", "dog"]
    assert [(i.file, i.label) for i in ds.items] == [("cat/2.jpg", 0), ("dog/1.jpg", 1)]
    assert ds.items[1].boxes == ((2.0, 3.0, 8.0, 9.0),)  # 1-based inclusive -> 0-based exclusive


@pytest.mark.parametrize(
    "labels,boxes,match",
    [
        ("file,label\na.png,1\n", None, "missing class_index"),
        ("file,class_index\na.png,x\n", None, "class_index: expected an integer"),
        ("file,class_index\na.png,1\na.png,2\n", None, "listed twice"),
        ("file,class_index\na.png,1\n", "file,xmin,ymin,xmax,ymax\na.png,5,0,5,3\n", "xmax > xmin"),
        (
            "file,class_index\na.png,1\n",
            "file,xmin,ymin,xmax,ymax\nz.png,0,0,5,3\n",
            "not in the data set",
        ),
        # malformed rows: more cells than the header (was an AttributeError), a NUL byte
        ("file,class_index\na.png,1,extra,more\n", None, "line 2: expected at most 2 cells"),
        ("file,class_index\na.png,1\n", "file,xmin,ymin,xmax,ymax\na.png,0,0,5,3,9\n", "line 2"),
        ("file,class_index\na.png,1\x00\n", None, "line 2"),
        ("file,class_index\na.png,true\n", None, "class_index: expected an integer"),
    ],
)
def test_bad_annotations(tmp_path: Path, labels, boxes, match) -> None:
    _image(tmp_path / "a.png", 8, 8)
    (tmp_path / "labels.csv").write_text(labels)
    if boxes:
        (tmp_path / "boxes.csv").write_text(boxes)
    with pytest.raises(ValueError, match=match):
        open_dataset(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data.path: no such directory"):
        open_dataset(tmp_path / "nope")
