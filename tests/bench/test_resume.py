"""A benchmark killed (SIGKILL) at several points and restarted stores what an uninterrupted
run stores, row for row: equal values, no duplicates, no gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from unmask.bench import Store, load_plan, run


def test_sigkill_and_resume_equals_uninterrupted(
    tiny: Path, tmp_path: Path, kill_and_resume
) -> None:
    got, _ = kill_and_resume(tiny, tmp_path, (1, 5, 10))
    status = got.status()
    assert all(s == {"done": 5, "failed": 1, "pending": 0} for s in status.values())


def test_failed_image_recorded_and_retried(tiny: Path, tmp_path: Path) -> None:
    plan = load_plan(tiny, allow_code=True)
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
    plan = load_plan(tiny, allow_code=True)
    store = tmp_path / "run.sqlite"
    first = run(plan, store, progress=False, limit=limit)
    assert first.written == limit * len(plan.methods)
    status = Store.open(store).status()
    assert all(s["pending"] == 6 - limit for s in status.values())
    rest = run(plan, store, progress=False)
    assert rest.skipped == first.written and rest.written == (6 - limit) * len(plan.methods)
