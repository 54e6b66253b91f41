"""CWOX-2s: contrastive whole-output explanation in two stages (clusters, then classes).

Xie et al., "Two-stage holistic and contrastive explanation of image classification", UAI 2023
(seed 003). The top classes of a prediction are grouped into *label confusion clusters*
(classes the classifier confuses, e.g. {cello, violin} and {acoustic guitar, banjo, electric
guitar}; see :mod:`unmask.contrastive.trees`). A non-negative *base* explainer (Grad-CAM, MWP,
RISE, LIME, ...) explains every cluster C (its score: the generalised logit
``log Σ_{c∈C} exp z_c`` for gradient methods, the summed probability ``Σ_{c∈C} p_c`` for
black-box ones) and every member class of a cluster of two or more. With K clusters, base maps
S and δ a percentile in [0, 100]:

- the contrastive cluster map ``H_i = max(0, (K-1)·S(C_i) - Σ_{j≠i} S(C_j))`` (``max(0, S(C_1))``
  when K = 1): where C_i's evidence beats the other clusters';
- for a cluster of m ≥ 2 classes, the contrastive class map
  ``H_ik = max(0, 1[H_i > percentile(H_i, δ)] · ((m-1)·S(c_k) - Σ_{l≠k} S(c_l)))``: inside the
  cluster's support, where class k's evidence beats its cluster mates'. Singleton clusters get
  no class maps.

The two stages use separately configured base explainers (the original's Grad-CAM reads the
cluster stage at the last convolutional block and the class stage at an earlier, finer one;
its RISE uses other mask settings per stage). :data:`CWOX_BASES` holds the original's settings
per base explainer, including the README's δ (Grad-CAM 50, MWP 60, RISE 70, LIME 85).
Black-box bases score each perturbation once for all clusters (and, when one explainer serves
both stages, all classes) of an image, through their ``explain_each``.

**Negative base maps.** The formulas assume S ≥ 0. ``negative`` says what happens otherwise:
``"error"`` (the default for explainers without a preset) raises; ``"clamp"`` clips the base
maps at 0 first (the original's LIME keeps only positive superpixel weights); ``"keep"``
contrasts signed maps unchanged (the original's Grad-CAM has no ReLU on the combined map, so
its signed maps enter the differences; the ``gradcam`` preset does the same).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_probability
from .._types import Model
from ..models import Classifier, as_classifier, check_model_input
from ..numerics import minmax_normalise
from ..registry import METHODS, spec_of, to_json
from ..scoring import Scorer

__all__ = [
    "CWOX",
    "ContrastiveExplanation",
    "cwox",
    "top_classes",
    "contrast",
    "stage_layers",
    "CWOX_BASES",
    "NEGATIVE_POLICIES",
    "RESCALE_POLICIES",
]

#: What to do with negative base maps (see the module docstring).
NEGATIVE_POLICIES = ("error", "clamp", "keep")
#: How each base map is scaled before the contrast: ``"none"``; ``"max"`` divides by its
#: maximum (the original's LIME); ``"minmax"`` maps its range onto [0, 1] (the original's RISE).
RESCALE_POLICIES = ("none", "max", "minmax")


@dataclass(frozen=True)
class _Base:
    cluster: dict[str, Any]
    classes: dict[str, Any]
    delta: float
    negative: str
    rescale: str = "none"
    layers: str | None = None  # "gradcam" / "mwp": the stage layers come from stage_layers()


#: The original's base explainers: hyperparameters per stage, δ, the negative-map policy and
#: how each base map is scaled first (the original's RISE min-max scales every map, its LIME
#: divides by the maximum; its Grad-CAM and MWP contrast the raw maps).
CWOX_BASES: dict[str, _Base] = {
    "gradcam": _Base({"relu": False}, {"relu": False}, 50.0, "keep", layers="gradcam"),
    "mwp": _Base({}, {}, 60.0, "error", layers="mwp"),
    "rise": _Base(
        {"masks": 5000, "p": 0.3, "s": 15},
        {"masks": 3000, "p": 0.14, "s": 10},
        70.0,
        "error",
        rescale="minmax",
    ),
    "lime": _Base(
        {"samples": 2000, "removal": "black"},
        {"samples": 2000, "removal": "black"},
        85.0,
        "clamp",
        rescale="max",
    ),
}

#: δ for a base explainer without a preset.
DEFAULT_DELTA = 50.0


# ---------------------------------------------------------------------- top classes
def top_classes(
    probabilities: Tensor, top: int | None = None, top_p: float | None = 0.95, max_top: int = 5
) -> list[list[int]]:
    """The top classes of each image, most probable first, as the original app chooses them.

    ``top`` given: the ``top`` most probable classes. Otherwise the smallest K whose sorted
    probabilities sum to at least ``top_p``, capped at ``max_top`` (the app's default:
    cumulative 0.95, at most 5).

    Args:
        probabilities: (B, num_classes) softmax probabilities.
        top: a fixed count, or None.
        top_p: the cumulative probability in (0, 1] (used when ``top`` is None).
        max_top: the most classes chosen by ``top_p``.

    Example:
        >>> p = torch.tensor([[0.6, 0.3, 0.06, 0.04], [0.97, 0.01, 0.01, 0.01]])
        >>> top_classes(p), top_classes(p, top=2)
        ([[0, 1, 2], [0]], [[0, 1], [0, 1]])
    """
    if not isinstance(probabilities, Tensor) or probabilities.ndim != 2:
        raise ValueError(
            "probabilities: expected a (B, num_classes) tensor, got "
            f"{getattr(probabilities, 'shape', type(probabilities).__name__)}"
        )
    k = probabilities.shape[1]
    order = probabilities.detach().double().cpu().sort(dim=1, descending=True)
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= k:
            raise ValueError(f"top: expected an int in [1, {k}], got {top!r}")
        return [row[:top].tolist() for row in order.indices]
    if top_p is None:
        raise ValueError("top_p: give top (a count) or top_p (a cumulative probability)")
    check_probability(top_p, "top_p", open_low=True)
    if isinstance(max_top, bool) or not isinstance(max_top, int) or max_top < 1:
        raise ValueError(f"max_top: expected a positive int, got {max_top!r}")
    cum = order.values.cumsum(dim=1)
    # smallest K with cumsum >= top_p (rounding: a row summing to 1 - 1e-7 still stops at k)
    count = ((cum < top_p - 1e-9).sum(dim=1) + 1).clamp(max=min(max_top, k))
    return [row[: int(n)].tolist() for row, n in zip(order.indices, count, strict=True)]


# ---------------------------------------------------------------------- layers
def stage_layers(model: Classifier, base: str = "gradcam") -> tuple[str | None, str | None]:
    """The (cluster, class) layers of a layer base explainer on ``model``.

    The original reads ResNet-50's Grad-CAM at ``layer4`` (clusters) and ``layer3.5.relu``
    (classes: the last block of the stride-16 stage), MWP at ``layer4`` and ``layer4.0.relu``
    (the first block of the last stage). Generalised: the cluster layer is the model's feature
    layer; among the *blocks* (modules whose last name component is an index, such as
    ``_blocks.10`` or ``layer3.5``), Grad-CAM's class layer is the last one at twice the feature
    layer's resolution, MWP's the first one at the feature layer's resolution. On
    EfficientNet-Lite0 that is ``_bn1`` (7x7) with ``_blocks.10`` (14x14) or ``_blocks.11``
    (7x7). Without a feature layer, or without such a block, both are ``None`` / the cluster
    layer (the explainer's default).
    """
    if base not in ("gradcam", "mwp"):
        raise ValueError(f"base: expected 'gradcam' or 'mwp', got {base!r}")
    feature = getattr(model, "feature_layer", None)
    if feature is None:
        return None, None
    table = model.layers()
    shapes = {name: shape for name, _, shape in table}
    fshape = shapes.get(feature)
    if fshape is None or len(fshape) != 4:
        return feature, feature
    fh, fw = fshape[-2:]
    blocks = [
        (name, shape)
        for name, _, shape in table
        if name.rsplit(".", 1)[-1].isdigit() and shape is not None and len(shape) == 4
    ]
    if base == "gradcam":
        finer = [n for n, s in blocks if tuple(s[-2:]) == (2 * fh, 2 * fw)]
        return feature, (finer[-1] if finer else feature)
    same = [n for n, s in blocks if tuple(s[-2:]) == (fh, fw)]
    return feature, (same[0] if same else feature)


# ---------------------------------------------------------------------- explainers
ExplainerLike = str | dict | Any


def _registered_name(explainer: Any) -> str | None:
    try:
        return str(spec_of(explainer, METHODS)["method"])
    except ValueError:
        return None


def _build(
    model: Classifier,
    spec: ExplainerLike,
    stage: str,
    seed: int,
) -> tuple[Any, str | None, _Base | None]:
    """An explainer from a name (preset applied), a spec dict (as given) or an object."""
    from ..api import make_explainer

    if isinstance(spec, str):
        name = METHODS.get(spec).name
        base = CWOX_BASES.get(name)
        params: dict[str, Any] = {}
        if base is not None:
            params = dict(base.cluster if stage == "cluster" else base.classes)
            if base.layers is not None:
                cluster_layer, class_layer = stage_layers(model, base.layers)
                layer = cluster_layer if stage == "cluster" else class_layer
                if layer is not None:
                    params["layer"] = layer
        return make_explainer(model, name, seed=seed, **params), name, base
    if isinstance(spec, dict):
        params = dict(spec)
        if "method" not in params:
            raise ValueError(f"{stage}_explainer: a spec dict needs a 'method' key, got {spec!r}")
        name = METHODS.get(params.pop("method")).name
        own_seed = params.pop("seed", seed)
        return make_explainer(model, name, seed=own_seed, **params), name, None
    if not callable(getattr(spec, "explain", None)):
        raise TypeError(
            f"{stage}_explainer: expected a method name, a spec dict "
            f"{{'method': ..., **params}} or an explainer with .explain(x, target), "
            f"got {type(spec).__name__}"
        )
    return spec, _registered_name(spec), None


# ---------------------------------------------------------------------- result
@dataclass
class ContrastiveExplanation:
    """CWOX-2s maps for a batch of images (lists, since clusters differ per image).

    Attributes:
        clusters: per image, its clusters (lists of class indices), in order.
        cluster_maps: per image, the contrastive cluster maps H_i (K, H, W).
        class_maps: per image and cluster, the contrastive class maps H_ik (m, H, W), or None
            for a singleton cluster.
        cluster_base: per image, the base maps S(C_i) (K, H, W) as contrasted (after the
            negative policy and rescaling).
        class_base: per image and cluster, the base maps S(c_k) (m, H, W), or None.
        thresholds: per image, the δ-percentile of each H_i (K,) (the support is H_i above it).
        probabilities: (B, num_classes) the model's softmax probabilities on the images.
        delta: the percentile δ in [0, 100].
        negative: the negative-map policy used.
        cluster_spec / class_spec: the base explainers' specs (``{"method": name, **params}``).
    """

    clusters: list[list[list[int]]]
    cluster_maps: list[Tensor]
    class_maps: list[list[Tensor | None]]
    cluster_base: list[Tensor]
    class_base: list[list[Tensor | None]]
    thresholds: list[Tensor]
    probabilities: Tensor
    delta: float
    negative: str
    cluster_spec: dict[str, Any] = field(default_factory=dict)
    class_spec: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clusters)

    def __getitem__(self, i: int) -> ContrastiveExplanation:
        """The explanation of image ``i`` (a batch of one)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        i = i % len(self)
        return ContrastiveExplanation(
            [self.clusters[i]],
            [self.cluster_maps[i]],
            [self.class_maps[i]],
            [self.cluster_base[i]],
            [self.class_base[i]],
            [self.thresholds[i]],
            self.probabilities[i : i + 1],
            self.delta,
            self.negative,
            dict(self.cluster_spec),
            dict(self.class_spec),
        )

    def cluster_probability(self, i: int) -> list[float]:
        """P(C) = Σ_{c∈C} p_c of each cluster of image ``i``."""
        p = self.probabilities[i]
        return [float(p[c].sum()) for c in self.clusters[i]]

    def summary(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """A JSON-friendly summary: settings and, per image, clusters, classes, probabilities."""
        images = []
        for i, clusters in enumerate(self.clusters):
            p = self.probabilities[i]
            rows = []
            for j, members in enumerate(clusters):
                rows.append(
                    {
                        "classes": [int(c) for c in members],
                        "names": [class_names[c] for c in members] if class_names else None,
                        "probability": float(p[members].sum()),
                        "class_probabilities": [float(p[c]) for c in members],
                        "threshold": float(self.thresholds[i][j]),
                        "class_maps": self.class_maps[i][j] is not None,
                    }
                )
            images.append({"clusters": rows})
        return {
            "method": "cwox-2s",
            "delta": self.delta,
            "negative": self.negative,
            "cluster_explainer": to_json(self.cluster_spec),
            "class_explainer": to_json(self.class_spec),
            "images": images,
        }


# ---------------------------------------------------------------------- contrast
def contrast(
    cluster_base: Tensor, class_base: Sequence[Tensor | None], delta: float
) -> tuple[Tensor, list[Tensor | None], Tensor]:
    """CWOX-2s' formulas on one image's base maps.

    Args:
        cluster_base: S(C_i) for the K clusters (K, H, W).
        class_base: per cluster, S(c_k) of its m members (m, H, W), or None (no class maps).
        delta: the percentile δ in [0, 100] of the support.

    Returns:
        The cluster maps H_i (K, H, W), the class maps H_ik per cluster (m, H, W) or None, and
        the thresholds percentile(H_i, δ) (K,).

    Example:
        >>> s = torch.tensor([[[2.0, 1.0, 0.0]], [[0.0, 1.0, 3.0]]])  # two clusters, 1x3 maps
        >>> a = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])  # two classes of cluster 1
        >>> h, hc, q = contrast(s, [a, None], delta=0)
        >>> h[0].tolist(), hc[0].tolist(), hc[1]
        ([[2.0, 0.0, 0.0]], [[[1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]], None)
    """
    k = cluster_base.shape[0]
    s = cluster_base.double()
    d = s if k == 1 else k * s - s.sum(0, keepdim=True)
    h = torch.where(d > 0, d, torch.zeros_like(d))
    q = torch.quantile(h.flatten(1), float(delta) / 100.0, dim=1)  # numpy's linear percentile
    out: list[Tensor | None] = []
    for i, sc in enumerate(class_base):
        if sc is None:
            out.append(None)
            continue
        m = sc.shape[0]
        d = m * sc.double() - sc.double().sum(0, keepdim=True)
        keep = (h[i] > q[i]) & (d > 0)  # the support, and the positive part (no -0.0)
        out.append(torch.where(keep, d, torch.zeros_like(d)).to(cluster_base.dtype))
    return h.to(cluster_base.dtype), out, q


# ---------------------------------------------------------------------- checks
def _check_clusters(clusters: object, batch: int, num_classes: int) -> list[list[list[int]]]:
    """One clustering for every image, or one per image -> per image, lists of classes."""
    if not isinstance(clusters, list | tuple) or not clusters:
        raise TypeError(
            f"clusters: expected a non-empty list of clusters (lists of classes), or "
            f"one such list per image, got {clusters!r}"
        )

    def is_class(v: object) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)

    def clustering(value: object, where: str) -> list[list[int]]:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(
                f"clusters{where}: expected a non-empty list of clusters, got {value!r}"
            )
        out: list[list[int]] = []
        seen: set[int] = set()
        for j, c in enumerate(value):
            if not isinstance(c, list | tuple | set | frozenset):
                raise TypeError(f"clusters{where}[{j}]: expected a list of classes, got {c!r}")
            if not c:
                raise ValueError(f"clusters{where}[{j}]: a cluster needs at least one class")
            members = []
            for v in c:
                if not is_class(v):
                    raise TypeError(
                        f"clusters{where}[{j}]: expected class indices (ints), got {v!r}"
                    )
                v = int(v)
                if not 0 <= v < num_classes:
                    raise ValueError(
                        f"clusters{where}[{j}]: class {v} is outside "
                        f"[0, {num_classes}) for this model"
                    )
                if v in seen:
                    raise ValueError(
                        f"clusters{where}: class {v} appears twice (clusters must not overlap)"
                    )
                seen.add(v)
                members.append(v)
            out.append(members)
        return out

    first = clusters[0]
    per_image = (
        isinstance(first, list | tuple)
        and bool(first)
        and all(isinstance(c, list | tuple | set | frozenset) for c in first)
    )
    if not per_image:
        one = clustering(clusters, "")
        return [[list(c) for c in one] for _ in range(batch)]
    if len(clusters) != batch:
        raise ValueError(
            f"clusters: expected one clustering per image ({batch}), got {len(clusters)}"
        )
    return [clustering(c, f"[{i}]") for i, c in enumerate(clusters)]


def _check_rescale(rescale: object) -> str:
    """``rescale`` as one of :data:`RESCALE_POLICIES` (``True``: "max", ``False``: "none")."""
    if isinstance(rescale, bool):
        return "max" if rescale else "none"
    if not isinstance(rescale, str):
        raise TypeError(f"rescale: expected one of {RESCALE_POLICIES} or a bool, got {rescale!r}")
    return check_choice(rescale, "rescale", RESCALE_POLICIES)


def _rescale(maps: Tensor, how: str) -> Tensor:
    """Each map of ``maps`` (N, H, W) scaled as ``how`` says (see :data:`RESCALE_POLICIES`).

    A map whose maximum is not positive (``"max"``) is left as it is; a constant map
    (``"minmax"``) becomes 0, where the original divides 0 by 0.

    Example:
        >>> m = torch.tensor([[[2.0, 4.0], [3.0, 4.0]]])
        >>> _rescale(m, "max").tolist(), _rescale(m, "minmax").tolist()
        ([[[0.5, 1.0], [0.75, 1.0]]], [[[0.0, 1.0], [0.5, 1.0]]])
    """
    if how == "none" or maps.numel() == 0:
        return maps
    if how == "minmax":
        return minmax_normalise(maps[:, None])[:, 0]
    top = maps.flatten(1).amax(1)[:, None, None]
    return torch.where(top > 1e-30, maps / top.clamp(min=1e-30), maps)


def _check_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float | np.floating | np.integer):
        raise TypeError(f"delta: expected a percentile in [0, 100], got {delta!r}")
    d = float(delta)
    if not 0.0 <= d <= 100.0:
        raise ValueError(f"delta: expected a percentile in [0, 100], got {delta!r}")
    return d


