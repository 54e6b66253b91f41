"""Label confusion trees: load, cut and learn the class hierarchy CWOX-2s groups the top classes by.

CWOX-2s (Xie et al., "Two-stage holistic and contrastive explanation of image classification",
UAI 2023) explains the top classes of a prediction cluster by cluster: classes the classifier
confuses (cello and violin) form a *label confusion cluster*. The clusters come from a
hierarchical latent tree over the class labels, learned from which classes co-occur in the
classifier's top predictions, and cut at one of its levels.

The tree format is the one the original publishes (``ResNet50.json``): a JSON *list* of root
nodes (a forest), every node ``{"id", "text", "data": {"name", "level", "percentage"},
"children"}``. Level 1 is the lowest latent level; a level-1 node has no children and its
``text`` lists its member classes as ``c%03d-<name> <score>`` tokens (``"c486-cello 0.03
c889-violin 0.02"``). Every class sits in exactly one level-1 node, and every level-1 node at
the same depth. :func:`load_tree` reads such a file (or the published ResNet50 tree shipped with
the package, ``load_tree("resnet50")``); :meth:`LabelTree.clusters` cuts it exactly as the
original ``apply_hltm.get_cluster``; :meth:`LabelTree.save` writes the same format, so the
original's tools and these read each other's trees.

Learning a tree:

* :func:`top_k_documents` / :func:`documents_from_images` / :func:`read_documents` make the
  *documents*: the top-K classes of each image, K the smallest count whose sorted
  probabilities sum past 0.95; one-class documents are dropped, as in the paper.
* :func:`learn_tree` learns a hierarchical tree from documents: by size-constrained average
  linkage of the classes' co-occurrence (PPMI), or with a Python re-implementation of HLTA's
  island finding (mutual information, latent class models fitted by EM, the BIC
  unidimensionality and correlation tests) repeated level by level on the hard-assigned latent
  variables (see ``docs/contrastive-trees.md``).
* :func:`data_free_tree` builds one without data, from the cosine similarity of the rows of the
  classifier's last linear layer.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Model
from ..progress import Progress
from ..progress import reporter as _reporter

__all__ = [
    "TreeNode",
    "LabelTree",
    "load_tree",
    "list_trees",
    "top_k_documents",
    "documents_from_images",
    "read_documents",
    "learn_tree",
    "LEARN_METHODS",
    "ppmi_similarity",
    "data_free_tree",
    "final_linear_weight",
]

#: Trees shipped with the package: name -> (file in unmask/contrastive/data, number of classes).
_SHIPPED = {"resnet50": ("ResNet50.json", 1000)}

#: A class token in a node's text: ``c486-cello`` (the score that follows is a separate token).
_CLASS_TOKEN = re.compile(r"^c(\d+)-(.*)$")


@dataclass
class TreeNode:
    """One latent node of a label tree.

    Attributes:
        id: the node's id (``"Z137"``), unique in the tree.
        level: 1 for the lowest latent level, increasing towards the roots.
        children: the latent child nodes (empty at level 1).
        classes: at level 1 the member classes in the order of the node's text; above, every
            class below the node (in depth-first order).
        text: the ``text`` field as read or written (``"c486-cello 0.03 ..."``).
        percentage: the ``data.percentage`` field (the share of documents the node covers).
    """

    id: str
    level: int
    children: list[TreeNode] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    text: str = ""
    percentage: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The node in the published JSON format (children included)."""
        return {
            "id": self.id,
            "text": self.text,
            "data": {"name": self.id, "level": self.level, "percentage": self.percentage},
            "children": [c.to_json() for c in self.children],
        }


