"""Contrastive whole-output explanation (CWOX-2s): label confusion trees and their clusters
(:mod:`.trees`), the documents (:mod:`.documents`) and learning (:mod:`.learning`) they come
from, the contrastive maps (:mod:`.cwox`) and their figure (:mod:`.plot`)."""

from .cwox import (
    CWOX,
    CWOX_BASES,
    ContrastiveExplanation,
    contrast,
    cwox,
    stage_layers,
    top_classes,
)
from .documents import documents_from_images, read_documents, top_k_documents
from .learning import data_free_tree, final_linear_weight, learn_tree
from .plot import plot_cwox, save_cwox
from .trees import LabelTree, TreeNode, list_trees, load_tree

__all__ = [
    "CWOX",
    "CWOX_BASES",
    "ContrastiveExplanation",
    "contrast",
    "cwox",
    "stage_layers",
    "top_classes",
    "LabelTree",
    "TreeNode",
    "data_free_tree",
    "documents_from_images",
    "final_linear_weight",
    "learn_tree",
    "list_trees",
    "load_tree",
    "plot_cwox",
    "read_documents",
    "save_cwox",
    "top_k_documents",
]