# ---------------------------------------------------------------------- CWOX-2s
class CWOX:
    """CWOX-2s with two base explainers (see the module docstring).

    Args:
        model: the classifier.
        cluster_explainer: the cluster stage's base explainer: a registered method name (the
            original's settings of :data:`CWOX_BASES` applied when it has some: ``"gradcam"``,
            ``"mwp"``, ``"rise"``, ``"lime"``), a spec dict ``{"method": name, **params}`` (used
            as given) or an explainer object (anything with ``explain(x, target)``).
        class_explainer: the class stage's; ``None``: for a name, the same method with its
            class-stage preset; otherwise the same explainer as the cluster stage (one pass of
            a black-box method then serves both stages).
        delta: the support percentile δ in [0, 100]; default the preset's (Grad-CAM 50, MWP
            60, RISE 70, LIME 85), else 50.
        negative: ``"error"``, ``"clamp"`` or ``"keep"`` for negative base maps; default the
            preset's (``"keep"`` for Grad-CAM, ``"clamp"`` for LIME), else ``"error"``.
        rescale: how each base map is scaled before contrasting: ``"none"``, ``"max"`` (divide
            by its maximum: the original's LIME) or ``"minmax"`` (map its range onto [0, 1]: the
            original's RISE; a constant map becomes 0); ``True`` / ``False`` mean ``"max"`` /
            ``"none"``. Default the preset's, else ``"none"``.
        batch_size: (image, target) pairs per call of a base explainer without ``explain_each``.
        seed: the seed of stochastic base explainers built from a name or spec.

    Example:
        >>> from unmask.testing import conv_region_model, region_images
        >>> e = CWOX(conv_region_model(), "gradcam").explain(region_images(2), [[0], [1]])
        >>> len(e), e.cluster_maps[0].shape, e.class_maps[0]
        (2, torch.Size([2, 32, 32]), [None, None])
    """

    def __init__(
        self,
        model: Model,
        cluster_explainer: ExplainerLike = "gradcam",
        class_explainer: ExplainerLike | None = None,
        *,
        delta: float | None = None,
        negative: str | None = None,
        rescale: str | bool | None = None,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        self.model = as_classifier(model, "model")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.cluster_explainer, name, base = _build(self.model, cluster_explainer, "cluster", seed)
        if class_explainer is None:
            if isinstance(cluster_explainer, str):
                self.class_explainer, _, _ = _build(self.model, cluster_explainer, "class", seed)
            else:
                self.class_explainer = self.cluster_explainer
        else:
            self.class_explainer, _, _ = _build(self.model, class_explainer, "class", seed)
        if (
            self.class_explainer is not self.cluster_explainer
            and spec_or_none(self.class_explainer) is not None
            and spec_or_none(self.class_explainer) == spec_or_none(self.cluster_explainer)
        ):
            self.class_explainer = self.cluster_explainer  # the same spec: one pass for both
        self.delta = _check_delta(
            base.delta if delta is None and base else DEFAULT_DELTA if delta is None else delta
        )
        policy = negative if negative is not None else (base.negative if base else "error")
        self.negative = check_choice(policy, "negative", NEGATIVE_POLICIES)
        self.rescale = _check_rescale(
            rescale if rescale is not None else (base.rescale if base else "none")
        )
        self.method = name

    # -- base maps -------------------------------------------------------------------
    def _base_maps(self, explainer: Any, x: Tensor, targets: list[list[Any]]) -> list[list[Tensor]]:
        """Per image, the base map (H, W) of each of its targets (a class or a list)."""
        b = x.shape[0]
        out: list[list[Tensor]] = [[] for _ in range(b)]
        each = getattr(explainer, "explain_each", None)
        if each is not None:
            t_max = max(len(t) for t in targets)
            if t_max == 0:
                return out
            # Pad images with fewer targets by repeating one of theirs (or any class): the
            # perturbations are scored once whatever the number of targets.
            padded = [
                [(t[j] if j < len(t) else (t[0] if t else 0)) for t in targets]
                for j in range(t_max)
            ]
            results = each(x, padded)
            for j, e in enumerate(results):
                for i in range(b):
                    if j < len(targets[i]):
                        out[i].append(e.saliency[i, 0].detach().float().cpu())
            return out
        pairs = [(i, t) for i in range(b) for t in targets[i]]
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            idx = torch.tensor([i for i, _ in chunk], device=x.device)
            e = explainer.explain(x[idx], [t for _, t in chunk])
            for row, (i, _) in enumerate(chunk):
                out[i].append(e.saliency[row, 0].detach().float().cpu())
        return out

    def _policy(self, maps: Tensor, stage: str) -> Tensor:
        lo = float(maps.min()) if maps.numel() else 0.0
        if lo < 0:
            if self.negative == "error":
                raise ValueError(
                    f"{stage}_explainer: CWOX-2s contrasts non-negative base maps, but "
                    f"{_describe(getattr(self, stage + '_explainer'))} returned values down to "
                    f"{lo:.4g}; pass negative='clamp' to clip them at 0, or negative='keep' to "
                    "contrast the signed maps (as the original's Grad-CAM)"
                )
            if self.negative == "clamp":
                maps = maps.clamp(min=0)
        return _rescale(maps, self.rescale)

    # -- explain ---------------------------------------------------------------------
    def explain(
        self,
        x: Tensor,
        clusters: Any = None,
        *,
        tree: Any = None,
        cut_level: int = 0,
        top: int | None = None,
        top_p: float | None = 0.95,
        max_top: int = 5,
    ) -> ContrastiveExplanation:
        """Explain images ``x`` (B, 3, H, W) cluster by cluster.

        Args:
            x: images in [0, 1].
            clusters: one clustering for every image (``[[486, 889], [402, 420, 546]]``) or one
                per image; or a tree (as ``tree``); or ``None`` with ``tree``.
            tree: a :class:`~unmask.contrastive.LabelTree` (or a name / file for
                :func:`~unmask.contrastive.load_tree`) whose cut at ``cut_level`` groups each
                image's top classes (chosen by :func:`top_classes` with ``top``, ``top_p``,
                ``max_top``).

        Returns:
            A :class:`ContrastiveExplanation`.
        """
        from .trees import LabelTree, load_tree

        x = check_model_input(self.model, x, "x")
        b = x.shape[0]
        if isinstance(clusters, LabelTree | str | os.PathLike):  # a tree given as clusters
            if tree is not None:
                raise ValueError("clusters: a tree was given twice (as clusters and as tree)")
            clusters, tree = None, clusters
        probs = Scorer(self.model, batch_size=self.batch_size).probabilities(x).detach().cpu()
        if (clusters is None) == (tree is None):
            raise ValueError(
                "clusters: give either clusters (lists of classes) or tree "
                "(then the top classes are clustered by the tree)"
            )
        if tree is not None:
            if not isinstance(tree, LabelTree):
                tree = load_tree(tree, num_classes=self.model.num_classes)
            if tree.num_classes != self.model.num_classes:
                raise ValueError(
                    f"tree: the tree has {tree.num_classes} classes, the model "
                    f"{self.model.num_classes}"
                )
            tops = top_classes(probs, top=top, top_p=top_p, max_top=max_top)
            clusters = [tree.clusters(t, cut_level) for t in tops]
        per_image = _check_clusters(clusters, b, self.model.num_classes)

        cluster_targets: list[list[Any]] = [[list(c) for c in cl] for cl in per_image]
        class_targets: list[list[Any]] = [
            [c for cl in image for c in cl if len(cl) > 1] for image in per_image
        ]
        if self.class_explainer is self.cluster_explainer:
            both = [ct + kt for ct, kt in zip(cluster_targets, class_targets, strict=True)]
            maps = self._base_maps(self.cluster_explainer, x, both)
            c_maps = [m[: len(ct)] for m, ct in zip(maps, cluster_targets, strict=True)]
            k_maps = [m[len(ct) :] for m, ct in zip(maps, cluster_targets, strict=True)]
        else:
            c_maps = self._base_maps(self.cluster_explainer, x, cluster_targets)
            k_maps = (
                self._base_maps(self.class_explainer, x, class_targets)
                if any(class_targets)
                else [[] for _ in range(b)]
            )

        out = ContrastiveExplanation(
            [],
            [],
            [],
            [],
            [],
            [],
            probs,
            self.delta,
            self.negative,
            spec_or_none(self.cluster_explainer) or {},
            spec_or_none(self.class_explainer) or {},
        )
        for i, clustering in enumerate(per_image):
            s = self._policy(torch.stack(c_maps[i]), "cluster")
            kb: list[Tensor | None] = []
            pos = 0
            classes = self._policy(torch.stack(k_maps[i]), "class") if k_maps[i] else None
            for members in clustering:
                if len(members) > 1:
                    assert classes is not None
                    kb.append(classes[pos : pos + len(members)])
                    pos += len(members)
                else:
                    kb.append(None)
            h, hk, q = contrast(s, kb, self.delta)
            out.clusters.append([list(c) for c in clustering])
            out.cluster_maps.append(h)
            out.class_maps.append(hk)
            out.cluster_base.append(s)
            out.class_base.append(kb)
            out.thresholds.append(q)
        return out


def spec_or_none(explainer: Any) -> dict[str, Any] | None:
    """The registry spec of an explainer, or None for an unregistered one."""
    try:
        return spec_of(explainer, METHODS)
    except ValueError:
        return None


def _describe(explainer: Any) -> str:
    spec = spec_or_none(explainer)
    return repr(spec["method"]) if spec else type(explainer).__name__


def cwox(
    model: Model,
    x: Tensor,
    clusters: Any = None,
    *,
    tree: Any = None,
    cluster_explainer: ExplainerLike = "gradcam",
    class_explainer: ExplainerLike | None = None,
    delta: float | None = None,
    negative: str | None = None,
    rescale: str | bool | None = None,
    cut_level: int = 0,
    top: int | None = None,
    top_p: float | None = 0.95,
    max_top: int = 5,
    batch_size: int = 16,
    seed: int = 0,
) -> ContrastiveExplanation:
    """CWOX-2s in one call: ``CWOX(model, ...).explain(x, clusters, tree=...)``.

    ``clusters`` may also be a tree (a :class:`~unmask.contrastive.LabelTree`, a shipped tree's
    name such as ``"resnet50"``, or a tree file): the top classes of each image are chosen by
    :func:`top_classes` and clustered by cutting the tree at ``cut_level``. See :class:`CWOX`
    for the other arguments.

    Example:
        >>> from unmask.testing import conv_region_model, region_images
        >>> e = cwox(conv_region_model(), region_images(1), [[0], [1]], delta=50)
        >>> e.summary()["images"][0]["clusters"][1]["classes"]
        [1]
    """
    explainer = CWOX(
        model,
        cluster_explainer,
        class_explainer,
        delta=delta,
        negative=negative,
        rescale=rescale,
        batch_size=batch_size,
        seed=seed,
    )
    return explainer.explain(
        x, clusters, tree=tree, cut_level=cut_level, top=top, top_p=top_p, max_top=max_top
    )
