"""benchmarks/_sidevenv.py: the JSON-lines protocol between run.py and a peer's server, and the
remembered failure of a side-venv build (no venv is built here)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _sidevenv  # noqa: E402

SCRIPT = """
from _sidevenv import serve
print("noise on stdout")  # must not break the protocol

def handle(req):
    if req["op"] == "boom":
        raise RuntimeError("peer failed")
    if req["op"] == "exit":
        raise SystemExit(3)
    return {"twice": 2 * req["value"]}

serve(handle, ready={"version": "1"})
"""


def test_server_round_trip_and_errors(tmp_path):
    script = tmp_path / "peer.py"
    script.write_text(SCRIPT)
    with _sidevenv.Server(sys.executable, script) as server:
        assert server.ready == {"version": "1"}
        assert server.call({"op": "x", "value": 21}) == {"twice": 42}
        with pytest.raises(_sidevenv.SideVenvError, match="RuntimeError: peer failed"):
            server.call({"op": "boom"})
        assert server.call({"op": "x", "value": 1}) == {"twice": 2}  # still serving
        with pytest.raises(_sidevenv.SideVenvError, match="exited"):
            server.call({"op": "exit"})


def test_a_failed_build_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("UNMASK_SIDEVENV_DIR", str(tmp_path))
    calls = []

    def failing_build(venv, reqs, no_deps, deadline):
        calls.append(reqs)
        raise _sidevenv.SideVenvError("pip said no")

    monkeypatch.setattr(_sidevenv, "_build", failing_build)
    for _ in range(2):
        with pytest.raises(_sidevenv.SideVenvError, match="pip said no"):
            _sidevenv.ensure_venv("peer", ["somepeer==1.0"], log=lambda s: None)
    assert len(calls) == 1  # the second call did not retry
    assert calls[0][0] == _sidevenv.TORCH and calls[0][-1] == "somepeer==1.0"
    failed = json.loads((tmp_path / ".peer.failed.json").read_text())
    assert failed["reason"] == "pip said no" and failed["time"] <= time.time()
    with pytest.raises(_sidevenv.SideVenvError):
        _sidevenv.ensure_venv("peer", ["somepeer==1.0"], retry_after=0, log=lambda s: None)
    assert len(calls) == 2  # retry_after=0 retries
