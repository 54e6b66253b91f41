"""A tiny benchmark for the bench tests: region-model images (32x32) written to a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmask.testing import region_box, region_images

#: Fast method / metric settings for 32x32 images (like tests/explainers/test_contract.py FAST).
TINY_TOML = """
name = "tiny"

[model]
name = "unmask.testing:region_model"
size = 32

[data]
path = "data"

[[methods]]
method = "occlusion"
params = {{ patch_size = 8, stride = 4, batch_size = 64 }}

[[methods]]
method = "rise"
params = {{ masks = 100, s = 5, batch_size = 100 }}
seeds = [0, 1]
{extra_methods}
[[metrics]]
metric = "deletion"
params = {{ max_steps = 8, batch_size = 64 }}

[[metrics]]
metric = "pointing_game"
params = {{ tolerance = 0 }}

[[metrics]]
metric = "localisation_error"
{extra_metrics}
"""


def write_images(root: Path, n: int, bad: int | None = None, seed: int = 0) -> list[str]:
    """``n`` region images as PNG with labels.csv and boxes.csv; image ``bad`` is unreadable."""
    root.mkdir(parents=True, exist_ok=True)
    x = region_images(n, 32, seed=seed)
    top, left, bottom, right = region_box(32, 32)
    files = []
    for i in range(n):
        name = f"img{i:02d}.png"
        if i == bad:
            (root / name).write_bytes(b"this is not a PNG")
        else:
            arr = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(root / name)
        files.append(name)
    (root / "labels.csv").write_text(
        "file,class_index,name\n" + "".join(f"{f},1,red box\n" for f in files)
    )
    (root / "boxes.csv").write_text(
        "file,xmin,ymin,xmax,ymax\n"
        + "".join(f"{f},{left},{top},{right},{bottom}\n" for f in files)
    )
    return files


def write_config(folder: Path, extra_methods: str = "", extra_metrics: str = "") -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY_TOML.format(extra_methods=extra_methods, extra_metrics=extra_metrics))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A config file tiny.toml beside data/ (6 images, the 4th unreadable)."""
    write_images(tmp_path / "data", 6, bad=3)
    return write_config(tmp_path)


@pytest.fixture(scope="session")
def bench_files():
    """The helpers above, for tests that build their own data set: (write_images, write_config)."""
    return write_images, write_config
