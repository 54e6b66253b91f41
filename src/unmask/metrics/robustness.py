"""Robustness of an explainer to small input perturbations (kind ``"explainer"``).

The explainer is re-run on ``samples`` perturbed copies ``x' = clip(x + δ, 0, 1)`` of every
image, in batches, for the same target. The perturbations δ are drawn from ``seed``, 16 at a
time (whatever ``batch_size``), and are the same for every image (so a batch gives what
per-image calls give). Maps are compared flattened, in the Frobenius (L2) norm, as the
explainer returns them.

- **max_sensitivity** / **avg_sensitivity** (Yeh et al., "On the (in)fidelity and sensitivity
  of explanations", NeurIPS 2019; quantus ``MaxSensitivity`` / ``AvgSensitivity``): the max /
  mean over perturbations δ ~ U(-r, r) per pixel (quantus ``lower_bound=0.2``, 200 samples) of
  ``||e(x) - e(x')|| / ||e(x)||``. Lower is better. NaN for an all-zero map e(x).
- **local_lipschitz_estimate** (Alvarez-Melis & Jaakkola, "On the robustness of
  interpretability methods", 2018; quantus ``LocalLipschitzEstimate``): the max over Gaussian
  perturbations δ ~ N(0, 0.1²) (200 samples) of ``||e(x) - e(x')|| / ||x - x'||``. Lower is
  better. The paper maximises over a ball by optimisation; sampling is quantus' estimate.
- **relative_input_stability** / **relative_output_stability** /
  **relative_representation_stability** (Agarwal et al., "Rethinking
  stability for attribution-based explanations", 2022; quantus ``RelativeInputStability`` /
  ``RelativeOutputStability``): the max over perturbations (U(-0.2, 0.2), 200 samples) whose
  predicted class is that of x (the paper's neighbourhood condition) of
  ``||(e(x) - e(x')) / e(x)|| / max(||(x - x') / x||, ε)`` (input) or
  ``... / max(||h(x) - h(x')||, ε)`` (output, h the logits) or
  ``... / max(||(L(x) - L(x')) / L(x)||, ε)`` (representation, L the output of a layer of
  ``model.net``, default the model's ``feature_layer``), ε = 1e-6; entries where e(x) or x
  is 0 are divided by ε instead (as quantus). Lower is better. NaN when no perturbation keeps
  the class.

- **continuity** (Montavon, Samek & Müller, "Methods for interpreting and understanding deep
  neural networks", 2018, Sec. 4.2): explanations of nearby inputs should be nearby, the
  Lipschitz quotient ``max_{x'} ||e(x) - e(x')||_1 / ||x - x'||_2``, over the images translated
  right by 1..``steps`` pixels (the vacated columns black). Lower is better. quantus 0.6.0's
  ``Continuity`` takes the same quotient over translations by ``-W + k·dx`` (both ways, up to
  the whole width, filled with the image's minimum; ``tests/reference``). No random draws.

Perturbed images are clipped to [0, 1] (the classifier's input range); quantus does not clip.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_positive, check_seed
from .._limits import check_at_most
from .._types import Model, Target
from ..gradients import find_layer
from ..params import BatchSize, Count, LayerArg, Seed, Steps
from ..registry import METRICS
from ._explain import prepare_explainer_inputs, run_maps

__all__ = [
    "perturbation_study",
    "max_sensitivity",
    "avg_sensitivity",
    "local_lipschitz_estimate",
    "relative_input_stability",
    "relative_output_stability",
    "MaxSensitivity",
    "AvgSensitivity",
    "LocalLipschitzEstimate",
    "RelativeInputStability",
    "RelativeOutputStability",
    "NOISES",
    "relative_representation_stability",
    "RelativeRepresentationStability",
    "continuity",
    "Continuity",
    "translate",
]

#: The perturbations: ``"uniform"`` δ ~ U(-radius, radius), ``"gaussian"`` δ ~ N(0, radius²).
NOISES = ("uniform", "gaussian")

#: At most this many perturbations per image.
MAX_SAMPLES = 10_000

EPS_MIN = 1e-6

#: Perturbations drawn at a time (fixed, so the draws do not depend on ``batch_size``).
DRAWS = 16


#: The smallest noise radius / standard deviation: below it a float32 image in [0, 1] does not
#: change (its resolution near 1 is 6e-8), and every quotient would divide by zero.
MIN_NOISE = 1e-6


def _flat_norm(v: Tensor) -> Tensor:
    return torch.linalg.vector_norm(v.flatten(2), dim=2)


def _relative(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with zero entries of ``den`` replaced by ε (quantus' convention)."""
    return num / torch.where(den == 0, EPS_MIN, den)


