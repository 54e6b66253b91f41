"""MP2 / MP2-G: greedy growth two cells at a time, stopping at chance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import unmask
from unmask.explainers.mp2 import MP2
from unmask.removal import Blur, Inpaint
from unmask.testing import region_box


def _prob(model, images, target):
    with torch.no_grad():
        return torch.softmax(model(images), 1)[torch.arange(len(images)), target]


def _removed(mask_grid, size=32):
    return F.interpolate(mask_grid, size=(size, size), mode="nearest")


def test_paper_defaults(region_model):
    e = MP2(region_model)
    assert e.mask_size == (28, 28) and e.cells_per_iteration == 2 and e.threshold is None
    assert isinstance(e.removal, Blur) and e.removal.sigma == 10.0
    g = unmask.make_explainer(region_model, "mp2-g")
    assert isinstance(g, MP2) and isinstance(g.removal, Inpaint) and g.removal.method == "telea"


def test_stops_at_chance_two_cells_per_iteration(region_model, region_images):
    x = region_images
    e = MP2(region_model, mask_size=8).explain(x, target=1)
    mask, order = e.extras["removal_mask"], e.extras["order"]
    for i in range(2):
        t = int(e.extras["iterations"][i])
        assert t >= 1 and bool(e.extras["reached"][i])
        # exactly two cells per iteration, numbered 1..t
        counts = torch.bincount(order[i].flatten(), minlength=t + 1)[1:]
        assert counts.tolist() == [2] * t
        assert int(mask[i].sum()) == 2 * t
        assert torch.equal(mask[i] > 0, order[i] > 0)
    # final probability at or below chance (1/2 for this model), reported in extras
    p_final = _prob(region_model, Blur(10)(x, _removed(mask)), torch.tensor([1, 1]))
    torch.testing.assert_close(e.extras["score"], p_final)
    assert bool((p_final <= 0.5).all())
    # ...but not before the last iteration: the stop is the first time chance is reached
    last = order == order.flatten(1).max(1).values.reshape(-1, 1, 1, 1)
    p_before = _prob(region_model, Blur(10)(x, _removed(mask * ~last)), torch.tensor([1, 1]))
    assert bool((p_before > 0.5).all())


def test_cells_lie_in_the_region(region_model, region_images):
    e = MP2(region_model, mask_size=8).explain(region_images, target=1)
    t, left, b, r = region_box(8, 8)  # the box in cells
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[t:b, left:r] = True
    assert bool((e.extras["removal_mask"][:, 0] > 0)[:, ~inside].sum() == 0)


def test_lower_threshold_extends_the_same_greedy_path(region_model, region_images):
    a = MP2(region_model, mask_size=8).explain(region_images, target=1)
    b = MP2(region_model, mask_size=8, threshold=0.01).explain(region_images, target=1)
    assert bool((b.extras["iterations"] >= a.extras["iterations"]).all())
    assert bool(
        (b.extras["removal_mask"] >= a.extras["removal_mask"]).all()
    )  # a's cells are a prefix of b's
    common = a.extras["order"] > 0
    assert torch.equal(a.extras["order"][common], b.extras["order"][common])


def test_full_mask_and_max_iterations(region_model, region_images):
    x = region_images[:1]
    full = MP2(region_model, mask_size=4, threshold=0.0).explain(x, target=1)  # never reached
    assert bool((full.extras["removal_mask"] == 1).all()) and int(full.extras["iterations"][0]) == 8
    assert not bool(full.extras["reached"][0])
    odd = MP2(region_model, mask_size=4, threshold=0.0, cells_per_iteration=3).explain(x, target=1)
    assert bool((odd.extras["removal_mask"] == 1).all()) and int(odd.extras["iterations"][0]) == 6
    assert int((odd.extras["order"] == 6).sum()) == 1  # 16 = 5 * 3 + 1
    short = MP2(region_model, mask_size=4, threshold=0.0, max_iterations=1).explain(x, target=1)
    assert int(short.extras["removal_mask"].sum()) == 2


def test_already_at_chance_gives_an_empty_mask(region_model, region_images):
    e = MP2(region_model, mask_size=8).explain(region_images, target=0)  # p(class 0) ~ 0.01
    assert int(e.extras["removal_mask"].sum()) == 0 and bool(e.extras["reached"].all())
    assert float(e.saliency.abs().max()) == 0.0


def test_order_saliency_ranks_first_removed_highest(region_model, region_images):
    e = MP2(region_model, mask_size=4, threshold=0.0, saliency="order").explain(
        region_images[:1], 1
    )
    order = e.extras["order"][0, 0]
    raw = F.interpolate(e.saliency, size=(4, 4), mode="area")[0, 0]  # back to cells (exact here)
    first, last = order == 1, order == int(order.max())
    assert float(raw[first].min()) > float(raw[last].max())


def test_mp2_g_removes_with_the_inpainter(region_model, region_images):
    x = region_images
    e = unmask.explain(region_model, x, method="mp2-g", target=1, mask_size=8)
    assert bool(e.extras["reached"].all())
    removed = _removed(e.extras["removal_mask"])
    p = _prob(region_model, Inpaint("telea")(x, removed), torch.tensor([1, 1]))
    torch.testing.assert_close(e.extras["score"], p)
    assert bool((p <= 0.5).all())
    assert e.method == "mp2-g" and e.params["removal"] == "telea"
    assert e.params["gradient_removal"] == "blur:10"


def test_descent_criterion(region_model, region_images):
    e = MP2(region_model, mask_size=8, criterion="descent").explain(region_images, target=1)
    assert bool(e.extras["reached"].all())


def test_gradient_removal_must_be_differentiable(region_model):
    with pytest.raises(ValueError, match=r"^gradient_removal: .*differentiable"):
        MP2(region_model, Inpaint("telea"), gradient_removal=Inpaint("ns"))


@pytest.mark.parametrize(
    "bad",
    [
        {"threshold": 1.5},
        {"cells_per_iteration": 0},
        {"max_iterations": 0},
        {"criterion": "max"},
        {"saliency": "heat"},
    ],
)
def test_bad_hyperparameters(region_model, bad):
    with pytest.raises(ValueError):
        MP2(region_model, **bad)


def test_mask_larger_than_image(region_model, region_images):
    with pytest.raises(ValueError, match=r"^mask_size: "):
        MP2(region_model, mask_size=64).explain(region_images)


@pytest.mark.slow
def test_real_model_reaches_chance(real_model):
    """EfficientNet-Lite0 on skimage's cat: the greedy mask drives p(cat) to chance (0.001)."""
    x = unmask.load_image(unmask.example_image("chelsea"))
    e = MP2(real_model).explain(x)
    assert bool(e.extras["reached"][0]) and float(e.extras["score"][0]) <= 1e-3
    t = int(e.extras["iterations"][0])
    assert int(e.extras["removal_mask"].sum()) == 2 * t and t < 28 * 28 // 2
