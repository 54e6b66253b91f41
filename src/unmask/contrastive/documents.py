"""The documents a label tree is learned from: the top classes of each image.

:func:`top_k_documents` / :func:`documents_from_images` / :func:`read_documents` make the
*documents*: the top-K classes of each image, K the smallest count whose sorted probabilities
sum past 0.95; one-class documents are dropped, as in the paper (CWOX-2s, Xie et al. 2023).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Model
from ..progress import Progress
from ..progress import reporter as _reporter

__all__ = [
    "top_k_documents",
    "documents_from_images",
    "read_documents",
]


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
