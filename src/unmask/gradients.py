"""Forward and backward through a classifier: gradients of a target score, layer access, rules.

This module owns every pass that needs gradients of a classifier's score: with respect to the
input images and to the activations of named layers, optionally with the backward rule of some
module types replaced for the duration of the call (excitation backprop). Hooks are registered
per call and removed in ``finally``: nothing stays on the shared model, which remains picklable
(Ray workers). During a call the model is in eval mode with its parameters' ``requires_grad``
off (no weight gradients are computed); both are restored afterwards.

Layer names are paths inside the classifier's network, ``Classifier.net``, exactly as
``model.net.named_modules()`` prints them (``"_conv_head"``, ``"layer4.2.relu"``), not prefixed
with ``net.``. ``None`` means the model's default feature layer (``Classifier.feature_layer``).

Example:
    >>> import torch
    >>> from unmask.testing import conv_region_model, region_images
    >>> model = conv_region_model()
    >>> g = gradients(model, region_images(2), torch.tensor([1, 0]), layers=["features"])
    >>> g.input.shape, g.activations["features"].shape, g.layer["features"].shape
    (torch.Size([2, 3, 32, 32]), torch.Size([2, 2, 8, 8]), torch.Size([2, 2, 8, 8]))
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ._checks import check_choice
from .attention import transformer_feature_layer
from .scores import SCORES, select_scores

__all__ = [
    "find_layer",
    "resolve_layer",
    "layer_table",
    "capture",
    "grad_session",
    "Gradients",
    "gradients",
    "backward_rules",
    "BackwardRule",
    "split_sums",
    "check_spatial",
]

#: ``rule(module, x, output, grad_output) -> grad_x``: the gradient sent to the module's first
#: input ``x`` given the gradient ``grad_output`` arriving at its ``output``.
BackwardRule = Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    net = getattr(model, "net", model)
    return {name: m for name, m in net.named_modules() if name}


def resolve_layer(model: nn.Module, layer: str | None) -> str:
    """The layer name to use: ``layer`` itself (checked), or the model's default feature layer
    (``model.feature_layer``; for a transformer that names none, its last block's pre-attention
    norm, :func:`unmask.attention.transformer_feature_layer`).

    Raises:
        ValueError: an unknown name (the message lists the closest existing names), or
            ``None`` for a model that names no feature layer.
    """
    if layer is None:
        layer = getattr(model, "feature_layer", None) or transformer_feature_layer(model)
        if layer is None:
            name = getattr(model, "name", type(model).__name__)
            raise ValueError(
                f"layer: model {name!r} names no default feature layer; pass "
                "layer=NAME (list them with `unmask layers`)"
            )
    if not isinstance(layer, str):
        raise TypeError(f"layer: expected a layer name (str), got {type(layer).__name__}")
    modules = _modules(model)
    if layer not in modules:
        close = difflib.get_close_matches(layer, list(modules), n=3, cutoff=0.0)
        raise ValueError(
            f"layer: no layer {layer!r} in the model's network; closest: "
            f"{', '.join(close) if close else '(the network has no sub-modules)'}"
        )
    return layer


def find_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """The module called ``layer`` (a path in ``model.net.named_modules()``; None = default)."""
    return _modules(model)[resolve_layer(model, layer)]


def layer_table(
    model: nn.Module, x: Tensor | None = None
) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """Every named layer with its type and output shape on ``x`` (default: one gray image).

    Returns:
        ``[(name, type name, output shape or None), ...]`` in ``named_modules()`` order; the
        shape is that of the module's first call (None when it is not called or its output is
        not a tensor). Shared modules called several times report their first call.
    """
    if x is None:
        size = getattr(model, "input_size", None) or (224, 224)
        x = torch.full((1, 3, *size), 0.5)
    modules = _modules(model)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def hook(name: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            if name not in shapes and isinstance(output, Tensor):
                shapes[name] = tuple(output.shape)

        return record

    try:
        for name, m in modules.items():
            handles.append(m.register_forward_hook(hook(name)))
        with torch.inference_mode():
            model(x.to(_device(model)))
    finally:
        for h in handles:
            h.remove()
    return [(name, type(m).__name__, shapes.get(name)) for name, m in modules.items()]


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextmanager
def grad_session(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; both restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of named layers during the forward passes inside the block.

    Yields a dict name -> output (the last call's output). The output handed on to the rest of
    the network is a copy, so that an in-place operation after the layer (``ReLU(inplace=True)``)
    cannot change the recorded activation; gradients with respect to the recorded tensor are
    the gradients at the layer's output. Hooks are removed when the block ends.
    """
    modules = _modules(model)
    store: dict[str, Tensor] = {}
    handles = []

    def hook(name: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: object) -> object:
            if not isinstance(output, Tensor):
                raise ValueError(f"layer: {name!r} returns {type(output).__name__}, not a tensor")
            store[name] = output
            return output.clone()

        return record

    try:
        for name in dict.fromkeys(layers):
            handles.append(modules[resolve_layer(model, name)].register_forward_hook(hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


def check_spatial(activation: Tensor, layer: str) -> None:
    """CAMs need (B, C, h, w) activations: a clear error for a layer that gives another shape."""
    if activation.ndim != 4:
        raise ValueError(
            f"layer: {layer!r} outputs shape {tuple(activation.shape)}; class "
            "activation maps need a convolutional layer with output (B, C, h, w)"
        )


@dataclass
class Gradients:
    """What :func:`gradients` returns (all detached).

    Attributes:
        logits: (B, K) the model's logits.
        scores: (B,) the differentiated score of each image's target.
        input: (B, 3, H, W) gradient with respect to the input images (None if not asked).
        activations: layer name -> its output (B, ...).
        layer: layer name -> gradient with respect to that output (B, ...).
    """

    logits: Tensor
    scores: Tensor
    input: Tensor | None
    activations: dict[str, Tensor] = field(default_factory=dict)
    layer: dict[str, Tensor] = field(default_factory=dict)


def gradients(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    score: str = "logit",
    layers: Sequence[str] = (),
    input: bool = True,
    rules: Mapping[type, BackwardRule] | None = None,
    sums: bool = False,
) -> Gradients:
    """Gradients of each image's target score with respect to its input and named layers.

    Args:
        model: the classifier (images in [0, 1] -> logits).
        x: images (B, 3, H, W).
        target: (B,) long classes or (B, K) bool class sets (see :func:`select_scores`); a set
            is differentiated through its generalised logit ``log Σ_{c∈C} exp z_c`` when
            ``score="logit"``, i.e. the logits are seeded with ``p_c / Σ_{c'∈C} p_c'``.
        score: ``"logit"`` (default), ``"prob"`` or ``"log_prob"``.
        layers: layer names (paths in ``model.net.named_modules()``).
        input: also return the gradient with respect to ``x``.
        rules: module type -> :data:`BackwardRule` overriding that type's backward pass
            (see :func:`backward_rules`).
        sums: split element-wise sums of two activations in proportion to their positive
            parts instead of copying the gradient to both (see :func:`split_sums`).

    Images are independent (eval mode), so the gradient of the summed scores is each image's
    own gradient.

    Raises:
        ValueError: when the model's output does not depend differentiably on its input.
    """
    check_choice(score, "score", SCORES)
    names = list(dict.fromkeys(layers))
    # Rules only act after the (single) layer when no input gradient is asked: the modules
    # before it need none. Rules first: the recorded output of a layer with a rule is the new one.
    after = (
        _modules(model)[resolve_layer(model, names[0])] if len(names) == 1 and not input else None
    )
    with (
        grad_session(model),
        backward_rules(model, rules or {}, after=after),
        capture(model, names) as recorded,
        torch.enable_grad(),
    ):
        xx = x.detach().clone().requires_grad_(True)
        with split_sums(model, after=after) if sums else _nothing():
            logits = model(xx)
        acts = dict(recorded)  # a rule may run a module again during the backward pass
        s = select_scores(logits, target, score)
        if not s.requires_grad:
            raise ValueError(
                "model: its output does not depend differentiably on the input "
                "(gradients are blocked: torch.no_grad, detach, or a TorchScript or "
                "exported module without autograd); gradient methods need gradients"
            )
        wrt = ([xx] if input else []) + [acts[n] for n in names]
        for n in names:
            if not acts[n].requires_grad:
                raise ValueError(f"layer: the score does not depend differentiably on {n!r}")
        raw = torch.autograd.grad(s.sum(), wrt, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for g, w in zip(raw, wrt, strict=True)]
    out_input = grads.pop(0).detach() if input else None
    return Gradients(
        logits.detach(),
        s.detach(),
        out_input,
        {n: acts[n].detach() for n in names},
        {n: g.detach() for n, g in zip(names, grads, strict=True)},
    )


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class _Override(torch.autograd.Function):
    """Identity on the module's output whose backward sends ``rule(...)`` to the module's input."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        output: Tensor,
        module: nn.Module,
        rule: BackwardRule,
        state: dict,
    ) -> Tensor:
        ctx.save_for_backward(x, output)
        ctx.module, ctx.rule, ctx.state = module, rule, state
        return output.clone()  # a view would forbid in-place ops after it (ReLU(inplace=True))

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, output = ctx.saved_tensors
        ctx.state["active"] = False  # a rule may run the module again: no override inside
        try:
            with torch.enable_grad():
                grad_x = ctx.rule(ctx.module, x, output, grad_output)
        finally:
            ctx.state["active"] = True
        return grad_x, None, None, None, None


@contextmanager
def _after(module: nn.Module | None, state: dict) -> Iterator[None]:
    """``state["on"]`` is True from the end of ``module``'s forward (always when None)."""
    state["on"] = module is None
    if module is None:
        yield
        return

    def reached(m: nn.Module, inputs: tuple, output: object) -> None:
        state["on"] = True

    handle = module.register_forward_hook(reached)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def backward_rules(
    model: nn.Module, rules: Mapping[type, BackwardRule], after: nn.Module | None = None
) -> Iterator[None]:
    """Replace the backward pass of module types for the forward passes inside the block.

    Every sub-module of ``model`` that is an instance of a key of ``rules`` (the first matching
    key in order) gets a forward hook whose output is unchanged but whose gradient with respect
    to the module's first input is ``rule(module, x, output, grad_output)`` instead of the
    module's own backward (its parameters receive none). With ``after`` (a sub-module), only the
    modules run after it are overridden (a pass read at that layer needs no rule below it).
    Hooks are removed when the block ends.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh())
        >>> x = torch.ones(1, 2, requires_grad=True)
        >>> with backward_rules(net, {torch.nn.Tanh: lambda m, x, y, g: g}):  # pass through
        ...     (g,) = torch.autograd.grad(net(x)[0, 0], x)
        >>> torch.allclose(g, net[0].weight[0])
        True
    """
    state = {"active": True}
    handles = []

    def hook(rule: BackwardRule) -> Callable:
        def override(module: nn.Module, inputs: tuple, output: object) -> object:
            if (
                not state["active"]
                or not state["on"]
                or not inputs
                or not isinstance(inputs[0], Tensor)
                or not isinstance(output, Tensor)
                or not torch.is_grad_enabled()
            ):
                return None
            return _Override.apply(inputs[0], output.detach(), module, rule, state)

        return override

    try:
        if rules:
            for m in model.modules():
                for kind, rule in rules.items():
                    if isinstance(m, kind):
                        handles.append(m.register_forward_hook(hook(rule)))
                        break
        with _after(after, state):  # registered last: the layer's own rule comes first
            yield
    finally:
        for h in handles:
            h.remove()


class _SplitSum(torch.autograd.Function):
    """``a + b`` whose backward splits the gradient in proportion to the inputs' positive parts."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b)
        return a + b

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b = ctx.saved_tensors
        pa, pb = a.clamp(min=0), b.clamp(min=0)
        total = pa + pb
        share = torch.where(total > 0, pa / total.clamp(min=1e-30), torch.full_like(a, 0.5))
        return grad * share, grad * (1 - share)


_ADDS = {torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__, Tensor.__iadd__, Tensor.add_}


class _SumMode(TorchFunctionMode):
    def __init__(self, state: dict) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _ADDS and len(args) == 2 and not kwargs and self.state["on"]:
            a, b = args
            if (
                isinstance(a, Tensor)
                and isinstance(b, Tensor)
                and a.shape == b.shape
                and a.requires_grad
                and b.requires_grad
                and torch.is_grad_enabled()
            ):
                return _SplitSum.apply(a, b)
        return func(*args, **kwargs)


@contextmanager
def split_sums(model: nn.Module | None = None, after: nn.Module | None = None) -> Iterator[None]:
    """Inside the block, ``a + b`` of two same-shape tensors that both require gradients (a
    residual or inverted-residual skip) sends the gradient ``g`` back as ``g·a⁺/(a⁺+b⁺)`` and
    ``g·b⁺/(a⁺+b⁺)`` (halves when both are ≤ 0): relevance is split between the branches, not
    copied to both. Used by excitation backprop; ``+=`` is caught too. With ``after`` (a
    sub-module of ``model``), only sums computed after its forward are split.
    """
    state: dict = {}
    with _after(after, state), _SumMode(state):
        yield
