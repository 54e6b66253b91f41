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


def make_representation(spec: "str | Representation") -> Representation:
    """A representation from its spec (``"shearlets"``, ``"wavelets:levels=3"``, ``"pixels"``).

    Example:
        >>> make_representation("wavelets:wavelet=haar,levels=2").spec
        'wavelets:wavelet=haar,levels=2,mode=zero'
    """
    if isinstance(spec, Representation):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"representation: expected a Representation or a name, got {type(spec).__name__}"
        )
    from ..removal.specs import parse_spec

    name, args, kwargs = parse_spec(spec)
    kinds = {"shearlets": Shearlets, "wavelets": Wavelets, "pixels": Pixels}
    if name not in kinds:
        raise ValueError(
            f"representation: unknown representation {spec!r}; expected one of: {', '.join(kinds)}"
        )
    try:
        return kinds[name](*args, **kwargs)
    except TypeError as exc:
        raise ValueError(f"representation: {spec!r}: {exc}") from None


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
    "make_representation",
    "ones_mask",
]