def perturbation_study(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    samples: int = 200,
    noise: str = "uniform",
    radius: float = 0.2,
    seed: int = 0,
    batch_size: int = 16,
    represent: bool = False,
    layer: str | None = None,
    outputs: bool = True,
) -> dict[str, Tensor]:
    """Re-run the explainer on ``samples`` seeded perturbations of every image.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        explainer: an explainer (``explain(x, target)``) or ``fn(x, target)`` -> maps.
        target: None (top-1 on the clean image), a class or a set of classes per image.
        samples: perturbations per image.
        noise: ``"uniform"`` (U(-radius, radius) per pixel) or ``"gaussian"`` (N(0, radius²)).
        radius: the bound of the uniform noise or the standard deviation of the Gaussian.
        seed: seed of the perturbations (the same for every image).
        batch_size: images per explainer call and per forward pass.
        represent: also record ``layer``'s output on x and x'.
        layer: a layer of ``model.net`` (None = the model's ``feature_layer``).
        outputs: also score x and the perturbed images (``"logit_change"``, ``"same_class"``);
            False skips that forward pass (the sensitivities and the Lipschitz estimate read
            only the maps and inputs). ``represent`` implies it.

    Returns:
        (B, S) float64 tensors: ``"map_change"`` ||e - e'||, ``"map_norm"`` ||e|| (B, 1),
        ``"input_change"`` ||x - x'||, ``"relative_map_change"`` ||(e - e') / e||,
        ``"relative_input_change"`` ||(x - x') / x||, ``"logit_change"`` ||h - h'||,
        ``"same_class"`` (bool) whether x' has x's predicted class; with ``represent``,
        ``"relative_representation_change"`` ||(L - L') / L|| of the layer's output L.

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> r = perturbation_study(region_model(), region_images(2, 16), lambda x, t: x[:, :1],
        ...                        samples=4)
        >>> r["map_change"].shape
        torch.Size([2, 4])
    """
    check_positive(samples, "samples", integer=True)
    check_at_most(samples, "samples", MAX_SAMPLES, "perturbations per image")
    noise = check_choice(noise, "noise", NOISES)
    if (
        isinstance(radius, bool)
        or not isinstance(radius, int | float)
        or not math.isfinite(radius)
        or radius < MIN_NOISE
    ):
        raise ValueError(
            f"radius: expected a finite number >= {MIN_NOISE} (smaller noise leaves float32 "
            f"images unchanged), got {radius!r}"
        )
    check_seed(seed)
    model, x, explain, t, scorer = prepare_explainer_inputs(model, x, explainer, target, batch_size)
    scorer.check_memory(batch_size, tuple(x.shape[1:]), "perturbed images")
    captured: list[Tensor] = []
    handle = None
    if represent:
        module = find_layer(model, layer)

        def record(_module: Any, _inputs: Any, output: Any) -> None:
            if not isinstance(output, Tensor):
                raise TypeError(f"layer: its output is {type(output).__name__}, not a tensor")
            captured.append(output.detach().double().cpu().flatten(1))

        handle = module.register_forward_hook(record)
    try:
        return _study(
            model,
            x,
            explain,
            t,
            scorer,
            samples,
            noise,
            radius,
            int(seed),
            batch_size,
            captured if represent else None,
            bool(outputs or represent),
        )
    finally:
        if handle is not None:
            handle.remove()


def _take(captured: list[Tensor] | None) -> Tensor | None:
    if captured is None:
        return None
    out = torch.cat(captured)
    captured.clear()
    return out


