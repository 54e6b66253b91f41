"""Contrastive faithfulness in a benchmark: each image's clusters, its (target, competitors)
pairs, CWOX-2s as a method, and the maps every method gives the pairs.

Seed 003 (CWOX, Xie et al. 2023) scores a contrastive map H of target classes C against
competing classes C′ with CAUC and CDROP (:mod:`unmask.metrics.contrastive`). In a benchmark
the pairs come from the image and the model: the image's top classes (:func:`unmask.contrastive.
top_classes`) are grouped into label confusion clusters by a label tree (the ``[contrast]``
table), and

* a **cluster** pair (images with two or more clusters): C = a cluster, C′ = the image's other
  top classes;
* a **class** pair (each member of a cluster of two or more): C = the class, C′ = its cluster
  mates (as the original's ``Evaluation/experiments``).

The map of a pair: for ``method = "cwox"`` (CWOX-2s over a base explainer, :class:`CwoxMethod`)
the contrastive cluster map H_i or class map H_ik; for any other method, its plain map of the
pair's target (a cluster is explained as a set of classes). So a benchmark with ``cwox`` and its
base method compares the two on the same pairs, as ``benchmarks/cwox_contrastive.py`` did by
hand. The ``[contrast]`` table::

    [contrast]
    tree = "auto"          # auto: the published ResNet-50 tree for 1000-class models, the
                           # data-free tree of the model otherwise; "resnet50", "data-free" or a
                           # tree JSON file (relative to the config)
    clusters = [[0], [1, 2]]   # instead of a tree: a fixed partition of the classes
    cut_level = 0
    top_p = 0.95           # the top classes: cumulative probability, at most max_top of them,
    max_top = 5            # or exactly `top` of them
    pairs = ["cluster", "class"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .._types import Model, Target
from ..params import BatchSize, MethodName, Seed
from ..registry import Entry

__all__ = [
    "Pair",
    "Contrast",
    "CwoxMethod",
    "CWOX_ENTRY",
    "check_contrast",
    "pair_maps",
    "CONTRAST_DEFAULTS",
    "LEVELS",
]

LEVELS = ("cluster", "class")
CONTRAST_DEFAULTS: dict[str, Any] = {
    "tree": "auto",
    "cut_level": 0,
    "top": None,
    "top_p": 0.95,
    "max_top": 5,
    "pairs": list(LEVELS),
}
_KEYS = ("tree", "clusters", "cut_level", "top", "top_p", "max_top", "pairs")


def _fail(key: str, message: str) -> ValueError:
    return ValueError(f"contrast.{key}: {message}")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_contrast(table: Any, base: str | Path = ".") -> dict[str, Any]:
    """The ``[contrast]`` table checked and completed with the defaults (paths made absolute)."""
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ValueError(f"contrast: expected a table, got {type(table).__name__}")
    for k in table:
        if k not in _KEYS:
            raise _fail(k, f"unknown key; expected one of: {', '.join(_KEYS)}")
    out = {**CONTRAST_DEFAULTS, **table}
    if "clusters" in table:
        if "tree" in table:
            raise _fail("clusters", "give clusters or tree, not both")
        cl = table["clusters"]
        if (
            not isinstance(cl, list)
            or not cl
            or not all(isinstance(c, list) and c and all(_int(v) and v >= 0 for v in c) for c in cl)
        ):
            raise _fail("clusters", f"expected non-empty lists of class indices, got {cl!r}")
        flat = [v for c in cl for v in c]
        if len(flat) != len(set(flat)):
            raise _fail("clusters", "a class appears in two clusters")
        out.pop("tree")
    else:
        tree = out["tree"]
        if not isinstance(tree, str) or not tree:
            raise _fail("tree", f"expected auto, resnet50, data-free or a file, got {tree!r}")
        if tree not in ("auto", "resnet50", "data-free"):
            path = Path(tree)
            path = path if path.is_absolute() else Path(base) / path
            if not path.is_file():
                raise _fail(
                    "tree",
                    f"no such tree file {str(path)!r}; expected auto, resnet50, "
                    "data-free or a tree JSON file",
                )
            out["tree"] = str(path.resolve())
    if not _int(out["cut_level"]) or out["cut_level"] < 0:
        raise _fail("cut_level", f"expected an integer >= 0, got {out['cut_level']!r}")
    if out["top"] is not None and (not _int(out["top"]) or out["top"] < 1):
        raise _fail("top", f"expected a positive integer, got {out['top']!r}")
    if (
        not isinstance(out["top_p"], int | float)
        or isinstance(out["top_p"], bool)
        or not 0 < out["top_p"] <= 1
    ):
        raise _fail("top_p", f"expected a number in (0, 1], got {out['top_p']!r}")
    if not _int(out["max_top"]) or out["max_top"] < 1:
        raise _fail("max_top", f"expected a positive integer, got {out['max_top']!r}")
    pairs = out["pairs"]
    if not isinstance(pairs, list) or not pairs or any(p not in LEVELS for p in pairs):
        raise _fail("pairs", f"expected a non-empty list of {', '.join(LEVELS)}, got {pairs!r}")
    if out["top"] is None:
        out.pop("top")
    return out


@dataclass(frozen=True)
class Pair:
    """One (target, competitors) pair of an image.

    Attributes:
        level: ``"cluster"`` or ``"class"``.
        target: the classes C (one class for a class pair).
        competitors: the competing classes C′.
        cluster: the index of the cluster (in the image's clustering).
        member: the class's position in its cluster (class pairs), else None.
    """

    level: str
    target: tuple[int, ...]
    competitors: tuple[int, ...]
    cluster: int
    member: int | None = None

    def explained(self) -> int | list[int]:
        """The target as an explainer takes it: a class, or a set (list) of classes."""
        return self.target[0] if self.level == "class" else list(self.target)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "target": list(self.target),
            "competitors": list(self.competitors),
        }


class Contrast:
    """The clusters and pairs of images for one model (the checked ``[contrast]`` table).

    Example:
        >>> from unmask.testing import conv_region_model
        >>> c = Contrast({**CONTRAST_DEFAULTS, "clusters": [[0], [1, 2]]}, conv_region_model(3))
        >>> c.clusters(torch.tensor([0.1, 0.6, 0.3]))
        [[1, 2], [0]]
        >>> [(p.level, p.target, p.competitors) for p in c.pairs([[1, 2], [0]])][1:3]
        [('cluster', (0,), (1, 2)), ('class', (1,), (2,))]
    """

    def __init__(self, config: dict[str, Any], model: Model) -> None:
        self.config = config
        self.num_classes = model.num_classes
        self.tree = None
        self.partition: list[list[int]] | None = None
        if "clusters" in config:
            self.partition = [list(c) for c in config["clusters"]]
            bad = [v for c in self.partition for v in c if v >= self.num_classes]
            if bad:
                raise _fail(
                    "clusters", f"class {bad[0]} is outside [0, {self.num_classes}) for this model"
                )
        else:
            from ..contrastive import data_free_tree, load_tree

            name = config["tree"]
            if name == "auto":
                name = "resnet50" if self.num_classes == 1000 else "data-free"
            self.tree = (
                data_free_tree(model)
                if name == "data-free"
                else load_tree(name, num_classes=self.num_classes)
            )
            if self.tree.num_classes != self.num_classes:
                raise _fail(
                    "tree",
                    f"the tree has {self.tree.num_classes} classes, the model {self.num_classes}",
                )
            self.tree._check_cut_level(config["cut_level"])

    def top(self, probabilities: Tensor) -> list[int]:
        """The top classes of one image, most probable first (probabilities (K,))."""
        from ..contrastive import top_classes

        c = self.config
        return top_classes(
            probabilities[None].double(), top=c.get("top"), top_p=c["top_p"], max_top=c["max_top"]
        )[0]

    def clusters(self, probabilities: Tensor) -> list[list[int]]:
        """The image's top classes grouped into clusters (in order of first appearance)."""
        tops = self.top(probabilities)
        if self.tree is not None:
            return self.tree.clusters(tops, self.config["cut_level"])
        assert self.partition is not None
        group = {v: i for i, c in enumerate(self.partition) for v in c}
        out: dict[Any, list[int]] = {}
        for c in tops:
            out.setdefault(group.get(c, ("own", c)), []).append(c)
        return list(out.values())

    def pairs(self, clusters: list[list[int]]) -> list[Pair]:
        """The image's pairs: cluster pairs, then class pairs (see the module docstring)."""
        levels = self.config["pairs"]
        tops = [c for cl in clusters for c in cl]
        out = []
        if "cluster" in levels and len(clusters) > 1:
            for i, members in enumerate(clusters):
                others = tuple(c for c in tops if c not in members)
                out.append(Pair("cluster", tuple(members), others, i))
        if "class" in levels:
            for i, members in enumerate(clusters):
                if len(members) < 2:
                    continue
                for k, c in enumerate(members):
                    out.append(Pair("class", (c,), tuple(m for m in members if m != c), i, k))
        return out


class CwoxMethod:
    """CWOX-2s (:class:`unmask.contrastive.CWOX`) as a benchmark method: ``method = "cwox"``.

    The image's clusters come from the benchmark's ``[contrast]`` table, so that CWOX-2s and
    the plain methods are scored on the same pairs.

    Args:
        model: the classifier.
        base: the base explainer, a registered method name (its CWOX-2s presets apply:
            Grad-CAM without ReLU at two layers, MWP, RISE, LIME; see docs/cwox.md).
        delta: the support percentile δ in [0, 100] (default: the base's preset, else 50).
        negative: ``"error"``, ``"clamp"`` or ``"keep"`` for negative base maps (default: the
            preset's).
        rescale: ``"none"``, ``"max"`` or ``"minmax"``: how base maps are scaled first (default:
            the preset's; see :class:`unmask.contrastive.CWOX`).
        batch_size: (image, target) pairs per base-explainer call.
        seed: the seed of a stochastic base.
    """

    method = "cwox"

    def __init__(
        self,
        model: Model,
        base: MethodName = "gradcam",
        *,
        delta: float | None = None,
        negative: Literal["error", "clamp", "keep"] | None = None,
        rescale: Literal["none", "max", "minmax"] | bool | None = None,
        batch_size: BatchSize = 16,
        seed: Seed = 0,
    ) -> None:
        from ..contrastive import CWOX
        from ..registry import METHODS

        if not isinstance(base, str) or base not in METHODS:
            raise ValueError(
                f"base: expected a registered method name (see `unmask methods`), got {base!r}"
            )
        self.base = METHODS.get(base).name
        self.cwox = CWOX(
            model,
            self.base,
            delta=delta,
            negative=negative,
            rescale=rescale,
            batch_size=batch_size,
            seed=seed,
        )
        self.seed = seed

    @property
    def params(self) -> dict[str, Any]:
        """The resolved hyperparameters (what the unit's key is made of)."""
        from ..contrastive.cwox import spec_or_none
        from ..registry import to_json

        c = self.cwox
        return {
            "base": self.base,
            "delta": c.delta,
            "negative": c.negative,
            "rescale": c.rescale,
            "seed": self.seed,
            "cluster_explainer": to_json(spec_or_none(c.cluster_explainer) or {}),
            "class_explainer": to_json(spec_or_none(c.class_explainer) or {}),
        }

    def explain(self, x: Tensor, clusters: list[list[int]]) -> Any:
        """CWOX-2s of one image (1, 3, H, W) with its clusters."""
        return self.cwox.explain(x, [clusters])


#: The registry-style entry of ``method = "cwox"`` (hyperparameters checked like a method's).
CWOX_ENTRY = Entry("cwox", CwoxMethod, summary="CWOX-2s over a base explainer (seed 003)")


def cwox_saliency(e: Any, clusters: list[list[int]], target: Target) -> Tensor:
    """The unit's map of a CWOX-2s explanation: the cluster map of the target's cluster
    (the first cluster holding one of the target's classes; the first cluster otherwise),
    (1, 1, H, W)."""
    classes = set(target) if isinstance(target, list) else {target}
    index = next((i for i, c in enumerate(clusters) if classes & set(c)), 0)
    return e.cluster_maps[0][index][None, None].float()


def pair_maps(explainer: Any, x: Tensor, pairs: list[Pair], cwox: Any = None) -> Tensor:
    """The map of every pair (P, 1, H, W) for one image ``x`` (1, 3, H, W).

    ``cwox``: the image's CWOX-2s explanation (then ``explainer`` is the CwoxMethod): H_i for a
    cluster pair, H_ik for a class pair. Otherwise ``explainer``'s plain map of each pair's
    target (one pass over the perturbations with ``explain_each``).
    """
    if cwox is not None:
        maps = [
            cwox.cluster_maps[0][p.cluster]
            if p.level == "cluster"
            else cwox.class_maps[0][p.cluster][p.member]
            for p in pairs
        ]
        return torch.stack(maps)[:, None].float()
    targets = [p.explained() for p in pairs]
    each = getattr(explainer, "explain_each", None)
    if each is not None:
        return torch.cat([e.saliency for e in each(x, [[t] for t in targets])]).float()
    e = explainer.explain(x.expand(len(pairs), *x.shape[1:]), targets)
    return e.saliency.float()
