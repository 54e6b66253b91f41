"""ONNX Runtime under the scoring path: export a network once per machine, check it, run it.

The ``"onnx"`` execution mode of :class:`unmask.Classifier` (see :meth:`Classifier.fast`) runs
the network (the part after resizing and normalisation) in ONNX Runtime instead of PyTorch.
This module is the whole engine; :meth:`Classifier.infer` is the only caller.

- **Export** with the current ``torch.onnx`` exporter (``torch.onnx.export(..., dynamo=True)``)
  with a dynamic batch dimension, once per network, input shape and dtype.
- **Cache** the exported graph on disk: ``<cache>/onnx/<key>.onnx``, where ``<cache>`` is
  ``UNMASK_CACHE_DIR`` or the user cache directory (``$XDG_CACHE_HOME/unmask``, default
  ``~/.cache/unmask``) and ``<key>`` is a SHA-256 of the weights and buffers, the architecture
  (module tree and the source of every module class's ``forward``), the input shape, the dtype
  and the versions of torch, onnx, onnxscript and onnxruntime. A changed weight is another key:
  a stale graph is never reused. Files are written to a temporary name and renamed
  (``os.replace``), so two processes exporting the same model at once never corrupt it. A
  cache directory that cannot be written (read-only, full, a file) keeps the graph in memory
  for this process, with one warning.
- **Check**, on every load (a fresh export or a cached file): the logits of ONNX Runtime and
  of the eager network on a probe batch of 3 seeded normal images must agree within
  :data:`RTOL` relative to the largest |logit|. A cached file that fails to load or to agree is
  exported again, with one warning; an export that fails or disagrees makes the classifier fall
  back to ``"channels_last"`` with one warning that says why (once per architecture and
  process). Non-finite logits from ONNX Runtime at run time raise the error eager raises
  (:class:`unmask.models.NonFiniteLogits`, naming the model's output and the images): the
  classifier checks every engine's logits with one rule.
- **What runs** is the classifier's :meth:`~unmask.Classifier.logits_net`: the network followed
  by the pick of its logits, so a network returning a tuple, a dict or a Hugging Face
  ``ModelOutput`` exports its logits (the pick ``output=`` is part of the cache key).
- **Run** with the CPU provider and ``intra_op_num_threads = torch.get_num_threads()`` (what
  ``--threads`` sets); a classifier on a CUDA device uses the CUDA provider when
  ``onnxruntime-gpu`` is installed (inputs and outputs go through host memory), and falls back
  to ``"channels_last"`` otherwise.

**When to export** (:func:`engine_for`): an export costs seconds (about 16 s for
EfficientNet-Lite0 on a 2-core CPU, issue 23), a session over a cached file about 0.1 s. The
``"auto"`` mode (the default of :func:`unmask.load_model`) runs ONNX Runtime when the graph of
the current weights is already cached and ``"channels_last"`` otherwise, so that no run pays an
export it does not repay. A caller that knows a job's number of model evaluations asks
:func:`engine_for` and calls :func:`prepare` (export now) when it answers ``"onnx"``;
``unmask models --prepare NAME`` exports ahead of time.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

__all__ = [
    "EXPORT_AFTER",
    "RTOL",
    "OnnxRunner",
    "cache_dir",
    "cached",
    "engine_for",
    "generation",
    "graph_key",
    "prepare",
    "prepare_for",
    "runner",
    "weights_stamp",
]

#: Agreement required between ONNX Runtime's and the eager network's logits on the probe batch
#: (max |difference| relative to the largest |eager logit|): the channels_last tolerance.
RTOL = 1e-4

#: Model evaluations from which :func:`engine_for` exports now. The measured break-even on
#: EfficientNet-Lite0 (issue 23: a 16 s export against 33.7 - 8.6 = 25.1 ms saved per image at
#: batch 16) is 16 / 0.0251 = 637 evaluations; 1000 leaves a margin for a slower export.
EXPORT_AFTER = 1000

_PROBE = 3  # images in the probe batch (not the export example's 2: checks the dynamic batch)
_EXAMPLE = 2

# Graphs of this process, by key (the bytes of the ONNX model): a cache directory that cannot
# be written, thread-count changes and copies with the same weights reuse them. At most 4.
_MEMORY: OrderedDict[str, bytes] = OrderedDict()
# Why a network could not run in ONNX Runtime, by (architecture, shape, dtype, device type):
# warned once, never exported again in this process.
_FAILED: dict[tuple[str, tuple[int, ...], str, str], str] = {}
_WARNED: set[str] = set()
_GENERATION = [0]  # bumped when a graph is added: "auto" decisions are taken again
# The last key of each network, with the stamp, shape and dtype it was computed for.
_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Model(Protocol):
    """What the policy functions read from a :class:`unmask.Classifier`."""

    net: nn.Module
    input_size: tuple[int, int] | None
    execution: str

    @property
    def device(self) -> torch.device: ...

    def logits_net(self) -> nn.Module: ...


def generation() -> int:
    """A counter bumped whenever a graph is exported in this process (invalidates decisions)."""
    return _GENERATION[0]


def cache_dir() -> Path:
    """The cache directory: ``UNMASK_CACHE_DIR``, else ``$XDG_CACHE_HOME/unmask``, else
    ``~/.cache/unmask``. Graphs go to its ``onnx/`` folder."""
    where = os.environ.get("UNMASK_CACHE_DIR")
    if where:
        return Path(where)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "unmask"


@functools.cache
def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _architecture(net: nn.Module) -> str:
    """SHA-256 of the module tree and of the source of each module class's ``forward``."""
    import inspect

    h = hashlib.sha256(repr(net).encode())
    for cls in sorted({type(m) for m in net.modules()}, key=lambda c: c.__qualname__):
        h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
        try:
            h.update(inspect.getsource(cls.forward).encode())
        except (OSError, TypeError):  # built in, or defined where no source is kept
            pass
    return h.hexdigest()