def _study(
    model: Model,
    x: Tensor,
    explain: Any,
    t: Tensor,
    scorer: Any,
    samples: int,
    noise: str,
    radius: float,
    seed: int,
    batch_size: int,
    captured: list[Tensor] | None,
    outputs: bool = True,
) -> dict[str, Tensor]:
    b = x.shape[0]
    e0 = run_maps(explain, x, t, batch_size)  # (B, 1, h, w)
    if captured is not None:
        captured.clear()
    h0 = scorer.logits(x).double().cpu() if outputs else None
    r0 = _take(captured)
    c0 = h0.argmax(1) if h0 is not None else None
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[Tensor]] = {
        k: []
        for k in (
            "map_change",
            "input_change",
            "relative_map_change",
            "relative_input_change",
            "logit_change",
            "same_class",
            "relative_representation_change",
        )
    }
    xc = x.cpu()
    for start in range(0, samples, DRAWS):
        k = min(DRAWS, samples - start)
        shape = (k, *x.shape[1:])
        if noise == "uniform":
            delta = (torch.rand(shape, generator=gen) * 2 - 1) * radius
        else:
            delta = torch.randn(shape, generator=gen) * radius
        xp = (xc[:, None] + delta.to(xc.dtype)[None]).clamp(0, 1)  # (B, k, C, H, W)
        flat = xp.reshape(b * k, *x.shape[1:])
        tp = t.repeat_interleave(k, dim=0)
        if captured is not None:
            captured.clear()  # what the explainer's own forward passes left
        h = scorer.logits(flat.to(x.device)).double().cpu().reshape(b, k, -1) if outputs else None
        rp = _take(captured)
        e = run_maps(explain, flat.to(x.device), tp, batch_size).reshape(b, k, *e0.shape[1:])
        de = e - e0[:, None]
        dx = (xp - xc[:, None]).double()
        out["map_change"].append(_flat_norm(de))
        out["input_change"].append(_flat_norm(dx))
        out["relative_map_change"].append(_flat_norm(_relative(de, e0[:, None])))
        out["relative_input_change"].append(_flat_norm(_relative(dx, xc[:, None].double())))
        if h is not None and h0 is not None and c0 is not None:
            out["logit_change"].append(torch.linalg.vector_norm(h - h0[:, None], dim=2))
            out["same_class"].append(h.argmax(2) == c0[:, None])
        if rp is not None and r0 is not None:
            dr = rp.reshape(b, k, -1) - r0[:, None]
            out["relative_representation_change"].append(
                torch.linalg.vector_norm(_relative(dr, r0[:, None]), dim=2)
            )
    result = {key: torch.cat(v, dim=1) for key, v in out.items() if v}
    result["map_norm"] = _flat_norm(e0[:, None])[:, :1]
    return result


def _masked_max(v: Tensor, keep: Tensor) -> Tensor:
    v = torch.where(keep, v, -math.inf).amax(1)
    return torch.where(torch.isinf(v) & (v < 0), math.nan, v)


def _sensitivity(r: dict[str, Tensor], reduce: str) -> Tensor:
    ratio = r["map_change"] / r["map_norm"]
    ratio = torch.where(r["map_norm"] > 0, ratio, math.nan)
    return ratio.amax(1) if reduce == "max" else ratio.mean(1)


