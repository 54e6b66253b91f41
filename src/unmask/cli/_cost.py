"""What a long command will cost, printed before it starts: model evaluations and a time.

``explain``, ``evaluate``, ``cwox`` and ``bench run`` print one line to stderr (stdout stays
clean for ``--json``): the model evaluations per image of each method and metric, their total,
and an estimate of the time on this machine from the model's own speed: its scoring path in
the engine the job runs (timed after the engine policy chose it, so an ONNX graph exported for
the job is what is timed), at the job's batch size, by :func:`unmask.timing.scoring_seconds`
(measured once per model, engine, size, batch and thread count, and kept: in this process, and
in ``UNMASK_CACHE_DIR`` when it is set, so that a later run's start-up pays no forward pass).
The estimate counts forward passes; methods that also differentiate (mask optimisations,
gradients) take about three times as long per evaluation, and the line says so.

:func:`evaluations` is the one place the command line reads a method's or metric's evaluation
count from: the registry's per-entry cost declaration (:meth:`unmask.registry.Entry.cost`), the
same the explorer bounds requests with.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["evaluations", "announce"]


def evaluations(entry: Any, params: dict[str, Any], size: int, model: Any = None) -> int | None:
    """Model evaluations per image of a registered method or metric with ``params`` at
    ``size``×``size``: the registry's declared cost (:meth:`unmask.registry.Entry.cost`); 0 for
    an object that never calls the model, None where the cost needs a model not given."""
    if entry.cost_formula is None:
        return 0
    if entry.cost_needs_model and model is None:
        return None
    return int(entry.cost({k: v for k, v in params.items() if k != "progress"}, size, model))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def announce(
    command: str,
    parts: list[tuple[str, int | None]],
    images: int,
    model: Any,
    size: int,
    batch: int = 16,
) -> None:
    """Print ``command``'s cost to stderr: ``parts`` are (what, evaluations per image or None);
    ``batch`` is the job's batch size (the time per image depends on it).

    Example line: ``explain: occlusion 169 model evaluations per image x 2 images = 338;
    about 3 s here (9 ms per forward at 224x224 in batches of 16 through onnx, measured here;
    methods that differentiate take ~3x longer)``.
    """
    known = [(what, n) for what, n in parts if n is not None]
    unknown = [what for what, n in parts if n is None]
    per_image = sum(n for _, n in known)
    if not per_image and not unknown:  # nothing to run (the method will say why)
        return
    text = ", ".join(f"{what} {n:,}" for what, n in known)
    line = f"{command}: {text or 'no known count'} model evaluations per image"
    if known:
        total = per_image * images
        line += f" x {images} image{'s' if images != 1 else ''} = {total:,}"
        from .. import timing

        per = timing.scoring_seconds(model, (3, size, size), batch)
        line += (
            f"; about {_duration(total * per)} here ({1000 * per:.0f} ms per forward at "
            f"{size}x{size} in batches of {batch} through {timing.scoring_engine(model)}, "
            "measured here; methods that differentiate take ~3x longer)"
        )
    if unknown:
        line += f" (cost not known for: {', '.join(unknown)})"
    print(line, file=sys.stderr, flush=True)
