"""Run the model-zoo contract (:mod:`test_zoo`) in its side venv (torch 2.14 + torchvision 0.29
+ timm + transformers + pytorch-grad-cam, built by :mod:`_venv` on first use: about 6 GB and a
few minutes). Skips, saying why, when the venv cannot be built (no package registry).

Run with ``pytest -m zoo tests/zoo -rs`` (``.ci/run`` does); the side run's report is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _venv import REPO, SideVenvError, zoo_python  # noqa: E402

pytestmark = pytest.mark.zoo


def test_zoo_contract_in_the_side_venv():
    try:
        python = zoo_python()
    except SideVenvError as exc:
        pytest.skip(f"zoo side venv unavailable: {exc}")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONWARNINGS": "ignore"}
    env.pop("VIRTUAL_ENV", None)
    test = Path(__file__).resolve().with_name("test_zoo.py")
    cmd = [str(python), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "zoo"]
    proc = subprocess.run(
        [*cmd, str(test)], cwd=REPO, env=env, capture_output=True, text=True, timeout=3600
    )
    print(proc.stdout[-6000:], proc.stderr[-2000:])
    assert proc.returncode == 0, f"the zoo contract failed:\n{proc.stdout[-4000:]}"
