"""unmask's catalogue metrics against quantus 0.6.0 itself, run in a side venv.

The side venv (``_quantus_venv.py``) is built on first use (a few minutes; then reused); these
tests skip, saying why, when it cannot be built (no package registry). Run them with
``pytest -m quantus tests/reference``.

Each comparison runs quantus with settings under which its definition is unmask's: the same
model (exported with ``torch.export``), images, maps, targets and random draws (unmask's draws
handed to quantus through ``perturb_func`` or its ``np.random.choice``), a constant 0 baseline
(quantus' ``"black"`` is the image's minimum, not 0), blocks of ``3 · pixels`` features
(quantus counts features over the channels of the broadcast map). Agreement is to 1e-5.
Where quantus 0.6.0 departs from the paper (and unmask follows the paper), the test shows
that quantus' value is the formula of that defect, computed here independently.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _quantus_venv import QuantusSide, SideVenvUnavailable, export_model

from unmask import make_explainer
from unmask.metrics import METRICS
from unmask.metrics.faithfulness import (
    _DrawnNoise,
    faithfulness_correlation,
    monotonicity,
    monotonicity_correlation,
    region_curve,
    region_perturbation,
)
from unmask.metrics.infidelity import infidelity
from unmask.metrics.irof import irof_curves
from unmask.metrics.randomisation import random_logit
from unmask.metrics.robustness import (
    avg_sensitivity,
    continuity,
    local_lipschitz_estimate,
    max_sensitivity,
    translate,
)
from unmask.testing import conv_region_model, region_images, region_mask, region_model

pytestmark = pytest.mark.quantus

SIZE = 12  # 12 x 12 images: 144 pixels (quantus wants features_in_step to divide H·W)
CONV = 16  # the convolutional region model wants a multiple of 16
PER = 4  # pixels per step: 36 steps
STEPS = SIZE * SIZE // PER
FEAT = 3 * PER  # quantus' features_in_step
TOL = dict(rtol=1e-5, atol=1e-5)


def _flat_subsets(chosen: torch.Tensor, batch: int) -> np.ndarray:
    """What quantus' np.random.choice must return, run by run and image by image: the map
    pixels of each subset, in all three channels."""
    n = SIZE * SIZE
    feats = torch.cat([chosen + c * n for c in range(3)], dim=1)  # (runs, 3·k)
    return feats.repeat_interleave(batch, dim=0).numpy()


def _uniform_deltas(
    samples: int, radius: float, seed: int, gaussian: bool = False, size: int = CONV
) -> np.ndarray:
    """unmask's robustness draws (16 at a time from one generator)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, samples, 16):
        shape = (min(16, samples - start), 3, size, size)
        out.append(
            torch.randn(shape, generator=gen) * radius
            if gaussian
            else (torch.rand(shape, generator=gen) * 2 - 1) * radius
        )
    return torch.cat(out).numpy()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both sides on the same work: {case: (unmask value, quantus value)} plus the inputs."""
    try:
        side = QuantusSide()
    except SideVenvUnavailable as e:
        pytest.skip(f"quantus side venv unavailable: {e}")
    tmp = tmp_path_factory.mktemp("quantus")
    torch.manual_seed(0)
    x = region_images(2, SIZE, seed=1)
    gen = torch.Generator().manual_seed(5)
    box = region_mask(SIZE, SIZE).float().expand(2, 1, SIZE, SIZE)
    rand = torch.rand(2, 1, SIZE, SIZE, generator=gen)
    maps = box * 0.5 + rand  # informative, no ties
    sparse = maps * (torch.rand(2, 1, SIZE, SIZE, generator=gen) > 0.6)  # zeros, for complexity
    ours: dict[str, np.ndarray] = {}
    with side:
        # --- the linear region model -------------------------------------------------------
        model = region_model().eval()
        y = model(x).argmax(1)
        arrays = {
            "x": x.numpy(),
            "y": y.numpy(),
            "a": maps.numpy(),
            "x1": x[:, :1].numpy().copy(),
            "y0": np.zeros(2, dtype=np.int64),
            "az": sparse.numpy(),
            "az3": sparse.expand(2, 3, SIZE, SIZE).numpy().copy(),
        }
        cases = []

        def case(name, metric, init=None, call=None, **kw):
            cases.append(
                {
                    "name": name,
                    "metric": metric,
                    "init": init or {},
                    "call": {"channel_first": True, **(call or {})},
                    **kw,
                }
            )

        black = {"perturb_baseline": 0.0, "normalise": False, "abs": False}
        curve = (
            METRICS.get("pixel_flipping")
            .build(max_steps=STEPS, removal="black")
            .curve(model, x, maps, y)
        )
        ours["pixel_flipping_curve"] = curve.scores[:, 1:].numpy()
        ours["pixel_flipping_auc_dx1"] = np.trapezoid(curve.scores[:, 1:].numpy(), dx=1, axis=1)
        case(
            "pixel_flipping_curve",
            "PixelFlipping",
            {"features_in_step": FEAT, **black},
            {"softmax": True},
            a="a",
        )
        case(
            "pixel_flipping_auc_dx1",
            "PixelFlipping",
            {"features_in_step": FEAT, "return_auc_per_sample": True, **black},
            {"softmax": True},
            a="a",
        )

        ours["region_perturbation"] = region_perturbation(
            model, x, maps, y, patch=4, regions=9, removal="black"
        ).numpy()
        case(
            "region_perturbation",
            "RegionPerturbation",
            {"patch_size": 4, "regions_evaluation": 9, "order": "morf", **black},
            {"softmax": True},
            a="a",
        )

        ours["faithfulness_estimate"] = (
            METRICS.get("faithfulness_estimate")
            .build(max_steps=STEPS, removal="black")(model, x, maps, y)
            .numpy()
        )
        case(
            "faithfulness_estimate",
            "FaithfulnessEstimate",
            {"features_in_step": FEAT, **black},
            {"softmax": False},
            a="a",
        )

        runs, k = 20, 6
        ours["faithfulness_correlation"] = faithfulness_correlation(
            model, x, maps, y, subset_size=k, runs=runs, seed=0
        ).numpy()
        chosen = torch.rand(runs, SIZE * SIZE, generator=torch.Generator().manual_seed(0))
        arrays["subsets"] = _flat_subsets(chosen.argsort(dim=1)[:, :k], 2)
        case(
            "faithfulness_correlation",
            "FaithfulnessCorrelation",
            {"nr_runs": runs, "subset_size": 3 * k, "return_aggregate": False, **black},
            {"softmax": False},
            a="a",
            subsets="subsets",
        )

        samples = 5
        ours["monotonicity_correlation"] = monotonicity_correlation(
            model, x, maps, y, max_steps=STEPS, samples=samples, seed=0
        ).numpy()
        arrays["mc_noise"] = (
            _DrawnNoise(samples, 0).fill(x[:1].expand(samples, -1, -1, -1)).float().numpy()
        )
        case(
            "monotonicity_correlation",
            "MonotonicityCorrelation",
            {"features_in_step": FEAT, "nr_samples": samples, "abs": True, "normalise": False},
            {"softmax": True},
            a="a",
            perturb={"kind": "noise_image", "array": "mc_noise"},
        )

        # monotonicity for class 0, whose score falls as the red box is revealed
        zero = torch.zeros(2, dtype=torch.long)
        ours["monotonicity_class0"] = monotonicity(
            model, x, maps, zero, max_steps=STEPS, removal="black"
        ).numpy()
        case(
            "monotonicity_class0",
            "Monotonicity",
            {"features_in_step": FEAT, "perturb_baseline": 0.0, "abs": True, "normalise": False},
            {"softmax": True},
            a="a",
            y="y0",
        )

        # complexity on a one-channel input (quantus reads the map at the input's shape)
        for name, metric in [
            ("sparseness", "Sparseness"),
            ("complexity", "Complexity"),
            ("effective_complexity", "EffectiveComplexity"),
        ]:
            ours[name] = METRICS.get(name).build()(sparse).numpy()
            case(name, metric, {"abs": True, "normalise": True}, a="az", x="x1")
            case(name + "_rgb", metric, {"abs": True, "normalise": True}, a="az3")

        # completeness: input x gradient is exact for the linear model (black baseline)
        ixg = make_explainer(model, "input_x_gradient").explain(x, y).saliency
        ours["ixg"] = ixg
        arrays["ixg"], arrays["ixg_half"] = ixg.numpy(), (ixg * 0.5).numpy()
        for name in ("ixg", "ixg_half"):
            ours["completeness_" + name] = (
                METRICS.get("completeness")
                .build()(model, x, torch.as_tensor(arrays[name]), y)
                .numpy()
            )
            case("completeness_" + name, "Completeness", {**black}, {"softmax": False}, a=name)

        # non-sensitivity at one feature per step (the only step quantus' XOR broadcasts at)
        ms = region_mask(SIZE, SIZE).float().expand(2, 1, SIZE, SIZE).clone()
        ms[:, :, 4, 4] = 0  # a box pixel called unimportant
        ms[:, :, 10, 1] = 1  # a pixel outside the box called important
        arrays["ms"] = ms.numpy()
        ours["non_sensitivity"] = (
            METRICS.get("non_sensitivity").build(patch=1)(model, x, ms, y).numpy()
        )
        ours["ms"] = ms
        case(
            "non_sensitivity",
            "NonSensitivity",
            {
                "features_in_step": 1,
                "perturb_baseline": 0.0,
                "eps": 1e-5,
                "abs": True,
                "normalise": False,
            },
            {"softmax": True},
            a="ms",
        )

        # catalogue2's metrics: selectivity, IROF, infidelity
        ours["selectivity_curve"] = (
            region_curve(model, x, maps, y, patch=4, regions=None, removal="black")
            .scores[:, 1:]
            .numpy()
        )
        case(
            "selectivity_curve", "Selectivity", {"patch_size": 4, **black}, {"softmax": True}, a="a"
        )
        ours["irof_curves"] = [c.numpy() for c in irof_curves(model, x, maps, y, removal="black")]
        case(
            "irof",
            "IROF",
            {
                "segmentation_method": "slic",
                "return_aggregate": False,
                "abs": False,
                "normalise": False,
            },
            {"softmax": True},
            a="a",
            perturb={"kind": "mask_fill", "value": 0.0},
        )
        side_n = SIZE // 4
        union = torch.zeros(side_n * side_n, 1, SIZE, SIZE)
        for k in range(side_n * side_n):  # M_k = the first k + 1 row-major 4 x 4 patches
            for j in range(k + 1):
                r, c = divmod(j, side_n)
                union[k, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 1
        ours["infidelity"] = infidelity(
            model, x, maps, y, masks=union, removal="black", normalise=False
        ).numpy()
        case(
            "infidelity",
            "Infidelity",
            {"perturb_patch_sizes": [4], "n_perturb_samples": 1, "loss_func": "mse", **black},
            {"softmax": False},
            a="a",
        )
        # sensitivity-n: quantus correlates over the images of the batch, per step
        x5 = region_images(5, SIZE, seed=3)
        y5 = model(x5).argmax(1)
        maps5 = torch.rand(5, 1, SIZE, SIZE, generator=gen)
        arrays.update(x5=x5.numpy(), y5=y5.numpy(), a5=maps5.numpy())
        ours["sn_curve"] = (
            METRICS.get("pixel_flipping")
            .build(max_steps=STEPS, removal="black", score="logit")
            .curve(model, x5, maps5, y5)
        )
        case(
            "sensitivity_n",
            "SensitivityN",
            {"features_in_step": FEAT, "n_max_percentage": 0.8, "return_aggregate": False, **black},
            {"softmax": False},
            a="a5",
            x="x5",
            y="y5",
        )
        np.savez(tmp / "region.npz", **arrays)
        region = side.run(tmp / "region.npz", export_model(model, x, tmp / "region.pt2"), cases)[
            "values"
        ]

        # --- continuity, on a red-only region model (weights (4, 0, 0): a uniform image has a
        # non-zero input x gradient, which quantus asserts); 3 translations: dx = 25 // 3 = 8,
        # -4, 4 and 12 px (none is 0)
        red = region_model().eval()
        with torch.no_grad():
            red.net.weight.copy_(torch.tensor([4.0, 0.0, 0.0]))
        ixg_e = make_explainer(red, "input_x_gradient")
        ours["continuity"] = continuity(red, x, ixg_e, y, steps=10).numpy()
        np.savez(tmp / "red.npz", x=x.numpy(), y=y.numpy())
        red_values = side.run(
            tmp / "red.npz",
            export_model(red, x, tmp / "red.pt2"),
            [
                {
                    "name": "continuity",
                    "metric": "Continuity",
                    "call": {"channel_first": True},
                    "init": {"nr_steps": 3, "abs": False, "normalise": False},
                    "explain": "input_x_gradient",
                }
            ],
        )["values"]

        # --- the convolutional region model: explainer metrics -----------------------------
        conv = conv_region_model().eval()
        xr, x = x, region_images(2, CONV, seed=1)
        yc = conv(x).argmax(1)
        e = make_explainer(conv, "input_x_gradient")
        arrays = {"x": x.numpy(), "y": yc.numpy()}
        cases = []
        n = 8
        arrays["u"] = _uniform_deltas(n, 0.2, 0)
        arrays["g"] = _uniform_deltas(n, 0.1, 0, gaussian=True)
        common = {"nr_samples": n, "normalise": False, "abs": False}
        ours["max_sensitivity"] = max_sensitivity(conv, x, e, yc, samples=n).numpy()
        case(
            "max_sensitivity",
            "MaxSensitivity",
            common,
            explain="input_x_gradient",
            perturb={"kind": "add_noise", "array": "u"},
        )
        ours["avg_sensitivity"] = avg_sensitivity(conv, x, e, yc, samples=n).numpy()
        case(
            "avg_sensitivity",
            "AvgSensitivity",
            common,
            explain="input_x_gradient",
            perturb={"kind": "add_noise", "array": "u"},
        )
        ours["local_lipschitz_estimate"] = local_lipschitz_estimate(
            conv, x, e, yc, samples=n
        ).numpy()
        case(
            "local_lipschitz_estimate",
            "LocalLipschitzEstimate",
            common,
            explain="input_x_gradient",
            perturb={"kind": "add_noise", "array": "g"},
        )
        ours["random_logit"] = random_logit(conv, x, e, yc, similarity="spearman").numpy()
        cases.append(
            {
                "name": "random_logit",
                "metric": "RandomLogit",
                "init": {
                    "num_classes": 2,
                    "similarity_func": "correlation_spearman",
                    "abs": False,
                    "normalise": False,
                },
                "call": {"channel_first": True},
                "explain": "input_x_gradient",
            }
        )
        np.savez(tmp / "conv.npz", **arrays)
        conv_values = side.run(tmp / "conv.npz", export_model(conv, x, tmp / "conv.pt2"), cases)[
            "values"
        ]
    theirs = {
        k: np.asarray(v, dtype=np.float64)
        for k, v in {**region, **red_values, **conv_values}.items()
    }
    return {"ours": ours, "theirs": theirs, "model": model, "x": xr, "y": y, "ixg_e": ixg_e}


@pytest.mark.parametrize(
    "name",
    [
        "pixel_flipping_curve",
        "pixel_flipping_auc_dx1",
        "region_perturbation",
        "faithfulness_estimate",
        "faithfulness_correlation",
        "monotonicity_correlation",
        "sparseness",
        "complexity",
        "effective_complexity",
        "max_sensitivity",
        "avg_sensitivity",
        "local_lipschitz_estimate",
        "random_logit",
        "selectivity_curve",
        "infidelity",
    ],
)
def test_coincides_with_quantus(run, name):
    ours, theirs = np.asarray(run["ours"][name], dtype=np.float64), run["theirs"][name]
    if name == "region_perturbation":  # quantus returns the drop curve; AOPC over k = 0..R
        theirs = theirs.sum(1) / (theirs.shape[1] + 1)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, theirs.reshape(ours.shape), **TOL)


def test_complexity_of_a_channel_repeated_map(run):
    """quantus reads the map at the input's shape: on an RGB input the map is counted once per
    channel. The Gini index is replication-invariant; the entropy grows by ln 3, the count
    triples (unmask reads the (B, 1, h, w) map)."""
    ours, theirs = run["ours"], run["theirs"]
    np.testing.assert_allclose(theirs["sparseness_rgb"], ours["sparseness"], **TOL)
    np.testing.assert_allclose(theirs["complexity_rgb"], ours["complexity"] + math.log(3), **TOL)
    np.testing.assert_allclose(
        theirs["effective_complexity_rgb"], 3 * ours["effective_complexity"], **TOL
    )


def test_completeness_is_an_exact_float_comparison_in_quantus(run):
    """quantus' Completeness returns ``Σ a == f(x) - f(x̃)``, a float equality; unmask returns
    the gap (Sundararajan et al.: the attributions add up to the difference)."""
    ours, theirs = run["ours"], run["theirs"]
    model, x, y = run["model"], run["x"], run["y"]
    with torch.no_grad():
        change = (model(x) - model(torch.zeros_like(x))).gather(1, y[:, None])[:, 0]
    for name, share in (("ixg", 1.0), ("ixg_half", 0.5)):
        a = (ours["ixg"] * share).flatten(1)
        gap = (a.double().sum(1) - change.double()).abs().numpy()
        np.testing.assert_allclose(ours["completeness_" + name], gap, atol=1e-5)
        exact = (a.numpy().sum(axis=1) == change.numpy()).astype(np.float64)
        np.testing.assert_array_equal(theirs["completeness_" + name], exact)
    assert (ours["completeness_ixg"] < 1e-5).all()  # complete up to float rounding ...
    assert (theirs["completeness_ixg"] == 0).all()  # ... which the equality calls incomplete
    assert (ours["completeness_ixg_half"] > 0.1).all()


def test_non_sensitivity_counts_channel_features_with_one_draw_in_quantus(run):
    """quantus 0.6.0's NonSensitivity (batched): per input feature (channel × pixel), replaced
    once by the baseline, ``(|Δp| < eps) XOR (a < eps)`` summed; the paper (and unmask) count the
    symmetric difference of the sets of map features (pixels or patches) the model ignores
    (variance over noise draws) and the map calls unimportant."""
    model, x, y, ms = run["model"], run["x"], run["y"], run["ours"]["ms"]
    with torch.no_grad():
        p0 = model(x).softmax(1).gather(1, y[:, None])[:, 0]
        flat = x.flatten(1)
        n = flat.shape[1]
        xs = flat[:, None].repeat(1, n, 1)
        xs[:, torch.arange(n), torch.arange(n)] = 0.0  # feature i replaced in copy i
        p = model(xs.reshape(-1, *x.shape[1:])).softmax(1)
        p = p.reshape(2, n, -1).gather(2, y[:, None, None].expand(2, n, 1))[..., 0]
    ignored = (p - p0[:, None]).abs() < 1e-5
    unimportant = ms.expand_as(x).flatten(1) < 1e-5
    defect = (ignored ^ unimportant).sum(1).double().numpy()
    np.testing.assert_array_equal(run["theirs"]["non_sensitivity"], defect)
    np.testing.assert_array_equal(defect, [6, 6])  # 2 wrong pixels x 3 channels
    np.testing.assert_array_equal(run["ours"]["non_sensitivity"], [2, 2])  # the 2 pixels


def test_monotonicity_never_reveals_the_image_in_quantus(run):
    """quantus 0.6.0's Monotonicity writes the baseline into the baseline image at each step,
    so the curve is constant and every map is "monotonic" (1); Arya et al. reveal the image's
    features. For class 0 the score falls as the red box is revealed: unmask gives 0."""
    np.testing.assert_array_equal(run["theirs"]["monotonicity_class0"], [1.0, 1.0])
    np.testing.assert_array_equal(run["ours"]["monotonicity_class0"], [0.0, 0.0])


def test_continuity_translates_both_ways_by_large_steps_in_quantus(run):
    """quantus 0.6.0's Continuity (batched) is the paper's quotient max ‖e − e′‖₁ / ‖x − x′‖₂
    too, but over translations by ``−W + k·dx`` (k = 1..nr_steps, dx = (2W + 1) // nr_steps:
    left and right, up to most of the width), filled with the image's minimum ("black"); unmask
    translates right by 1..steps pixels, filled with 0."""
    x, y, e = run["x"], run["y"], run["ixg_e"]
    width = x.shape[-1]
    dx = (2 * width + 1) // 3
    fill = x.flatten(1).amin(1)[:, None, None, None]
    a = e.explain(x, y).saliency.flatten(1)
    best = torch.full((2,), -math.inf, dtype=torch.float64)
    for k in range(1, 4):
        t = -width + k * dx
        xt = torch.full_like(x, 0.0) + fill
        if t >= 0:
            xt[..., t:] = x[..., : width - t]
        else:
            xt[..., : width + t] = x[..., -t:]
        at = e.explain(xt, y).saliency.flatten(1)
        q = (a - at).abs().sum(1).double() / ((x - xt).flatten(1).norm(dim=1).double() + 1e-9)
        best = torch.maximum(best, q)
    np.testing.assert_allclose(run["theirs"]["continuity"], best.numpy(), rtol=1e-4)
    ours = torch.zeros(2, dtype=torch.float64)
    for t in range(1, 11):  # the paper's quotient over unmask's translations, naively
        xt = translate(x, t)
        at = e.explain(xt, y).saliency.flatten(1)
        q = (a - at).abs().sum(1).double() / (x - xt).flatten(1).norm(dim=1).double()
        ours = torch.maximum(ours, q)
    np.testing.assert_allclose(run["ours"]["continuity"], ours.numpy(), rtol=1e-5)
    assert not np.allclose(run["ours"]["continuity"], run["theirs"]["continuity"], rtol=1e-2)


def test_irof_is_quantus_area_over_its_padded_curve(run):
    """IROF: the same SLIC superpixels and curves (score after k superpixels removed / clean
    score); quantus returns ``S - np.trapz(curve)``, its curve padded with zeros to the batch's
    largest superpixel count (an image with fewer superpixels gets an extra half step), where
    unmask returns the area over the curve on x in [0, 1] with the start point 1."""
    curves = run["ours"]["irof_curves"]
    longest = max(len(c) - 1 for c in curves)
    expected = []
    for c in curves:
        padded = np.zeros(longest)
        padded[: len(c) - 1] = c[1:]
        expected.append((len(c) - 1) - np.trapezoid(padded, dx=1))
    np.testing.assert_allclose(run["theirs"]["irof"], expected, **TOL)


def test_sensitivity_n_correlates_over_the_batch_in_quantus(run):
    """quantus 0.6.0's SensitivityN removes the top features cumulatively (no random subsets),
    sums the attribution of the last step's features only, and for each step correlates that
    with the prediction change *over the images of the batch*: one value per step (the first
    80 % of the steps), not per image. Ancona et al. (and unmask): per image and n, the
    correlation over random subsets of n features."""
    c = run["ours"]["sn_curve"]
    drops = (c.scores[:, :1] - c.scores[:, 1:]).double()  # (B, T) cumulative
    steps = int(0.8 * SIZE * SIZE // FEAT)
    expected = [
        np.corrcoef(drops[:, k].numpy(), c.step_saliency[:, k].numpy())[0, 1] for k in range(steps)
    ]
    theirs = run["theirs"]["sensitivity_n"]
    assert theirs.shape == (steps,)  # 9 values for a batch of 5 images
    np.testing.assert_allclose(theirs, expected, rtol=1e-4, atol=1e-5)
