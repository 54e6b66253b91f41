"""unmask: explain image classifiers by removing what they see, and measure whether the
explanations are true."""

from . import removal
from .api import explain, explain_each, list_methods, make_explainer
from .explanation import Explanation
from .images import example_image, load_image
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
    "removal",
]
