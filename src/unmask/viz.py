"""Pictures of explanations: heatmap overlays, masked images and side-by-side grids as PNG.

Everything here works on tensors (images (B, 3, H, W) in [0, 1], saliency (B, 1, H, W)) or on an
:class:`~unmask.Explanation`, and draws with matplotlib's Agg backend through
:class:`matplotlib.figure.Figure` (never ``pyplot``), so nothing needs or opens a display.

One rendering rule, :func:`colour_scale`, decides how every map is coloured (the CLI's PNGs,
the CWOX figure, the benchmark report and the explorer, whose ``static/draw.js`` applies the
same rule to the same colour tables, :func:`colour_table`). Per image, the scale is **anchored
at 0**, the neutral value of every map here (no effect, nothing kept, no gradient):

- a non-negative map is divided by its maximum, so 0 stays 0 and the scale runs from 0 to the
  map's maximum; it is drawn with a perceptual sequential colormap (``"viridis"``). A map
  that varies little (a RISE map spanning 0.78-0.88) then fills only the top of the colormap
  instead of all of it, and the caption says so (:meth:`ColourScale.caption`: the map's
  range and the share of the scale it spans);
- a signed map (some value < 0; e.g. occlusion where removing a patch *raises* the score) is
  divided by its largest absolute value, so 0 stays 0, and drawn with a diverging colormap
  (``"RdBu_r"``: red supports the class, blue speaks against it).

An overlay's opacity follows ``sqrt(|value| / scale)``: where a map is 0 the image shows
unchanged, whatever the colormap paints at 0.

Example:
    >>> import torch
    >>> from unmask import viz
    >>> x = torch.rand(2, 3, 16, 16)
    >>> s = torch.randn(2, 1, 16, 16)
    >>> viz.overlay(x, s, alpha=0.5).shape
    torch.Size([2, 3, 16, 16])
    >>> viz.masked_image(x, s, keep=0.25).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import _shape, check_choice, check_images, check_mask, check_probability
from ._types import Model
from .explanation import Explanation

__all__ = [
    "bare_axes",
    "ColourScale",
    "colour_scale",
    "colour_table",
    "colour_tables_js",
    "draw_map",
    "normalize_saliency",
    "is_signed",
    "heatmap",
    "overlay",
    "top_mask",
    "kept_share",
    "masked_image",
    "plot_grid",
    "save_figure",
    "save_grid",
    "save_image",
    "DEFAULT_CMAP",
    "DEFAULT_SIGNED_CMAP",
]

#: Sequential colormap for non-negative maps (perceptually uniform).
DEFAULT_CMAP = "viridis"
#: Diverging colormap for signed maps (white at 0).
DEFAULT_SIGNED_CMAP = "RdBu_r"

SaliencyLike = Tensor | Explanation


# --------------------------------------------------------------------------- checks


def _saliency(saliency: object, name: str = "saliency") -> Tensor:
    """Accept an Explanation or a tensor (B, 1, H, W) / (B, H, W) / (H, W); return (B, 1, H, W)."""
    if isinstance(saliency, Explanation):
        saliency = saliency.saliency
    if not isinstance(saliency, Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor (B, 1, H, W) or an unmask.Explanation, got "
            f"{type(saliency).__name__}"
        )
    s = saliency.detach()
    if s.ndim == 2:
        s = s[None, None]
    elif s.ndim == 3:
        s = s[:, None]
    if s.ndim != 4 or s.shape[1] != 1:
        raise ValueError(f"{name}: expected shape (B, 1, H, W), got {_shape(saliency)}")
    if s.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {_shape(saliency)}")
    if s.is_complex():
        raise TypeError(f"{name}: expected a real tensor, got dtype {s.dtype}")
    s = s.float().cpu()
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return s


def _images(images: object, name: str = "images") -> Tensor:
    x = check_images(images, name, channels=3).detach().float().cpu()
    if float(x.min()) < 0 or float(x.max()) > 1:
        lo, hi = float(x.min()), float(x.max())
        raise ValueError(f"{name}: expected values in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return x


def _matched(images: Tensor, s: Tensor, name: str = "saliency") -> Tensor:
    """Saliency resized (bilinear) to the images' size, batch checked (either may be 1)."""
    if s.shape[0] != images.shape[0] and s.shape[0] != 1:
        raise ValueError(
            f"{name}: batch size {s.shape[0]} does not match the images' batch size "
            f"{images.shape[0]} (expected equal sizes, or 1)"
        )
    if s.shape[-2:] != images.shape[-2:]:
        s = F.interpolate(s, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return s.expand(images.shape[0], *s.shape[1:])


def _colormap(cmap: str | None, signed: bool) -> Any:
    import matplotlib

    name = cmap or (DEFAULT_SIGNED_CMAP if signed else DEFAULT_CMAP)
    if not isinstance(name, str):
        raise TypeError(f"cmap: expected a matplotlib colormap name, got {type(name).__name__}")
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"cmap: unknown matplotlib colormap {name!r} (e.g. 'turbo', 'jet', 'inferno', 'RdBu_r')"
        ) from None


