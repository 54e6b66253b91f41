"""Shared fixtures: a toy model with a known answer, the embedded model, the sample images."""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# Hermetic caches: exported ONNX graphs and measured batch sizes go to a folder of this test
# session, never to the user's cache (a graph prepared there would change which engine runs).
os.environ["UNMASK_CACHE_DIR"] = tempfile.mkdtemp(prefix="unmask-test-cache-")
atexit.register(shutil.rmtree, os.environ["UNMASK_CACHE_DIR"], ignore_errors=True)

# The engine policy exports the model for jobs of EXPORT_AFTER scoring evaluations or more
# (seconds each): only the tests of the policy (which set it) export; the rest run as given.
import unmask.onnx_engine  # noqa: E402

unmask.onnx_engine.EXPORT_AFTER = 10**12

# Tiny tensors run fastest (and do not fight other processes) on one thread; the real-model
# tests marked slow get up to two.
_THREADS = torch.get_num_threads()
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _threads_for_slow_tests(request):
    if request.node.get_closest_marker("slow") is None:
        yield
        return
    torch.set_num_threads(max(1, min(2, _THREADS)))
    try:
        yield
    finally:
        torch.set_num_threads(1)


SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


@pytest.fixture
def region_model():
    from unmask.testing import region_model

    return region_model()


@pytest.fixture
def region_images():
    from unmask.testing import region_images

    return region_images(batch=2, size=32)


@pytest.fixture(scope="session")
def real_model():
    """The embedded EfficientNet-Lite0 (loads in ~1 s, offline)."""
    import unmask

    return unmask.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def imagenet_samples() -> list[tuple[Path, int]]:
    """(path, class index) of the 100 ImageNet samples; skips when they are not beside the repo."""
    labels = SAMPLES / "labels.csv"
    if not labels.is_file():
        pytest.skip(f"ImageNet samples not found at {SAMPLES}")
    with labels.open() as f:
        return [(SAMPLES / row["file"], int(row["class_index"])) for row in csv.DictReader(f)]