def _check_class_list(values: object, name: str, num_classes: int) -> list[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(
            f"{name}: expected a sequence of class indices (ints), got {type(values).__name__}"
        )
    if hasattr(values, "tolist"):  # numpy arrays and torch tensors
        values = values.tolist()
        if not isinstance(values, list):
            values = [values]
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise TypeError(f"{name}: expected class indices (ints), got {v!r}")
        c = int(v)
        if not 0 <= c < num_classes:
            raise ValueError(f"{name}: class {c} is outside [0, {num_classes})")
        out.append(c)
    seen: set[int] = set()
    for c in out:
        if c in seen:
            raise ValueError(f"{name}: class {c} appears more than once")
        seen.add(c)
    return out


class LabelTree:
    """A hierarchical tree over class labels (a forest of latent nodes), cut into clusters.

    Build one with :func:`load_tree`, :func:`learn_tree` or :func:`data_free_tree`.

    Args:
        roots: the root nodes (the highest level), each a :class:`TreeNode`.
        num_classes: the classifier's number of classes; classes are ``0 .. num_classes - 1``.
        class_names: a name per class (``num_classes`` names); defaults to the names read from
            the nodes' text where given, ``"class <i>"`` otherwise.

    Raises:
        ValueError: when a class sits in more than one lowest-level node, or the lowest-level
            nodes are not all at the same depth.

    Example:
        >>> tree = load_tree("resnet50")
        >>> tree.clusters([486, 889, 402, 420, 546])
        [[486, 889], [402, 420, 546]]
        >>> tree.clusters([486, 889, 402, 420, 546], cut_level=1)
        [[486, 889, 402, 420, 546]]
        >>> tree.depth, tree.num_classes
        (4, 1000)
    """

    def __init__(
        self, roots: Sequence[TreeNode], num_classes: int, class_names: Sequence[str] | None = None
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
        self.roots: list[TreeNode] = list(roots)
        self.num_classes = num_classes
        # path of every class: the latent nodes from its root down to its level-1 node
        self._paths: dict[int, list[TreeNode]] = {}
        self._nodes: dict[str, TreeNode] = {}
        depths: set[int] = set()

        def visit(node: TreeNode, prefix: list[TreeNode]) -> list[int]:
            if node.id in self._nodes:
                raise ValueError(f"tree: node id {node.id!r} appears more than once")
            self._nodes[node.id] = node
            path = prefix + [node]
            if not node.children:
                depths.add(len(path))
                for c in node.classes:
                    if c in self._paths:
                        raise ValueError(
                            f"tree: class {c} sits in two lowest-level nodes "
                            f"({self._paths[c][-1].id} and {node.id})"
                        )
                    if not 0 <= c < num_classes:
                        raise ValueError(
                            f"tree: class {c} in node {node.id} is outside "
                            f"[0, {num_classes}) (num_classes={num_classes})"
                        )
                    self._paths[c] = path
                return list(node.classes)
            below: list[int] = []
            for child in node.children:
                below += visit(child, path)
            node.classes = below
            return below

        for root in self.roots:
            visit(root, [])
        if len(depths) > 1:
            raise ValueError(
                f"tree: every lowest-level node must sit at the same depth, found "
                f"depths {sorted(depths)}"
            )
        self.depth: int = depths.pop() if depths else 0
        names = [f"class {i}" for i in range(num_classes)]
        if class_names is not None:
            if len(class_names) != num_classes:
                raise ValueError(
                    f"class_names: expected {num_classes} names, got {len(class_names)}"
                )
            names = [str(n) for n in class_names]
        self.class_names: list[str] = names

    # ------------------------------------------------------------------ structure
    @property
    def classes(self) -> list[int]:
        """The classes in the tree, in depth-first order of the lowest-level nodes."""
        return [c for r in self.roots for c in r.classes]

    @property
    def nodes(self) -> dict[str, TreeNode]:
        """Every latent node by id."""
        return dict(self._nodes)

    def level_nodes(self, level: int) -> list[TreeNode]:
        """The nodes of one level (1 = lowest), in depth-first order."""
        return [n for n in self._nodes.values() if n.level == level]

    def __contains__(self, cls: object) -> bool:
        return cls in self._paths

    def __repr__(self) -> str:
        sizes = [len(self.level_nodes(lv)) for lv in range(1, self.depth + 1)]
        return (
            f"LabelTree(num_classes={self.num_classes}, classes_in_tree={len(self._paths)}, "
            f"depth={self.depth}, nodes_per_level={sizes})"
        )

    def _check_cut_level(self, cut_level: object) -> int:
        if isinstance(cut_level, bool) or not isinstance(cut_level, Integral):
            raise TypeError(f"cut_level: expected an int, got {cut_level!r}")
        if not 0 <= int(cut_level) < self.depth:
            raise ValueError(
                f"cut_level: expected an int in [0, {self.depth - 1}] (0 = the lowest "
                f"latent level; this tree has {self.depth} levels), got {cut_level!r}"
            )
        return int(cut_level)

    def path(self, cls: int) -> list[str]:
        """The ids of the latent nodes above class ``cls``, from its root down to its level-1 node.

        Example:
            >>> load_tree("resnet50").path(486)
            ['Z41', 'Z32', 'Z29', 'Z136']
        """
        c = _check_class_list([cls], "cls", self.num_classes)[0]
        if c not in self._paths:
            raise ValueError(f"cls: class {c} is not in the tree")
        return [n.id for n in self._paths[c]]

    def ancestor(self, cls: int, cut_level: int = 0) -> str | None:
        """The id of the node above ``cls`` at ``cut_level`` (None when ``cls`` is not in it)."""
        c = _check_class_list([cls], "cls", self.num_classes)[0]
        lv = self._check_cut_level(cut_level)
        p = self._paths.get(c)
        return None if p is None else p[self.depth - 1 - lv].id

    def clusters(self, top_k: Sequence[int], cut_level: int = 0) -> list[list[int]]:
        """Partition the top classes into label confusion clusters by cutting the tree.

        Exactly the original ``get_cluster``: every class goes to its ancestor node at
        ``cut_level`` (0 = the lowest latent level, ``depth - 1`` = the roots); clusters are
        ordered by the first appearance of a member in ``top_k``, members in ``top_k`` order.
        A class of ``[0, num_classes)`` that is not in the tree becomes a cluster of its own
        (with a warning); the original raises a KeyError there.

        Args:
            top_k: distinct class indices, typically the top classes, most probable first.
            cut_level: the level to cut at, in ``[0, depth - 1]``.

        Returns:
            A list of clusters, each a list of class indices.

        Raises:
            TypeError / ValueError: naming ``top_k`` (not ints, outside ``[0, num_classes)``,
                repeated) or ``cut_level``.
        """
        classes = _check_class_list(top_k, "top_k", self.num_classes)
        lv = self._check_cut_level(cut_level)
        groups: dict[object, list[int]] = {}
        missing = []
        for c in classes:
            p = self._paths.get(c)
            if p is None:
                missing.append(c)
                key: object = ("missing", c)
            else:
                key = p[self.depth - 1 - lv].id
            groups.setdefault(key, []).append(c)
        if missing:
            warnings.warn(
                f"top_k: classes {missing} are not in the label tree; each becomes a "
                "cluster of its own",
                UserWarning,
                stacklevel=2,
            )
        return list(groups.values())

    def partition(self, cut_level: int = 0) -> dict[int, str]:
        """Every class in the tree mapped to the id of its node at ``cut_level``."""
        lv = self._check_cut_level(cut_level)
        return {c: p[self.depth - 1 - lv].id for c, p in self._paths.items()}

    def subtree(self, classes: Sequence[int]) -> list[dict[str, Any]]:
        """The tree pruned to ``classes``, as nested JSON-friendly dicts (for a dendrogram).

        Every latent node keeps only the children that lead to a chosen class; nodes and
        classes are ordered by the first appearance of a chosen class in ``classes`` (so
        cutting this subtree at a level gives :meth:`clusters`' order). A latent node is
        ``{"id", "level", "children": [...]}``; a class is ``{"class", "name"}``. A class not in
        the tree is a root of its own (``{"class", "name", "missing": True}``, with a warning).

        Example:
            >>> sub = load_tree("resnet50").subtree([486, 889])
            >>> level1 = sub[0]["children"][0]["children"][0]["children"][0]
            >>> sub[0]["id"], level1["id"], [c["class"] for c in level1["children"]]
            ('Z41', 'Z136', [486, 889])
        """
        chosen = _check_class_list(classes, "classes", self.num_classes)
        roots: list[dict[str, Any]] = []
        index: dict[str, dict[str, Any]] = {}
        missing = []
        for c in chosen:
            path = self._paths.get(c)
            leaf = {"class": c, "name": self.class_names[c]}
            if path is None:
                missing.append(c)
                roots.append({**leaf, "missing": True})
                continue
            siblings = roots
            for node in path:
                entry = index.get(node.id)
                if entry is None:
                    entry = {"id": node.id, "level": node.level, "children": []}
                    index[node.id] = entry
                    siblings.append(entry)
                siblings = entry["children"]
            siblings.append(leaf)
        if missing:
            warnings.warn(
                f"classes: classes {missing} are not in the label tree", UserWarning, stacklevel=2
            )
        return roots

    # ------------------------------------------------------------------ output
    def to_json(self) -> list[dict[str, Any]]:
        """The tree in the published JSON format (a list of root nodes).

        The roots' ``data`` also carry ``num_classes`` (the original's reader ignores it;
        :func:`load_tree` reads it back)."""
        out = [r.to_json() for r in self.roots]
        for r in out:
            r["data"]["num_classes"] = self.num_classes
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tree as JSON in the published format; returns the path."""
        p = Path(path)
        p.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return p


# ---------------------------------------------------------------------- reading
def _parse_node(obj: object, where: str, names: dict[int, str]) -> TreeNode:
    if not isinstance(obj, dict):
        raise ValueError(f"tree: expected a node object at {where}, got {type(obj).__name__}")
    for key in ("id", "children"):
        if key not in obj:
            raise ValueError(f"tree: node at {where} has no {key!r}")
    children = obj["children"]
    if not isinstance(children, list):
        raise ValueError(f"tree: 'children' of node {obj['id']!r} is not a list")
    data = obj.get("data") or {}
    level = data.get("level") if isinstance(data, dict) else None
    node = TreeNode(
        id=str(obj["id"]),
        level=int(level) if isinstance(level, int | float) else 0,
        text=str(obj.get("text", "")),
        percentage=float(data.get("percentage", 0.0)) if isinstance(data, dict) else 0.0,
    )
    node.children = [_parse_node(c, f"{where}/{node.id}", names) for c in children]
    if not node.children:
        for token in node.text.split():
            m = _CLASS_TOKEN.match(token)
            if m:
                c = int(m.group(1))
                node.classes.append(c)
                names.setdefault(c, m.group(2).replace("_", " "))
    return node


def _fill_levels(node: TreeNode) -> int:
    """Levels counted from the bottom when a file gives none (level-1 nodes have no children)."""
    lv = 1 if not node.children else 1 + max(_fill_levels(c) for c in node.children)
    if node.level <= 0:
        node.level = lv
    return lv


def list_trees() -> dict[str, str]:
    """The label trees shipped with the package, with a one-line description."""
    return {"resnet50": "the published HLTM tree of ResNet-50 on ImageNet-1k (CWOX, BSD-3)"}


def load_tree(
    source: str | os.PathLike | list,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> LabelTree:
    """Load a label tree: a shipped one by name, a JSON file, or the parsed JSON list.

    Args:
        source: ``"resnet50"`` (the published ResNet-50 tree, see :func:`list_trees`), a path to
            a JSON file in the published format, or its parsed content (a list of root nodes).
        num_classes: the classifier's number of classes; default: 1000 for the shipped tree,
            else ``data.num_classes`` of the roots when the file gives it (trees written by
            :func:`learn_tree` do), else the largest class in the tree + 1.
        class_names: a name per class; default: the names in the nodes' text.

    Returns:
        A :class:`LabelTree`.

    Example:
        >>> tree = load_tree("resnet50")
        >>> len(tree.level_nodes(1)), len(tree.roots)
        (287, 6)
    """
    shipped_classes = None
    if isinstance(source, str) and source.lower() in _SHIPPED:
        fname, shipped_classes = _SHIPPED[source.lower()]
        data = json.loads(resources.files("unmask.contrastive").joinpath("data", fname).read_text())
    elif isinstance(source, list):
        data = source
    elif isinstance(source, str | os.PathLike):
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(
                f"tree: file not found: {p} (or use a shipped tree: {', '.join(_SHIPPED)})"
            )
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"tree: {p} is not JSON: {exc}") from None
    else:
        raise TypeError(
            f"tree: expected a tree name, a path or a list of nodes, got {type(source).__name__}"
        )
    if isinstance(data, dict):  # a single root
        data = [data]
    if not isinstance(data, list) or not data:
        raise ValueError("tree: expected a JSON list of root nodes")
    names: dict[int, str] = {}
    roots = [_parse_node(obj, f"[{i}]", names) for i, obj in enumerate(data)]
    for r in roots:
        _fill_levels(r)
    if num_classes is None:
        num_classes = shipped_classes
    if num_classes is None:
        stated = {r.get("data", {}).get("num_classes") for r in data if isinstance(r, dict)}
        stated.discard(None)
        if len(stated) == 1 and isinstance(next(iter(stated)), int):
            num_classes = int(next(iter(stated)))
    if num_classes is None:
        num_classes = max(names, default=-1) + 1
        if num_classes == 0:
            raise ValueError("tree: no class tokens (cNNN-name) found in the lowest-level nodes")
    if class_names is None:
        class_names = [names.get(i, f"class {i}") for i in range(num_classes)]
    return LabelTree(roots, num_classes, class_names)


# ---------------------------------------------------------------------- documents
def top_k_documents(
    probs: Any, mass: float = 0.95, drop_single: bool = True, max_k: int | None = None
) -> list[list[int]]:
    """The top-K classes of each row of probabilities, K the smallest count passing ``mass``.

    As the original's ``prepare_training_data.py``: sort each row's probabilities in
    decreasing order, take the smallest K whose running sum exceeds ``mass`` (all classes when
    it never does), and drop the documents of one class.

    Args:
        probs: probabilities (N, C) (a tensor or array; rows summing to 1).
        mass: the probability mass to pass, in (0, 1).
        drop_single: drop the one-class documents (the paper does).
        max_k: keep at most this many classes per document (None: no cap, the paper's rule;
            the published ``labels_resnet50.json`` documents are cut at 5). A model with a flat
            softmax tail needs it: EfficientNet-Lite0 on the 100 sample images gives documents
            of up to 567 classes.

    Returns:
        One list of class indices per kept row, most probable first.

    Example:
        >>> top_k_documents([[0.5, 0.46, 0.04], [0.97, 0.02, 0.01]])
        [[0, 1]]
    """
    from .._checks import check_probability

    check_probability(mass, "mass", open_low=True, open_high=True)
    p = np.asarray(probs.detach().cpu() if hasattr(probs, "detach") else probs, dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"probs: expected probabilities of shape (N, C), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("probs: contains NaN or infinite values")
    order = np.argsort(-p, axis=1, kind="stable")
    csum = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    passed = csum > mass
    k = np.where(passed.any(axis=1), passed.argmax(axis=1) + 1, p.shape[1])
    if max_k is not None:
        from .._checks import check_positive

        check_positive(max_k, "max_k", integer=True)
        k = np.minimum(k, max_k)
    docs = [order[i, : k[i]].tolist() for i in range(p.shape[0])]
    return [d for d in docs if len(d) > 1] if drop_single else docs


def documents_from_images(
    model: Model,
    folder: str | os.PathLike,
    *,
    mass: float = 0.95,
    batch_size: int = 32,
    size: int | None = None,
    recursive: bool = True,
    drop_single: bool = True,
    max_k: int | None = None,
    progress: Progress = True,
) -> dict[str, list[int]]:
    """Run a classifier over a folder of images and return each image's top-K document.

    Args:
        model: an :class:`unmask.Classifier` or a model name (``"efficientnet_lite0"``).
        folder: a directory of images (``.jpg``, ``.png``, ...; searched recursively).
        mass: the probability mass the top-K classes must pass (0.95 in the paper).
        batch_size: images per forward pass.
        size: load images at ``size`` x ``size`` (resize + centre crop); default: the model's
            input size.
        recursive: also read images in sub-folders.
        drop_single: drop one-class documents (the paper does).
        max_k: keep at most this many classes per document (see :func:`top_k_documents`).
        progress: show a progress bar (or a callback ``(done, total)``).

    Returns:
        ``{image path relative to folder: [classes, most probable first]}`` (the format of the
        published ``labels_resnet50.json``).
    """
    import torch

    from .._checks import check_positive
    from ..images import IMAGE_SUFFIXES, load_image
    from ..models import as_classifier

    check_positive(batch_size, "batch_size", integer=True)
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder: not a directory: {root}")
    clf = as_classifier(model)
    pattern = "**/*" if recursive else "*"
    files = sorted(
        p for p in root.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise ValueError(f"folder: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    if size is None:
        size = clf.input_size[0] if clf.input_size is not None else 224
    out: dict[str, list[int]] = {}
    bar = _reporter(progress, len(files), "documents")
    done = 0
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        x = torch.cat([load_image(f, size=size) for f in chunk]).to(clf.device)
        with torch.inference_mode():
            probs = torch.softmax(clf(x).double(), dim=1)
        for f, doc in zip(
            chunk, top_k_documents(probs, mass, drop_single=False, max_k=max_k), strict=True
        ):
            if len(doc) > 1 or not drop_single:
                out[str(f.relative_to(root))] = doc
        done += len(chunk)
        bar(done)
    bar(None)
    return out


def read_documents(source: str | os.PathLike | dict | list) -> list[list[int]]:
    """Read documents: a JSON file (``{image: [classes]}`` as ``labels_resnet50.json``, or a
    list of class lists), or such an object already parsed.

    Returns:
        A list of documents, each a list of class indices (one-class documents kept; the
        learner ignores them).
    """
    if isinstance(source, dict | list):
        data: Any = source
        where = "documents"
    else:
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(f"documents: file not found: {p}")
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"documents: {p} is not JSON: {exc}") from None
        where = str(p)
    docs = list(data.values()) if isinstance(data, dict) else data
    if not isinstance(docs, list):
        raise ValueError(
            f"documents: expected a JSON object {{image: [classes]}} or a list of "
            f"class lists in {where}"
        )
    out = []
    for i, d in enumerate(docs):
        if not isinstance(d, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in d
        ):
            raise ValueError(
                f"documents: entry {i} of {where} is not a list of class indices (ints >= 0): {d!r}"
            )
        out.append(list(d))
    return out


# ---------------------------------------------------------------------- building trees
def _short_name(name: str) -> str:
    """A class name as one token of the text field: the first synonym, spaces -> '_'."""
    first = name.split(",")[0].strip() or name
    return re.sub(r"\s+", "_", first)


def _node_text(classes: Sequence[int], scores: dict[int, float], names: Sequence[str]) -> str:
    # The original reader takes the first number of every token as a class when it is above
    # 0.9, so a written score must stay below 1 (a "1.0" would read as class 1).
    ranked = sorted(classes, key=lambda c: (-scores.get(c, 0.0), c))
    return " ".join(
        f"c{c:03d}-{_short_name(names[c])} {min(scores.get(c, 0.0), 0.99):.2f}" for c in ranked
    )


def _tree_from_levels(
    partitions: list[list[list[int]]],
    num_classes: int,
    class_names: Sequence[str],
    scores: dict[int, float],
    percentage: Callable[[list[int]], float],
) -> LabelTree:
    """Nodes from a stack of partitions: ``partitions[0]`` groups classes (level 1), each next
    one groups the indices of the nodes of the level below."""
    levels: list[list[TreeNode]] = []
    for lv, groups in enumerate(partitions, start=1):
        nodes = []
        for j, members in enumerate(groups, start=1):
            nid = f"Z{lv}{j}" if lv < 10 else f"Z{lv}_{j}"
            if lv == 1:
                node = TreeNode(nid, 1, [], list(members))
            else:
                kids = [levels[-1][m] for m in members]
                node = TreeNode(nid, lv, kids, [c for k in kids for c in k.classes])
            node.text = _node_text(node.classes, scores, class_names)
            node.percentage = float(percentage(node.classes))
            nodes.append(node)
        levels.append(nodes)
    return LabelTree(levels[-1], num_classes, class_names)


def _default_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"class_names: expected {num_classes} names, got {len(class_names)}")
        return [str(n) for n in class_names]
    if num_classes == 1000:
        from ..models import imagenet_class_names

        return imagenet_class_names()
    return [f"class {i}" for i in range(num_classes)]


LEARN_METHODS = ("average", "hlta")


def ppmi_similarity(x: np.ndarray) -> np.ndarray:
    """Positive pointwise mutual information (V, V) of the columns of a binary matrix (N, V).

    ``max(0, log(C_ij N / (n_i n_j)))`` with C the co-occurrence counts, n_i the documents
    holding class i, N the documents; 0 where two classes never co-occur."""
    from scipy import sparse

    xs = sparse.csc_matrix(x, dtype=np.float64)
    c = np.asarray((xs.T @ xs).todense())
    n1 = np.maximum(np.diag(c).copy(), 1e-12)
    with np.errstate(divide="ignore"):
        s = np.log(c * x.shape[0] / np.outer(n1, n1))
    s = np.where(c > 0, np.maximum(s, 0.0), 0.0)
    np.fill_diagonal(s, s.max() if s.size else 1.0)
    return s


def learn_tree(
    documents: Any,
    num_classes: int | None = None,
    *,
    method: str = "average",
    levels: int | None = None,
    max_size: int = 10,
    max_top: int = 15,
    mean_size: float = 3.5,
    branching: float = 4.0,
    ud_threshold: float = 3.0,
    ct_threshold: float = 3.0,
    bic_batch: int = 5000,
    em_restarts: int = 8,
    em_steps: int = 200,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    progress: Progress = True,
) -> LabelTree:
    """Learn a hierarchical label tree from top-K documents.

    Every document (the top-K classes of one image) is a binary vector over the classes. Two
    learners (``docs/contrastive-trees.md`` compares them, and others, against the published
    ResNet-50 tree):

    * ``method="average"`` (the default: the closest to the published tree in our
      measurements): size-constrained average-linkage agglomeration of the classes by the
      positive pointwise mutual information of their co-occurrence (:func:`ppmi_similarity`):
      merge the two groups of the highest (positive) average similarity whose union has at
      most ``max_size`` classes until ``num_classes / mean_size`` groups are left, then a class
      left alone joins its most similar group with room. Each next level groups the nodes below the
      same way (mean similarity of their classes) into ``1 / branching`` as many nodes.
    * ``method="hlta"``: HLTA's island finding, re-implemented (the algorithm of the original's
      Java code): start from the pair of classes of the highest mutual information, add the
      class of the highest mutual information to the island (outside the seed pair), fit a
      latent class model (one binary latent variable) by EM, and stop growing when a model
      with two latent variables beats it by more than ``ud_threshold`` in BIC (the
      unidimensionality test; the two last linked classes are set aside), when adding the
      class does not raise the BIC by ``ct_threshold`` over an unrelated class (the
      correlation test), or at ``max_size`` classes. Every document is then assigned the most
      probable state of each island's latent variable, and the same procedure groups those
      binary variables into the next level. BIC is averaged over batches of ``bic_batch``
      documents, as the original computes it.

    Both stop when a level has at most ``max_top`` nodes (or after ``levels`` levels).

    Args:
        documents: a list of class lists, a ``{image: [classes]}`` dict, or a JSON file of
            either (see :func:`read_documents`). One-class documents are ignored.
        num_classes: the number of classes; default: the largest class + 1.
        method: ``"average"`` or ``"hlta"``.
        levels: the most latent levels to build (default: until at most ``max_top`` nodes).
        max_size: the most classes (or nodes) in one node (HLTA's maximum island, 10).
        max_top: stop when a level has at most this many nodes (15 in HLTA).
        mean_size: ``"average"``: the mean number of classes of a level-1 node (3.5, as the
            published ResNet-50 tree: 287 level-1 nodes for 1000 classes).
        branching: ``"average"``: the mean number of children of a node above level 1.
        ud_threshold: ``"hlta"``: the unidimensionality-test BIC threshold (3 in HLTA).
        ct_threshold: ``"hlta"``: the correlation-test BIC threshold (3 in HLTA).
        bic_batch: ``"hlta"``: documents per BIC batch (HLTA's ``--struct-batch-size``, 5000).
        em_restarts: ``"hlta"``: random restarts of every EM fit (HLTA uses 16).
        em_steps: ``"hlta"``: the most EM steps per fit (200 in HLTA).
        seed: ``"hlta"``: the random seed of the EM initialisations.
        class_names: a name per class (default: ImageNet names for 1000 classes).
        progress: show a progress bar (or a callback ``(done, total)``).

    Returns:
        A :class:`LabelTree`: every class seen in a document of two or more classes sits in a
        level-1 node of 2 to ``max_size`` classes, all at the same depth. Classes never seen
        are not in the tree (:meth:`LabelTree.clusters` makes them clusters of their own).

    Example:
        >>> docs = [[0, 1], [1, 0], [2, 3], [3, 2], [0, 1, 2]] * 40 + [[4, 5], [5, 4]] * 30
        >>> tree = learn_tree(docs, mean_size=2, progress=False)
        >>> sorted(sorted(n.classes) for n in tree.level_nodes(1))
        [[0, 1], [2, 3], [4, 5]]
        >>> tree = learn_tree(docs, method="hlta", progress=False)
        >>> sorted(sorted(n.classes) for n in tree.level_nodes(1))
        [[0, 1], [2, 3], [4, 5]]
    """
    from .._checks import check_choice, check_positive

    check_choice(method, "method", LEARN_METHODS)
    docs = read_documents(documents)
    docs = [d for d in docs if len(set(d)) > 1]
    if not docs:
        raise ValueError("documents: no document with two or more classes")
    top = max(max(d) for d in docs)
    if num_classes is None:
        num_classes = top + 1
    check_positive(num_classes, "num_classes", integer=True)
    if top >= num_classes:
        raise ValueError(f"documents: class {top} is outside [0, {num_classes}) (num_classes)")
    check_positive(max_size, "max_size", integer=True)
    if max_size < (3 if method == "hlta" else 2):
        raise ValueError(
            f"max_size: expected an int >= {3 if method == 'hlta' else 2}, got {max_size}"
        )
    check_positive(max_top, "max_top", integer=True)
    if levels is not None:
        check_positive(levels, "levels", integer=True)
    check_positive(mean_size, "mean_size")
    if not 1 <= mean_size <= max_size:
        raise ValueError(
            f"mean_size: expected a value in [1, max_size={max_size}], got {mean_size}"
        )
    check_positive(branching, "branching")
    if branching <= 1:
        raise ValueError(f"branching: expected a value > 1, got {branching}")
    check_positive(bic_batch, "bic_batch", integer=True)
    check_positive(em_restarts, "em_restarts", integer=True)
    check_positive(em_steps, "em_steps", integer=True)
    names = _default_names(num_classes, class_names)

    present = sorted({c for d in docs for c in d})
    col = {c: i for i, c in enumerate(present)}
    x = np.zeros((len(docs), len(present)), dtype=bool, order="F")
    for i, d in enumerate(docs):
        x[i, [col[c] for c in d]] = True
    if method == "hlta":
        from . import _hlta

        partitions_idx = _hlta.learn_levels(
            x,
            levels=levels,
            max_island=max_size,
            max_top=max_top,
            ud_threshold=ud_threshold,
            ct_threshold=ct_threshold,
            bic_batch=bic_batch,
            em_restarts=em_restarts,
            em_steps=em_steps,
            rng=np.random.default_rng(seed),
            progress=lambda total, lv: _reporter(progress, total, f"HLTA level {lv}"),
        )
    else:
        from . import _agglomerate

        bar = _reporter(progress, 1, "average linkage")
        partitions_idx = _agglomerate.hierarchy(
            ppmi_similarity(x),
            first_clusters=max(1, round(len(present) / mean_size)),
            max_size=max_size,
            branching=branching,
            max_top=max_top,
            levels=levels,
        )
        bar(1)
        bar(None)
    partitions = [[[present[i] for i in g] for g in partitions_idx[0]], *partitions_idx[1:]]
    freq = x.mean(axis=0)
    scores = {present[i]: float(freq[i]) for i in range(len(present))}

    def percentage(classes: list[int]) -> float:
        return float(x[:, [col[c] for c in classes]].any(axis=1).mean())

    return _tree_from_levels(partitions, num_classes, names, scores, percentage)


def final_linear_weight(model: Model) -> np.ndarray:
    """The weight (C, D) of a classifier's final linear layer, C its number of classes.

    Accepts an :class:`unmask.Classifier` (the last ``nn.Linear`` of ``model.net`` with C
    outputs), any ``nn.Module`` (its last ``nn.Linear``), or a weight matrix (C, D).
    """
    import torch
    from torch import nn

    if isinstance(model, np.ndarray | torch.Tensor):
        w = np.asarray(
            model.detach().cpu() if isinstance(model, torch.Tensor) else model, dtype=np.float64
        )
        if w.ndim != 2 or min(w.shape) == 0:
            raise ValueError(f"model: expected a weight matrix (C, D), got shape {w.shape}")
        return w
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model: expected an unmask.Classifier, an nn.Module or a weight matrix "
            f"(C, D), got {type(model).__name__}"
        )
    net = getattr(model, "net", model)
    want = getattr(model, "num_classes", None)
    linears = [
        m
        for m in net.modules()
        if isinstance(m, nn.Linear) and (want is None or m.out_features == want)
    ]
    if not linears:
        raise ValueError(
            "model: no nn.Linear layer"
            + (f" with {want} outputs" if want else "")
            + " found (give the weight matrix (C, D) instead)"
        )
    return linears[-1].weight.detach().cpu().double().numpy()


def data_free_tree(
    model: Model,
    *,
    levels: int | None = None,
    mean_size: float = 3.5,
    max_size: int = 10,
    branching: float = 4.0,
    max_top: int = 15,
    class_names: Sequence[str] | None = None,
) -> LabelTree:
    """A label tree without data: classes grouped by the similarity of their output weights.

    The similarity of two classes is the cosine similarity of their rows in the classifier's
    final linear layer. Level 1 is a size-constrained average-linkage agglomeration: merge the
    two groups of the highest (positive) average similarity whose union has at most
    ``max_size`` classes, until there are ``num_classes / mean_size`` groups; a class left alone
    then joins its most similar group with room. Each next level groups the nodes below the
    same way (the similarity of two nodes is the average similarity of their classes; any two
    may merge) into ``1 / branching`` as many nodes, until a level has at most ``max_top``
    nodes (or ``levels`` levels).

    Args:
        model: an :class:`unmask.Classifier`, an ``nn.Module`` or the weight matrix (C, D)
            (see :func:`final_linear_weight`).
        levels: the most latent levels (default: until at most ``max_top`` nodes).
        mean_size: the mean number of classes of a level-1 node (3.5: the published ResNet-50
            tree has 287 level-1 nodes for 1000 classes).
        max_size: the most classes (or nodes) in one node, at least 2.
        branching: the mean number of children of a node above level 1.
        max_top: stop when a level has at most this many nodes.
        class_names: a name per class; default: the model's ``class_names``, or ImageNet names
            for 1000 classes.

    Returns:
        A :class:`LabelTree` over all C classes; node text scores are the cosine similarity of a
        class to its node's mean direction (clipped to [0, 0.99]), ``percentage`` the node's
        share of the classes.

    Example:
        >>> import torch
        >>> w = torch.eye(3).repeat_interleave(2, dim=0) + 0.01 * torch.arange(18.).reshape(6, 3)
        >>> tree = data_free_tree(w, mean_size=2, class_names=list("abcdef"))
        >>> sorted(sorted(n.classes) for n in tree.level_nodes(1))
        [[0, 1], [2, 3], [4, 5]]
    """
    from .._checks import check_positive
    from . import _agglomerate

    w = final_linear_weight(model)
    c = w.shape[0]
    if c < 2:
        raise ValueError(f"model: expected at least 2 classes, got {c}")
    check_positive(mean_size, "mean_size")
    check_positive(branching, "branching")
    check_positive(max_size, "max_size", integer=True)
    if max_size < 2:
        raise ValueError(f"max_size: expected an int >= 2, got {max_size}")
    if mean_size < 1 or mean_size > max_size:
        raise ValueError(
            f"mean_size: expected a value in [1, max_size={max_size}], got {mean_size}"
        )
    if branching <= 1:
        raise ValueError(f"branching: expected a value > 1, got {branching}")
    check_positive(max_top, "max_top", integer=True)
    if levels is not None:
        check_positive(levels, "levels", integer=True)
    if class_names is None and hasattr(model, "class_names"):
        class_names = list(model.class_names)
    names = _default_names(c, class_names)
    wn = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    sim = wn @ wn.T
    partitions = _agglomerate.hierarchy(
        sim,
        first_clusters=max(1, round(c / mean_size)),
        max_size=max_size,
        branching=branching,
        max_top=max_top,
        levels=levels,
    )
    scores: dict[int, float] = {}
    for g in partitions[0]:
        centre = wn[g].mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        for k in g:
            scores[k] = max(0.0, float(wn[k] @ centre))
    return _tree_from_levels(partitions, c, names, scores, lambda cls: len(cls) / c)
