"""Early stopping of RISE, LIME and occlusion (``tolerance=``): off is today's output bit for
bit; on, fewer samples, the stopped map is exactly the estimate from the samples used, and the
same seed and tolerance give the same samples and map."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

import unmask
from unmask.explainers.converge import Convergence, check_stopping, map_change
from unmask.explainers.lime import Lime, lime_kernel, weighted_ridge
from unmask.explainers.occlusion import Occlusion, coarse_step, level_order
from unmask.explainers.rise import Rise
from unmask.testing import region_images, region_model

MODEL = region_model()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1 - map_change(a.flatten(1), b.flatten(1))


# ---- tolerance=None: today's output ------------------------------------------------------------

#: SHA-256 prefixes of the outputs of main at commit 723c84f (before early stopping existed), on
#: region_images(2), one torch thread: (saliency, main raw extra, explain_each([1, {0, 1}]) maps).
GOLDEN = {
    "rise": ("6f1c944f7bbc46f4", "4fab672ea0976b98", "6f1c944f7bbc46f4", "3e654cfb2b676c57"),
    "lime": ("f97471fc683c75a8", "9ca9afae560cf807", "f97471fc683c75a8", "7e61c27af33ecd92"),
    "occlusion": ("4bf40469ab6e789d", "5d0b7b7c60a0c3f9", "4bf40469ab6e789d", "2586b1474cac122a"),
}
KEYS = {
    "rise": ["mask_scores", "masks"],
    "lime": [
        "intercept",
        "num_segments",
        "sample_scores",
        "samples",
        "score",
        "segments",
        "weights",
    ],
    "occlusion": ["base_score", "grid"],
}


def _golden_explainer(name: str):
    return {
        "rise": (Rise(MODEL, masks=300, s=4, seed=3, batch_size=32), "mask_scores"),
        "lime": (Lime(MODEL, n_segments=16, samples=120, seed=2, batch_size=32), "weights"),
        "occlusion": (Occlusion(MODEL, patch_size=8, stride=3, batch_size=32), "grid"),
    }[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_tolerance_none_is_bit_identical_to_before(name):
    explainer, key = _golden_explainer(name)
    assert explainer.tolerance is None
    x = region_images(2)
    e = explainer.explain(x)
    each = explainer.explain_each(x, [1, [0, 1]])
    got = (
        _digest(e.saliency),
        _digest(e.extras[key]),
        _digest(each[0].saliency),
        _digest(each[1].saliency),
    )
    assert got == GOLDEN[name]
    assert sorted(e.extras) == KEYS[name]  # no early-stopping extras when it is off
    assert e.params["tolerance"] is None


# ---- with a tolerance ---------------------------------------------------------------------------


def _rise(**kw):
    return Rise(
        MODEL, **{"masks": 2000, "s": 4, "seed": 1, "batch_size": 64, "check_every": 100, **kw}
    )


def _lime(**kw):
    return Lime(
        MODEL,
        **{"n_segments": 16, "samples": 1000, "seed": 1, "batch_size": 64, "check_every": 50, **kw},
    )


def _occlusion(**kw):
    return Occlusion(MODEL, patch_size=8, stride=1, batch_size=256, **kw)


@pytest.fixture(scope="module")
def runs():
    """Full and early-stopped runs on three region images (memoised across tests)."""
    with torch.inference_mode(False):
        torch.set_num_threads(1)
        x = region_images(3)
        return {
            "x": x,
            "rise": (_rise().explain(x), _rise(tolerance=1e-2).explain(x)),
            "lime": (_lime().explain(x), _lime(tolerance=1e-2).explain(x)),
            "occlusion": (_occlusion().explain(x), _occlusion(tolerance=0.05).explain(x)),
        }


#: Correlation with the full-budget map that a loose tolerance must keep (measured on these
#: runs: RISE 0.983 at 700 of 2,000 masks, LIME 0.9999 at 150 of 1,000 samples, occlusion 0.94
#: at stride 4 of stride 1, 49 of 625 positions).
BOUND = {"rise": 0.95, "lime": 0.99, "occlusion": 0.9}
BUDGET = {"rise": 2000, "lime": 1000, "occlusion": 25 * 25}


@pytest.mark.parametrize("name", sorted(BOUND))
def test_loose_tolerance_uses_fewer_samples_and_keeps_the_map(runs, name):
    full, stopped = runs[name]
    used = stopped.extras["samples_used"]
    assert used.dtype == torch.long and used.shape == (3,)
    assert (used < BUDGET[name]).all(), used
    assert stopped.extras["converged"].all()
    assert (_corr(stopped.saliency, full.saliency) > BOUND[name]).all()
    changes = stopped.extras["changes"]
    assert changes.shape[0] == 3 and torch.isfinite(changes[:, 0]).all()
    # the last `patience` checks of each image were at or below the tolerance
    last = changes[0][torch.isfinite(changes[0])][-stopped.params["patience"] :]
    assert (last <= stopped.params["tolerance"]).all()
    assert torch.isfinite(stopped.saliency).all()


def test_rise_stopped_map_is_the_estimate_of_the_masks_used(runs):
    _, e = runs["rise"]
    keep = e.extras["masks"].render().reshape(len(e.extras["masks"]), -1).double()
    for i, n in enumerate(e.extras["samples_used"].tolist()):
        scores = e.extras["mask_scores"][i]
        assert torch.isfinite(scores[:n]).all() and torch.isnan(scores[n:]).all()
        naive = sum(float(scores[k]) * keep[k] for k in range(n)) / (n * 0.5)
        assert torch.allclose(e.saliency[i].flatten().double(), naive, atol=1e-5)


def test_lime_stopped_map_is_the_fit_on_the_samples_used(runs):
    _, e = runs["lime"]
    z, seg = e.extras["samples"], e.extras["segments"]
    valid = torch.arange(z.shape[2])[None] < e.extras["num_segments"][:, None]
    for i, n in enumerate(e.extras["samples_used"].tolist()):
        zi = z[i : i + 1, :n]
        kernel = lime_kernel(zi, valid[i : i + 1], 0.25)
        coef, _, _ = weighted_ridge(
            zi.double(), e.extras["sample_scores"][i : i + 1, :n].double(), kernel, 1.0
        )
        expected = coef[0].float().gather(0, seg[i].flatten()).reshape(seg.shape[1:])
        assert torch.allclose(e.saliency[i, 0], expected, atol=1e-6)


def test_occlusion_stop_is_exactly_the_coarser_stride(runs):
    x = runs["x"]
    _, e = runs["occlusion"]
    strides = e.extras["stride_used"]
    assert (strides > 1).all()
    for s in strides[:, 0].unique().tolist():
        ref = Occlusion(MODEL, patch_size=8, stride=s, batch_size=256).explain(x)
        rows = strides[:, 0] == s
        assert torch.equal(e.saliency[rows], ref.saliency[rows])
        assert (e.extras["samples_used"][rows] == ref.extras["grid"][0].numel()).all()


def test_occlusion_tiny_tolerance_runs_every_level_to_the_full_map(runs):
    x = runs["x"]
    full, _ = runs["occlusion"]
    e = _occlusion(tolerance=1e-12).explain(x)
    assert not e.extras["converged"].any()
    assert torch.equal(e.saliency, full.saliency)
    assert torch.equal(e.extras["grid"], full.extras["grid"])


def test_occlusion_levels_partition_the_lattice():
    assert coarse_step((29, 29), (3, 3), (66, 66)) == 8
    assert coarse_step((8, 8), (8, 8), (4, 4)) == 1  # no coarser level: nothing to stop early
    levels = level_order(66, 66, 8)
    assert [len(v) for v in levels] == [81, 289 - 81, 1089 - 289, 4356 - 1089]
    assert torch.equal(torch.cat(levels).sort().values, torch.arange(66 * 66))


@pytest.mark.parametrize(
    "make",
    [
        lambda: _rise(tolerance=1e-2, seed=5),
        lambda: _lime(tolerance=1e-2, seed=5),
        lambda: _occlusion(tolerance=0.05),
    ],
)
def test_same_seed_and_tolerance_same_samples_same_map(make):
    x = region_images(2, seed=4)
    a, b = make().explain(x), make().explain(x)
    assert torch.equal(a.saliency, b.saliency)
    assert torch.equal(a.extras["samples_used"], b.extras["samples_used"])
    assert torch.equal(a.extras["changes"].nan_to_num(-1), b.extras["changes"].nan_to_num(-1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: _rise(tolerance=1e-2),
        lambda: _lime(tolerance=1e-2),
        lambda: _occlusion(tolerance=0.05),
    ],
)
def test_images_stop_on_their_own(make, runs):
    x = runs["x"]
    batch = make().explain(x)
    for i in range(3):
        single = make().explain(x[i : i + 1])
        assert torch.equal(single.extras["samples_used"], batch.extras["samples_used"][i : i + 1])
        assert torch.allclose(single.saliency, batch.saliency[i : i + 1], atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _rise(tolerance=1e-2),
        lambda: _lime(tolerance=1e-2),
        lambda: _occlusion(tolerance=0.05),
    ],
)
def test_targets_of_an_image_stop_together(make):
    x = region_images(2, seed=2)
    each = make().explain_each(x, [1, 0, [0, 1]])
    used = each[0].extras["samples_used"]
    for e in each:
        assert torch.equal(e.extras["samples_used"], used)
    for k, t in enumerate([1, 0]):
        alone = make().explain(x, t)
        assert (used >= alone.extras["samples_used"]).all()  # the slowest target decides
        if torch.equal(used, alone.extras["samples_used"]):
            assert torch.allclose(each[k].saliency, alone.saliency, atol=1e-6)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("rise", {"masks": 300, "s": 4, "check_every": 50}),
        ("lime", {"samples": 200, "n_segments": 16, "check_every": 50}),
        ("occlusion", {"patch_size": 8, "stride": 2}),
    ],
)
def test_spec_round_trips_with_a_tolerance(name, kw):
    x = region_images(1)
    e = unmask.explain(MODEL, x, method=name, tolerance=0.02, patience=1, **kw)
    assert e.params["tolerance"] == 0.02 and e.params["patience"] == 1
    again = unmask.make_explainer(MODEL, **e.spec).explain(x)
    assert torch.equal(again.saliency, e.saliency)
    assert torch.equal(again.extras["samples_used"], e.extras["samples_used"])


# ---- bad arguments ------------------------------------------------------------------------------

BAD = [
    ({"tolerance": -0.1}, ValueError, "tolerance:"),
    ({"tolerance": math.nan}, ValueError, "tolerance:"),
    ({"tolerance": math.inf}, ValueError, "tolerance:"),
    ({"tolerance": 0}, ValueError, "tolerance:"),
    ({"tolerance": "0.1"}, TypeError, "tolerance:"),
    ({"tolerance": True}, TypeError, "tolerance:"),
    ({"patience": 0}, ValueError, "patience:"),
    ({"patience": 1.5}, TypeError, "patience:"),
    ({"check_every": 0}, ValueError, "check_every:"),
    ({"check_every": -3}, ValueError, "check_every:"),
    ({"check_every": 2.0}, TypeError, "check_every:"),
]


@pytest.mark.parametrize("cls", [Rise, Lime, Occlusion])
@pytest.mark.parametrize("kw,error,start", BAD)
def test_bad_stopping_arguments_name_the_argument(cls, kw, error, start):
    if cls is Occlusion and "check_every" in kw:
        with pytest.raises(TypeError, match="check_every"):  # occlusion stops by levels
            cls(MODEL, tolerance=0.1, **kw)
        return
    with pytest.raises(error) as info:
        cls(MODEL, **{"tolerance": 0.1, **kw})
    message = str(info.value)
    assert message.startswith(start) and "\n" not in message, message


def test_check_stopping_accepts_off_and_positive_values():
    check_stopping(None, 100, 2)
    check_stopping(1e-3, 1, 1)
    check_stopping(0.5, None, 3)


# ---- the rule itself ----------------------------------------------------------------------------


def test_map_change_known_values():
    a = torch.tensor([[0.0, 1.0, 3.0]])
    assert map_change(a, a).item() == 0.0
    assert map_change(a, 5 * a + 2).item() == pytest.approx(0.0, abs=1e-12)
    assert map_change(a, -a).item() == pytest.approx(2.0)
    b = torch.tensor([[1.0, 0.0, 1.0]])
    r = torch.corrcoef(torch.cat([a, b]).double())[0, 1].item()
    assert map_change(a, b).item() == pytest.approx(1 - r)
    flat = torch.ones(1, 3)
    assert map_change(flat, flat).item() == 0.0
    assert map_change(flat, a).item() == 1.0 and map_change(2 * flat, flat).item() == 1.0


def test_convergence_needs_patience_checks_in_a_row():
    rule = Convergence(0.1, 2, images=1)
    i = torch.tensor([0])
    a, b = torch.tensor([[[0.0, 1.0, 2.0]]]), torch.tensor([[[2.0, 1.0, 0.0]]])
    assert not rule.update(i, a)  # first estimate: nothing to compare
    assert not rule.update(i, a)  # 1 check below
    assert not rule.update(i, b)  # streak broken
    assert not rule.update(i, b)
    assert rule.update(i, b)  # 2 in a row
    assert rule.history()[0].tolist() == [0.0, 2.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "make,name",
    [(lambda: _rise(tolerance=1e-12), "rise"), (lambda: _lime(tolerance=1e-12), "lime")],
)
def test_a_tolerance_too_small_to_stop_gives_the_full_map(runs, make, name):
    full, _ = runs[name]
    e = make().explain(runs["x"])
    assert not e.extras["converged"].any()
    assert (e.extras["samples_used"] == BUDGET[name]).all()
    assert torch.allclose(e.saliency, full.saliency, atol=1e-6)
