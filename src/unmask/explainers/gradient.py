"""Input-gradient methods: gradient, input × gradient, integrated gradients, SmoothGrad.

All differentiate the target's score (default ``"logit"``; a set of classes through its
generalised logit ``log Σ exp z_c``) with :func:`unmask.gradients.gradients`, in the [0, 1]
pixel space the classifier takes. Each method's full attribution (B, 3, H, W) is kept in
``extras["attribution"]``; ``saliency`` reduces it over the colour channels (max of |gradient|
for ``gradient``, the sum for the others, which keeps the completeness of integrated gradients).
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_positive, check_seed
from .._limits import check_at_most, check_memory
from .._types import Model, Target
from ..explanation import Explanation
from ..gradients import gradients
from ..params import BatchSize, Count, RemovalArg, Score, Seed, Steps
from ..progress import Progress, check_progress, track
from ..registry import METHODS
from ..removal import Constant
from ..removal.base import bind
from ..scores import SCORES, select_scores
from ._common import as_model, finish, prepare, resolve_removal

__all__ = ["Gradient", "InputXGradient", "IntegratedGradients", "SmoothGrad", "quadrature"]

#: The most integration points / noisy copies per image accepted (a run-time bound).
MAX_STEPS = 100_000

#: Integration rules of :class:`IntegratedGradients` (captum's names).
#: Quadrature rules of integrated gradients.
Rule = Literal[
    "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"
]
RULES: tuple[str, ...] = get_args(Rule)
#: The methods SmoothGrad can run under noise.
Base = Literal["gradient", "input_x_gradient", "integrated_gradients"]


def _input_gradient(model: Model, x: Tensor, target: Tensor, score: str) -> Tensor:
    g = gradients(model, x, target, score=score).input
    assert g is not None  # input=True
    return g


def _explain_attribution(method: Any, x: Tensor, target: Target) -> Explanation:
    """``method.attribute`` on checked inputs, reduced to a map; the attribution in extras."""
    x, t = prepare(method.model, x, target)
    a = method.attribute(x, t)
    return finish(method, method.reduce(a), t, attribution=a)


@METHODS.register(
    "gradient",
    aliases=("saliency", "vanilla_gradient"),
    family="gradient",
    passes="autograd",
    cost=lambda p, size: 1,
    test={},
)
class Gradient:
    """Gradient saliency (Simonyan et al. 2014): ``max_c |∂s/∂x_c|`` per pixel.

    Args:
        model: the classifier.
        score: the differentiated score: ``"logit"`` (default), ``"prob"`` or ``"log_prob"``.

    Extras:
        ``attribution``: (B, 3, H, W) ``|∂s/∂x|`` (captum's ``Saliency(abs=True)``).

    Example:
        >>> from unmask.testing import conv_region_model, region_images
        >>> e = Gradient(conv_region_model()).explain(region_images(1), target=1)
        >>> e.saliency.shape, e.extras["attribution"].shape
        (torch.Size([1, 1, 32, 32]), torch.Size([1, 3, 32, 32]))
    """

    def __init__(self, model: Model, *, score: Score = "logit") -> None:
        self.model = as_model(model)
        self.score = check_choice(score, "score", SCORES)

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        """(B, 3, H, W) ``|∂s/∂x|`` for checked images and targets."""
        return _input_gradient(self.model, x, target, self.score).abs()

    @staticmethod
    def reduce(attribution: Tensor) -> Tensor:
        return attribution.amax(dim=1, keepdim=True)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set)."""
        return _explain_attribution(self, x, target)


@METHODS.register(
    "input_x_gradient", family="gradient", passes="autograd", cost=lambda p, size: 1, test={}
)
class InputXGradient:
    """Input × gradient (Shrikumar et al. 2016): ``x ⊙ ∂s/∂x``, summed over channels.

    ``x`` is the image in [0, 1] (what the classifier takes), so the implied baseline is black.

    Args:
        model: the classifier.
        score: ``"logit"`` (default), ``"prob"`` or ``"log_prob"``.

    Extras:
        ``attribution``: (B, 3, H, W) ``x ⊙ ∂s/∂x`` (captum's ``InputXGradient``).
    """

    def __init__(self, model: Model, *, score: Score = "logit") -> None:
        self.model = as_model(model)
        self.score = check_choice(score, "score", SCORES)

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        return x * _input_gradient(self.model, x, target, self.score)

    @staticmethod
    def reduce(attribution: Tensor) -> Tensor:
        return attribution.sum(dim=1, keepdim=True)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target`` (None = top-1, a class or a set)."""
        return _explain_attribution(self, x, target)


def quadrature(steps: int, rule: str) -> tuple[Tensor, Tensor]:
    """Points α in [0, 1] and weights of an integration rule over [0, 1] (float64, (steps,)).

    ``riemann_left/right/middle`` and ``gausslegendre`` are captum's; ``riemann_trapezoid`` is
    the textbook trapezoid (points ``linspace(0, 1, n)``, weights ``1/(n-1)`` halved at both
    ends, summing to 1), whereas captum's weights are ``1/n`` halved at both ends (summing to
    ``1 - 1/n``): captum's trapezoid attributions are this one's times ``(n-1)/n``.
    """
    n = steps
    if rule == "gausslegendre":
        nodes, node_weights = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (1 + nodes)), torch.from_numpy(0.5 * node_weights)
    if rule == "riemann_trapezoid":
        w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        w[0] /= 2
        w[-1] /= 2
        return torch.linspace(0, 1, n, dtype=torch.float64), w
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    start, stop = {
        "riemann_left": (0, 1 - 1 / n),
        "riemann_right": (1 / n, 1),
        "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n)),
    }[rule]
    return torch.linspace(start, stop, n, dtype=torch.float64), w


@METHODS.register(
    "integrated_gradients",
    aliases=("ig",),
    family="gradient",
    passes="autograd",
    cost=lambda p, size: p["steps"] + 2,  # the path, the image and its baseline
    test={"steps": 16},
)
class IntegratedGradients:
    """Integrated gradients (Sundararajan et al. 2017) from a removal's baseline.

    ``A = (x - x̄) ⊙ Σ_j w_j ∂s/∂x (x̄ + α_j (x - x̄))`` where the baseline ``x̄`` is ``x`` with
    everything removed by ``removal``: black (default, captum's zero baseline), ``Blur(σ)``
    ("IG with a blurred baseline"), the mean colour... and (α_j, w_j) a quadrature rule
    (:func:`quadrature`).

    Args:
        model: the classifier.
        removal: the baseline as a removal (default ``Constant("black")``).
        steps: points of the rule (n ≥ 2).
        rule: ``"gausslegendre"`` (captum's default), ``"riemann_left"``, ``"riemann_right"``,
            ``"riemann_middle"`` or ``"riemann_trapezoid"``.
        score: ``"logit"`` (default), ``"prob"`` or ``"log_prob"``.
        batch_size: interpolated images per backward pass.
        progress: a progress bar over batches (True) or a callback ``(done, total)``.

    Extras:
        ``attribution``: (B, 3, H, W) A; ``delta``: (B,) completeness gap
        ``Σ A - (s(x) - s(x̄))`` (captum's convergence delta).
    """

    def __init__(
        self,
        model: Model,
        removal: RemovalArg = None,
        *,
        steps: Steps = 50,
        rule: Rule = "gausslegendre",
        score: Score = "logit",
        batch_size: BatchSize = 16,
        progress: Progress = False,
    ) -> None:
        self.model = as_model(model)
        self.removal = resolve_removal(removal, lambda: Constant("black"))
        self.progress = check_progress(progress)
        check_positive(steps, "steps", integer=True)
        if steps < 2:
            raise ValueError(f"steps: expected at least 2, got {steps}")
        check_at_most(steps, "steps", MAX_STEPS, "points of the integration rule")
        self.steps = steps
        self.rule = check_choice(rule, "rule", RULES)
        self.score = check_choice(score, "score", SCORES)
        check_positive(batch_size, "batch_size", integer=True)
        self.batch_size = batch_size

    def baseline(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) ``x`` with everything removed."""
        with torch.no_grad():
            return bind(self.removal, x)(torch.ones_like(x[:, :1]))

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        b = x.shape[0]
        base = self.baseline(x)
        alphas, weights = quadrature(self.steps, self.rule)
        alphas, weights = alphas.to(x.dtype), weights.to(x.dtype)
        total = torch.zeros_like(x)
        pairs = b * self.steps  # (image, step) pairs, image-major
        starts = range(0, pairs, self.batch_size)
        for start in track(starts, len(starts), self.progress, "integrated gradients", "batch"):
            n = torch.arange(start, min(start + self.batch_size, pairs))
            i, j = n // self.steps, n % self.steps
            a = alphas[j].to(x.device)[:, None, None, None]
            points = base[i] + a * (x[i] - base[i])
            g = _input_gradient(self.model, points, target[i], self.score)
            total.index_add_(0, i.to(x.device), g * weights[j].to(x.device)[:, None, None, None])
        return (x - base) * total

    @staticmethod
    def reduce(attribution: Tensor) -> Tensor:
        return attribution.sum(dim=1, keepdim=True)

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target``."""
        x, t = prepare(self.model, x, target)
        a = self.attribute(x, t)
        with torch.no_grad():
            both = t.repeat(2, *[1] * (t.ndim - 1))
            s = select_scores(self.model(torch.cat([x, self.baseline(x)])), both, self.score).cpu()
        delta = a.sum(dim=(1, 2, 3)).cpu() - (s[: x.shape[0]] - s[x.shape[0] :])
        return finish(self, self.reduce(a), t, attribution=a, delta=delta)


#: What :class:`SmoothGrad` aggregates over the noisy samples (captum's ``nt_type``).
#: SmoothGrad's aggregates.
NoiseKind = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]
KINDS: tuple[str, ...] = get_args(NoiseKind)


def _path_steps(p: dict[str, Any]) -> int:
    """Gradients per noisy copy of SmoothGrad's base method (the steps of integrated gradients)."""
    if p["base"] != "integrated_gradients":
        return 1
    return int(METHODS.get("integrated_gradients").resolved(p.get("base_params"))["steps"])


@METHODS.register(
    "smoothgrad",
    aliases=("noise_tunnel",),
    family="gradient",
    passes="autograd",
    cost=lambda p, size: p["samples"] * _path_steps(p),
    test={"samples": 8, "sigma": 0.1},
)
class SmoothGrad:
    """A noise tunnel over any input-gradient method: SmoothGrad, SmoothGrad², VarGrad.

    SmoothGrad (Smilkov et al. 2017) averages a method's attribution over ``samples`` copies of
    the image with Gaussian noise of standard deviation ``sigma`` (in [0, 1] pixel units; the
    paper's "noise level" σ/(x_max - x_min) for images spanning [0, 1]); ``"smoothgrad_sq"``
    averages the squares, ``"vargrad"`` (Adebayo et al. 2018) takes the variance. The saliency
    reduces the aggregate over channels as the base method does.

    Noise is drawn from ``seed`` for each image alike (``samples`` noise images shared by the
    batch), so a batch gives what single calls give; for one image the noise equals captum's
    ``NoiseTunnel`` after ``torch.manual_seed(seed)``.

    Args:
        model: the classifier.
        base: the input-gradient method: ``"gradient"`` (default), ``"input_x_gradient"`` or
            ``"integrated_gradients"``.
        base_params: that method's hyperparameters (e.g. ``{"steps": 20}``).
        samples: noisy copies per image.
        sigma: noise standard deviation.
        kind: ``"smoothgrad"`` (default), ``"smoothgrad_sq"`` or ``"vargrad"``.
        seed: random seed.
        batch_size: noisy images per backward pass.
        progress: a progress bar over batches (True) or a callback ``(done, total)``.

    Extras:
        ``attribution``: (B, 3, H, W) the aggregated attribution.
    """

    def __init__(
        self,
        model: Model,
        *,
        base: Base = "gradient",
        base_params: dict | None = None,
        samples: Count = 50,
        sigma: float = 0.15,
        kind: NoiseKind = "smoothgrad",
        seed: Seed = 0,
        batch_size: BatchSize = 16,
        progress: Progress = False,
    ) -> None:
        self.model = as_model(model)
        self.progress = check_progress(progress)
        check_choice(base, "base", get_args(Base))
        if base_params is not None and not isinstance(base_params, dict):
            raise TypeError(
                f"base_params: expected a dict of {base}'s hyperparameters, got "
                f"{type(base_params).__name__}"
            )
        self.base = METHODS.get(base).build(self.model, **(base_params or {}))
        check_positive(samples, "samples", integer=True)
        check_at_most(samples, "samples", MAX_STEPS, "noisy copies per image")
        check_positive(sigma, "sigma")
        check_positive(batch_size, "batch_size", integer=True)
        self.samples, self.sigma, self.batch_size = samples, float(sigma), batch_size
        self.kind = check_choice(kind, "kind", KINDS)
        self.seed = check_seed(seed)

    def noise(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """(samples, C, H, W) noise, the same for every image."""
        check_memory(
            4.0 * self.samples * math.prod(shape),
            "samples",
            f"{self.samples} noise images of {tuple(shape)}",
        )
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randn((self.samples, *shape), generator=gen, dtype=dtype) * self.sigma

    def attribute(self, x: Tensor, target: Tensor) -> Tensor:
        b = x.shape[0]
        noise = self.noise(tuple(x.shape[1:]), x.dtype).to(x.device)
        first = torch.zeros_like(x)
        second = torch.zeros_like(x)
        pairs = b * self.samples
        starts = range(0, pairs, self.batch_size)
        for start in track(starts, len(starts), self.progress, "smoothgrad", "batch"):
            n = torch.arange(start, min(start + self.batch_size, pairs))
            i, j = n // self.samples, n % self.samples
            a = self.base.attribute(x[i] + noise[j], target[i])
            first.index_add_(0, i.to(x.device), a)
            second.index_add_(0, i.to(x.device), a * a)
        mean, mean_sq = first / self.samples, second / self.samples
        if self.kind == "smoothgrad":
            return mean
        if self.kind == "smoothgrad_sq":
            return mean_sq
        return mean_sq - mean * mean

    def explain(self, x: Tensor, target: Target = None) -> Explanation:
        """Explain images ``x`` (B, 3, H, W) for ``target``."""
        x, t = prepare(self.model, x, target)
        a = self.attribute(x, t)
        return finish(self, self.base.reduce(a), t, attribution=a)
