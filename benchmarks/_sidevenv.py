"""Side environments for benchmark peers that cannot share the project's environment.

Some peers pin versions the project's environment does not have (xaitk-saliency pins
``setuptools<82`` and pulls the smqtk packages; quantus pulls the non-headless OpenCV). The
benchmark builds a virtual environment for such a peer itself, once, in a cache directory, and
runs the peer there in a long-lived subprocess that the benchmark calls between its own runs
(interleaved); the subprocess times itself, so the pipe costs nothing in the timings.

Standard library only: this module is imported by the benchmark (project environment) *and* by
the peer's script inside the side environment.

Benchmark side::

    from _sidevenv import SideVenvError, ensure_venv, Server

    try:
        python = ensure_venv("xaitk", ["xaitk-saliency==0.15.0"])
    except SideVenvError as exc:
        skipped["xaitk-saliency"] = f"side environment not built: {exc}"
    else:
        server = Server(python, ROOT / "benchmarks" / "_peer_xaitk.py", ["--threads", "2"])
        reply = server.call({"op": "rise", "masks": 500})  # a dict, from one JSON line
        server.close()

Peer side (the script ``Server`` starts)::

    from _sidevenv import serve

    def handle(request: dict) -> dict:
        ...                            # run once, time it, return JSON-able results
    serve(handle, ready={"versions": {...}})

The environment (``ensure_venv``): ``python -m venv`` in ``cache_dir()/name``
(``$UNMASK_SIDEVENV_DIR``, else ``$XDG_CACHE_HOME/unmask/sidevenv``, else
``~/.cache/unmask/sidevenv``), then one
``pip install torch==2.13.0 <the project's core dependencies from pyproject.toml>
<requirements>`` (on this machine pip takes torch from the wheel on disk) and
``pip install --no-deps <no_deps>``. The project itself is not installed: the server gets
``PYTHONPATH=<repo>/src:<repo>/benchmarks``, so ``import unmask`` is the checkout's. A stamp file
records what was installed; the venv is rebuilt when the requirements change, and a failed build
is remembered (with its reason) for ``retry_after`` seconds so that every benchmark run does not
retry a build that cannot succeed. A lock (``fcntl.flock``) keeps two benchmarks from building
the same venv at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SideVenvError", "cache_dir", "ensure_venv", "Server", "serve", "TORCH"]

ROOT = Path(__file__).resolve().parents[1]
#: The torch of the side environments: the release on this machine's disk (the project's pin).
TORCH = "torch==2.13.0"


class SideVenvError(RuntimeError):
    """The side environment cannot be built or its server failed; ``str()`` says why."""


def cache_dir() -> Path:
    """Where side environments live (created on demand)."""
    env = os.environ.get("UNMASK_SIDEVENV_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unmask" / "sidevenv"


def core_requirements(torch: str = TORCH) -> list[str]:
    """The project's core dependencies (pyproject.toml), torch pinned to ``torch``."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [torch] + [d for d in deps if not d.replace(" ", "").startswith("torch")]


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(
    name: str,
    requirements: Sequence[str],
    no_deps: Sequence[str] = (),
    *,
    torch: str = TORCH,
    root: Path | None = None,
    timeout: float = 1800.0,
    retry_after: float = 6 * 3600.0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The python of side environment ``name`` with ``requirements``, built if needed.

    Args:
        name: a directory name under :func:`cache_dir`.
        requirements: pip requirement strings installed with their dependencies, beside torch
            and the project's core dependencies.
        no_deps: requirement strings installed with ``--no-deps`` afterwards.
        torch: the torch requirement (default :data:`TORCH`, the release on this machine's
            disk; another one pulls a multi-gigabyte build from the registry).
        root: the directory of the environments (default :func:`cache_dir`).
        timeout: seconds allowed for the whole build.
        retry_after: seconds during which a failed build is not retried (its reason is
            raised again); 0 retries every time.
        log: called with progress lines (default: print to stderr).

    Raises:
        SideVenvError: the build failed (pip's last lines) or failed recently.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    venv = (root or cache_dir()) / name
    reqs = core_requirements(torch) + list(requirements)
    spec = {"requirements": reqs, "no_deps": list(no_deps), "base": sys.version.split()[0]}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    stamp, failed = venv / ".unmask-stamp.json", venv.parent / f".{name}.failed.json"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and json.loads(stamp.read_text()).get("digest") == digest:
            return _python(venv)
        if failed.is_file():
            info = json.loads(failed.read_text())
            if info.get("digest") == digest and time.time() - info["time"] < retry_after:
                raise SideVenvError(
                    f"{info['reason']} (build failed at "
                    f"{time.strftime('%H:%M', time.localtime(info['time']))}; "
                    f"delete {failed} to retry now)"
                )
        start = time.perf_counter()
        log(f"building side environment {venv} (once; up to {timeout / 60:.0f} min) ...")
        try:
            _build(venv, reqs, list(no_deps), start + timeout)
        except SideVenvError as exc:
            failed.write_text(
                json.dumps({"digest": digest, "time": time.time(), "reason": str(exc)})
            )
            raise
        failed.unlink(missing_ok=True)
        stamp.write_text(
            json.dumps({"digest": digest, **spec, "built_s": time.perf_counter() - start})
        )
        log(f"side environment {name} built in {time.perf_counter() - start:.0f} s")
        return _python(venv)


def _build(venv: Path, reqs: list[str], no_deps: list[str], deadline: float) -> None:
    def run(cmd: list[str]) -> None:
        left = deadline - time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(left, 1.0))
        except subprocess.TimeoutExpired:
            raise SideVenvError(f"timed out: {' '.join(cmd[:6])} ...") from None
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise SideVenvError(f"{' '.join(cmd[2:5])} ... failed: {tail[-400:]}")

    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", "--clear", str(venv)])
    pip = [str(_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run(pip + reqs)
    if no_deps:
        run(pip + ["--no-deps"] + no_deps)


class Server:
    """A peer script running in a side environment, called with one JSON request at a time.

    Starts ``python script *args`` with ``PYTHONPATH=<repo>/src:<repo>/benchmarks`` and waits for
    its ready line (:attr:`ready`, the dict the script passed to :func:`serve`).

    Raises:
        SideVenvError: the script exited or answered with an error.
    """

    def __init__(
        self,
        python: str | Path,
        script: str | Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])
        full_env = {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore", **(env or {})}
        full_env.pop("VIRTUAL_ENV", None)
        self.proc = subprocess.Popen(
            [str(python), str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                self.proc.wait()
                raise SideVenvError(
                    f"peer server exited ({self.proc.returncode}): "
                    f"{' | '.join(err.strip().splitlines()[-3:])[-400:]}"
                )
            if line.startswith("@@ "):  # protocol lines; anything else the peer printed is noise
                reply = json.loads(line[3:])
                if "error" in reply:
                    raise SideVenvError(f"peer server: {reply['error']}")
                return reply

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return the script's reply."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    handle: Callable[[dict[str, Any]], dict[str, Any]], ready: dict[str, Any] | None = None
) -> None:
    """The peer side: answer JSON requests from stdin with ``handle`` until stdin closes.

    Replies are written as ``@@ <json>`` lines on stdout (other output is ignored by
    :class:`Server`); an exception becomes ``{"error": "..."}``.
    """
    out = sys.stdout

    def send(obj: dict[str, Any]) -> None:
        out.write("@@ " + json.dumps(obj) + "\n")
        out.flush()

    sys.stdout = sys.stderr  # a peer's prints must not mix with the protocol
    send(ready or {})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            send(handle(json.loads(line)))
        except Exception as exc:  # the benchmark reports it and skips the peer
            send({"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
