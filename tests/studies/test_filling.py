"""The filling study (seed 001, Table 1): accuracy, MS-SSIM, and an honest LPIPS field."""

from __future__ import annotations

import pytest
import torch
from pytorch_msssim import ms_ssim as library_ms_ssim

from unmask.removal import Constant
from unmask.studies.filling import (
    LPIPS_UNAVAILABLE,
    _ms_ssim_levels,
    filling_study,
    format_filling_table,
    ms_ssim,
    ms_ssim_scales,
)
from unmask.testing import region_mask


def test_scales_fit_the_image_size():
    assert ms_ssim_scales(224, 224) == 5  # > 160: the standard 5 scales
    assert ms_ssim_scales(161, 300) == 5
    assert ms_ssim_scales(160, 160) == 4
    assert ms_ssim_scales(32, 32) == 2
    assert ms_ssim_scales(11, 11) == 1
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_scales(10, 64)


def test_ms_ssim_equals_the_library_at_224_and_our_recursion_matches_it():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 224, 224, generator=gen)
    y = (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    ours, scales = ms_ssim(x, y)
    ref = library_ms_ssim(x, y, data_range=1.0, size_average=False)
    assert scales == 5 and torch.allclose(ours, ref, atol=1e-6)
    # the fewer-scales path is the same recursion: with 5 levels it reproduces the library
    assert torch.allclose(_ms_ssim_levels(x, y, 5, 1.0, 11), ref, atol=1e-5)


def test_ms_ssim_small_images_identity_and_ordering():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 32, 32, generator=gen)
    same, scales = ms_ssim(x, x)
    assert scales == 2 and torch.allclose(same, torch.ones(1))
    small = ms_ssim(x, (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1))[0]
    large = ms_ssim(x, (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1))[0]
    assert 1 > small.item() > large.item()


def test_filling_study_on_the_region_model(region_model, region_images):
    size = region_images.shape[-1]
    masks = region_mask(
        size, size
    ).float()  # the object is the model's box: (1, 1, H, W) broadcasts
    rows = filling_study(region_model, region_images, masks, labels=[1, 1])
    assert [r["removal"] for r in rows] == ["real", "blur", "gray", "inpaint", "noise"]
    real = rows[0]
    assert real["accuracy"] == 1.0 and real["ms_ssim"] == pytest.approx(1.0) and real["n"] == 2
    # the red box is the only evidence: every fill removes it
    for r in rows[1:]:
        assert r["accuracy"] == 0.0 and r["correct"] == [False, False]
        assert 0 < r["ms_ssim"] < 1 and len(r["ms_ssim_per_image"]) == 2
        assert r["ms_ssim_scales"] == 2
    # LPIPS is reported as unavailable, with the reason, never as a number
    for r in rows:
        assert (
            r["lpips"] is None
            and r["lpips_note"] == LPIPS_UNAVAILABLE
            and "torchvision" in r["lpips_note"]
        )
    table = format_filling_table(rows)
    assert "n/a" in table and "LPIPS not computed" in table


def test_fill_that_keeps_the_evidence_keeps_accuracy(region_model, region_images):
    size = region_images.shape[-1]
    outside = (~region_mask(size, size)).float()  # fill everything but the box
    rows = filling_study(
        region_model,
        region_images,
        outside,
        labels=[1, 1],
        removals={"red": Constant((0.95, 0.1, 0.1)), "black": "black"},
        include_real=False,
    )
    assert [r["removal"] for r in rows] == ["red", "black"]
    assert rows[0]["accuracy"] == 1.0 and rows[1]["accuracy"] == 1.0


def test_perceptual_distance_is_used_when_given(region_model, region_images):
    mask = region_mask(32, 32).float()

    def l1(x, y):
        return (x - y).abs().flatten(1).mean(1)

    rows = filling_study(
        region_model, region_images, mask, removals={"black": "black"}, perceptual=l1
    )
    assert rows[0]["lpips"] == 0.0 and rows[0]["lpips_note"] is None
    assert rows[1]["lpips"] > 0 and len(rows[1]["lpips_per_image"]) == 2


def test_default_labels_are_top1_and_bad_inputs(region_model, region_images):
    rows = filling_study(
        region_model, region_images, region_mask(32, 32).float(), removals={"gray": "gray"}
    )
    assert rows[0]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="masks"):
        filling_study(region_model, region_images, torch.ones(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        filling_study(region_model, region_images, 2 * torch.ones(2, 1, 32, 32))
    with pytest.raises(ValueError, match="labels"):
        filling_study(region_model, region_images, region_mask(32, 32).float(), labels=[1, 1, 1])
    with pytest.raises(ValueError, match="removal"):
        filling_study(
            region_model, region_images, region_mask(32, 32).float(), removals={"x": "sparkles"}
        )


@pytest.mark.slow
def test_filling_study_real_model_central_box_proxy(real_model, imagenet_samples):
    """Embedded EfficientNet-Lite0 on 8 ImageNet samples. No object masks ship with the samples,
    so the central half of the image (rows and columns 56..167 at 224²) stands in for the object:
    a proxy -- ImageNet objects are mostly centred, but the box also covers background."""
    from unmask.images import load_image

    samples = imagenet_samples[:8]
    x = torch.cat([load_image(path, size=224) for path, _ in samples])
    labels = [label for _, label in samples]
    mask = torch.zeros(1, 1, 224, 224)
    mask[..., 56:168, 56:168] = 1.0
    rows = filling_study(real_model, x, mask, labels=labels)
    print("\n" + format_filling_table(rows))
    real, fills = rows[0], rows[1:]
    assert real["ms_ssim"] == pytest.approx(1.0) and real["accuracy"] >= 0.5
    for r in fills:
        assert r["ms_ssim_scales"] == 5 and r["ms_ssim"] < 0.99
        assert r["accuracy"] <= real["accuracy"]
    # blur leaves the most of the original (Table 1: blur has the highest MS-SSIM of the fills)
    by_name = {r["removal"]: r for r in fills}
    assert by_name["blur"]["ms_ssim"] == max(r["ms_ssim"] for r in fills)
