"""Localisation error, pointing game and energy-based pointing game: known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unmask.metrics.localisation import (
    ALPHAS,
    EnergyPointingGame,
    LocalisationError,
    PointingGame,
    box_iou,
    boxes_from_masks,
    boxes_to_masks,
    energy_pointing_game,
    localisation_error,
    localisation_iou,
    pointing_game,
    saliency_boxes,
    select_alpha,
)
from unmask.testing import region_box, region_mask


def blob(
    h: int, w: int, top: int, left: int, bottom: int, right: int, value: float = 1.0
) -> torch.Tensor:
    s = torch.zeros(1, 1, h, w)
    s[..., top:bottom, left:right] = value
    return s


def region_xyxy(size: int) -> torch.Tensor:
    t, left, b, r = region_box(size, size)
    return torch.tensor([[left, t, r, b]], dtype=torch.float32)


def test_alphas_are_the_seed_grid():
    assert len(ALPHAS) == 20 and ALPHAS[0] == 0.0 and ALPHAS[-1] == 0.95
    assert np.allclose(np.diff(ALPHAS), 0.05)


def test_box_iou_hand_computed():
    a = torch.tensor([0.0, 0, 10, 10])
    assert box_iou(a, a).item() == 1.0
    assert box_iou(a, torch.tensor([5.0, 0, 15, 10])).item() == pytest.approx(50 / 150)
    assert box_iou(a, torch.tensor([5.0, 5, 15, 15])).item() == pytest.approx(25 / 175)
    assert box_iou(a, torch.tensor([10.0, 0, 20, 10])).item() == 0.0  # touching edges, no overlap
    assert box_iou(a, torch.tensor([2.0, 2, 4, 4])).item() == pytest.approx(4 / 100)


def test_saliency_box_is_bounding_box_of_all_kept_pixels():
    s = torch.zeros(1, 1, 20, 20)
    s[0, 0, 2:4, 3:5] = 1.0  # strong blob
    s[0, 0, 15, 17] = 0.6  # weaker isolated pixel
    assert saliency_boxes(s, 0.5).tolist() == [[3.0, 2.0, 18.0, 16.0]]  # both survive 0.5
    assert saliency_boxes(s, 0.7).tolist() == [[3.0, 2.0, 5.0, 4.0]]  # only the blob
    # the CAM rule keeps only the largest connected component
    assert saliency_boxes(s, 0.5, box="largest").tolist() == [[3.0, 2.0, 5.0, 4.0]]


def test_alpha_zero_keeps_positive_pixels_and_blank_map_gives_whole_image():
    s = torch.full((1, 1, 10, 10), -1.0)
    s[0, 0, 4:6, 4:6] = 0.5
    assert saliency_boxes(s, 0.0).tolist() == [[4.0, 4.0, 6.0, 6.0]]
    blank = torch.zeros(1, 1, 10, 12)
    assert saliency_boxes(blank, 0.3).tolist() == [[0.0, 0.0, 12.0, 10.0]]
    negative = -torch.rand(1, 1, 10, 12)
    assert saliency_boxes(negative, 0.3).tolist() == [[0.0, 0.0, 12.0, 10.0]]


def test_localisation_error_hand_computed_and_multiple_boxes():
    s = blob(16, 16, 4, 4, 12, 12).expand(3, 1, 16, 16)
    gt = [
        torch.tensor([[4.0, 4, 12, 12]]),  # exact: IoU 1
        torch.tensor([[0.0, 0, 4, 4], [4.0, 4, 12, 10]]),  # second box: IoU 48/64 = 0.75
        torch.tensor([[4.0, 4, 16, 16]]),  # IoU 64/144 < 0.5
    ]
    iou = localisation_iou(s, gt, 0.5)
    assert iou.tolist() == pytest.approx([1.0, 0.75, 64 / 144])
    assert localisation_error(s, gt, 0.5).tolist() == [0.0, 0.0, 1.0]
    # (B, N, 4) tensors and masks are accepted too
    padded = torch.tensor([[[4.0, 4, 12, 12]], [[4.0, 4, 12, 10]], [[4.0, 4, 16, 16]]])
    assert localisation_error(s, padded, 0.5).tolist() == [0.0, 0.0, 1.0]
    masks = boxes_to_masks(padded, 16, 16).float()
    assert localisation_error(s, masks, 0.5).tolist() == [0.0, 0.0, 1.0]
    assert boxes_from_masks(masks).tolist() == padded[:, 0].tolist()


def test_select_alpha_finds_the_threshold_that_isolates_the_object():
    # object box 8x8 with value 1, a halo of 0.3 around it: alpha < 0.3 boxes the halo (too big)
    s = torch.zeros(4, 1, 32, 32)
    s[:, :, 4:28, 4:28] = 0.3
    s[:, :, 12:20, 12:20] = 1.0
    gt = torch.tensor([[12.0, 12, 20, 20]]).expand(4, 4)
    choice = select_alpha(s, gt)
    assert choice.alpha == pytest.approx(0.35)  # smallest alpha above the halo
    assert choice.errors.shape == (20,)
    assert choice.errors[:7].tolist() == [1.0] * 7 and choice.errors[7:].tolist() == [0.0] * 13
    assert LocalisationError(alpha=choice.alpha)(s, gt).sum().item() == 0.0


def test_pointing_game_hits_and_misses_with_tolerance():
    s = torch.zeros(3, 1, 64, 64)
    s[0, 0, 10, 10] = 1.0  # inside
    s[1, 0, 40, 20] = 1.0  # 11 px below the box
    s[2, 0, 40, 40] = 1.0  # sqrt(11^2 + 11^2) = 15.56 px away diagonally
    box = torch.tensor([[0.0, 0, 30, 30]]).expand(3, 4)
    assert pointing_game(s, box, tolerance=0).tolist() == [1.0, 0.0, 0.0]
    assert pointing_game(s, box, tolerance=11).tolist() == [1.0, 1.0, 0.0]
    assert pointing_game(s, box, tolerance=15).tolist() == [1.0, 1.0, 0.0]
    assert pointing_game(s, box, tolerance=15.6).tolist() == [1.0, 1.0, 1.0]
    assert PointingGame()(s, box).tolist() == [1.0, 1.0, 0.0]  # Zhang et al.'s 15 px
    # same with a mask
    mask = boxes_to_masks(box, 64, 64).float()
    assert pointing_game(s, mask, tolerance=11).tolist() == [1.0, 1.0, 0.0]


def test_pointing_game_any_of_several_boxes():
    s = blob(32, 32, 25, 25, 26, 26)
    boxes = [torch.tensor([[0.0, 0, 5, 5], [24.0, 24, 28, 28]])]
    assert pointing_game(s, boxes, tolerance=0).item() == 1.0
    assert pointing_game(s, [boxes[0][:1]], tolerance=0).item() == 0.0


def test_energy_pointing_game_hand_computed():
    s = torch.zeros(2, 1, 4, 4)
    s[0, 0, 0, 0], s[0, 0, 3, 3], s[0, 0, 1, 1] = 3.0, 1.0, -5.0  # negative mass ignored
    s[1] = 0.5  # uniform: the box's share of the area
    box = torch.tensor([[0.0, 0, 2, 2]]).expand(2, 4)
    assert energy_pointing_game(s, box).tolist() == pytest.approx([0.75, 4 / 16])
    assert EnergyPointingGame()(torch.zeros(1, 1, 4, 4), box[:1]).item() == 0.0  # no mass
    # with a mask: the mass inside the object mask
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 3, 3] = 1
    assert energy_pointing_game(s[:1], mask).item() == pytest.approx(0.25)


def test_map_on_region_models_box_beats_random_map(region_model, region_images):
    size = region_images.shape[-1]
    good = region_mask(size, size).float().expand(2, 1, size, size)
    rand = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(1))
    box = region_xyxy(size).expand(2, 4)
    assert (
        localisation_error(good, box, 0.5).sum() == 0
        and localisation_error(rand, box, 0.5).sum() == 2
    )
    assert pointing_game(good, box, 0).sum() == 2 and pointing_game(rand, box, 0).sum() < 2
    assert (energy_pointing_game(good, box) == 1).all()
    assert (energy_pointing_game(rand, box) < 0.2).all()


@pytest.mark.parametrize(
    "boxes, match",
    [
        (torch.tensor([[5.0, 5, 2, 8]]), "x_max > x_min"),
        (torch.tensor([[0.0, 0, 4]]), r"\(N, 4\)"),
        (torch.zeros(2, 4) + torch.tensor([0.0, 0, 4, 4]), "for 1 images, got 2"),
        (torch.tensor([[100.0, 100, 104, 104]]), "outside"),
    ],
)
def test_bad_boxes_raise_clear_errors(boxes, match):
    with pytest.raises(ValueError, match=match):
        pointing_game(torch.rand(1, 1, 16, 16), boxes)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="saliency"):
        pointing_game(torch.rand(1, 16, 16), torch.tensor([[0.0, 0, 4, 4]]))
    with pytest.raises(ValueError, match="NaN"):
        localisation_error(torch.full((1, 1, 8, 8), float("nan")), torch.tensor([[0.0, 0, 4, 4]]))
    with pytest.raises(ValueError, match="alpha"):
        localisation_error(torch.rand(1, 1, 8, 8), torch.tensor([[0.0, 0, 4, 4]]), alpha=1.5)
    with pytest.raises(ValueError, match="box"):
        saliency_boxes(torch.rand(1, 1, 8, 8), 0.5, box="biggest")
    with pytest.raises(ValueError, match="empty ground-truth mask"):
        energy_pointing_game(torch.rand(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))  # empty mask
    with pytest.raises(ValueError, match="matching"):
        energy_pointing_game(torch.rand(1, 1, 8, 8), torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="tolerance"):
        PointingGame(tolerance=-1)
