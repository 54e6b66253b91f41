"""Contract over the localisation, similarity and saliency-metric kinds in METRICS:
a batch equals per-image calls, bad inputs raise clear errors, higher_is_better is declared."""

from __future__ import annotations

import pytest
import torch

import unmask.metrics  # noqa: F401  (registers every metric)
from unmask.registry import METRICS
from unmask.testing import region_box, region_mask

KINDS = ("localisation", "similarity")
OURS = [e.name for e in METRICS if getattr(e.factory, "kind", None) in KINDS] + ["saliency_metric"]


def test_the_expected_metrics_are_registered():
    assert set(OURS) >= {"localisation_error", "pointing_game", "energy_pointing_game", "ssim", "hog_pearson",
                         "spearman", "spearman_abs", "saliency_metric"}


def maps(batch: int, size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 1, size // 8, size // 8, generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def ground_truth(batch: int, size: int, form: str):
    t, l, b, r = region_box(size, size)
    boxes = torch.tensor([[l, t, r, b]], dtype=torch.float32).expand(batch, 4).clone()
    boxes[1] += 4  # a different box for the second image
    if form == "boxes":
        return boxes
    if form == "list":
        return [torch.cat([bx[None], torch.tensor([[0.0, 0, 3, 3]])]) for bx in boxes]
    from unmask.metrics.localisation import boxes_to_masks

    return boxes_to_masks(boxes, size, size).float()


def call(name: str, metric, a: torch.Tensor, b, model=None, x=None):
    kind = metric.kind
    if kind == "localisation":
        return metric(a, b)
    if kind == "similarity":
        return metric(a, b)
    return metric(model, x, a, target=None)


@pytest.mark.parametrize("name", OURS)
def test_declares_kind_and_direction(name):
    metric = METRICS.get(name).build()
    assert isinstance(metric.higher_is_better, bool)
    assert metric.kind in (*KINDS, "faithfulness")


CASES = [(n, f) for n in OURS
         for f in (("boxes", "list", "masks") if getattr(METRICS.get(n).factory, "kind", "") == "localisation" else ("-",))]


@pytest.mark.parametrize("name, form", CASES)
def test_batch_equals_single_calls(name, form, region_model):
    metric = METRICS.get(name).build()
    size = 64
    a = maps(3, size, 0)
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(3, 3, size, size, generator=gen)
    if metric.kind == "localisation":
        b = ground_truth(3, size, form)
        singles = [b[i : i + 1] if isinstance(b, torch.Tensor) else [b[i]] for i in range(3)]
    elif metric.kind == "similarity":
        b = maps(3, size, 1)
        singles = [b[i : i + 1] for i in range(3)]
    else:
        b, singles = None, [None] * 3
    batched = call(name, metric, a, b, region_model, x)
    assert batched.shape == (3,) and batched.dtype == torch.float32
    single = torch.cat([call(name, metric, a[i : i + 1], singles[i], region_model, x[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", OURS)
def test_bad_inputs_raise_clear_errors(name, region_model):
    metric = METRICS.get(name).build()
    good = maps(2, 32, 0)
    x = torch.rand(2, 3, 32, 32)
    other = ground_truth(2, 32, "boxes") if metric.kind == "localisation" else maps(2, 32, 1)
    bad_maps = [
        (torch.rand(2, 32, 32), ValueError, r"\(B, 1, H, W\)"),
        (torch.rand(2, 3, 32, 32), ValueError, r"\(B, 1, H, W\)"),
        (torch.full((2, 1, 32, 32), float("nan")), ValueError, "NaN"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ]
    for bad, exc, match in bad_maps:
        with pytest.raises(exc, match=match):
            call(name, metric, bad, other, region_model, x)
    if metric.kind == "localisation":
        with pytest.raises(ValueError, match="boxes for 2 images"):
            metric(good, other[:1])
        with pytest.raises(TypeError, match="boxes"):
            metric(good, "box")
    elif metric.kind == "similarity":
        with pytest.raises(ValueError, match="shape of a"):
            metric(good, maps(1, 32, 1))
    else:
        with pytest.raises(ValueError, match="matching the images"):
            metric(region_model, x, maps(1, 32, 0))


def test_good_map_scores_better_than_random_under_every_localisation_metric():
    size = 32
    good = region_mask(size, size).float().expand(2, 1, size, size)
    rand = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    gt = ground_truth(2, size, "boxes")[:1].expand(2, 4)
    for name in OURS:
        metric = METRICS.get(name).build(**({"tolerance": 0} if name == "pointing_game" else {}))
        if metric.kind != "localisation":
            continue
        g, r = metric(good, gt).mean(), metric(rand, gt).mean()
        assert (g > r) if metric.higher_is_better else (g < r), name