def graph_key(net: nn.Module, shape: tuple[int, ...], dtype: torch.dtype) -> str:
    """The cache key of ``net`` exported for inputs (B, *shape) of ``dtype``.

    A SHA-256 (hex) of the weights and buffers (names, dtypes, shapes, bytes), the
    architecture, the shape, the dtype and the torch / onnx / onnxscript / onnxruntime
    versions.

    Example:
        >>> net = torch.nn.Linear(4, 2)
        >>> a = graph_key(net, (4,), torch.float32)
        >>> with torch.no_grad():
        ...     _ = net.bias.add_(1.0)
        >>> a == graph_key(net, (4,), torch.float32)
        False
    """
    stamp = (weights_stamp(net), tuple(shape), dtype)
    memo = _KEYS.get(net)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    h = hashlib.sha256()
    for package in ("torch", "onnx", "onnxscript", "onnxruntime"):
        h.update(f"{package}={_version(package)};".encode())
    h.update(f"{_architecture(net)};{tuple(shape)};{dtype};".encode())
    for name, t in net.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{t.numel()};".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy())  # the buffer itself, no copy
    _KEYS[net] = (stamp, h.hexdigest())
    return _KEYS[net][1]


def weights_stamp(net: nn.Module) -> tuple[tuple[int, int], ...]:
    """Where each weight and buffer of ``net`` lives and its version: anything built for
    another stamp is stale (moved, reloaded or changed in place). The rule of every cached
    copy of :meth:`unmask.Classifier.infer` (channels-last, frozen, compiled, ONNX) and of the
    graph keys here."""
    return tuple(
        (t.data_ptr(), 0 if t.is_inference() else t._version)
        for t in (*net.parameters(), *net.buffers())
    )


def _path(key: str) -> Path:
    return cache_dir() / "onnx" / f"{key}.onnx"


