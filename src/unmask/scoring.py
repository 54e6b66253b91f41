"""The batched scoring engine shared by every perturbation method and metric.

Perturbed images go through the model in chunks of ``batch_size`` under
``torch.inference_mode()`` on the model's device; only the score of each image's target class
is kept. Masks may be given as a tensor or produced chunk by chunk by a function, so that
thousands of perturbations never sit in memory at once. The model runs through
:meth:`unmask.Classifier.infer`, in the execution mode chosen with
:meth:`unmask.Classifier.fast` (eager for a wrapped network; :func:`unmask.load_model`'s
``"auto"`` runs ONNX Runtime once the model's graph is cached, channels-last until then; see
:mod:`unmask.onnx_engine`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from ._checks import check_choice, check_positive
from ._limits import batch_bytes, check_memory
from .models import Classifier, NonFiniteLogits
from .progress import Progress, check_progress, track
from .removal.base import bind
from .scores import SCORES, select_scores

__all__ = ["Scorer", "select_scores", "SCORES"]

MaskSource = Tensor | Callable[[int, int], Tensor]


@contextmanager
def _rows_of(model: Classifier, index: Tensor, what: str) -> Iterator[None]:
    """Name the caller's images in a :class:`NonFiniteLogits` raised for rows of a chunk."""
    try:
        yield
    except NonFiniteLogits as exc:
        images = sorted({int(index[r]) for r in exc.rows})
        shown = ", ".join(map(str, images[:10])) + (", ..." if len(images) > 10 else "")
        raise NonFiniteLogits(
            f"model: {exc.where} holds NaN or infinite logits for {what}"
            f"{'s' if len(images) > 1 else ''} {shown}",
            images,
            exc.where,
        ) from None