# --------------------------------------------------------------------------- maps


@dataclass(frozen=True)
class ColourScale:
    """How one map is coloured: the scale ``[low, high]`` in the map's units, and its range.

    Attributes:
        signed: a diverging scale ``[-M, M]`` (some value < 0) or a sequential ``[0, M]``.
        low, high: the ends of the scale (``-M`` or 0, and ``M``); ``M`` is the map's largest
            absolute value (1 for a map that is 0 everywhere).
        vmin, vmax: the map's own minimum and maximum.
    """

    signed: bool
    low: float
    high: float
    vmin: float
    vmax: float

    @property
    def share(self) -> float:
        """The share of the scale the map spans, ``(vmax - vmin) / (high - low)`` in [0, 1]."""
        return (self.vmax - self.vmin) / (self.high - self.low)

    def caption(self) -> str:
        """One line: the map's range and the share of its scale it spans.

        Example:
            >>> colour_scale(torch.tensor([[0.78, 0.88]])).caption()
            'map 0.78 to 0.88 of scale 0 to 0.88 (spans 11%)'
        """
        low = "0" if self.low == 0 else f"{self.low:.3g}"
        return (
            f"map {self.vmin:.3g} to {self.vmax:.3g} of scale {low} to {self.high:.3g} "
            f"(spans {self.share:.0%})"
        )


def colour_scale(saliency: SaliencyLike, signed: bool | None = None) -> ColourScale:
    """The colour scale of one map (H, W), (1, H, W) or (1, 1, H, W): anchored at 0.

    ``signed=None`` (default): signed when any value is negative; ``True`` forces ``[-M, M]``,
    ``False`` forces ``[0, M]`` (negative values then clip to the bottom of the colormap).

    Example:
        >>> sc = colour_scale(torch.tensor([[0.78, 0.88]]))
        >>> sc.signed, sc.low, round(sc.high, 2), round(sc.share, 3)
        (False, 0.0, 0.88, 0.114)
        >>> colour_scale(torch.tensor([[-2.0, 1.0]])).low
        -2.0
    """
    s = _saliency(saliency)
    if s.shape[0] != 1:
        raise ValueError(f"saliency: expected one map, got a batch of {s.shape[0]}")
    vmin, vmax = float(s.min()), float(s.max())
    if signed is None:
        signed = vmin < 0
    top = float(s.abs().max())
    top = top if top > 0 else 1.0
    return ColourScale(bool(signed), -top if signed else 0.0, top, vmin, vmax)


def colour_table(cmap: str | None = None, signed: bool = False) -> np.ndarray:
    """The 256 colours (256, 3) uint8 a colormap paints, from its low end to its high end.

    A value ``v`` in [0, 1] of the normalised scale takes colour ``min(floor(256 v), 255)``
    (matplotlib's lookup); the explorer's ``static/colours.js`` holds these tables for the
    default colormaps (a test checks they are equal).

    Example:
        >>> colour_table().shape, colour_table(signed=True)[128].tolist()
        ((256, 3), [247, 246, 246])
    """
    rgba = _colormap(cmap, signed)(np.arange(256) / 255.0)
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def colour_tables_js() -> str:
    """The explorer's ``serve/static/colours.js``: both default colour tables as JS modules.

    The page applies the same rule as :func:`overlay` to these tables, so a map looks the same
    in the browser as in a PNG (a test checks the file equals this text). Regenerate with
    ``python -c "from unmask import viz; print(viz.colour_tables_js(), end='')" >
    src/unmask/serve/static/colours.js``.
    """

    def table(signed: bool) -> str:
        flat = [str(v) for v in colour_table(signed=signed).reshape(-1).tolist()]
        return "\n".join("  " + ", ".join(flat[i : i + 24]) + "," for i in range(0, 768, 24))

    return (
        "// The colour tables of unmask.viz's rule (viz.colour_table): 256 RGB entries each, "
        "from the\n// low end to the high end of the scale. Generated by "
        "viz.colour_tables_js(); a test checks\n// this file equals its output.\n\n"
        f"// Non-negative maps: {DEFAULT_CMAP}, scale [0, max].\n"
        f"export const SEQUENTIAL = Uint8Array.from([\n{table(False)}\n]);\n\n"
        f"// Signed maps: {DEFAULT_SIGNED_CMAP}, scale [-max|v|, max|v|] (white at 0).\n"
        f"export const DIVERGING = Uint8Array.from([\n{table(True)}\n]);\n"
    )


