"""Pictures of explanations: heatmap overlays, masked images and side-by-side grids as PNG.

Everything here works on tensors (images (B, 3, H, W) in [0, 1], saliency (B, 1, H, W)) or on an
:class:`~unmask.Explanation`, and draws with matplotlib's Agg backend through
:class:`matplotlib.figure.Figure` (never ``pyplot``), so nothing needs or opens a display.

Saliency is normalised **per image** before it is coloured:

- an unsigned map (no negative value) is scaled to [0, 1] by its own minimum and maximum and
  drawn with a sequential colormap (``"turbo"`` by default);
- a signed map (some value < 0; e.g. occlusion where removing a patch *raises* the score) is
  divided by its largest absolute value, so 0 stays 0, and drawn with a diverging colormap
  (``"RdBu_r"`` by default: red supports the class, blue speaks against it).

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
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import _shape, check_choice, check_images, check_mask, check_probability
from ._types import Model
from .explanation import Explanation
from .numerics import maxabs_normalise, minmax_normalise

__all__ = [
    "bare_axes",
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

#: Sequential colormap for unsigned maps.
DEFAULT_CMAP = "turbo"
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
        raise ValueError(
            f"{name}: expected values in [0, 1], "
            f"got range [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )
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


def is_signed(saliency: SaliencyLike) -> bool:
    """Whether a map has negative values anywhere (then it is drawn with a diverging map)."""
    return bool((_saliency(saliency) < 0).any())


def normalize_saliency(saliency: SaliencyLike, signed: bool | None = None) -> Tensor:
    """Normalise each map on its own.

    Args:
        saliency: maps (B, 1, H, W) or an Explanation.
        signed: ``True``: divide by the largest absolute value -> [-1, 1], 0 stays 0.
            ``False``: min-max -> [0, 1]. ``None`` (default): signed when any value is negative.

    Returns:
        (B, 1, H, W) float32 on the CPU. A constant map becomes all zeros.

    Example:
        >>> normalize_saliency(torch.tensor([[[[0.0, 2.0], [1.0, 4.0]]]])).flatten().tolist()
        [0.0, 0.5, 0.25, 1.0]
        >>> normalize_saliency(torch.tensor([[[[-2.0, 1.0]]]])).flatten().tolist()
        [-1.0, 0.5]
    """
    s = _saliency(saliency)
    if signed is None:
        signed = bool((s < 0).any())
    return maxabs_normalise(s) if signed else minmax_normalise(s)


def heatmap(saliency: SaliencyLike, cmap: str | None = None, signed: bool | None = None) -> Tensor:
    """Colour each normalised map: (B, 1, H, W) -> RGB images (B, 3, H, W) in [0, 1].

    ``cmap`` defaults to :data:`DEFAULT_CMAP` for unsigned maps and
    :data:`DEFAULT_SIGNED_CMAP` for signed ones (see :func:`normalize_saliency`).
    """
    s = _saliency(saliency)
    if signed is None:
        signed = bool((s < 0).any())
    n = normalize_saliency(s, signed)
    cm = _colormap(cmap, signed)
    values = ((n + 1) / 2) if signed else n
    rgba = cm(values[:, 0].numpy())  # (B, H, W, 4) float64
    return torch.from_numpy(rgba[..., :3].astype(np.float32)).permute(0, 3, 1, 2).contiguous()


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
        alpha: opacity of the heatmap in [0, 1]. For signed maps it is the opacity at the
            largest absolute value and falls with ``sqrt(|value|)``, so that pixels near 0 show
            the image rather than the colormap's white.
        cmap: matplotlib colormap name (default: by sign, see :func:`heatmap`).
        signed: force the signed / unsigned normalisation (default: from the data).

    Returns:
        (B, 3, H, W) float32 in [0, 1], on the CPU.
    """
    x = _images(images)
    check_probability(alpha, "alpha")
    s = _matched(x, _saliency(saliency))
    if signed is None:
        signed = bool((s < 0).any())
    weight: Tensor | float = alpha
    if signed:  # opacity follows |value|: where the map is 0 the image shows unchanged
        weight = alpha * normalize_saliency(s, True).abs().sqrt()
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
        colorbar: draw a colour bar beside each overlay.
        panel_size: size of one panel in inches.

    Returns:
        A :class:`matplotlib.figure.Figure` (Agg; save it with :func:`save_figure`).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
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
        if isinstance(e, Explanation):
            t = e.target.reshape(-1).cpu()
            targets.append(t.expand(b) if t.numel() == 1 else t)
        else:
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
            what = f"{_short(name(int(tj[i])))}{prob(i, int(tj[i]))}" if tj is not None else ""
            ax = axes[i, 1 + per_item * j]
            ax.imshow(
                _hwc(overlay(x[i : i + 1], s[i : i + 1], alpha, cmap, sig)[0]),
                interpolation="lanczos",
            )
            ax.set_title(f"{label}\n{what}" if what else label, fontsize=10)
            if colorbar:
                norm = Normalize(-1, 1) if sig else Normalize(0, 1)
                cb = fig.colorbar(
                    ScalarMappable(norm=norm, cmap=_colormap(cmap, sig)),
                    ax=ax,
                    fraction=0.046,
                    pad=0.02,
                )
                # ticks in the map's own units: normalisation is per image
                si = s[i]
                if sig:
                    peak = float(si.abs().max())
                    cb.set_ticks([-1, 0, 1])
                    cb.set_ticklabels([f"{-peak:.3g}", "0", f"{peak:.3g}"])
                    cb.set_label("saliency (+ for the class, − against)", fontsize=8)
                else:
                    lo, hi = float(si.min()), float(si.max())
                    cb.set_ticks([0, 0.5, 1])
                    cb.set_ticklabels([f"{lo:.3g}", f"{(lo + hi) / 2:.3g}", f"{hi:.3g}"])
                    cb.set_label("saliency", fontsize=8)
                cb.ax.tick_params(labelsize=8)
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