def _warn(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _remember(key: str, data: bytes) -> None:
    _MEMORY[key] = data
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > 4:
        _MEMORY.popitem(last=False)
    _GENERATION[0] += 1


def _export(net: nn.Module, shape: tuple[int, ...], dtype: torch.dtype) -> bytes:
    """The ONNX model (bytes) of ``net`` for inputs (batch, *shape), the batch dynamic."""
    import logging

    example = torch.randn((_EXAMPLE, *shape), generator=torch.Generator().manual_seed(0))
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                net,
                (example.to(dtype),),
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
            if program is None:
                raise RuntimeError("the exporter returned no program")
            return program.model_proto.SerializeToString()
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class OnnxRunner:
    """An ONNX Runtime session over an exported network: (B, *shape) inputs -> (B, K) logits.

    Args:
        data: the ONNX model (bytes).
        device: where inputs come from and outputs go (CUDA: the CUDA provider, required).
        threads: ONNX Runtime's intra-op threads.
    """

    def __init__(self, data: bytes, device: torch.device, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        # No busy-waiting after a run: the scorer's own torch ops (masks, blends) run between
        # two runs on the same cores. Measured idle, 2 threads, Lite0 at batch 16: RISE 500
        # 3.42 s vs 4.04 s spinning, occlusion 29/8 4.06 vs 4.59, LIME 200 1.35 vs 1.55.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers: list = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("the model is on CUDA but onnxruntime-gpu is not installed")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(data, options, providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.device = device

    def __call__(self, z: Tensor) -> Tensor:
        """Logits of network inputs ``z`` (B, *shape), unchecked (the classifier checks them
        as it checks eager's: :func:`unmask.models.pick_logits`)."""
        array = z.detach().cpu().contiguous().numpy()
        out = self.session.run(None, {self.input: array})[0]
        return torch.from_numpy(out).to(self.device)


def _check(net: nn.Module, run: OnnxRunner, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Raise a RuntimeError unless ``run`` agrees with eager ``net`` on the probe batch."""
    probe = torch.randn((_PROBE, *shape), generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.inference_mode(False), torch.no_grad():
        eager = net(probe.to(run.device)).float().cpu()
    got = run(probe).float().cpu()
    if got.shape != eager.shape:
        raise RuntimeError(
            f"ONNX Runtime returned shape {tuple(got.shape)}, eager {tuple(eager.shape)}"
        )
    if not bool(torch.isfinite(got).all()) and bool(torch.isfinite(eager).all()):
        raise RuntimeError("ONNX Runtime returned non-finite logits where eager's are finite")
    scale = float(eager.abs().max()) if eager.numel() else 0.0
    diff = float((got - eager).abs().max()) if got.numel() else 0.0
    if not diff <= RTOL * scale + 1e-7:
        raise RuntimeError(
            f"ONNX Runtime's logits differ from eager's by {diff:.2g} (relative "
            f"{diff / max(scale, 1e-30):.2g} > {RTOL:g})"
        )


def _save(key: str, data: bytes) -> None:
    """Write the graph atomically; warn once (and keep it in memory) when that fails."""
    import uuid

    path = _path(key)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        _warn(
            f"onnx engine: cannot write the exported graph to {path.parent} ({_first_line(exc)});"
            " it is kept in memory for this process (set UNMASK_CACHE_DIR to a writable folder)"
        )


def _load(key: str) -> bytes | None:
    data = _MEMORY.get(key)
    if data is not None:
        return data
    try:
        return _path(key).read_bytes()
    except OSError:  # missing, or the cache "directory" is a file
        return None


def cached(net: nn.Module, shape: tuple[int, ...], dtype: torch.dtype) -> bool:
    """Whether an exported graph of ``net`` (these weights) for ``shape`` and ``dtype`` is in
    memory or on disk (not yet checked: :func:`runner` checks it)."""
    if _nothing_cached():
        return False
    key = graph_key(net, shape, dtype)
    return key in _MEMORY or _path(key).is_file()


def _nothing_cached() -> bool:
    """No graph in memory nor on disk: a fresh machine decides without hashing the weights."""
    if _MEMORY:
        return False
    try:
        return not any((cache_dir() / "onnx").glob("*.onnx"))
    except OSError:
        return True


def runner(net: nn.Module, z: Tensor, *, required: bool = True) -> OnnxRunner | None:
    """An ONNX Runtime runner of ``net`` for inputs shaped like ``z`` (B, *shape), or None.

    Loads the cached graph (checking it; a corrupt or disagreeing file is exported again with
    one warning) or exports it (when ``required``; otherwise None when nothing is cached),
    checks it against eager, caches it. None, after one warning, when the network cannot run
    in ONNX Runtime (export failure, disagreement, no CUDA provider): the caller falls back.
    """
    shape, dtype, device = tuple(int(v) for v in z.shape[1:]), z.dtype, z.device
    if not required and _nothing_cached():
        return None
    failed = (_architecture(net), shape, str(dtype), device.type)
    if failed in _FAILED:
        return None
    key = graph_key(net, shape, dtype)
    threads = torch.get_num_threads()
    data = _load(key)
    if data is None and not required:
        return None
    if data is not None:
        try:
            run = OnnxRunner(data, device, threads)
            _check(net, run, shape, dtype)
            if key not in _MEMORY:
                _remember(key, data)
            return run
        except Exception as exc:  # a truncated, corrupt or stale file: export again
            _MEMORY.pop(key, None)
            _warn(
                f"onnx engine: the cached graph {_path(key)} is unusable ({_first_line(exc)}); "
                "exporting it again"
            )
    try:
        data = _export(net, shape, dtype)
        run = OnnxRunner(data, device, threads)
        _check(net, run, shape, dtype)
    except Exception as exc:  # unsupported operators, control flow, disagreement, no provider
        why = _first_line(exc)
        _FAILED[failed] = why
        _warn(
            f"onnx engine: {type(net).__name__} cannot run in ONNX Runtime ({why}); "
            "using execution 'channels_last'"
        )
        return None
    _remember(key, data)
    _save(key, data)
    return run


def _shape(model: _Model) -> tuple[int, int, int]:
    h, w = model.input_size if model.input_size is not None else (224, 224)
    return (3, int(h), int(w))


def _dtype(model: _Model) -> torch.dtype:
    return next((p.dtype for p in model.net.parameters() if p.is_floating_point()), torch.float32)


def prepare(model: _Model) -> Path | None:
    """Export ``model``'s network (its :meth:`~unmask.Classifier.logits_net`) now, for its
    input size (224 x 224 when it takes any size), check it and cache it, so that later runs
    (and ``"auto"``) use ONNX Runtime at once.

    Returns:
        The cached file, or None when the graph is only in memory (the cache directory cannot
        be written) or the network cannot run in ONNX Runtime (one warning says why).
    """
    shape, dtype, net = _shape(model), _dtype(model), model.logits_net()
    z = torch.empty((1, *shape), dtype=dtype, device=model.device)
    if runner(net, z, required=True) is None:
        return None
    path = _path(graph_key(net, shape, dtype))
    return path if path.is_file() else None


def engine_for(model: _Model, evaluations: int, *, export_after: int | None = None) -> str:
    """The scoring engine a job of ``evaluations`` model evaluations should use.

    ``"onnx"`` when the graph of the model's current weights is cached (memory or disk) or the
    job is long enough to repay an export (``evaluations >= export_after``, default
    :data:`EXPORT_AFTER`), else
    ``"channels_last"``. A model whose execution is set explicitly (not ``"auto"``) keeps it.
    The caller exports with :func:`prepare` when the answer is ``"onnx"``.

    Example:
        >>> from unmask.testing import region_model
        >>> model = region_model().fast("auto")
        >>> engine_for(model, 10, export_after=1000)
        'channels_last'
    """
    if isinstance(evaluations, bool) or not isinstance(evaluations, int) or evaluations < 0:
        raise ValueError(f"evaluations: expected a non-negative integer, got {evaluations!r}")
    if model.execution != "auto":
        return model.execution
    if export_after is None:
        export_after = EXPORT_AFTER
    if evaluations >= export_after or cached(model.logits_net(), _shape(model), _dtype(model)):
        return "onnx"
    return "channels_last"


def prepare_for(model: _Model, evaluations: int) -> str:
    """The policy for a job of ``evaluations`` model evaluations on the scoring path: exports
    (:func:`prepare`) now when :func:`engine_for` says ``"onnx"`` and the job is long enough to
    repay an export (``evaluations >= EXPORT_AFTER``); returns the engine the job will use.

    A model in ``"auto"`` with a cached graph uses it without an export; a short job on a fresh
    cache runs channels_last; a model whose execution is explicit keeps it.

    Example:
        >>> from unmask.testing import region_model
        >>> prepare_for(region_model().fast("auto"), 10)
        'channels_last'
    """
    engine = engine_for(model, evaluations)
    if engine == "onnx" and model.execution == "auto" and evaluations >= EXPORT_AFTER:
        prepare(model)  # loads and checks a cached graph, or exports one (seconds) and caches it
    return engine