class Scorer:
    """Scores images with a classifier in chunks, without gradients.

    Args:
        model: the classifier (images in [0, 1] -> logits).
        batch_size: images per forward pass, or ``"auto"``: the fastest batch size of this
            model's scoring path here, measured at the first scoring call and cached
            (:func:`unmask.tuning.best_batch_size`).
        score: ``"prob"``, ``"logit"`` or ``"log_prob"``.
        progress: a progress bar over chunks (True, shown when there is more than one), or a
            callback ``(done, total)`` called after each chunk.

    Attributes:
        evaluations: the number of images scored so far (for overhead measurements).
    """

    def __init__(
        self,
        model: Classifier,
        *,
        batch_size: int | str = 16,
        score: str = "prob",
        progress: object = False,
    ) -> None:
        if batch_size != "auto":
            check_positive(batch_size, "batch_size", integer=True)
        check_choice(score, "score", SCORES)
        self.model, self.score = model, score
        self.progress: Progress = check_progress(progress)
        self._batch_size: int | None = None if isinstance(batch_size, str) else batch_size
        self.evaluations = 0

    @property
    def batch_size(self) -> int:
        """Images per forward pass (``"auto"`` is measured here, at the first use)."""
        if self._batch_size is None:
            from .tuning import best_batch_size

            self._batch_size = best_batch_size(self.model)
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        check_positive(value, "batch_size", integer=True)
        self._batch_size = value

    @property
    def device(self) -> torch.device:
        return self.model.device

    def check_memory(self, n: int, shape: tuple[int, ...], what: str = "images") -> None:
        """Refuse a chunk of ``min(n, batch_size)`` images (C, H, W) above the memory budget.

        The estimate (:func:`unmask._limits.batch_bytes`) counts the images and the model's
        activations at its input size; the bound is ``UNMASK_MAX_MEMORY`` (default 8 GiB).
        """
        k = min(int(n), self.batch_size)
        c, h, w = (int(v) for v in shape[-3:])
        check_memory(
            batch_bytes(k, c, h, w, self.model.input_size),
            "batch_size",
            f"a batch of {k} {what} of {h}x{w}",
        )

    def _chunks(self, n: int, desc: str) -> Iterable[int]:
        starts = range(0, n, self.batch_size)
        return track(starts, len(starts), self.progress, desc, unit="batch")

    def logits(self, images: Tensor) -> Tensor:
        """Logits (N, K) of images (N, C, H, W), computed in chunks."""
        self.check_memory(images.shape[0], tuple(images.shape))
        outs = []
        with torch.inference_mode():
            for start in self._chunks(images.shape[0], "scoring"):
                chunk = images[start : start + self.batch_size].to(self.device)
                with _rows_of(self.model, torch.arange(start, start + chunk.shape[0]), "image"):
                    outs.append(self.model.infer(chunk).float())
                self.evaluations += chunk.shape[0]
        return torch.cat(outs)

    def probabilities(self, images: Tensor) -> Tensor:
        """Softmax probabilities (N, K) of images (N, C, H, W)."""
        return torch.softmax(self.logits(images), dim=1)

    def __call__(self, images: Tensor, target: Tensor) -> Tensor:
        """Scores (N,) (or (N, T)) of ``target`` (:func:`select_scores`) for images (N, C, H, W)."""
        return select_scores(self.logits(images), target.to(self.device), self.score)

    def top1(self, images: Tensor) -> Tensor:
        """The predicted class (N,) of each image."""
        return self.logits(images).argmax(dim=1).cpu()

    def perturbed(
        self,
        x: Tensor,
        masks: MaskSource,
        target: Tensor,
        removal: Callable,
        index: Tensor | None = None,
        count: int | None = None,
        observe: Callable[[int, int, Tensor], None] | None = None,
    ) -> Tensor:
        """Scores of perturbed copies of images.

        Perturbation ``n`` removes ``masks[n]`` from image ``x[index[n]]`` with ``removal`` and
        scores class ``target[index[n]]``.

        Args:
            x: images (B, C, H, W).
            masks: (N, 1, H, W) in [0, 1], or a function ``masks(start, stop)`` returning the
                masks ``start..stop-1`` (then ``count`` = N is required).
            target: per image a class (B,), a set of classes (B, K) bool, or T sets
                (B, T, K) bool (see :func:`select_scores`).
            removal: a removal strategy.
            index: image of each perturbation (N,); default all zeros (requires B == 1).
            count: the number of perturbations when ``masks`` is a function.
            observe: called as ``observe(start, stop, images)`` with each chunk of perturbed
                images (``stop - start``, C, H, W) before it is scored, for metrics that also
                read the perturbed images (infidelity's ``x - x̃``) without removing twice.

        Returns:
            Scores (N,), or (N, T) for T targets, on the CPU, float32.
        """
        n = masks.shape[0] if isinstance(masks, Tensor) else count
        if n is None:
            raise ValueError("count: required when masks is a function")
        if index is None:
            if x.shape[0] != 1:
                raise ValueError(f"index: required for a batch of {x.shape[0]} images")
            index = torch.zeros(n, dtype=torch.long)
        self.check_memory(n, tuple(x.shape), "perturbed images")
        x = x.to(self.device)
        target = target.to(self.device)
        index = index.to(self.device)
        width = () if target.ndim < 3 else (target.shape[1],)  # T targets at once: (N, T)
        out = torch.empty(n, *width, dtype=torch.float32)
        with torch.inference_mode():
            apply = bind(removal, x)
            for start in self._chunks(n, "perturbations"):
                stop = min(start + self.batch_size, n)
                m = masks[start:stop] if isinstance(masks, Tensor) else masks(start, stop)
                idx = index[start:stop]
                images = apply(m.to(device=self.device, dtype=x.dtype), idx)
                if observe is not None:
                    observe(start, stop, images)
                with _rows_of(self.model, idx, "perturbed copies of image"):
                    logits = self.model.infer(images).float()
                out[start:stop] = select_scores(logits, target[idx], self.score).cpu()
                self.evaluations += stop - start
        return out
