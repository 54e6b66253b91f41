"""A benchmark killed (SIGKILL) at several points and restarted stores what an uninterrupted
run stores, row for row: equal values, no duplicates, no gaps."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unmask.bench import Store, load_plan, run

SRC = str(Path(__file__).resolve().parents[2] / "src")


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
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_and_resume_equals_uninterrupted(tiny: Path, tmp_path: Path) -> None:
    plan = load_plan(tiny)
    total = 6 * len(plan.methods)
    reference = tmp_path / "reference.sqlite"
    run(plan, reference, progress=False, threads=1)

    store = tmp_path / "killed.sqlite"
    for after in (1, 5, 10):  # kill once this many units are stored
        proc = _start(tiny, store)
        deadline = time.monotonic() + 120
        while _units(store) < after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"the run ended before the kill: {proc.communicate()[1].decode()}"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert after <= _units(store) < total
    proc = _start(tiny, store)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()

    got, want = Store.open(store), Store.open(reference)
    assert got.dump() == want.dump()  # same rows, same values, same maps (bytes)
    assert len(got.units()) == total  # no gaps (primary keys: no duplicates)
    assert len(got.sessions()) == 4
    status = got.status()
    assert all(s == {"done": 5, "failed": 1, "pending": 0} for s in status.values())


def test_failed_image_recorded_and_retried(tiny: Path, tmp_path: Path) -> None:
    plan = load_plan(tiny)
    store = tmp_path / "run.sqlite"
    summary = run(plan, store, progress=False)
    assert summary.failed == len(plan.methods)  # img03.png, once per method run
    failed = [u for u in Store.open(store).units() if u["status"] == "failed"]
    assert {u["file"] for u in failed} == {"img03.png"}
    assert all("cannot read the image" in u["error"] for u in failed)
    # a second run recomputes nothing; --retry-failed retries the failed units only
    assert run(plan, store, progress=False).written == 0
    from PIL import Image

    Image.new("RGB", (32, 32), (240, 20, 20)).save(tiny.parent / "data" / "img03.png")
    again = run(plan, store, progress=False, retry_failed=True)
    assert again.written == len(plan.methods) and again.failed == 0
    assert all(s["done"] == 6 for s in Store.open(store).status().values())


@pytest.mark.parametrize("limit", [2])
def test_limit_then_full(tiny: Path, tmp_path: Path, limit: int) -> None:
    plan = load_plan(tiny)
    store = tmp_path / "run.sqlite"
    first = run(plan, store, progress=False, limit=limit)
    assert first.written == limit * len(plan.methods)
    status = Store.open(store).status()
    assert all(s["pending"] == 6 - limit for s in status.values())
    rest = run(plan, store, progress=False)
    assert rest.skipped == first.written and rest.written == (6 - limit) * len(plan.methods)
