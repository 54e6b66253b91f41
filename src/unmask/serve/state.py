"""What the explorer's routes share: the served models, images, jobs, results and label trees.

:class:`Served` is built once per application (``app.state.served``) and closed at shutdown.
Each model is used by one job at a time (:meth:`Served.lock`: gradient methods put hooks on
it); predictions run on a separate copy, so they never wait for a job nor see its hooks.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import torch

from .._limits import memory_limit
from ..contrastive import LabelTree, data_free_tree, load_tree, stage_layers
from ..images import load_image
from ..model_specs import make_model
from ..models import Classifier, list_models
from .costs import ModelTime, measure
from .jobs import JobQueue, Progress, TimeLimit
from .results import ResultStore, StoredResult
from .uploads import ImageStore

__all__ = ["Served", "load_models", "short", "DEFAULT_MAX_SECONDS", "DEFAULT_JOB_MEMORY"]

#: The longest one job may take, seconds, by default (estimated before it is queued, enforced
#: while it runs).
DEFAULT_MAX_SECONDS = 180.0
#: The most working memory one job's batch may take, bytes, by default: images and the model's
#: activations as :func:`unmask._limits.batch_bytes` estimates them (a forward and backward
#: pass of EfficientNet-Lite0 keeps about 90 MB per image, so gradient batches of 5).
DEFAULT_JOB_MEMORY = 512 * 1024**2

#: Predictions (class probabilities per image and model) kept.
_PROBABILITIES = 256
#: Bytes of images as the models see them (decoded, cropped, resized) kept.
_INPUT_BYTES = 64 * 1024**2


def short(text: object, limit: int = 80) -> str:
    """``repr(text)``, cut to ``limit`` characters (a message never echoes a huge input).

    Example:
        >>> short("x" * 1000, 12)
        "'xxxxxxxx..."
    """
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


class Served:
    """The state of one explorer application.

    Args:
        models: the served models by name.
        max_bytes: the largest upload, bytes.
        max_pixels: the most pixels of an upload.
        workers: threads computing jobs.
        max_pending: jobs queued or running at most.
        cache_size: finished results kept.
        max_images: uploaded images kept.
        image_size: the side of the square the models see (None: each model's input size).
        trees: extra label trees by name.
        max_seconds: the longest one job may take (estimated, then enforced), seconds.
        cache_bytes: the most bytes of stored results (their maps).
        image_bytes: the most bytes of stored image files (on disk).
        job_memory: the most working memory of one job's batch, bytes (see :meth:`memory`).
    """

    def __init__(
        self,
        models: dict[str, Classifier],
        *,
        max_bytes: int,
        max_pixels: int,
        workers: int,
        max_pending: int,
        cache_size: int,
        max_images: int,
        image_size: int | None,
        trees: dict[str, LabelTree],
        max_seconds: float = DEFAULT_MAX_SECONDS,
        cache_bytes: int = 256 * 1024**2,
        image_bytes: int = 1024**3,
        job_memory: int = DEFAULT_JOB_MEMORY,
    ) -> None:
        self.models = models
        self.max_seconds = max_seconds
        self.job_memory = job_memory
        #: per model, its measured time per image (see :meth:`model_time`)
        self.times: dict[str, ModelTime] = {}
        self.max_bytes, self.max_pixels, self.max_pending = max_bytes, max_pixels, max_pending
        self.image_size = image_size
        self.images = ImageStore(max_images=max_images, max_bytes=image_bytes)
        self.jobs = JobQueue(workers=workers, max_pending=max_pending, cache_size=cache_size)
        self.results = ResultStore(max_results=2 * cache_size + max_pending, max_bytes=cache_bytes)
        self._inputs: OrderedDict[tuple[str, int], torch.Tensor] = OrderedDict()
        self.extra_trees = trees
        self._locks = {name: threading.Lock() for name in models}
        #: per model, CWOX's (cluster, class) stage layers of its layer bases
        self.cwox_layers = {
            name: {b: list(stage_layers(m, b)) for b in ("gradcam", "mwp")}
            for name, m in models.items()
        }
        self._predict = {name: (copy.deepcopy(m), threading.Lock()) for name, m in models.items()}
        self._trees: dict[tuple[str, str], LabelTree] = {}
        self._probs: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the workers and remove the stored images."""
        self.jobs.close()
        self.images.close()

    # -- models and images ---------------------------------------------------------
    def model(self, name: str | None) -> tuple[str, Classifier]:
        """The served model ``name`` (None: the first), as (name, model)."""
        if name is None:
            name = next(iter(self.models))
        if name not in self.models:
            raise ValueError(
                f"model: unknown model {short(name)}; served: {', '.join(self.models)}"
            )
        return name, self.models[name]

    def lock(self, name: str) -> threading.Lock:
        """The lock a job holds while it uses model ``name``."""
        return self._locks[name]

    def memory(self) -> AbstractContextManager[None]:
        """One job's memory budget (:attr:`job_memory`) for the code run inside: planning a
        job (a batch size that does not fit is refused, a default one lowered) and running it
        (every check of the library: batches, masks, noise samples)."""
        return memory_limit(
            self.job_memory,
            f"raise the explorer's memory for one job ({self.job_memory // 1024**2} MB; "
            "unmask serve --max-job-memory-mb, create_app(max_job_memory=...))",
        )

    @contextmanager
    def use(self, name: str, progress: Progress) -> Iterator[Callable[[int, int], None]]:
        """Hold model ``name`` for a job: its lock, one job's memory budget (:meth:`memory`),
        and a check of the job before every forward pass of the model in the job's thread
        (cancelled: :class:`~unmask.serve.jobs.Cancelled`; running longer than
        :attr:`max_seconds` since it got the model: :class:`~unmask.serve.jobs.TimeLimit`).
        Yields the job's progress callback with the same checks, for the explainers'
        ``progress=``."""
        model = self.models[name]
        owner = threading.get_ident()
        with self._locks[name], self.memory():
            deadline = time.monotonic() + self.max_seconds

            def check() -> None:
                progress.check()
                if time.monotonic() > deadline:
                    raise TimeLimit(
                        f"job: stopped at the limit of {self.max_seconds:g} s for one job"
                    )

            def tick(done: int, total: int) -> None:
                progress(done, total)
                check()

            def before(_module: object, _args: object) -> None:
                if threading.get_ident() == owner:  # never another thread's call
                    check()

            handle = model.register_forward_pre_hook(before)
            try:
                yield tick
            finally:
                handle.remove()

    def model_time(self, name: str) -> ModelTime:
        """Model ``name``'s seconds per image, measured on its first use (on the prediction
        copy, so no job waits) and kept."""
        with self._lock:
            known = self.times.get(name)
        if known is not None:
            return known
        net, lock = self._predict[name]
        with lock:
            measured = measure(net, self.size(net))
        with self._lock:
            return self.times.setdefault(name, measured)

    def size(self, model: Classifier) -> int:
        """The side of the square ``model`` sees."""
        if self.image_size is not None:
            return self.image_size
        return int(model.input_size[0]) if model.input_size is not None else 224

    def pixels(self, image_id: str) -> np.ndarray:
        """The stored image (H, W, 3) uint8 (LookupError: not stored)."""
        try:
            return self.images.get(image_id)
        except (KeyError, ValueError):
            raise LookupError(f"image_id: no image {short(image_id)} (upload it first)") from None

    def input(self, image_id: str, model: Classifier) -> torch.Tensor:
        """The image (1, 3, S, S) as the model sees it (centre crop, resized; a copy of the
        one kept, so that a large upload is decoded once per size)."""
        key = (image_id, self.size(model))
        with self._lock:
            if key in self._inputs:
                self._inputs.move_to_end(key)
                return self._inputs[key].clone()
        x = load_image(self.pixels(image_id), size=key[1])
        with self._lock:
            self._inputs[key] = x
            held = sum(t.nbytes for t in self._inputs.values())
            while len(self._inputs) > 1 and held > _INPUT_BYTES:
                _, old = self._inputs.popitem(last=False)
                held -= old.nbytes
        return x.clone()

    def probabilities(self, image_id: str, name: str) -> torch.Tensor:
        """The class probabilities (num_classes,) of an image by model ``name`` (cached)."""
        key = (image_id, name)
        with self._lock:
            if key in self._probs:
                self._probs.move_to_end(key)
                return self._probs[key]
        net, lock = self._predict[name]
        x = self.input(image_id, net)
        with lock, torch.no_grad():
            p = net(x).softmax(dim=1)[0].detach().cpu().double()
        with self._lock:
            self._probs[key] = p
            while len(self._probs) > _PROBABILITIES:
                self._probs.popitem(last=False)
        return p

    # -- trees ---------------------------------------------------------------------
    def tree_names(self, model: Classifier) -> list[str]:
        """The label trees offered for ``model``."""
        names = [n for n, t in self.extra_trees.items() if t.num_classes == model.num_classes]
        if model.num_classes == 1000:
            names.append("resnet50")
        return names + ["data-free"]

    def tree(self, name: str | None, model_name: str) -> tuple[str, LabelTree]:
        """The label tree ``name`` (None: the first offered) of model ``model_name``."""
        model = self.models[model_name]
        allowed = self.tree_names(model)
        if name is None:
            name = allowed[0]
        if name not in allowed:
            raise ValueError(
                f"tree: expected one of {', '.join(allowed)} for model {model_name!r}, "
                f"got {short(name)}"
            )
        key = (name, model_name if name == "data-free" else "")
        with self._lock:
            tree = self._trees.get(key)
        if tree is None:
            if name in self.extra_trees:
                tree = self.extra_trees[name]
            elif name == "resnet50":
                tree = load_tree("resnet50", num_classes=1000)
            else:
                tree = data_free_tree(model)
            with self._lock:
                self._trees[key] = tree
        return name, tree

    # -- results -------------------------------------------------------------------
    def source(self, ref: str) -> StoredResult:
        """A stored result from a job id or a result key."""
        key = ref
        try:
            job = self.jobs.get(ref)
        except (KeyError, ValueError):
            job = None
        if job is not None:
            if job.status != "done":
                raise ValueError(f"result: job {ref} is {job.status}, not done")
            key = (job.result or {}).get("key", ref)
        try:
            return self.results.get(key)
        except KeyError:
            raise LookupError(
                f"result: no result {short(ref)} (run it again; old results are dropped)"
            ) from None


def load_models(models: object) -> dict[str, Classifier]:
    """The served models from a dict name -> Classifier, a list of model names, or None
    (the embedded ``efficientnet_lite0``)."""
    if models is None:
        models = ["efficientnet_lite0"]
    if isinstance(models, dict):
        if not models:
            raise ValueError("models: expected at least one model")
        out = {}
        for name, m in models.items():
            if not isinstance(m, Classifier):
                raise TypeError(
                    f"models[{name!r}]: expected an unmask.Classifier, got {type(m).__name__}"
                )
            out[str(name)] = m.eval()
        return out
    if isinstance(models, str) or not isinstance(models, Sequence) or not models:
        raise TypeError(
            f"models: expected a dict name -> Classifier or a list of model names, got {models!r}"
        )
    known = list_models()
    for name in models:
        if ":" not in str(name) and name not in known:
            raise ValueError(f"model: unknown model {name!r}; expected one of {', '.join(known)}")
    return {name: make_model(name) for name in models}  # one grammar: unmask.make_model
