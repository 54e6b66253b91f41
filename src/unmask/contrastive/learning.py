"""Learning a label confusion tree (:class:`~unmask.contrastive.trees.LabelTree`).

* :func:`learn_tree` learns a hierarchical tree from documents (:mod:`.documents`): by
  size-constrained average linkage of the classes' co-occurrence (PPMI), or with a Python
  re-implementation of HLTA's island finding (mutual information, latent class models fitted by
  EM, the BIC unidimensionality and correlation tests) repeated level by level on the
  hard-assigned latent variables (see ``docs/contrastive-trees.md``).
* :func:`data_free_tree` builds one without data, from the cosine similarity of the rows of the
  classifier's last linear layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._types import Model
from ..progress import Progress
from ..progress import reporter as _reporter
from .documents import read_documents
from .trees import LabelTree, TreeNode

__all__ = [
    "learn_tree",
    "LEARN_METHODS",
    "ppmi_similarity",
    "data_free_tree",
    "final_linear_weight",
]


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
