"""Execution modes of the scoring path (Classifier.fast / infer) and the scoring engine's memory.

The modes must equal eager float32 up to round-off, leave gradient methods untouched, build
their copies once per shape, and the scoring engine must hold one chunk of perturbed images at
a time whatever the number of perturbations.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unmask import Classifier
from unmask.explainers.gradient import Gradient
from unmask.explainers.occlusion import Occlusion
from unmask.explainers.rise import Rise
from unmask.removal import Constant
from unmask.scoring import Scorer

#: Tolerance of every fast mode against eager float32 (relative to the largest |value|).
RTOL = 1e-4


def _net_model(seed: int = 0) -> Classifier:
    """A small convolutional network with batch norm (what freezing folds) and 3 classes."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return Classifier.wrap(
        net, input_size=24, class_names=["a", "b", "c"], name="small", execution="eager"
    )


def _images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> bool:
    return float((a - b).abs().max()) <= rtol * float(b.abs().max()) + 1e-7


@pytest.mark.parametrize("execution", ["channels_last", "frozen"])
def test_logits_and_occlusion_equal_eager(execution):
    model, x = _net_model(), _images()
    with torch.inference_mode():
        eager = model.infer(x)
    occ = Occlusion(model, patch_size=8, stride=4, batch_size=7).explain(x, target=1).saliency
    rise = Rise(model, masks=40, s=4, batch_size=16, seed=0).explain(x[:1], target=2).saliency
    model.fast(execution)
    with torch.inference_mode():
        fast = model.infer(x)
    assert _close(fast, eager)
    fast_occ = Occlusion(model, patch_size=8, stride=4, batch_size=7).explain(x, target=1).saliency
    fast_rise = Rise(model, masks=40, s=4, batch_size=16, seed=0).explain(x[:1], 2).saliency
    assert _close(fast_occ, occ)
    assert _close(fast_rise, rise)


def test_gradient_methods_stay_eager():
    model, x = _net_model(), _images(2)
    before = Gradient(model).explain(x, target=0).saliency
    model.fast("frozen")
    Scorer(model).logits(x)  # builds the frozen copy
    after = Gradient(model).explain(x, target=0).saliency
    assert torch.equal(before, after)  # the gradient path never sees the copy
    assert after.abs().sum() > 0
    logits = model(x.requires_grad_(True))
    assert logits.requires_grad  # model(x) keeps autograd; infer under grad is model(x)
    assert model.infer(x).requires_grad


def test_frozen_is_traced_once_per_shape(monkeypatch):
    calls = []
    trace = torch.jit.trace

    def counting(module, example, *args, **kwargs):
        calls.append(tuple(example.shape))
        return trace(module, example, *args, **kwargs)

    monkeypatch.setattr(torch.jit, "trace", counting)
    model = _net_model().fast("frozen")
    scorer = Scorer(model, batch_size=4)
    x = _images(10)
    first = scorer.logits(x)  # chunks of 4, 4, 2: two shapes
    second = scorer.logits(x)
    assert torch.equal(first, second)
    assert sorted(calls) == [(2, 3, 24, 24), (4, 3, 24, 24)]
    with torch.no_grad():  # changed weights: the cache is stale and rebuilt
        model.net[-1].bias.add_(1.0)
    moved = scorer.logits(x[:4])
    assert len(calls) == 3
    assert _close(moved, first[:4] + 1.0)


def _counting_compile(monkeypatch, backend: str | None = None) -> list:
    """Record every torch.compile call and the batch shapes its result runs on; ``backend``
    replaces inductor (``"eager"``: Dynamo's graph capture without code generation, fast)."""
    calls: list = []
    real = torch.compile

    def counting(module, **kwargs):
        compiled = real(module, **({**kwargs, "backend": backend} if backend else kwargs))
        shapes: list = []
        calls.append(shapes)

        def run(z):
            shapes.append(tuple(z.shape))
            return compiled(z)

        return run

    monkeypatch.setattr(torch, "compile", counting)
    return calls


def test_compiled_compiles_once_and_pads_the_last_chunk(monkeypatch):
    """A single image, chunks of 4, 4, 2 and a later batch of 9: one compiled graph, always
    run on batches of 4 (smaller batches padded, the larger one split), logits equal to eager's."""
    calls = _counting_compile(monkeypatch, backend="eager")
    model, x = _net_model(), _images(10)
    with torch.inference_mode():
        eager = model.infer(x)
    model.fast("compiled", batch_size=4)
    with torch.inference_mode():
        assert _close(model.infer(x[:1]), eager[:1])
    scorer = Scorer(model, batch_size=4)
    fast = scorer.logits(x)
    assert _close(fast, eager)
    assert fast.shape == (10, 3)
    with torch.inference_mode():
        nine = model.infer(x[:9])
    assert _close(nine, eager[:9])
    assert len(calls) == 1
    assert set(calls[0]) == {(4, 3, 24, 24)}
    with torch.no_grad():  # changed weights: the cache is stale and the copy recompiled
        model.net[-1].bias.add_(1.0)
    assert _close(scorer.logits(x[:4]), eager[:4] + 1.0)
    assert len(calls) == 2


