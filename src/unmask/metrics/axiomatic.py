"""Axiomatic properties of attributions: completeness and non-sensitivity (kind
``"faithfulness"``: ``metric(model, x, saliency, target=None)``), input invariance (kind
``"explainer"``: ``metric(model, x, explainer, target=None)``).

- **completeness** (Sundararajan et al., "Axiomatic attribution for deep networks", ICML 2017;
  quantus ``Completeness``): the attributions add up to the change of the target's logit from
  the baseline to the image. Per image ``|Σ_i s_i - (f(x) - f(x̃))|``, x̃ the image with
  everything removed (``removal``, black by default as quantus), f the target's logit (quantus
  ``softmax=False``). Lower is better, 0 for exact completeness (integrated gradients with the
  same baseline, up to its quadrature). quantus returns ``Σ a == f(x) - f(x̃)`` as an exact
  floating-point comparison, which is almost never true; the gap is returned here instead. The
  map is summed as given: maps of signed attributions summed over channels (integrated
  gradients, input × gradient) at the image's resolution.
- **non_sensitivity** (Nguyen & Martínez, "On quantitative aspects of model
  interpretability", 2020, Sec. 3.2): the number of features in the symmetric difference of
  the features with (near) zero attribution, ``max |s| < eps`` over the feature, and the
  features the model does not depend on: replacing the feature by ``samples`` seeded draws of
  uniform noise changes the target's probability with a variance below ``eps``. Lower is
  better, 0 when the zeros of the map are exactly what the model ignores. Features are blocks
  of ``patch`` × ``patch`` map pixels (default: about 14 × 14 blocks on any map; ``patch=1``
  is the paper's single pixels). quantus 0.6.0 compares sets of booleans
  (``set(np.argwhere(a).flatten() < eps)``), perturbs at indices taken from attribution
  *values* and, with its black default, draws nothing random, so its count is not the paper's;
  this follows the paper.
- **input_invariance** (Kindermans et al., "The (un)reliability of saliency methods", 2017):
  the image shifted by a constant, ``x + c``, explained on a copy of the model whose first
  layer compensates the shift (its input normalisation's mean moves by ``c``, so the copy's
  logits on ``x + c`` are the model's on ``x``). An input-invariant method gives the same map;
  per image ``||e'(x + c) - e(x)|| / ||e(x)||``, 0 when invariant; lower is better. The
  explainer is rebuilt from its spec on the shifted model (it must be a registered one). The
  shifted image must stay in [0, 1]: by default ``c`` is per image the largest shift that
  keeps it there (``1 - max x`` up or ``-min x`` down, whichever is larger; NaN for an image
  that spans [0, 1]). quantus 0.6.0 moves the bias of the model's first sub-module (a
  convolution) by the smallest value of its response to the shift (a border value under zero
  padding) and compares the maps with ``np.isclose(atol=1e-4)``; this follows the paper.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_positive, check_seed
from .._limits import check_at_most
from .._types import Model, SaliencyLike, Target
from ..params import BatchSize, Count, RemovalArg, Score, Seed, Side
from ..registry import METRICS
from ..removal import Constant, resolve_removal
from ..scores import SCORES
from ._explain import prepare_explainer_inputs, rebuilder, run_maps
from ._prepare import prepare_inputs
from .faithfulness import _DrawnNoise, _upsample

__all__ = [
    "completeness",
    "non_sensitivity",
    "input_invariance",
    "shifted_model",
    "Completeness",
    "NonSensitivity",
    "InputInvariance",
]


def _check_eps(eps: object) -> float:
    if (
        isinstance(eps, bool)
        or not isinstance(eps, int | float)
        or not math.isfinite(eps)
        or eps < 0
    ):
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_samples(samples: object) -> None:
    check_positive(samples, "samples", integer=True)
    check_at_most(samples, "samples", 10_000, "noise draws per feature")  # type: ignore[arg-type]


def completeness(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    removal: Any = None,
    score: str = "logit",
    batch_size: int = 16,
) -> Tensor:
    """Completeness gap ``|Σ s - (f(x) - f(baseline))|`` per image (B,) float64; lower is better.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        saliency: signed attribution maps (B, 1, h, w) (summed as given) or an Explanation.
        target: None (top-1), a class or a set of classes per image.
        removal: the baseline: the image with everything removed (default black).
        score: ``"logit"`` (default), ``"prob"`` or ``"log_prob"``.
        batch_size: images per forward pass.

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> x = region_images(1, 16)
        >>> completeness(region_model(), x, torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1])
    """
    removal = resolve_removal(removal, lambda: Constant("black"))
    _, x, s, t, base, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score}
    )
    b = x.shape[0]
    everything = torch.ones(b, 1, *x.shape[-2:])
    after = scorer.perturbed(x, everything, t, removal, index=torch.arange(b))
    return (s.double().flatten(1).sum(1) - (base.double() - after.double())).abs()


def non_sensitivity(
    model: Model,
    x: Tensor,
    saliency: SaliencyLike,
    target: Target = None,
    *,
    patch: int | None = None,
    samples: int = 10,
    eps: float = 1e-5,
    seed: int = 0,
    score: str = "prob",
    batch_size: int = 16,
) -> Tensor:
    """Non-sensitivity (Nguyen & Martínez 2020) per image (B,) float64; lower is better.

    Args:
        model, x, target: as :func:`completeness`.
        saliency: maps (B, 1, h, w) or an Explanation.
        patch: feature side in map pixels; None = ``ceil(max(h, w) / 14)`` (about 196
            features); 1 = every map pixel (the paper; ``h·w·samples`` forward passes).
        samples: uniform-noise draws per feature (quantus ``n_samples``: 100).
        eps: the threshold on ``|s|`` and on the variance of the score (quantus: 1e-5).
        seed: seed of the draws (the same draws for every image and feature).
        score: ``"prob"`` (default, quantus' ``softmax=True``), ``"logit"``, ``"log_prob"``.
        batch_size: images per forward pass.

    Example:
        >>> from unmask.testing import region_model, region_images, region_mask
        >>> box = region_mask(32, 32).float().expand(2, 1, 32, 32)
        >>> non_sensitivity(region_model(), region_images(2, 32), box, patch=8).tolist()
        [0.0, 0.0]
    """
    if patch is not None:
        check_positive(patch, "patch", integer=True)
    _check_samples(samples)
    eps = _check_eps(eps)
    check_seed(seed)
    _, x, s, t, _, scorer = prepare_inputs(
        model, x, saliency, target, {"batch_size": batch_size, "score": score}
    )
    b, _, height, width = x.shape
    h, w = s.shape[-2:]
    p = patch if patch is not None else math.ceil(max(h, w) / 14)
    gh, gw = math.ceil(h / p), math.ceil(w / p)
    n = gh * gw
    pad = F.pad(s.abs().double(), (0, gw * p - w, 0, gh * p - h))
    zero_attribution = F.max_pool2d(pad, p).flatten(1) < eps  # (B, n)
    feature_of = torch.arange(n).reshape(1, 1, gh, gw).float()
    feature_of = F.interpolate(feature_of, scale_factor=p, mode="nearest")[..., :h, :w]
    xs = x.repeat_interleave(samples, dim=0)  # image i, draw k at row i·samples + k
    targets = t.repeat_interleave(samples, dim=0)
    per_image = n * samples

    def masks(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop)
        feature = (j % per_image) // samples
        m = (feature_of == feature.view(-1, 1, 1, 1).float()).float()
        return _upsample(m, (height, width))

    rows = torch.arange(b * per_image)
    index = (rows // per_image) * samples + rows % samples
    after = (
        scorer.perturbed(
            xs, masks, targets, _DrawnNoise(samples, seed), index=index, count=b * per_image
        )
        .reshape(b, n, samples)
        .double()
    )
    insensitive = after.var(dim=2, unbiased=False) < eps
    return (zero_attribution ^ insensitive).sum(1).double()


def _check_common(score: str, batch_size: int) -> None:
    check_choice(score, "score", SCORES)
    check_positive(batch_size, "batch_size", integer=True)


@METRICS.register("completeness", cost=lambda p, size: 2)
class Completeness:
    """Completeness (Sundararajan et al. 2017): ``|Σ s - (f(x) - f(baseline))|``, logit, black
    baseline; lower is better. Arguments as :func:`completeness`."""

    kind = "faithfulness"
    higher_is_better = False

    def __init__(
        self, removal: RemovalArg = None, score: Score = "logit", batch_size: BatchSize = 16
    ) -> None:
        _check_common(score, batch_size)
        self.removal = resolve_removal(removal, lambda: Constant("black"))
        self.score, self.batch_size = score, batch_size

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        """Per-image values (B,)."""
        return completeness(
            model,
            x,
            saliency,
            target,
            removal=self.removal,
            score=self.score,
            batch_size=self.batch_size,
        )

    def __repr__(self) -> str:
        return f"Completeness(removal={self.removal.spec!r}, score={self.score!r})"


@METRICS.register(
    "non_sensitivity",
    cost=lambda p, size: (
        math.ceil(size / (p["patch"] or math.ceil(size / 14))) ** 2 * p["samples"] + 1
    ),
)
class NonSensitivity:
    """Non-sensitivity (Nguyen & Martínez 2020): features whose zero attribution disagrees with
    the model's (in)dependence on them; lower is better. Arguments as :func:`non_sensitivity`."""

    kind = "faithfulness"
    higher_is_better = False

    def __init__(
        self,
        patch: Side | None = None,
        samples: Count = 10,
        eps: float = 1e-5,
        seed: Seed = 0,
        score: Score = "prob",
        batch_size: BatchSize = 16,
    ) -> None:
        if patch is not None:
            check_positive(patch, "patch", integer=True)
        _check_samples(samples)
        check_seed(seed)
        _check_common(score, batch_size)
        self.patch, self.samples, self.eps, self.seed = patch, samples, _check_eps(eps), seed
        self.score, self.batch_size = score, batch_size

    def __call__(
        self, model: Model, x: Tensor, saliency: SaliencyLike, target: Target = None
    ) -> Tensor:
        """Per-image values (B,)."""
        return non_sensitivity(
            model,
            x,
            saliency,
            target,
            patch=self.patch,
            samples=self.samples,
            eps=self.eps,
            seed=self.seed,
            score=self.score,
            batch_size=self.batch_size,
        )

    def __repr__(self) -> str:
        return (
            f"NonSensitivity(patch={self.patch}, samples={self.samples}, eps={self.eps}, "
            f"seed={self.seed})"
        )


def shifted_model(model: Model, shift: float) -> Any:
    """A copy of a :class:`~unmask.Classifier` whose first layer compensates ``x + shift``: the
    mean of its input normalisation moves by ``shift`` (``copy(x + shift) == model(x)``)."""
    shifted = copy.deepcopy(model).eval()
    with torch.no_grad():
        shifted.mean += shift
    return shifted


def _room(image: Tensor) -> float:
    """The largest constant shift keeping ``image`` in [0, 1] (up if there is more room)."""
    up, down = 1.0 - float(image.max()), float(image.min())
    return up if up >= down else -down


def input_invariance(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    shift: float | None = None,
    batch_size: int = 16,
) -> Tensor:
    """Input invariance (Kindermans et al. 2017) per image (B,) float64: the relative change of
    the map under a constant input shift compensated by the model; lower is better.

    Args:
        model: an :class:`unmask.Classifier` (deep-copied, never modified).
        x: images (B, 3, H, W) in [0, 1].
        explainer: a registered explainer (``unmask.make_explainer``), rebuilt on the shifted
            model from its spec.
        target: None (top-1), a class or a set of classes per image.
        shift: the constant c added to every image (``x + c`` must stay in [0, 1]); None = per
            image the largest shift that keeps it there.
        batch_size: images per explainer call.

    Example:
        >>> from unmask import make_explainer
        >>> from unmask.testing import region_model, region_images
        >>> m, x = region_model(), region_images(2, 32)
        >>> input_invariance(m, x, make_explainer(m, "gradient")).tolist()
        [0.0, 0.0]
    """
    if shift is not None and (
        isinstance(shift, bool) or not isinstance(shift, int | float) or not math.isfinite(shift)
    ):
        raise ValueError(f"shift: expected a finite number or None, got {shift!r}")
    model, x, explain, t, _ = prepare_explainer_inputs(model, x, explainer, target, batch_size)
    rebuild = rebuilder(explainer, "input_invariance")
    e0 = run_maps(explain, x, t, batch_size)
    out = []
    for i in range(x.shape[0]):
        c = _room(x[i]) if shift is None else float(shift)
        if shift is not None and (float(x[i].min()) + c < 0 or float(x[i].max()) + c > 1):
            raise ValueError(
                f"shift: x + {c} leaves [0, 1] for image {i} (its values span "
                f"[{float(x[i].min()):.3g}, {float(x[i].max()):.3g}])"
            )
        if c == 0:
            out.append(torch.tensor(math.nan, dtype=torch.float64))
            continue
        moved = (x[i : i + 1] + c).clamp(0, 1)  # the clamp only removes rounding
        e = run_maps(rebuild(shifted_model(model, c)).explain, moved, t[i : i + 1], batch_size)
        norm = torch.linalg.vector_norm(e0[i])
        change = torch.linalg.vector_norm(e[0] - e0[i])
        out.append(change / norm if norm > 0 else torch.tensor(math.nan, dtype=torch.float64))
    return torch.stack(out)


@METRICS.register("input_invariance", cost=lambda p, size: 0)
class InputInvariance:
    """Input invariance (Kindermans et al. 2017): relative map change under a constant input
    shift that the model's first layer compensates; lower is better. Kind ``"explainer"`` (a
    registered explainer). Arguments as :func:`input_invariance`."""

    kind = "explainer"
    higher_is_better = False

    def __init__(self, shift: float | None = None, batch_size: BatchSize = 16) -> None:
        if shift is not None and (
            isinstance(shift, bool)
            or not isinstance(shift, int | float)
            or not math.isfinite(shift)
        ):
            raise ValueError(f"shift: expected a finite number or None, got {shift!r}")
        check_positive(batch_size, "batch_size", integer=True)
        self.shift, self.batch_size = shift, batch_size

    def __call__(self, model: Model, x: Tensor, explainer: Any, target: Target = None) -> Tensor:
        """Per-image values (B,)."""
        return input_invariance(
            model, x, explainer, target, shift=self.shift, batch_size=self.batch_size
        )

    def __repr__(self) -> str:
        return f"InputInvariance(shift={self.shift})"
