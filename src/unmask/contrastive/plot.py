"""The CWOX-2s figure: one row per cluster, its contrastive map, then one map per member class.

As the original's ``plot_cwox``: each row starts with the cluster's contrastive map H_i
(titled with its classes and the cluster probability P(C) = Σ p_c), followed, for a cluster of
two or more classes, by the contrastive class maps H_ik (titled with the class and its
probability). Each map is drawn over the image by :func:`unmask.viz.draw_map`, the one rule of
every figure: on its own scale anchored at 0 (``"viridis"``), with a colour bar in the map's
units and a caption giving its range. A map that is zero everywhere is drawn as the plain
image and says so. A cluster or class whose probability is below :data:`WEAK` (10 %) is
**weak**: its title is grey and says so and its panel has a dashed frame, since its map (often
border fragments) carries little of the model's output. Several images stack their rows, the
image itself at the left of its first row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from .. import viz
from .cwox import ContrastiveExplanation

__all__ = ["plot_cwox", "save_cwox", "WEAK"]

#: Probability below which a cluster or class is marked weak on its panel.
WEAK = 0.10


def _name(names: Sequence[str] | None, k: int, width: int = 22) -> str:
    text = str(names[k]) if names is not None and 0 <= k < len(names) else f"class {k}"
    text = text.split(",")[0].strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _panel(
    fig: Any,
    ax: Any,
    xi: Tensor,
    m: Tensor,
    alpha: float,
    cmap: str | None,
    title: str,
    probability: float,
) -> bool:
    """One map (H, W) over the image xi (1, 3, H, W); a zero map shows the plain image.

    Returns whether the panel is weak (``probability < WEAK``).
    """
    if float(m.abs().max()) > 0:
        viz.draw_map(fig, ax, xi, m[None, None], alpha, cmap, False)
    else:
        ax.imshow(viz._hwc(xi[0]), interpolation="lanczos")
        title += "\n(zero everywhere)"
    weak = probability < WEAK
    if weak:
        title += f" · weak (< {WEAK:.0%})"
    ax.set_title(title, fontsize=9, color="0.45" if weak else "black")
    return weak


def plot_cwox(
    images: Tensor,
    explanation: ContrastiveExplanation,
    *,
    class_names: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str | None = None,
    panel_size: float = 2.6,
) -> Any:
    """The CWOX-2s figure of every image of ``explanation``.

    Args:
        images: the explained images (B, 3, H, W) in [0, 1].
        explanation: their :class:`~unmask.contrastive.ContrastiveExplanation`.
        class_names: a name per class (titles); default ``"class k"``.
        row_labels: one label per image (e.g. its file name), left of its first row.
        alpha: heatmap opacity.
        cmap: colormap (default ``viz.DEFAULT_CMAP``).
        panel_size: inches per panel.

    Returns:
        A :class:`matplotlib.figure.Figure` (save it with :func:`unmask.viz.save_figure`).

    Example:
        >>> from unmask.testing import conv_region_model, region_images
        >>> from unmask.contrastive import cwox
        >>> x = region_images(1)
        >>> fig = plot_cwox(x, cwox(conv_region_model(), x, [[0, 1]]), class_names=["b", "r"])
        >>> len(fig.axes)  # image, cluster map, two class maps, and a colour bar per map
        7
    """
    from matplotlib.figure import Figure

    if not isinstance(explanation, ContrastiveExplanation):
        raise TypeError(
            f"explanation: expected a ContrastiveExplanation, got {type(explanation).__name__}"
        )
    x = viz._images(images)
    if x.shape[0] != len(explanation):
        raise ValueError(
            f"images: expected the {len(explanation)} explained images, got {x.shape[0]}"
        )
    if row_labels is not None and len(row_labels) != len(explanation):
        raise ValueError(f"row_labels: expected {len(explanation)} labels, got {len(row_labels)}")
    rows = [(i, j) for i in range(len(explanation)) for j in range(len(explanation.clusters[i]))]
    width = 1 + max(len(c) if len(c) > 1 else 0 for cl in explanation.clusters for c in cl)
    cols = 1 + max(width, 1)
    fig = Figure(
        figsize=(panel_size * 1.25 * cols, (panel_size + 0.7) * len(rows)), layout="constrained"
    )
    axes = np.asarray(fig.subplots(len(rows), cols, squeeze=False))
    weak: list[Any] = []
    for r, (i, j) in enumerate(rows):
        xi = x[i : i + 1]
        p = explanation.probabilities[i]
        members = explanation.clusters[i][j]
        ax = axes[r, 0]
        if j == 0:
            ax.imshow(viz._hwc(xi[0]), interpolation="lanczos")
            top = int(p.argmax())
            ax.set_title(
                f"input\ntop-1: {_name(class_names, top)} ({float(p[top]):.1%})", fontsize=9
            )
            if row_labels is not None:
                ax.set_ylabel(str(row_labels[i])[-32:], fontsize=9)
        else:
            ax.axis("off")

        names = ", ".join(_name(class_names, c, 16) for c in members)
        if len(members) > 3:
            names = ", ".join(_name(class_names, c, 16) for c in members[:3]) + ", …"
        pc = float(p[members].sum())
        if _panel(
            fig,
            axes[r, 1],
            xi,
            explanation.cluster_maps[i][j],
            alpha,
            cmap,
            f"cluster {j + 1}: P = {pc:.1%}\n{names}",
            pc,
        ):
            weak.append(axes[r, 1])
        maps = explanation.class_maps[i][j]
        for k, c in enumerate(members if maps is not None else []):
            assert maps is not None
            if _panel(
                fig,
                axes[r, 2 + k],
                xi,
                maps[k],
                alpha,
                cmap,
                f"{_name(class_names, c)}\np = {float(p[c]):.1%} (in cluster {j + 1})",
                float(p[c]),
            ):
                weak.append(axes[r, 2 + k])
        used = 2 + (len(members) if maps is not None else 0)
        for k in range(used, cols):
            axes[r, k].axis("off")
    viz.bare_axes(axes)
    for ax in weak:  # a dashed grey frame: little of the model's output is in this map
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_linestyle((0, (4, 3)))
            spine.set_edgecolor("0.45")
            spine.set_linewidth(1.5)
    return fig


def save_cwox(
    path: str | os.PathLike,
    images: Tensor,
    explanation: ContrastiveExplanation,
    *,
    dpi: int = 100,
    **kwargs: Any,
) -> Path:
    """:func:`plot_cwox` saved as a PNG at ``path``; returns the path."""
    viz._output_path(path, "out")
    return viz.save_figure(plot_cwox(images, explanation, **kwargs), path, dpi=dpi)
