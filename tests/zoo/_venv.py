"""The model-zoo side environment: torch 2.14 + torchvision 0.29 + timm + transformers +
pytorch-grad-cam, beside unmask's core dependencies (about 6 GB, a few minutes to build once).

torchvision from the registry does not import beside the project's torch 2.13 CPU build, and
timm pulls torch 2.14, so the zoo contract (:mod:`test_zoo`) runs in its own venv, built by
``benchmarks/_sidevenv.py`` (the one home of side environments) under ``<repo>/.cache/`` (or
``$UNMASK_ZOO_VENV_DIR``). unmask itself is not installed there: the tests run with
``PYTHONPATH=<repo>/src``. Run ``python tests/zoo/_venv.py`` to build it and print its python.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from _sidevenv import SideVenvError, ensure_venv  # noqa: E402

__all__ = ["TORCH", "REQUIREMENTS", "NO_DEPS", "SideVenvError", "zoo_python"]

#: torch and the model zoos; grad-cam without its dependencies (it asks for the non-headless
#: opencv-python beside unmask's headless build), its own imports (ttach, scikit-learn) listed.
TORCH = "torch==2.14.*"
REQUIREMENTS = (
    "torchvision==0.29.*",
    "timm>=1.0",
    "transformers>=4.40",
    "pytest>=8",
    "ttach",
    "scikit-learn>=1.3",
)
NO_DEPS = ("grad-cam==1.5.*",)


def zoo_python() -> Path:
    """The zoo venv's python, built on first use.

    Raises:
        SideVenvError: it cannot be built (e.g. the package registry is unreachable); the
            message says why.
    """
    root = os.environ.get("UNMASK_ZOO_VENV_DIR")
    return ensure_venv(
        "zoo",
        REQUIREMENTS,
        NO_DEPS,
        torch=TORCH,
        root=Path(root) if root else REPO / ".cache",
        retry_after=0.0,
    )


if __name__ == "__main__":
    try:
        print(zoo_python())
    except SideVenvError as exc:
        print(f"zoo venv not built: {exc}", file=sys.stderr)
        sys.exit(1)
