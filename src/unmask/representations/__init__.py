"""Image representations whose coefficients an explainer can mask (pixels, wavelets, shearlets)."""

from .shearlets import ShearletSystem, shearlet_system

__all__ = ["ShearletSystem", "shearlet_system"]
