"""quantus 0.6.0 ``PixelFlipping`` as a peer of ``benchmarks/run.py`` (deletion curves).

quantus runs in the side venv of the reference tests (``tests/reference/_quantus_venv.py``), in a
side process started on the first call (so building the tasks costs nothing). The task: the
deletion curves (black, probabilities, the seed rule's steps at the map's resolution) of
``run.py``'s images and maps; quantus gets the maps upsampled to the image (nearest) and a
baseline of 0. quantus counts features over the channels of the broadcast map and needs
``features_in_step`` to divide H·W (224², not a multiple of 3), so it takes 3 steps per unmask
step (``features_in_step`` = the image pixels of one unmask step); every third point of its
curve is compared with unmask's curve (max absolute difference). The side process times its
own metric call (``{"wall_s": ...}``, as ``run.py``'s other side peers); it holds the model and
data from the warm-up call on.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "reference"
NAME = "quantus 0.6.0 PixelFlipping"

__all__ = ["NAME", "availability", "pixel_flipping_task"]


def pixel_flipping_task(
    model: Any, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, batch_size: int
) -> dict[str, Any]:
    """What ``run.py`` needs for a "pixel_flipping" task: unmask's run, the quantus peer and
    the comparison. Each run returns (output, images through the model)."""
    if str(REFERENCE) not in sys.path:
        sys.path.insert(0, str(REFERENCE))
    from unmask.metrics import deletion_curve

    b, _, height, width = images.shape
    grid = maps.shape[-2] * maps.shape[-1]
    steps = min(196, grid)  # the seed rule's default max_steps
    per_image_px = (height * width // grid) * (grid // steps)  # image pixels per unmask step
    state: dict[str, Any] = {}

    def run_unmask() -> tuple[Any, int]:
        c = deletion_curve(
            model, images, maps, targets, removal="black", score="prob", batch_size=batch_size
        )
        return c.scores[:, 1:], b * steps

    def start() -> None:
        from _quantus_venv import QuantusSide, export_model

        tmp = Path(tempfile.mkdtemp(prefix="unmask-quantus-peer-"))
        side = QuantusSide(threads=torch.get_num_threads())
        atexit.register(lambda: (side.close(), shutil.rmtree(tmp, ignore_errors=True)))
        big = F.interpolate(maps.float(), size=(height, width), mode="nearest")
        np.savez(tmp / "data.npz", x=images.numpy(), y=targets.numpy(), a=big.numpy())
        state.update(
            side=side,
            data=tmp / "data.npz",
            model=export_model(model, images[:1], tmp / "model.pt2"),
        )

    case = {
        "name": "pf",
        "metric": "PixelFlipping",
        "a": "a",
        "init": {
            "features_in_step": per_image_px,
            "perturb_baseline": 0.0,
            "normalise": False,
            "abs": False,
        },
        "call": {"channel_first": True, "softmax": True},
    }

    def run_quantus() -> tuple[Any, int, dict[str, Any]]:
        if not state:
            start()
        reply = state["side"].run(state["data"], state["model"], [case])
        return (
            torch.tensor(reply["values"]["pf"]),
            b * 3 * steps,
            {"wall_s": reply["seconds"]["pf"][0]},
        )

    def compare(ours: Any, theirs: Any) -> float:
        return float((torch.as_tensor(ours).double() - theirs.double()[:, 2::3]).abs().max())

    note = (
        f"deletion curves, black, {steps} steps (quantus: {3 * steps} steps of "
        f"{per_image_px} features, every third point compared; max absolute difference)"
    )
    return {
        "unmask": run_unmask,
        "peer": run_quantus,
        "compare": compare,
        "note": note,
        "settings": {"images": b, "map_size": maps.shape[-1], "steps": steps},
    }


def availability() -> str | None:
    """None when the side venv exists or can be built; else why not (for ``skipped``)."""
    if str(REFERENCE) not in sys.path:
        sys.path.insert(0, str(REFERENCE))
    from _quantus_venv import SideVenvUnavailable, side_python

    try:
        side_python()
    except SideVenvUnavailable as exc:
        return f"side venv not built: {str(exc)[:200]}"
    return None
