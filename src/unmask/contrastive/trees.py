"""Label confusion trees: the tree, reading and writing it, and cutting it into clusters.

CWOX-2s (Xie et al., "Two-stage holistic and contrastive explanation of image classification",
UAI 2023) explains the top classes of a prediction cluster by cluster: classes the classifier
confuses (cello and violin) form a *label confusion cluster*. The clusters come from a
hierarchical latent tree over the class labels, learned from which classes co-occur in the
classifier's top predictions (:mod:`.documents`, :mod:`.learning`), and cut at one of its levels.

The tree format is the one the original publishes (``ResNet50.json``): a JSON *list* of root
nodes (a forest), every node ``{"id", "text", "data": {"name", "level", "percentage"},
"children"}``. Level 1 is the lowest latent level; a level-1 node has no children and its
``text`` lists its member classes as ``c%03d-<name> <score>`` tokens (``"c486-cello 0.03
c889-violin 0.02"``). Every class sits in exactly one level-1 node, and every level-1 node at
the same depth. :func:`load_tree` reads such a file (or the published ResNet50 tree shipped with
the package, ``load_tree("resnet50")``); :meth:`LabelTree.clusters` cuts it exactly as the
original ``apply_hltm.get_cluster``; :meth:`LabelTree.save` writes the same format, so the
original's tools and these read each other's trees.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from numbers import Integral
from pathlib import Path
from typing import Any

__all__ = [
    "TreeNode",
    "LabelTree",
    "load_tree",
    "list_trees",
]

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