def max_sensitivity(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    samples: int = 200,
    radius: float = 0.2,
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
    """Max-sensitivity (Yeh et al. 2019) per image (B,) float64; lower is better.

    Args: as :func:`perturbation_study` (uniform noise of bound ``radius``).

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> same = lambda x, t: torch.ones(len(x), 1, 16, 16)  # ignores the image
        >>> max_sensitivity(region_model(), region_images(2, 16), same, samples=8).tolist()
        [0.0, 0.0]
    """
    return _sensitivity(
        perturbation_study(
            model,
            x,
            explainer,
            target,
            samples=samples,
            radius=radius,
            seed=seed,
            batch_size=batch_size,
            outputs=False,
        ),
        "max",
    )


def avg_sensitivity(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    samples: int = 200,
    radius: float = 0.2,
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
    """Avg-sensitivity (Yeh et al. 2019) per image (B,) float64; lower is better.

    Args: as :func:`perturbation_study` (uniform noise of bound ``radius``).
    """
    return _sensitivity(
        perturbation_study(
            model,
            x,
            explainer,
            target,
            samples=samples,
            radius=radius,
            seed=seed,
            batch_size=batch_size,
            outputs=False,
        ),
        "mean",
    )


def local_lipschitz_estimate(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    samples: int = 200,
    std: float = 0.1,
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018) per image (B,) float64: the
    max of ``||e(x) - e(x')|| / ||x - x'||`` over Gaussian perturbations; lower is better.

    Args: as :func:`perturbation_study`, with ``std`` the noise's standard deviation (0.1).
    """
    r = perturbation_study(
        model,
        x,
        explainer,
        target,
        samples=samples,
        noise="gaussian",
        radius=std,
        seed=seed,
        batch_size=batch_size,
        outputs=False,
    )
    moved = r["input_change"] > 0
    return _masked_max(r["map_change"] / torch.where(moved, r["input_change"], 1.0), moved)


def relative_input_stability(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    samples: int = 200,
    radius: float = 0.2,
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
    """Relative input stability (Agarwal et al. 2022) per image (B,) float64; lower is better.

    Args: as :func:`perturbation_study` (uniform noise of bound ``radius``).
    """
    r = perturbation_study(
        model,
        x,
        explainer,
        target,
        samples=samples,
        radius=radius,
        seed=seed,
        batch_size=batch_size,
    )
    ratio = r["relative_map_change"] / r["relative_input_change"].clamp_min(EPS_MIN)
    return _masked_max(ratio, r["same_class"])


def relative_output_stability(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    samples: int = 200,
    radius: float = 0.2,
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
    """Relative output stability (Agarwal et al. 2022) per image (B,) float64; lower is better.

    Args: as :func:`perturbation_study` (uniform noise of bound ``radius``).
    """
    r = perturbation_study(
        model,
        x,
        explainer,
        target,
        samples=samples,
        radius=radius,
        seed=seed,
        batch_size=batch_size,
    )
    ratio = r["relative_map_change"] / r["logit_change"].clamp_min(EPS_MIN)
    return _masked_max(ratio, r["same_class"])


def relative_representation_stability(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    layer: str | None = None,
    samples: int = 200,
    radius: float = 0.2,
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
    """Relative representation stability (Agarwal et al. 2022) per image (B,) float64: the max
    over class-preserving perturbations of ``||(e - e') / e|| / max(||(L - L') / L||, ε)``, L
    the output of ``layer``; lower is better.

    Args: as :func:`perturbation_study`; ``layer`` a layer of ``model.net`` (None = the
    model's ``feature_layer``).
    """
    r = perturbation_study(
        model,
        x,
        explainer,
        target,
        samples=samples,
        radius=radius,
        seed=seed,
        batch_size=batch_size,
        represent=True,
        layer=layer,
    )
    ratio = r["relative_map_change"] / r["relative_representation_change"].clamp_min(EPS_MIN)
    return _masked_max(ratio, r["same_class"])


class _Robustness:
    kind = "explainer"
    higher_is_better = False
    _function: Any = None
    _noise_name = "radius"

    def __init__(
        self, samples: Count = 200, radius: float = 0.2, seed: Seed = 0, batch_size: BatchSize = 16
    ) -> None:
        check_positive(samples, "samples", integer=True)
        check_at_most(samples, "samples", MAX_SAMPLES, "perturbations per image")
        if (
            isinstance(radius, bool)
            or not isinstance(radius, int | float)
            or not math.isfinite(radius)
            or radius < MIN_NOISE
        ):
            raise ValueError(
                f"{self._noise_name}: expected a finite number >= {MIN_NOISE} (smaller noise "
                f"leaves float32 images unchanged), got {radius!r}"
            )
        check_seed(seed)
        check_positive(batch_size, "batch_size", integer=True)
        self.samples, self.radius, self.seed, self.batch_size = samples, radius, seed, batch_size

    def __call__(self, model: Model, x: Tensor, explainer: Any, target: Target = None) -> Tensor:
        """Per-image values (B,)."""
        return type(self)._function(
            model,
            x,
            explainer,
            target,
            samples=self.samples,
            seed=self.seed,
            batch_size=self.batch_size,
            **{self._noise_name: self.radius},
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(samples={self.samples}, "
            f"{self._noise_name}={self.radius}, seed={self.seed})"
        )


@METRICS.register("max_sensitivity", cost=lambda p, size: 0)
class MaxSensitivity(_Robustness):
    """Max-sensitivity (Yeh et al. 2019): the largest relative map change under uniform noise
    of bound ``radius`` (0.2), over ``samples`` (200) seeded perturbations; lower is better."""

    _function = staticmethod(max_sensitivity)


@METRICS.register("avg_sensitivity", cost=lambda p, size: 0)
class AvgSensitivity(_Robustness):
    """Avg-sensitivity (Yeh et al. 2019): the mean relative map change under uniform noise of
    bound ``radius`` (0.2), over ``samples`` (200) seeded perturbations; lower is better."""

    _function = staticmethod(avg_sensitivity)


@METRICS.register("local_lipschitz_estimate", cost=lambda p, size: 0)
class LocalLipschitzEstimate(_Robustness):
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018): the largest map change per
    input change under N(0, std²) noise (std 0.1, 200 samples); lower is better."""

    _function = staticmethod(local_lipschitz_estimate)
    _noise_name = "std"

    def __init__(
        self, samples: Count = 200, std: float = 0.1, seed: Seed = 0, batch_size: BatchSize = 16
    ) -> None:
        super().__init__(samples, std, seed, batch_size)


@METRICS.register("relative_input_stability", cost=lambda p, size: p["samples"] + 1)
class RelativeInputStability(_Robustness):
    """Relative input stability (Agarwal et al. 2022): the largest relative map change per
    relative input change over class-preserving perturbations; lower is better."""

    _function = staticmethod(relative_input_stability)


@METRICS.register("relative_output_stability", cost=lambda p, size: p["samples"] + 1)
class RelativeOutputStability(_Robustness):
    """Relative output stability (Agarwal et al. 2022): the largest relative map change per
    logit change over class-preserving perturbations; lower is better."""

    _function = staticmethod(relative_output_stability)


@METRICS.register(
    "relative_representation_stability",
    cost=lambda p, size: p["samples"] + 1,
    passes="forward",  # a hook records the layer: PyTorch forward passes
)
class RelativeRepresentationStability(_Robustness):
    """Relative representation stability (Agarwal et al. 2022): the largest relative map change
    per relative change of a layer's output (default the model's ``feature_layer``) over
    class-preserving perturbations; lower is better."""

    _function = staticmethod(relative_representation_stability)

    def __init__(
        self,
        layer: LayerArg = None,
        samples: Count = 200,
        radius: float = 0.2,
        seed: Seed = 0,
        batch_size: BatchSize = 16,
    ) -> None:
        if layer is not None and not isinstance(layer, str):
            raise TypeError(
                f"layer: expected a layer name (str) or None, got {type(layer).__name__}"
            )
        super().__init__(samples, radius, seed, batch_size)
        self.layer = layer

    def __call__(self, model: Model, x: Tensor, explainer: Any, target: Target = None) -> Tensor:
        """Per-image values (B,)."""
        return relative_representation_stability(
            model,
            x,
            explainer,
            target,
            layer=self.layer,
            samples=self.samples,
            radius=self.radius,
            seed=self.seed,
            batch_size=self.batch_size,
        )


def translate(x: Tensor, dx: int) -> Tensor:
    """Images (B, C, H, W) moved right by ``dx`` pixels, the vacated columns black (0)."""
    out = torch.zeros_like(x)
    if dx < x.shape[-1]:
        out[..., dx:] = x[..., : x.shape[-1] - dx]
    return out


def continuity(
    model: Model,
    x: Tensor,
    explainer: Any,
    target: Target = None,
    *,
    steps: int = 28,
    batch_size: int = 16,
) -> Tensor:
    """Continuity (Montavon et al. 2018) per image (B,) float64: the max over translations by
    1..``steps`` pixels of ``||e(x) - e(x')||_1 / ||x - x'||_2``; lower is better.

    Args:
        model, x, explainer, target: as :func:`perturbation_study`.
        steps: the largest translation in pixels (quantus ``nr_steps``: 28), below the width.
        batch_size: images per explainer call.

    Example:
        >>> from unmask.testing import region_model, region_images
        >>> same = lambda x, t: torch.ones(len(x), 1, 16, 16)
        >>> continuity(region_model(), region_images(2, 16), same, steps=3).tolist()
        [0.0, 0.0]
    """
    check_positive(steps, "steps", integer=True)
    model, x, explain, t, _ = prepare_explainer_inputs(model, x, explainer, target, batch_size)
    if steps >= x.shape[-1]:
        raise ValueError(f"steps: expected fewer than the image width {x.shape[-1]}, got {steps}")
    b = x.shape[0]
    e0 = run_maps(explain, x, t, batch_size)
    moved = torch.stack([translate(x, d) for d in range(1, steps + 1)], 1)  # (B, S, C, H, W)
    flat = moved.reshape(b * steps, *x.shape[1:])
    e = run_maps(explain, flat, t.repeat_interleave(steps, dim=0), batch_size)
    e = e.reshape(b, steps, -1)
    num = (e - e0.flatten(1)[:, None]).abs().sum(2)
    den = torch.linalg.vector_norm((moved - x[:, None]).double().cpu().flatten(2), dim=2)
    return _masked_max(num / torch.where(den > 0, den, 1.0), den > 0)


@METRICS.register("continuity", cost=lambda p, size: 0)
class Continuity:
    """Continuity (Montavon et al. 2018): the largest L1 map change per L2 input change over
    translations by 1..``steps`` (28) pixels; lower is better."""

    kind = "explainer"
    higher_is_better = False

    def __init__(self, steps: Steps = 28, batch_size: BatchSize = 16) -> None:
        check_positive(steps, "steps", integer=True)
        check_positive(batch_size, "batch_size", integer=True)
        self.steps, self.batch_size = steps, batch_size

    def __call__(self, model: Model, x: Tensor, explainer: Any, target: Target = None) -> Tensor:
        """Per-image values (B,)."""
        return continuity(model, x, explainer, target, steps=self.steps, batch_size=self.batch_size)

    def __repr__(self) -> str:
        return f"Continuity(steps={self.steps})"
