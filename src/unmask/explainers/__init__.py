"""Explanation methods, one per module; each registers itself in :data:`unmask.registry.METHODS`.

Every module of this package is imported here, so adding a method is adding a file; its class
is exported here too (``__all__`` holds every registered class: a test checks it).
"""

import importlib
import pkgutil

from ..registry import METHODS

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

# Every registered method's class.
from .attention import AttentionRelevance, AttentionRollout  # noqa: E402
from .cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM  # noqa: E402
from .extremal import ExtremalPerturbation  # noqa: E402
from .fido import FIDO  # noqa: E402
from .gradient import Gradient, InputXGradient, IntegratedGradients, SmoothGrad  # noqa: E402
from .lime import Lime  # noqa: E402
from .mp import MeaningfulPerturbation  # noqa: E402
from .mp2 import MP2  # noqa: E402
from .mwp import MWP, ContrastiveMWP  # noqa: E402
from .occlusion import Occlusion  # noqa: E402
from .rise import Rise  # noqa: E402
from .scorecam import AblationCAM, ScoreCAM  # noqa: E402
from .shearletx import CartoonX, MaskExplainer, PixelMask, ShearletX, WaveletX  # noqa: E402

__all__ = [
    "METHODS",
    "AblationCAM",
    "AttentionRelevance",
    "AttentionRollout",
    "CartoonX",
    "ContrastiveMWP",
    "EigenCAM",
    "ExtremalPerturbation",
    "FIDO",
    "Gradient",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "InputXGradient",
    "IntegratedGradients",
    "LayerCAM",
    "Lime",
    "MP2",
    "MWP",
    "MaskExplainer",
    "MeaningfulPerturbation",
    "Occlusion",
    "PixelMask",
    "Rise",
    "ScoreCAM",
    "ShearletX",
    "SmoothGrad",
    "WaveletX",
    "XGradCAM",
]