def is_signed(saliency: SaliencyLike) -> bool:
    """Whether a map has negative values anywhere (then it is drawn with a diverging map)."""
    return bool((_saliency(saliency) < 0).any())


def normalize_saliency(saliency: SaliencyLike, signed: bool | None = None) -> Tensor:
    """Normalise each map on its own scale (:func:`colour_scale`): divide by its largest |value|.

    Args:
        saliency: maps (B, 1, H, W) or an Explanation.
        signed: ``True``: the result is in [-1, 1]; ``False``: clipped to [0, 1] (a
            non-negative map is unchanged by the clip). ``None`` (default): signed when any
            value of that map is negative. Either way 0 stays 0: the scale is anchored at 0,
            not stretched from the map's minimum (a map spanning 0.78-0.88 becomes 0.89-1).

    Returns:
        (B, 1, H, W) float32 on the CPU. A map that is 0 everywhere stays 0.

    Example:
        >>> normalize_saliency(torch.tensor([[[[0.0, 2.0], [1.0, 4.0]]]])).flatten().tolist()
        [0.0, 0.5, 0.25, 1.0]
        >>> normalize_saliency(torch.tensor([[[[2.0, 4.0]]]])).flatten().tolist()
        [0.5, 1.0]
        >>> normalize_saliency(torch.tensor([[[[-2.0, 1.0]]]])).flatten().tolist()
        [-1.0, 0.5]
    """
    s = _saliency(saliency)
    scale = s.abs().amax(dim=(-2, -1), keepdim=True)
    n = torch.where(scale > 0, s / scale.clamp(min=1e-30), torch.zeros_like(s))
    if signed is None:
        return n
    return n if signed else n.clamp(min=0)


def heatmap(saliency: SaliencyLike, cmap: str | None = None, signed: bool | None = None) -> Tensor:
    """Colour each normalised map: (B, 1, H, W) -> RGB images (B, 3, H, W) in [0, 1].

    ``cmap`` defaults to :data:`DEFAULT_CMAP` for non-negative maps and
    :data:`DEFAULT_SIGNED_CMAP` for signed ones; each map is on its own scale, anchored at 0
    (:func:`colour_scale`).
    """
    s = _saliency(saliency)
    flags = _signs(s, signed)
    n = normalize_saliency(s)
    out = []
    for i, sig in enumerate(flags):
        values = ((n[i] + 1) / 2) if sig else n[i].clamp(min=0)
        out.append(_colormap(cmap, sig)(values[0].numpy())[..., :3])  # (H, W, 3) float64
    rgb = torch.from_numpy(np.stack(out).astype(np.float32))
    return rgb.permute(0, 3, 1, 2).contiguous()


def _signs(s: Tensor, signed: bool | None) -> list[bool]:
    """Per map (B, 1, H, W): drawn signed? (``signed``, or whether that map has a value < 0)."""
    if signed is not None:
        return [bool(signed)] * s.shape[0]
    return [bool(v) for v in (s < 0).flatten(1).any(1)]


