"""A side virtual environment with quantus 0.6.0, built on first use, for reference runs.

quantus 0.6.0 depends on ``opencv-python``, a second OpenCV build that would replace the
``opencv-python-headless`` unmask uses, so it is never installed beside unmask: the reference
tests and ``benchmarks/quantus_metrics.py`` build this venv themselves and talk to a side
process (:mod:`quantus_side`) through files. No unmask code runs there: the model goes over as a
``torch.export`` program, the inputs, maps and pre-drawn noise as an ``.npz``.

The venv lives in ``$UNMASK_QUANTUS_VENV`` or ``<repo>/.cache/quantus-0.6.0`` (git-ignored). It is
reused when its marker file records the same packages; otherwise it is built anew (in a
temporary folder renamed into place, under a lock, so two runs never see half a venv).
:class:`SideVenvUnavailable` is raised, with pip's last lines, when it cannot be built (no
registry, no disk): callers turn it into a skip.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGES",
    "SideVenvUnavailable",
    "side_python",
    "venv_dir",
    "SIDE_SCRIPT",
    "export_model",
    "QuantusSide",
]

#: What the side venv holds. torch 2.13.0 is the CPU build pip takes from this machine's disk;
#: quantus 0.6.0 calls ``np.trapz``, which NumPy 2.4 removed.
PACKAGES = ("torch==2.13.0", "quantus==0.6.0", "numpy<2.4")

REPO = Path(__file__).resolve().parents[2]
SIDE_SCRIPT = Path(__file__).resolve().with_name("quantus_side.py")
MARKER = "unmask-side-venv.json"


class SideVenvUnavailable(RuntimeError):
    """The side venv could not be built (the message says why)."""


def venv_dir() -> Path:
    """Where the side venv is (``$UNMASK_QUANTUS_VENV`` or ``<repo>/.cache/quantus-0.6.0``)."""
    env = os.environ.get("UNMASK_QUANTUS_VENV")
    return Path(env) if env else REPO / ".cache" / "quantus-0.6.0"


def _complete(path: Path) -> bool:
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("packages") == list(PACKAGES) and (path / "bin" / "python").exists()


def _run(cmd: list[str], log: list[str]) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    env.pop("PYTHONPATH", None)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    log.append(p.stdout + p.stderr)
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-8:])
        raise SideVenvUnavailable(f"{' '.join(cmd[:4])} ... failed ({p.returncode}):\n{tail}")


def side_python() -> Path:
    """The side venv's python, building the venv first if needed.

    Raises:
        SideVenvUnavailable: the venv could not be built (e.g. the package registry is not
            reachable); the message ends with pip's last lines.
    """
    path = venv_dir()
    if _complete(path):
        return path / "bin" / "python"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(path):
            return path / "bin" / "python"
        build = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        log: list[str] = []
        try:
            base = getattr(sys, "_base_executable", sys.executable)
            _run([base, "-m", "venv", str(build)], log)
            _run([str(build / "bin" / "python"), "-m", "pip", "install", "--quiet", *PACKAGES], log)
            _run([str(build / "bin" / "python"), "-c", "import quantus, torch"], log)
            (build / MARKER).write_text(json.dumps({"packages": list(PACKAGES)}))
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        # the venv is relocatable for ``python -m ...`` (all that is used; bin/pip's shebang
        # keeps the build folder's name)
        if path.exists():
            shutil.rmtree(path)
        build.rename(path)
    return path / "bin" / "python"


def export_model(model: Any, example: Any, path: Path) -> Path:
    """Save ``model`` (an nn.Module, e.g. an unmask Classifier) as a ``torch.export`` program
    with a dynamic batch dimension, for the side process. Returns ``path``."""
    import torch

    if example.shape[0] < 2:  # a batch of 1 would specialise the batch dimension
        example = example.expand(2, *example.shape[1:])
    program = torch.export.export(
        model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},)
    )
    torch.export.save(program, str(path))
    return path


class QuantusSide:
    """A side process running :mod:`quantus_side` in the side venv (a context manager).

    Example (not run: it builds the venv)::

        with QuantusSide() as q:
            reply = q.run("in.npz", "model.pt2", [{"name": "pf", "metric": "PixelFlipping"}])
    """

    def __init__(self, threads: int = 1) -> None:
        python = side_python()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            PYTHONWARNINGS="ignore",
            MPLBACKEND="Agg",
        )
        self.threads = threads
        self._err = tempfile.TemporaryFile(mode="w+")  # a file: a full pipe would block
        self.process = subprocess.Popen(
            [str(python), str(SIDE_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=env,
        )

    def run(self, data: Path | str, model: Path | str, cases: list[dict], repeats: int = 1) -> dict:
        """Run ``cases`` (see :mod:`quantus_side`) on the arrays of ``data``; the reply dict."""
        request = {
            "data": str(data),
            "model": str(model),
            "cases": cases,
            "repeats": repeats,
            "threads": self.threads,
        }
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=30)
            self._err.seek(0)
            err = self._err.read()
            raise RuntimeError("the quantus side process ended:\n" + err[-3000:])
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._err.close()

    def __enter__(self) -> QuantusSide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
