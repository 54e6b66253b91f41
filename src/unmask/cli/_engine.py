"""The commands' engine policy: export the model to ONNX Runtime now only when the job repays it.

A command that knows how many images its job puts through the scoring path calls
:func:`choose_engine` once, before the job. With the model in ``"auto"`` (the default of
:func:`unmask.load_model`) it exports now when :func:`unmask.onnx_engine.engine_for` says the
job repays the export, and otherwise leaves ``"auto"`` to use a cached graph or channels_last,
with a one-line tip on stderr for jobs long enough to notice.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["choose_engine", "explainer_scoring_cost", "TIP_AFTER"]

#: Jobs of at least this many evaluations without a cached graph print the ``--prepare`` tip.
TIP_AFTER = 100


def choose_engine(model: Any, evaluations: int) -> str:
    """Export ``model`` now if a job of ``evaluations`` model evaluations repays it; returns
    the engine the job will use (``"onnx"``, ``"channels_last"``, or the model's explicit mode).
    """
    from ..onnx_engine import prepare_for

    if model.execution != "auto":
        return str(model.execution)
    engine = prepare_for(model, evaluations)
    if engine == "channels_last" and evaluations >= TIP_AFTER:
        print(
            f"unmask: tip: `unmask models --prepare {model.name}` exports the model to ONNX "
            "Runtime once; later runs score several times faster",
            file=sys.stderr,
        )
    return engine


def explainer_scoring_cost(explainer: Any, size: int, model: Any) -> int:
    """Model evaluations on the scoring path of one ``size`` x ``size`` image explained by a
    built explainer: its registry entry's :meth:`~unmask.registry.Entry.scoring_cost` at its
    spec; 0 for an explainer that is not registered."""
    from ..registry import METHODS, spec_of

    try:
        spec = spec_of(explainer, METHODS)
    except ValueError:  # not a registered method: nothing declared
        return 0
    return METHODS.get(spec.pop("method")).scoring_cost(spec, size, model)