def overlay(
    images: Tensor,
    saliency: SaliencyLike,
    alpha: float = 0.5,
    cmap: str | None = None,
    signed: bool | None = None,
) -> Tensor:
    """Blend a coloured heatmap over the images: ``(1 - alpha) * image + alpha * heatmap``.

    Args:
        images: (B, 3, H, W) in [0, 1].
        saliency: (B, 1, h, w) (or B = 1, broadcast) or an Explanation; resized bilinearly
            to (H, W) when it has another size.
        alpha: opacity of the heatmap in [0, 1] at the top of the scale; it falls with
            ``sqrt(|value| / scale)``, so that pixels near 0 show the image rather than the
            colormap's colour at 0.
        cmap: matplotlib colormap name (default: by sign, see :func:`heatmap`).
        signed: force the signed / unsigned normalisation (default: from the data).

    Returns:
        (B, 3, H, W) float32 in [0, 1], on the CPU.
    """
    x = _images(images)
    check_probability(alpha, "alpha")
    s = _matched(x, _saliency(saliency))
    flags = torch.tensor(_signs(s, signed)).reshape(-1, 1, 1, 1)
    n = normalize_saliency(s)
    # opacity follows |value| on the scale: where the map is 0 the image shows unchanged
    weight = alpha * torch.where(flags, n.abs(), n.clamp(min=0)).sqrt()
    return ((1 - weight) * x + weight * heatmap(s, cmap, signed)).clamp(0, 1)


def top_mask(saliency: SaliencyLike, fraction: float, ties: str = "keep") -> Tensor:
    """The ``fraction`` most salient pixels of each map: (B, 1, H, W) float, 1 = in the top.

    The cut-off is the value of the ``k = round(fraction * H * W)``-th pixel (at least 1).
    ``ties="keep"`` (default) never splits pixels of equal value by their position: every
    pixel tied with the cut-off is kept (a map that is 1 on 35 % of the image keeps those
    35 %), except when the cut-off is the map's minimum (a flat floor), where only the pixels
    above it are kept (a map that is 1 on 10 % and 0 elsewhere keeps those 10 %; a constant
    map keeps nothing). :func:`kept_share` gives the share kept. ``ties="order"`` keeps
    exactly ``k`` pixels, breaking ties by raster order (stable sort; deterministic, but the
    top rows of a flat region then look like evidence).

    Example:
        >>> s = torch.tensor([[[[3.0, 1.0], [1.0, 0.0]]]])
        >>> top_mask(s, 0.5)[0, 0]                  # the two tied 1s are both kept
        tensor([[1., 1.],
                [1., 0.]])
        >>> top_mask(s, 0.5, ties="order")[0, 0]
        tensor([[1., 1.],
                [0., 0.]])
    """
    s = _saliency(saliency)
    check_probability(fraction, "keep", open_low=True)
    check_choice(ties, "ties", ("keep", "order"))
    b, _, h, w = s.shape
    k = max(1, round(fraction * h * w))
    flat = s.reshape(b, -1)
    if ties == "keep":
        cut = torch.topk(flat, k, dim=1).values[:, -1:]
        floor = flat.amin(dim=1, keepdim=True)
        keep = torch.where(cut > floor, flat >= cut, flat > floor)
        return keep.float().reshape(b, 1, h, w)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)[:, :k]
    keep = torch.zeros(b, h * w)
    keep.scatter_(1, order, 1.0)
    return keep.reshape(b, 1, h, w)


def kept_share(saliency: SaliencyLike, fraction: float) -> Tensor:
    """The share of pixels (B,) that :func:`top_mask` keeps (not ``fraction`` when values tie)."""
    return top_mask(saliency, fraction).mean(dim=(1, 2, 3))


def masked_image(
    images: Tensor,
    saliency: SaliencyLike | None = None,
    *,
    keep: float = 0.2,
    mask: Tensor | None = None,
    removal: Callable[[Tensor, Tensor], Tensor] | str | None = None,
) -> Tensor:
    """Show what an explanation keeps: remove everything but the top ``keep`` fraction.

    Give either ``saliency`` (keep its top ``keep`` fraction of pixels, see :func:`top_mask`)
    or ``mask`` (B, 1, H, W) in [0, 1] with 1 = removed, the library's mask convention.

    Args:
        images: (B, 3, H, W) in [0, 1].
        saliency: maps (B, 1, h, w) or an Explanation (resized to the images).
        keep: fraction of pixels kept, in (0, 1].
        mask: an explicit removal mask instead of ``saliency``.
        removal: how removed pixels are drawn: a removal strategy or name (default
            ``Constant("gray")``).

    Returns:
        (B, 3, H, W) float32 in [0, 1], on the CPU.
    """
    from .removal import Constant, make_removal

    x = _images(images)
    if (saliency is None) == (mask is None):
        raise ValueError("saliency: give exactly one of saliency (keep its top pixels) or mask")
    if mask is not None:
        removed = check_mask(mask, x, "mask").float().cpu()
    else:
        removed = 1 - top_mask(_matched(x, _saliency(saliency)), keep)
    remove: Callable[[Tensor, Tensor], Tensor]
    if removal is None:
        remove = Constant("gray")
    else:
        remove = make_removal(removal) if isinstance(removal, str) else removal
    with torch.no_grad():
        return remove(x, removed).clamp(0, 1)


