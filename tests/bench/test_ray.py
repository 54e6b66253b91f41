"""The Ray executor: a local cluster of 2 workers stores what the local executor stores, and a
worker killed (SIGKILL) mid-run is restarted and its unit retried; the run completes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from unmask.bench import Store, load_plan, run

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "unmask[ray]")')

pytestmark = pytest.mark.ray


def test_ray_equals_local_and_survives_a_killed_worker(tiny: Path, tmp_path: Path) -> None:
    from unmask.bench.executors import RayExecutor

    plan = load_plan(tiny, allow_code=True)
    local = tmp_path / "local.sqlite"
    run(plan, local, progress=False, threads=1)

    # 2 workers on a local cluster; one worker process is SIGKILLed once the first unit is back
    ex = RayExecutor(workers=2)
    killed: list[int] = []

    def kill_once(unit) -> None:  # noqa: ANN001
        if not killed:
            killed.append(ex.pids[0])
            os.kill(ex.pids[0], signal.SIGKILL)

    distributed = tmp_path / "ray.sqlite"
    summary = run(plan, distributed, executor=ex, progress=False, threads=1, on_unit=kill_once)
    assert killed and summary.written == 6 * len(plan.methods)
    got, want = Store.open(distributed), Store.open(local)
    assert got.dump() == want.dump()  # same numbers and maps as the local executor
    assert got.sessions()[0]["executor"] == "ray"
