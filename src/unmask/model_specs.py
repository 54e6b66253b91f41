"""One grammar for naming a model: ``make_model(spec)``, as ``make_removal`` is for removals.

A spec is a base, optionally followed by ``:KEY=VALUE,...`` options::

    "efficientnet_lite0"                       a loadable model (unmask.list_models())
    "efficientnet_lite0:weights=ft.pt"         ... with its options: weights, device, execution
    "tv:resnet50:weights=resnet50.pth"         a torchvision architecture (weights required)
    "unmask.testing:region_model"              module:function, a function returning a Classifier
    "unmask.testing:region_model:device=cpu"

The command line (``--model``), the bench (``[model] name``), the explorer (``unmask serve
--model``) and the Ray workers read models through it, so a model that one of them loads, the
others load the same way. A Classifier given instead of a spec is returned as it is.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import models  # models.load_model looked up at call time (tests substitute it)
from ._trust import names_function
from .models import Classifier
from .removal.specs import parse_spec

__all__ = ["make_model", "parse_model_spec", "MODEL_OPTIONS"]

#: The options a spec may carry (and :func:`make_model` may take as keywords).
MODEL_OPTIONS = ("weights", "device", "execution")


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split a model spec into its base and its options.

    Example:
        >>> parse_model_spec("tv:resnet50:weights=r.pth,device=cpu")
        ('tv:resnet50', {'weights': 'r.pth', 'device': 'cpu'})
        >>> parse_model_spec("efficientnet_lite0")
        ('efficientnet_lite0', {})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(f"model: expected a model spec (a non-empty str), got {spec!r}")
    base, sep, tail = spec.strip().rpartition(":")
    if not sep or "=" not in tail:
        return spec.strip(), {}
    _, args, options = parse_spec("model:" + tail)
    if args:
        raise ValueError(f"model: options are KEY=VALUE, got {tail!r} in {spec!r}")
    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise ValueError(
            f"model: unknown option {unknown[0]!r} in {spec!r}; expected {', '.join(MODEL_OPTIONS)}"
        )
    return base, {k: str(v) if k == "weights" else v for k, v in options.items()}


def make_model(spec: str | Classifier, **options: Any) -> Classifier:
    """The model a spec names, loaded offline in eval mode.

    Args:
        spec: a spec (see the module docs) or a :class:`Classifier` (returned as it is).
        **options: ``weights``, ``device``, ``execution`` (those of :func:`unmask.load_model`);
            None leaves the spec's (or the default) value. They override the spec's.

    Example:
        >>> make_model("unmask.testing:region_model").name
        'region'
    """
    if isinstance(spec, Classifier):
        return spec
    base, parsed = parse_model_spec(spec)
    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise TypeError(f"make_model: unknown option {unknown[0]!r}")
    given = {**parsed, **{k: v for k, v in options.items() if v is not None}}
    if not names_function(base):
        return models.load_model(base, **given)
    if "weights" in given or "execution" in given:
        raise ValueError(f"model: {base!r} is a function; it takes no weights or execution option")
    module, _, attr = base.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model: cannot import {base!r} ({exc})") from None
    model = factory()
    if not isinstance(model, Classifier):
        raise TypeError(
            f"model: {base!r} returned a {type(model).__name__}, expected an unmask.Classifier"
        )
    return model.to(given.get("device", "cpu")).eval()
