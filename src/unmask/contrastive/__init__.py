"""Contrastive whole-output explanation (CWOX-2s): label confusion trees and their clusters."""

from .trees import (
    LabelTree,
    TreeNode,
    data_free_tree,
    documents_from_images,
    final_linear_weight,
    learn_tree,
    list_trees,
    load_tree,
    read_documents,
    top_k_documents,
)

__all__ = [
    "LabelTree",
    "TreeNode",
    "data_free_tree",
    "documents_from_images",
    "final_linear_weight",
    "learn_tree",
    "list_trees",
    "load_tree",
    "read_documents",
    "top_k_documents",
]
