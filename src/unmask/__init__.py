"""unmask: explain image classifiers by removing what they see, and measure whether the
explanations are true.

The public names load on first use (PEP 562), so that ``unmask --help``, ``--version`` and the
command line's argument errors answer without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "Explanation",
    "METHODS",
    "Scorer",
    "example_image",
    "explain",
    "explain_each",
    "list_methods",
    "list_models",
    "load_image",
    "load_model",
    "make_explainer",
    "make_model",
    "explainers",
    "metrics",
    "removal",
]

#: Where each public name lives (a module of this package).
_HOMES = {
    "Classifier": "models",
    "Explanation": "explanation",
    "METHODS": "registry",
    "Scorer": "scoring",
    "example_image": "images",
    "explain": "api",
    "explain_each": "api",
    "list_methods": "api",
    "list_models": "models",
    "load_image": "images",
    "load_model": "models",
    "make_explainer": "api",
    "make_model": "model_specs",
}

if TYPE_CHECKING:
    from . import explainers, metrics, removal
    from .api import explain, explain_each, list_methods, make_explainer
    from .explanation import Explanation
    from .images import example_image, load_image
    from .model_specs import make_model
    from .models import Classifier, list_models, load_model
    from .registry import METHODS
    from .scoring import Scorer


def __getattr__(name: str) -> Any:
    if name in ("removal", "explainers", "metrics"):
        return importlib.import_module(f".{name}", __name__)
    if name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
