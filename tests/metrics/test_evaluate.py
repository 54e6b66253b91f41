"""`unmask.metrics.evaluate`: the same values as each metric alone, shared curves computed once
(counted in model evaluations), inputs by kind, and `unmask evaluate` through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unmask.explanation import Explanation
from unmask.metrics import METRICS, evaluate
from unmask.testing import region_box, region_images, region_model


def counting_model():
    """The region model, counting the images it scores."""
    model = region_model()
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    return model, seen


def maps(batch=2, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.interpolate(
        torch.rand(batch, 1, 4, 4, generator=gen),
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )


def cost(names, x, s, **inputs):
    model, seen = counting_model()
    evaluate(model, x, s, names, **inputs)
    return sum(seen)


def test_values_equal_each_metric_alone():
    x, s = region_images(2, 32), maps()
    t, left, b, r = region_box(32, 32)
    box = torch.tensor([[left, t, r, b]] * 2, dtype=torch.float32)
    names = [
        "deletion",
        "dc",
        "insertion",
        "ic",
        "deletion_rise",
        "iic",
        "ad",
        "add",
        "saliency_metric",
        "cauc",
        "cdrop",
        "pointing_game",
        "ssim",
        "cp_l1",
        "hallucination_score",
    ]
    model = region_model()
    x_hat = x * s
    out = evaluate(
        model,
        x,
        s,
        names,
        target=1,
        competitors={0},
        boxes=box,
        reference=maps(seed=1),
        x_hat=x_hat,
    )
    assert list(out) == names
    alone = {
        "pointing_game": METRICS.get("pointing_game").build()(s, box),
        "ssim": METRICS.get("ssim").build()(s, maps(seed=1)),
        "cp_l1": METRICS.get("cp_l1").build()(model, x, x_hat, 1),
        "hallucination_score": METRICS.get("hallucination_score").build()(x, x_hat),
        "cauc": METRICS.get("cauc").build()(model, x, s, 1, competitors={0}),
        "cdrop": METRICS.get("cdrop").build()(model, x, s, 1, competitors={0}),
    }
    for name in names:
        ref = alone.get(name)
        if ref is None:
            ref = METRICS.get(name).build()(model, x, s, 1)
        torch.testing.assert_close(out[name], ref, equal_nan=True, msg=name)


def test_a_shared_curve_is_computed_once():
    x, s = region_images(2, 32), maps()
    deletion = cost(["deletion"], x, s)
    assert deletion == 2 + 2 * 205  # the clean images, then ceil(1024 / 5) = 205 steps each
    assert cost(["deletion", "dc"], x, s) == deletion
    insertion = cost(["insertion"], x, s)
    single = cost(["iic"], x, s)
    assert (
        cost(["deletion", "dc", "insertion", "ic", "iic", "ad"], x, s)
        == deletion + insertion + single
    )
    assert cost(["add", "iic"], x, s) == 2 * single  # ADD replaces the salient part: another image
    contrast = cost(["cauc"], x, s, target=1, competitors={0})
    assert cost(["cauc", "cdrop"], x, s, target=1, competitors={0}) == contrast
    # different settings are different curves
    assert cost({"a": "deletion", "b": METRICS.get("deletion").build(max_steps=8)}, x, s) > deletion


def test_explanation_target_and_maps():
    x, s = region_images(2, 32), maps()
    e = Explanation(s, torch.tensor([0, 0]), "test")
    out = evaluate(region_model(), x, e, ["deletion", "ad"])
    torch.testing.assert_close(
        out["deletion"], METRICS.get("deletion").build()(region_model(), x, s, 0)
    )
    torch.testing.assert_close(out["ad"], METRICS.get("ad").build()(region_model(), x, s, 0))


def test_image_resolution_kinds_get_upsampled_maps():
    x, coarse = (
        region_images(2, 32),
        torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)),
    )
    full = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    out = evaluate(region_model(), x, coarse, ["cauc", "deletion"], target=1, competitors={0})
    torch.testing.assert_close(
        out["cauc"], METRICS.get("cauc").build()(region_model(), x, full, 1, competitors={0})
    )
    # faithfulness reads the maps as given (the seed rule ranks the 8 x 8 map)
    torch.testing.assert_close(
        out["deletion"], METRICS.get("deletion").build()(region_model(), x, coarse, 1)
    )


def test_inputs_are_checked_by_kind():
    x, s = region_images(2, 32), maps()
    with pytest.raises(ValueError, match="^boxes: a localisation metric needs it"):
        evaluate(None, None, s, ["pointing_game"])
    with pytest.raises(ValueError, match="^competitors: a contrastive metric needs it"):
        evaluate(region_model(), x, s, ["cdrop"])
    with pytest.raises(TypeError, match="^box: not an input of any metric kind"):
        evaluate(region_model(), x, s, ["deletion"], box=1)
    with pytest.raises(ValueError, match="^saliency: expected one map per image"):
        evaluate(region_model(), x, maps(batch=3), ["deletion"])
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        evaluate(region_model(), x, s, ["nope"])
    with pytest.raises(ValueError, match="kind: object has kind None"):
        evaluate(region_model(), x, s, [object()])
    with pytest.raises(ValueError, match="given twice"):
        evaluate(region_model(), x, s, ["deletion", "deletion"])


def test_cli_evaluate_computes_a_shared_curve_once(tmp_path, monkeypatch, capsys):
    """`unmask evaluate --metrics deletion,dc` costs the model what deletion alone costs."""
    from PIL import Image

    import unmask.models
    from unmask.cli import main

    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "a.png"
    )
    np.save(tmp_path / "m.npy", np.random.default_rng(1).random((8, 8)).astype(np.float32))
    counts = {}
    for metrics in ("deletion", "deletion,dc", "deletion,dc,insertion,ic"):
        model, seen = counting_model()
        monkeypatch.setattr(unmask.models, "load_model", lambda *a, _m=model, **k: _m)
        # the cost line times a few forwards of its own: not the metrics' passes
        monkeypatch.setattr("unmask.timing.scoring_seconds", lambda *a, **k: 0.001)
        assert (
            main(
                [
                    "evaluate",
                    str(tmp_path / "a.png"),
                    "--maps",
                    str(tmp_path / "m.npy"),
                    "--metrics",
                    metrics,
                    "--size",
                    "32",
                    "--json",
                ]
            )
            == 0
        )
        capsys.readouterr()
        counts[metrics] = sum(seen)
    # the top-1 target (1 image), the clean image and 64 steps of the 8 x 8 map per curve
    assert counts["deletion"] == 1 + 1 + 64
    assert counts["deletion,dc"] == counts["deletion"]
    assert counts["deletion,dc,insertion,ic"] == 1 + (1 + 64) + (1 + 65)  # insertion: steps 0..64
