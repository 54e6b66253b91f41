"""Image representations whose coefficients an explainer can mask (pixels, wavelets, shearlets)."""

from .shearlets import ShearletSystem, shearlet_system

__all__ = ["ShearletSystem", "shearlet_system"]

from .base import (  # noqa: E402
    Coefficients,
    Representation,
    apply_mask,
    band_statistics,
    coefficient_count,
    gray,
    ones_mask,
)
from .pixels import Pixels  # noqa: E402
from .shearlet_frame import Shearlets  # noqa: E402
from .wavelets import Wavelets  # noqa: E402

__all__ += [
    "Coefficients",
    "Representation",
    "Pixels",
    "Shearlets",
    "Wavelets",
    "apply_mask",
    "band_statistics",
    "coefficient_count",
    "gray",
    "ones_mask",
]
