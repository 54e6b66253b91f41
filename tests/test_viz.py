"""Visualisation: normalisation, colouring, overlays, masked images, grids saved as PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unmask import viz
from unmask.explanation import Explanation
from unmask.removal import Constant


def _x(b: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0))


def _s(b: int = 2, size: int = 16, signed: bool = False) -> torch.Tensor:
    s = torch.rand(b, 1, size, size, generator=torch.Generator().manual_seed(1))
    return s - 0.5 if signed else s


def test_normalize_per_image():
    s = torch.stack(
        [torch.tensor([[[0.0, 1.0], [2.0, 4.0]]]), torch.tensor([[[10.0, 10.5], [11.0, 12.0]]])]
    )
    n = viz.normalize_saliency(s)
    assert torch.allclose(n[0].flatten(), torch.tensor([0, 0.25, 0.5, 1.0]))
    # each image on its own scale, anchored at 0 (not stretched from its minimum)
    assert torch.allclose(n[1].flatten(), torch.tensor([10.0, 10.5, 11.0, 12.0]) / 12)
    signed = viz.normalize_saliency(torch.tensor([[[[-4.0, 2.0], [0.0, 1.0]]]]))
    assert torch.allclose(signed.flatten(), torch.tensor([-1.0, 0.5, 0.0, 0.25]))  # 0 stays 0
    assert torch.equal(
        viz.normalize_saliency(torch.full((1, 1, 3, 3), 7.0)), torch.ones(1, 1, 3, 3)
    )
    assert torch.equal(viz.normalize_saliency(torch.zeros(1, 1, 3, 3)), torch.zeros(1, 1, 3, 3))
    assert torch.allclose(
        viz.normalize_saliency(s, signed=True)[0].flatten(), torch.tensor([0, 0.25, 0.5, 1.0])
    )
    assert viz.is_signed(_s(signed=True)) and not viz.is_signed(_s())


def test_narrow_range_map_does_not_fill_the_colormap():
    """A non-negative map spanning 0.78-0.88 (a RISE map) uses the top 11 % of the scale only."""
    s = torch.linspace(0.78, 0.88, 64).reshape(1, 1, 8, 8)
    scale = viz.colour_scale(s)
    assert (scale.signed, scale.low, scale.high) == (False, 0.0, pytest.approx(0.88))
    assert scale.share == pytest.approx(0.10 / 0.88)
    assert "spans 11%" in scale.caption()
    n = viz.normalize_saliency(s)
    assert float(n.min()) == pytest.approx(0.78 / 0.88) and float(n.max()) == pytest.approx(1.0)
    # its colours: the colormap's entries from floor(256 * 0.886) up, not the whole table
    table = torch.from_numpy(viz.colour_table()).float() / 255
    rgb = viz.heatmap(s).permute(0, 2, 3, 1).reshape(-1, 3)
    used = {int(torch.cdist(c[None], table).argmin()) for c in rgb}
    assert min(used) >= int(256 * 0.78 / 0.88) - 1 and max(used) == 255
    # a min-max rule would have painted the minimum with the colormap's bottom colour
    assert float(torch.cdist(rgb, table[:1]).min()) > 0.5
    # the overlay's opacity is alpha * sqrt(value / max): the map's minimum is nearly opaque too
    x = torch.full((1, 3, 8, 8), 0.5)
    out = viz.overlay(x, s, alpha=1.0)
    assert torch.allclose(out, viz.heatmap(s) * (s / 0.88).sqrt() + 0.5 * (1 - (s / 0.88).sqrt()))


def test_colour_table_is_matplotlibs_lookup():
    import matplotlib

    for cmap, signed in (("viridis", False), ("RdBu_r", True)):
        table = viz.colour_table(signed=signed)
        ref = matplotlib.colormaps[cmap](np.array([0.0, 0.5, 0.999, 1.0]))[:, :3]
        assert np.array_equal(table[[0, 128, 255, 255]], np.round(ref * 255).astype(np.uint8))


def test_colour_tables_of_the_page_are_viz_tables():
    from pathlib import Path

    from unmask import serve

    path = Path(serve.__file__).parent / "static" / "colours.js"
    assert path.read_text() == viz.colour_tables_js(), (
        "static/colours.js is stale: regenerate it with viz.colour_tables_js()"
    )


def test_heatmap_colours():
    s = torch.tensor([[[[0.0, 1.0]]]])
    rgb = viz.heatmap(s, cmap="gray")
    assert rgb.shape == (1, 3, 1, 2)
    assert torch.allclose(rgb[0, :, 0, 0], torch.zeros(3)) and torch.allclose(
        rgb[0, :, 0, 1], torch.ones(3)
    )
    div = viz.heatmap(torch.tensor([[[[-1.0, 0.0, 1.0]]]]))  # RdBu_r: blue, white, red
    assert div[0, 2, 0, 0] > div[0, 0, 0, 0] and div[0, 0, 0, 2] > div[0, 2, 0, 2]
    assert float(div[0, :, 0, 1].min()) > 0.9


def test_overlay_blends():
    x, s = _x(), _s()
    out = viz.overlay(x, s, alpha=0.4)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(viz.overlay(x, s, alpha=0.0), x)
    # opacity alpha * sqrt(s / max s), per image
    w = 0.4 * (s / s.amax(dim=(-2, -1), keepdim=True)).sqrt()
    assert torch.allclose(out, (1 - w) * x + w * viz.heatmap(s), atol=1e-6)
    top = s == s.amax(dim=(-2, -1), keepdim=True)
    assert torch.allclose(
        viz.overlay(x, s, alpha=1.0)[top.expand_as(x)], viz.heatmap(s)[top.expand_as(x)]
    )


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_overlay_shows_the_image_where_the_map_is_zero(sign: float):
    x = _x(1)
    s = torch.zeros(1, 1, 16, 16)
    s[..., :4, :4] = 1
    s[..., -4:, -4:] = -sign  # signed (sign 1) or non-negative (sign -1) map
    out = viz.overlay(x, s, alpha=0.5)
    assert torch.allclose(out[..., 6:10, 6:10], x[..., 6:10, 6:10])
    assert not torch.allclose(out[..., :4, :4], x[..., :4, :4])


def test_overlay_accepts_explanations_and_other_sizes():
    x = _x(2, 32)
    e = Explanation(_s(2, 8), torch.tensor([0, 1]), "demo")
    out = viz.overlay(x, e)
    assert out.shape == (2, 3, 32, 32)
    assert viz.overlay(x, _s(1, 32)).shape == (2, 3, 32, 32)  # one map for every image
    assert viz.overlay(x, _s(2, 32)[:, 0]).shape == (2, 3, 32, 32)  # (B, H, W)


def test_top_mask_and_masked_image():
    s = torch.arange(16.0).reshape(1, 1, 4, 4)
    keep = viz.top_mask(s, 0.25)
    assert int(keep.sum()) == 4 and bool(keep[0, 0, 3].all())  # the 4 largest: the last row
    ties = viz.top_mask(torch.zeros(2, 1, 4, 4), 0.5, ties="order")
    assert ties.sum(dim=(1, 2, 3)).tolist() == [8.0, 8.0]
    assert torch.equal(ties, viz.top_mask(torch.zeros(2, 1, 4, 4), 0.5, ties="order"))
    assert viz.top_mask(torch.zeros(2, 1, 4, 4), 0.5).sum() == 0  # a constant map: nothing ranks


def test_top_mask_never_splits_ties_by_position():
    s = torch.zeros(1, 1, 20, 20)
    s[..., 13:, :] = 1.0  # the bottom 35 % tie at the top value
    keep = viz.top_mask(s, 0.2)
    assert torch.equal(keep, (s == 1).float())  # all tied pixels, not the first rows in order
    assert abs(float(viz.kept_share(s, 0.2)[0]) - 0.35) < 1e-6
    floor = torch.zeros(1, 1, 10, 10)
    floor[..., 0, :] = 1.0  # 10 % above a flat floor, keep 20 %: only those 10 %
    assert torch.equal(viz.top_mask(floor, 0.2), floor)
    x = _x(1, 4)
    out = viz.masked_image(x, s, keep=0.25)
    assert torch.equal(out[..., 3, :], x[..., 3, :])
    assert bool((out[..., :3, :] == 0.5).all())  # the rest is gray
    black = viz.masked_image(x, s, keep=0.25, removal="black")
    assert bool((black[..., :3, :] == 0).all())
    m = torch.zeros(1, 1, 4, 4)
    m[..., 0, 0] = 1
    explicit = viz.masked_image(x, mask=m, removal=Constant("white"))
    assert bool((explicit[0, :, 0, 0] == 1).all()) and torch.equal(
        explicit[..., 1:, :], x[..., 1:, :]
    )


def test_grid_png(tmp_path):
    x = _x(2, 32)
    e1 = Explanation(_s(2, 32), torch.tensor([1, 0]), "occlusion")
    e2 = Explanation(_s(2, 32, signed=True), torch.tensor([0, 0]), "rise")
    probs = torch.tensor([[0.2, 0.8], [0.7, 0.3]])
    fig = viz.plot_grid(
        x,
        [e1, e2],
        class_names=["cat", "dog"],
        probabilities=probs,
        row_labels=["a.png", "b.png"],
        keep=0.2,
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "input\ntop-1: dog (80.0%)" in titles and "input\ntop-1: cat (70.0%)" in titles
    assert "occlusion\ndog (80.0%)" in titles and "rise\ncat (70.0%)" in titles
    assert "occlusion: top 20% kept" in titles
    path = viz.save_figure(fig, tmp_path / "grid.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > img.height > 100
        assert np.asarray(img.convert("L")).std() > 10  # not blank


def test_grid_with_a_model_and_plain_tensors(tmp_path, region_model, region_images):
    path = viz.save_grid(
        tmp_path / "g.png", region_images, _s(2, 32), model=region_model, colorbar=False
    )
    assert path.is_file() and path.stat().st_size > 1000
    fig = viz.plot_grid(
        region_images[:1], Explanation(_s(1, 32), torch.tensor([1]), "m"), model=region_model
    )
    assert any("red box" in ax.get_title() for ax in fig.axes)


def test_save_image(tmp_path):
    x = _x(1, 8)
    path = viz.save_image(x, tmp_path / "x.png")
    with Image.open(path) as img:
        arr = np.asarray(img)
    assert arr.shape == (8, 8, 3)
    assert np.abs(arr / 255 - x[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


def test_errors(tmp_path):
    x = _x()
    with pytest.raises(
        ValueError, match="saliency: batch size 3 does not match the images' batch size 2"
    ):
        viz.overlay(x, _s(3))
    with pytest.raises(
        ValueError, match=r"saliency: expected shape \(B, 1, H, W\), got \(2, 3, 16, 16\)"
    ):
        viz.overlay(x, torch.rand(2, 3, 16, 16))
    with pytest.raises(TypeError, match="saliency: expected a torch.Tensor"):
        viz.overlay(x, np.zeros((2, 1, 16, 16)))
    bad = _s()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="saliency: contains NaN"):
        viz.overlay(x, bad)
    with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\]"):
        viz.overlay(x * 3, _s())
    with pytest.raises(ValueError, match=r"images: expected 3 channels"):
        viz.overlay(x[:, :1], _s())
    with pytest.raises(ValueError, match=r"alpha: expected a value in \[0, 1\]"):
        viz.overlay(x, _s(), alpha=1.5)
    with pytest.raises(ValueError, match="cmap: unknown matplotlib colormap"):
        viz.overlay(x, _s(), cmap="nonsense")
    with pytest.raises(ValueError, match=r"keep: expected a value in \(0, 1\]"):
        viz.masked_image(x, _s(), keep=0)
    with pytest.raises(ValueError, match="give exactly one of saliency"):
        viz.masked_image(x)
    with pytest.raises(ValueError, match=r"mask: expected shape"):
        viz.masked_image(x, mask=torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"probabilities: expected shape \(2, K\)"):
        viz.plot_grid(x, _s(), probabilities=torch.rand(3, 2))
    with pytest.raises(FileNotFoundError, match="out: directory does not exist"):
        viz.save_grid(tmp_path / "missing" / "g.png", x, _s())