@pytest.mark.slow
def test_compiled_with_inductor_equals_eager():
    """The real inductor backend (C++ code generation) on the small network: logits, an
    occlusion map and a RISE map within RTOL of eager float32."""
    model, x = _net_model(), _images()
    with torch.inference_mode():
        eager = model.infer(x)
    occ = Occlusion(model, patch_size=8, stride=4, batch_size=7).explain(x, target=1).saliency
    rise = Rise(model, masks=40, s=4, batch_size=16, seed=0).explain(x[:1], target=2).saliency
    model.fast("compiled")
    with torch.inference_mode():
        fast = model.infer(x)
    assert _close(fast, eager)
    fast_occ = Occlusion(model, patch_size=8, stride=4, batch_size=7).explain(x, target=1).saliency
    fast_rise = Rise(model, masks=40, s=4, batch_size=16, seed=0).explain(x[:1], 2).saliency
    assert _close(fast_occ, occ)
    assert _close(fast_rise, rise)


def test_hooks_fall_back_to_eager():
    model = _net_model().fast("frozen")
    seen = []
    handle = model.net[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        Scorer(model).logits(_images(2))
    finally:
        handle.remove()
    assert seen == [torch.Size([2, 8, 24, 24])]


def test_hooks_on_the_classifier_and_overridden_forwards_see_every_call():
    model = _net_model().fast("channels_last")
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        Scorer(model, batch_size=2).logits(_images(3))
    finally:
        handle.remove()
    assert calls == [2, 1]

    class Doubled(Classifier):
        def forward(self, x):
            return 2 * super().forward(x)

    base = _net_model()
    doubled = Doubled(base.net, base.mean.flatten(), base.std.flatten(), 24, base.class_names)
    doubled.eval().fast("channels_last")
    assert _close(Scorer(doubled).logits(_images(2)), 2 * Scorer(base).logits(_images(2)))


def test_execution_choice_is_checked():
    with pytest.raises(ValueError, match="execution"):
        _net_model().fast("fastest")
    with pytest.raises(ValueError, match="batch_size"):
        _net_model().fast("compiled", batch_size=0)


def test_deepcopy_is_not_stale():
    import copy

    model = _net_model().fast("channels_last")
    x = _images(2)
    base = Scorer(model).logits(x)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.net[-1].weight.zero_()
        other.net[-1].bias.fill_(3.0)
    assert torch.allclose(Scorer(other).logits(x), torch.full((2, 3), 3.0))
    assert torch.equal(Scorer(model).logits(x), base)


class _Recorder(nn.Module):
    """Records the largest batch the network sees."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.largest, self.calls = net, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.largest, self.calls = max(self.largest, x.shape[0]), self.calls + 1
        return self.net(x)


class _RecordingRemoval:
    """A gray fill (no fixed-fill fast path) that records the largest stack of masks it gets."""

    def __init__(self) -> None:
        self.fill_with, self.largest = Constant("gray"), 0

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.largest = max(self.largest, mask.shape[0], x.shape[0])
        return self.fill_with(x, mask)


def test_memory_grows_with_batch_size_not_perturbations(monkeypatch):
    """An occlusion with 10,000 positions never holds more than batch_size perturbed images."""
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    rec = _Recorder(net)
    model = Classifier.wrap(  # eager: the recorder itself runs (not a channels-last copy)
        rec,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=["a", "b"],
        execution="eager",
    )
    stacks = []
    real_stack = Scorer.perturbed

    def perturbed(self, x, masks, *args, **kwargs):
        if isinstance(masks, torch.Tensor):  # a mask tensor would hold all N masks at once
            stacks.append(masks.shape[0])
        return real_stack(self, x, masks, *args, **kwargs)

    monkeypatch.setattr(Scorer, "perturbed", perturbed)
    removal = _RecordingRemoval()
    x = torch.rand(1, 3, 100, 100)
    e = Occlusion(model, removal, patch_size=1, stride=1, batch_size=32).explain(x, target=1)
    assert e.extras["grid"].shape == (1, 100, 100)  # 10,000 positions
    assert rec.calls >= 10_000 // 32
    assert rec.largest <= 32
    assert 0 < removal.largest <= 32
    assert all(n <= 32 for n in stacks)


@pytest.mark.slow
@pytest.mark.parametrize("execution", ["channels_last", "frozen", "compiled", "onnx"])
def test_embedded_model_equals_eager(execution, real_model, tmp_path, monkeypatch):
    """The embedded model: logits within 1e-4, occlusion / RISE maps within 1e-3 (relative to
    the largest |value|), deletion / insertion AUCs within 1e-5 of eager float32."""
    from unmask.metrics.deletion import Deletion, Insertion

    monkeypatch.setenv("UNMASK_CACHE_DIR", str(tmp_path))  # "onnx": exports into tmp_path

    model = real_model
    previous = model.execution
    x = torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    def run():
        with torch.inference_mode():
            logits = model.infer(x)
        occ = Occlusion(model, patch_size=56, stride=56, batch_size=8).explain(x[:1], 1).saliency
        rise = Rise(model, masks=24, batch_size=8, seed=0).explain(x[:1], 1).saliency
        values = [m(max_steps=49)(model, x[:1], occ, 1) for m in (Deletion, Insertion)]
        return logits, occ, rise, torch.cat(values)

    try:
        model.fast("eager")
        eager = run()
        model.fast(execution)
        fast = run()
    finally:
        model.fast(previous)
    assert _close(fast[0], eager[0])
    assert _close(fast[1], eager[1], rtol=1e-3)
    assert _close(fast[2], eager[2], rtol=1e-3)
    assert float((fast[3] - eager[3]).abs().max()) < 1e-5


def test_load_model_execution_is_checked():
    with pytest.raises(ValueError, match="execution"):
        from unmask.models import load_model

        load_model("efficientnet_lite0", execution="turbo")


def test_auto_batch_size_is_measured_once_and_cached(tmp_path, monkeypatch):
    """``batch_size="auto"``: the smallest candidate within 5 % of the fastest per-image time,
    measured once per model (memory) and, with UNMASK_CACHE_DIR, read back by another model
    object (another process) without measuring."""
    from unmask import timing, tuning

    measured = []

    def fake_time(model, shape, batch, **_):  # per-image time flat from 8 on (4 % apart)
        measured.append(batch)
        return {1: 1.0, 2: 0.6, 4: 0.3, 8: 0.104, 16: 0.1, 32: 0.1, 64: 0.1}[batch]

    monkeypatch.setattr(timing, "scoring_seconds", fake_time)
    monkeypatch.setenv("UNMASK_CACHE_DIR", str(tmp_path))
    model, x = _net_model(), _images(10)
    scorer = Scorer(model, batch_size="auto")
    assert scorer.batch_size == 8
    assert sorted(measured) == list(tuning.CANDIDATES)
    assert torch.equal(scorer.logits(x), Scorer(model, batch_size=8).logits(x))
    assert Scorer(model, batch_size="auto").batch_size == 8
    assert len(measured) == len(tuning.CANDIDATES)  # memory cache: not measured again
    assert (tmp_path / "batch_sizes.json").is_file()
    other = _net_model()  # same name and size: the disk entry applies
    assert Scorer(other, batch_size="auto").batch_size == 8
    assert len(measured) == len(tuning.CANDIDATES)
    with pytest.raises(TypeError, match="batch_size"):
        Scorer(model, batch_size="fast")


def test_auto_batch_size_gives_the_same_maps():
    """A real (tiny) search: the answer is a candidate and the map equals a fixed batch size's."""
    from unmask.tuning import best_batch_size

    model, x = _net_model(), _images(1)
    assert best_batch_size(model, candidates=(2, 5), repeats=1) in (2, 5)
    auto = Occlusion(model, patch_size=8, stride=4, batch_size="auto").explain(x, 1).saliency
    fixed = Occlusion(model, patch_size=8, stride=4, batch_size=7).explain(x, 1).saliency
    assert torch.allclose(auto, fixed, atol=1e-6)


def test_autograd_channels_last_equals_eager():
    """``fast(autograd="channels_last")``: input gradients within 1e-4 of eager's; an extremal
    and a ShearletX mask (same seed, a few steps) within 1e-3; layer methods (hooks on the
    network) and training mode stay on the network itself; the copy gets no parameter gradient."""
    import unmask

    model, x = _net_model(), _images(2, 32)
    runs = {}
    for autograd in ("eager", "channels_last"):
        model.fast("channels_last", autograd=autograd)
        grad = Gradient(model).explain(x, target=1).saliency
        ext = unmask.explain(model, x[:1], "extremal", target=1, steps=8, areas=0.2).saliency
        shx = unmask.explain(model, x[:1], "shearletx", target=1, steps=4, noise_bs=2).saliency
        cam = unmask.explain(model, x, "gradcam", target=1, layer="3").saliency
        runs[autograd] = (grad, ext, shx, cam)
    for got, want in zip(runs["channels_last"][:3], runs["eager"][:3], strict=True):
        assert _close(got, want, 1e-3)
    assert _close(runs["channels_last"][0], runs["eager"][0], RTOL)
    assert torch.equal(runs["channels_last"][3], runs["eager"][3])  # hooked: the network itself
    model.net.zero_grad(set_to_none=True)
    model(x.clone().requires_grad_(True))[:, 0].sum().backward()
    assert all(p.grad is None for p in model.net.parameters())  # the copy ran, not the network
    model.train()
    model(x)[:, 0].sum().backward()
    assert model.net[0].weight.grad is not None  # training mode: the network itself
    with pytest.raises(ValueError, match="autograd"):
        model.fast("channels_last", autograd="compiled")
