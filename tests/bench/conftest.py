"""A tiny benchmark for the bench tests: region-model images (32x32) written to a folder."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmask.bench import Store, load_plan, open_dataset, run
from unmask.testing import region_box, region_images

SRC = str(Path(__file__).resolve().parents[2] / "src")

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


def _units(path: Path) -> int:
    if not path.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM units").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def _start(config: Path, store: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unmask.cli",
            "bench",
            "run",
            str(config),
            "--store",
            str(store),
            "--no-progress",
            "--threads",
            "1",
            "--allow-code",  # the tiny config's model is unmask.testing:region_model
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _kill_and_resume(config: Path, tmp_path: Path, kills: tuple[int, ...]) -> tuple[Store, Store]:
    """SIGKILL ``unmask bench run CONFIG`` once ``kills[i]`` units are stored, restart it each
    time, let the last start finish; returns (the resumed store, an uninterrupted run's)."""
    plan = load_plan(config, allow_code=True)
    files = len(open_dataset(plan.data["path"]).items)
    total = files * len(plan.methods)
    reference = tmp_path / "reference.sqlite"
    run(plan, reference, progress=False, threads=1)

    store = tmp_path / "killed.sqlite"
    for after in kills:  # kill once this many units are stored
        proc = _start(config, store)
        deadline = time.monotonic() + 120
        while _units(store) < after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"the run ended before the kill: {proc.communicate()[1].decode()}"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert after <= _units(store) < total
    proc = _start(config, store)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    got, want = Store.open(store), Store.open(reference)
    assert got.dump() == want.dump()  # same rows, same values, same maps (bytes)
    assert len(got.units()) == total  # no gaps (primary keys: no duplicates)
    assert len(got.sessions()) == len(kills) + 1
    return got, want


@pytest.fixture(scope="session")
def kill_and_resume():
    """``kill_and_resume(config, tmp_path, kills)``: SIGKILL ``unmask bench run`` after each
    number of stored units in ``kills``, restart, finish; asserts the store equals an
    uninterrupted run's row for row and returns (resumed store, reference store)."""
    return _kill_and_resume
