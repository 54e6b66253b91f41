"""unmask: explain image classifiers by removing what they see, and measure whether the
explanations are true."""

# Every registry is filled here, explicitly: importing ``unmask`` (which any ``import unmask.x``
# does first) imports each module that registers into one, so METHODS, METRICS, REMOVALS and
# the models of load_model are complete whatever is imported next (tests/test_imports.py).
from . import explainers, metrics, removal  # METHODS, METRICS, REMOVALS
from .api import explain, explain_each, list_methods, make_explainer
from .datasets import cnn as _cnn  # noqa: F401  (the model "synthetic_cnn")
from .explanation import Explanation
from .images import example_image, load_image
from .model_specs import make_model
from .models import Classifier, list_models, load_model
from .registry import METHODS
from .scoring import Scorer

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