# --------------------------------------------------------------------------- files


def _output_path(path: str | os.PathLike, name: str) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name}: expected a file path, got {type(path).__name__}")
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name}: is a directory, expected a file path: {p}")
    if not p.parent.exists():
        raise FileNotFoundError(f"{name}: directory does not exist: {p.parent}")
    return p


def save_image(image: Tensor, path: str | os.PathLike) -> Path:
    """Save one image (1, 3, H, W) or (3, H, W) in [0, 1] as an 8-bit PNG; returns the path."""
    from PIL import Image

    x = image[None] if isinstance(image, Tensor) and image.ndim == 3 else image
    x = _images(x, "image")
    if x.shape[0] != 1:
        raise ValueError(f"image: expected one image (1, 3, H, W), got {_shape(x)}")
    p = _output_path(path, "path")
    arr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(p, format="PNG")
    return p


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG (Agg, tight bounding box); returns the path.

    ``path`` must end in ``.png`` (the file is a PNG whatever its name, so a name that says
    otherwise is refused).
    """
    p = _output_path(path, "out")
    if p.suffix.lower() != ".png":
        raise ValueError(f"out: writes a PNG; expected a file name ending in .png, got {str(p)!r}")
    fig.savefig(p, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return p


# --------------------------------------------------------------------------- grid


def _hwc(x: Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy()


def plot_grid(
    images: Tensor,
    explanations: SaliencyLike | Sequence[SaliencyLike],
    *,
    model: Model | None = None,
    class_names: Sequence[str] | None = None,
    probabilities: Tensor | None = None,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str | None = None,
    signed: bool | None = None,
    keep: float | None = None,
    colorbar: bool = True,
    explanation_image: bool = True,
    panel_size: float = 3.0,
) -> Any:
    """A grid with one row per image: the image, then one overlay per explanation.

    Titles name the classes with their probabilities: the first panel shows the model's top-1
    class, each overlay the explained (target) class. Probabilities come from ``model`` (scored
    once through :class:`unmask.Scorer`) or from ``probabilities``.

    Args:
        images: (B, 3, H, W) in [0, 1].
        explanations: one or several Explanations (a column each: several methods, or several
            targets of one method), or saliency tensors (B, 1, h, w).
        model: a Classifier, for class names and probabilities.
        class_names: names of the classes (default: the model's, else ``"class k"``).
        probabilities: softmax probabilities (B, K), when no model is given.
        row_labels: one label per image (e.g. file names), shown left of each row.
        column_labels: one title per explanation (default: the method name).
        alpha: heatmap opacity.
        cmap: colormap (default: by sign, see :func:`heatmap`).
        signed: force signed / unsigned normalisation (default: from each map).
        keep: if given, add a column per explanation showing only its top ``keep`` fraction of
            pixels (the rest gray, see :func:`masked_image`).
        colorbar: draw a colour bar beside each overlay (in the map's units, on its scale
            anchored at 0, with the map's own range marked; the caption below the overlay
            gives that range and the share of the scale it spans, :meth:`ColourScale.caption`).
        explanation_image: for an Explanation with an explanation image x̂ in its extras
            (``extras["image"]`` (B, 3, H, W): ShearletX, WaveletX, CartoonX, PixelMask), show
            x̂, the kept coefficients back in pixel space, as the papers do (default);
            ``False`` shows the relevance map instead.
        panel_size: size of one panel in inches.

    Returns:
        A :class:`matplotlib.figure.Figure` (Agg; save it with :func:`save_figure`).
    """
    from matplotlib.figure import Figure

    x = _images(images)
    b = x.shape[0]
    items = list(explanations) if isinstance(explanations, list | tuple) else [explanations]
    if not items:
        raise ValueError("explanations: expected at least one explanation")
    maps = [
        _matched(x, _saliency(e, f"explanations[{i}]"), f"explanations[{i}]")
        for i, e in enumerate(items)
    ]
    targets: list[Tensor | None] = []
    for e in items:
        if isinstance(e, Explanation) and isinstance(e.target, Tensor):
            t = e.target.cpu()
            if t.dtype == torch.bool:  # a set of classes per image (B, K)
                targets.append(t.reshape(-1, t.shape[-1]).expand(b, -1))
            else:
                t = t.reshape(-1)
                targets.append(t.expand(b) if t.numel() == 1 else t)
        else:  # a map, or a target function (no class to name)
            targets.append(None)
    if model is not None:
        from .models import as_classifier
        from .scoring import Scorer

        model = as_classifier(model, "model")
        probabilities = Scorer(model).probabilities(x)
        if class_names is None:
            class_names = model.class_names
    if probabilities is not None:
        if (
            not isinstance(probabilities, Tensor)
            or probabilities.ndim != 2
            or probabilities.shape[0] != b
        ):
            got = (
                _shape(probabilities)
                if isinstance(probabilities, Tensor)
                else type(probabilities).__name__
            )
            raise ValueError(f"probabilities: expected shape ({b}, K), got {got}")
        probabilities = probabilities.detach().float().cpu()
    if row_labels is not None and len(row_labels) != b:
        raise ValueError(f"row_labels: expected {b} labels, got {len(row_labels)}")
    if column_labels is not None and len(column_labels) != len(items):
        raise ValueError(f"column_labels: expected {len(items)} labels, got {len(column_labels)}")
    if keep is not None:
        check_probability(keep, "keep", open_low=True)

    def name(k: int) -> str:
        if class_names is not None and 0 <= k < len(class_names):
            return str(class_names[k])
        return f"class {k}"

    def prob(i: int, k: int) -> str:
        if probabilities is None or not 0 <= k < probabilities.shape[1]:
            return ""
        return f" ({float(probabilities[i, k]):.1%})"

    def target_title(i: int, t: Tensor) -> str:
        """A class's short name and probability; a set's names and its probability (the sum)."""
        if t.dtype != torch.bool:
            return f"{_short(name(int(t)))}{prob(i, int(t))}"
        classes = [int(c) for c in t.nonzero().flatten()]
        names = " + ".join(_short(name(c)) for c in classes)
        if probabilities is None or t.shape[0] != probabilities.shape[1]:
            return names
        return f"{names} ({float(probabilities[i][t].sum()):.1%})"

    per_item = 2 if keep is not None else 1
    cols = 1 + per_item * len(items)
    fig = Figure(
        figsize=(
            panel_size * cols + (0.6 * len(items) if colorbar else 0),
            panel_size * b + 0.4 * b,
        ),
        layout="constrained",
    )
    axes = np.asarray(fig.subplots(b, cols, squeeze=False))
    for i in range(b):
        ax = axes[i, 0]
        ax.imshow(_hwc(x[i]), interpolation="lanczos")
        if probabilities is not None:
            top = int(probabilities[i].argmax())
            ax.set_title(f"input\ntop-1: {_short(name(top))}{prob(i, top)}", fontsize=10)
        else:
            ax.set_title("input", fontsize=10)
        if row_labels is not None:
            ax.set_ylabel(_short(str(row_labels[i]), 32), fontsize=10)
        for j, (e, s) in enumerate(zip(items, maps, strict=True)):
            sig = bool((s[i] < 0).any()) if signed is None else signed
            label = (
                column_labels[j]
                if column_labels is not None
                else (e.method if isinstance(e, Explanation) else f"map {j}")
            )
            tj = targets[j]
            what = "" if tj is None else target_title(i, tj[i])
            ax = axes[i, 1 + per_item * j]
            xhat = _explanation_image(e, i, x.shape) if explanation_image else None
            if xhat is not None:  # ShearletX & co.: the kept coefficients back in pixel space
                ax.imshow(_hwc(xhat), interpolation="lanczos")
                ax.set_title(f"{label}: x̂\n{what}" if what else f"{label}: x̂", fontsize=10)
                ax.set_xlabel("explanation image (kept coefficients)", fontsize=8)
            else:
                draw_map(fig, ax, x[i : i + 1], s[i : i + 1], alpha, cmap, sig, colorbar)
                ax.set_title(f"{label}\n{what}" if what else label, fontsize=10)
            if keep is not None:
                ax = axes[i, 2 + per_item * j]
                ax.imshow(
                    _hwc(masked_image(x[i : i + 1], s[i : i + 1], keep=keep)[0]),
                    interpolation="lanczos",
                )
                share = float(kept_share(s[i : i + 1], keep)[0])
                title = f"{label}: top {keep:.0%} kept"
                if share == 0:
                    title = f"{label}: constant map\n(no pixel ranks above another)"
                elif share > keep + 0.005:  # tied values: all kept, and said so
                    title = f"{label}: top {share:.0%} kept\n(values tie at the top {keep:.0%})"
                elif share < keep - 0.005:
                    title = f"{label}: {share:.0%} kept\n(the rest is the map's flat floor)"
                ax.set_title(title, fontsize=10)
    bare_axes(axes)
    return fig


def _explanation_image(e: object, i: int, shape: torch.Size) -> Tensor | None:
    """Image ``i``'s explanation image x̂ (3, H, W) from an Explanation's extras, if it has one."""
    if not isinstance(e, Explanation):
        return None
    xhat = e.extras.get("image")
    if not isinstance(xhat, Tensor) or xhat.ndim != 4 or xhat.shape[1] != 3:
        return None
    xhat = xhat.detach().float().cpu()
    if xhat.shape[-2:] != shape[-2:]:
        xhat = F.interpolate(xhat, size=shape[-2:], mode="bilinear", align_corners=False)
    return xhat[i if xhat.shape[0] > 1 else 0].clamp(0, 1)


def draw_map(
    fig: Any,
    ax: Any,
    image: Tensor,
    s: Tensor,
    alpha: float,
    cmap: str | None,
    signed: bool,
    colorbar: bool = True,
) -> ColourScale:
    """One map (1, 1, H, W) over one image (1, 3, H, W) on its scale, with caption and colour bar.

    The one drawing rule of every figure (the grid, the CWOX figure, the report's examples):
    :func:`overlay` on the map's :func:`colour_scale`; the colour bar is in the map's units,
    spans the whole scale and marks the map's own range; the caption (x label) says how much of
    the scale the map spans.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    scale = colour_scale(s, signed)
    ax.imshow(_hwc(overlay(image, s, alpha, cmap, signed)[0]), interpolation="lanczos")
    ax.set_xlabel(scale.caption(), fontsize=7)
    if colorbar:
        cb = fig.colorbar(
            ScalarMappable(norm=Normalize(scale.low, scale.high), cmap=_colormap(cmap, signed)),
            ax=ax,
            fraction=0.046,
            pad=0.02,
        )
        ticks = [scale.low, 0.0, scale.high] if signed else [0.0, scale.high / 2, scale.high]
        cb.set_ticks(ticks)
        cb.set_ticklabels([f"{t:.3g}" for t in ticks])
        for v in (scale.vmin, scale.vmax):  # the map's own range on its scale
            cb.ax.axhline(v, color="black", linewidth=1.2)
        cb.set_label(
            "saliency (+ for the class, − against)" if signed else "saliency (from 0)", fontsize=8
        )
        cb.ax.tick_params(labelsize=8)
    return scale


def bare_axes(axes: Any) -> None:
    """Hide the ticks and frames of a grid of matplotlib axes (pictures, not plots)."""
    for ax in getattr(axes, "flat", [axes]):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)


def _short(text: str, width: int = 28) -> str:
    """Shorten long class names (ImageNet names can be lists of synonyms)."""
    text = text.split(",")[0].strip() if len(text) > width else text
    return text if len(text) <= width else text[: width - 1] + "…"


def save_grid(
    path: str | os.PathLike,
    images: Tensor,
    explanations: SaliencyLike | Sequence[SaliencyLike],
    *,
    dpi: int = 100,
    **kwargs: Any,
) -> Path:
    """:func:`plot_grid` saved as a PNG at ``path``; returns the path."""
    _output_path(path, "out")
    fig = plot_grid(images, explanations, **kwargs)
    return save_figure(fig, path, dpi=dpi)
