"""CWOX-2s on a known-answer model: A and A′ read region 1 (A′ mostly its corner), B region 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from unmask import Classifier
from unmask.contrastive import CWOX, contrast, cwox, load_tree, stage_layers, top_classes

SIZE = 32
A, A2, B = 0, 1, 2


def _box(t: int, left: int, b: int, r: int) -> torch.Tensor:
    m = torch.zeros(1, 1, SIZE, SIZE)
    m[..., t:b, left:r] = 1
    return m


REGION1 = _box(0, 0, 16, 16)  # top-left quadrant
CORNER = _box(0, 0, 8, 8)  # a sub-part of region 1
REGION2 = _box(16, 16, 32, 32)  # bottom-right quadrant


class _Gate(nn.Module):
    """Redness (B, 1, H, W) -> (region 1 minus the corner, the corner, region 2)."""

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        gates = torch.cat([REGION1 - CORNER, CORNER, REGION2], dim=1).to(r)
        if gates.shape[-2:] != r.shape[-2:]:  # any image size (layer tables use 224 x 224)
            gates = nn.functional.interpolate(gates, size=r.shape[-2:], mode="nearest")
        return r * gates


class ThreeClass(nn.Module):
    """logit_A = 10 (2 m0 + m1), logit_A′ = 10 (m0 + 2 m1), logit_B = 15 m2 (m: channel means)."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 1, kernel_size=1)
        head = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, -0.5, -0.5]])[:, :, None, None])
            conv.bias.fill_(-0.1)
            head.weight.copy_(
                torch.tensor([[20.0, 10.0, 0.0], [10.0, 20.0, 0.0], [0.0, 0.0, 15.0]])
            )
        self.features = nn.Sequential(conv, nn.ReLU(), _Gate())
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def three_class_model() -> Classifier:
    return Classifier(
        ThreeClass(),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=["A", "A prime", "B"],
        name="three",
        feature_layer="features",
    )


def images(batch: int = 1, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.05 * torch.rand(batch, 3, SIZE, SIZE, generator=gen)
    red = torch.tensor([0.9, 0.1, 0.1])[None, :, None, None]
    both = (REGION1 + REGION2).bool()
    return torch.where(both, red + 0.05 * torch.rand(batch, 3, SIZE, SIZE, generator=gen), x)


def share(m: torch.Tensor, box: torch.Tensor) -> float:
    """The fraction of a map's (positive) mass inside the box."""
    m = m.clamp(min=0)
    return float((m * box[0, 0]).sum() / m.sum().clamp(min=1e-30))


CLUSTERS = [[A, A2], [B]]


def test_known_answer_gradcam():
    model = three_class_model()
    e = cwox(model, images(), CLUSTERS)
    assert e.clusters == [CLUSTERS]
    h = e.cluster_maps[0]
    assert h.shape == (2, SIZE, SIZE)
    assert share(h[0], REGION1) == pytest.approx(1.0)  # {A, A′} vs {B}: region 1 only
    assert share(h[1], REGION2) == pytest.approx(1.0)
    classes = e.class_maps[0][0]
    assert classes.shape == (2, SIZE, SIZE)
    assert share(classes[0], REGION1 - CORNER) == pytest.approx(1.0)  # A: region 1 minus corner
    assert share(classes[1], CORNER) == pytest.approx(1.0)  # A′: the corner
    assert float(classes[0].sum()) > 0 and float(classes[1].sum()) > 0
    assert e.class_maps[0][1] is None and e.class_base[0][1] is None  # singleton {B}
    assert e.cluster_spec["method"] == "gradcam" and e.cluster_spec["relu"] is False
    assert e.delta == 50.0 and e.negative == "keep"


def test_known_answer_black_box_one_pass():
    """Occlusion (black-box) as base for both stages: one pass of perturbations for everything."""
    model = three_class_model()
    seen = []
    handle = model.net.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    x = images(2)
    spec = {"method": "occlusion", "patch_size": 8, "stride": 8, "removal": "gray"}
    try:
        e = cwox(model, x, CLUSTERS, cluster_explainer=spec, negative="clamp")
        with_cwox = sum(seen)
        seen.clear()
        from unmask import make_explainer

        make_explainer(model, **spec).explain_each(x, [[A, A2]])
        one_pass = sum(seen)
    finally:
        handle.remove()
    assert with_cwox == one_pass + x.shape[0]  # + the probabilities of the clean images
    for i in range(2):
        assert share(e.cluster_maps[i][0], REGION1) > 0.95
        assert share(e.class_maps[i][0][1], CORNER) > 0.95


def test_separate_stage_explainers_two_passes():
    model = three_class_model()
    e = cwox(
        model,
        images(),
        CLUSTERS,
        cluster_explainer="rise",
        class_explainer={"method": "rise", "masks": 300, "s": 4, "p": 0.3},
        delta=70,
    )
    assert e.cluster_spec["masks"] == 5000 and e.cluster_spec["s"] == 15
    assert e.class_spec["masks"] == 300
    h = e.cluster_maps[0]  # RISE maps carry the mean score as an offset: compare the regions
    inside = lambda m, box: float((m * box[0, 0]).sum() / box.sum())  # noqa: E731
    assert inside(h[0], REGION1) > inside(h[0], REGION2) + 0.01
    # (H of {B} is 0 here: P(A, A′) > P(B) under nearly every mask, an offset RISE keeps)


def test_batch_equals_single_images():
    model = three_class_model()
    x = images(2, seed=3)
    per_image = [CLUSTERS, [[B, A2], [A]]]
    batch = cwox(model, x, per_image)
    for i in range(2):
        one = cwox(model, x[i : i + 1], per_image[i])
        assert batch.clusters[i] == one.clusters[0]
        torch.testing.assert_close(batch.cluster_maps[i], one.cluster_maps[0])
        for a, b in zip(batch.class_maps[i], one.class_maps[0], strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b)
    assert batch[1].clusters == [per_image[1]]


def test_contrast_formulas_and_delta_percentile():
    gen = torch.Generator().manual_seed(0)
    s = torch.rand(3, 6, 5, generator=gen)
    sc = torch.rand(2, 6, 5, generator=gen)
    for delta in (0.0, 37.5, 60.0, 100.0):
        h, hk, q = contrast(s, [sc, None, None], delta)
        ref = np.clip(2 * s[0].numpy() - s[1].numpy() - s[2].numpy(), 0, None)
        np.testing.assert_allclose(h[0].numpy(), ref, rtol=1e-6)
        assert float(q[0]) == pytest.approx(float(np.percentile(ref, delta)), rel=1e-6)
        support = ref > np.percentile(ref, delta)
        want = np.clip(support * (sc[0].numpy() - sc[1].numpy()), 0, None)
        np.testing.assert_allclose(hk[0][0].numpy(), want, rtol=1e-6, atol=1e-7)
        assert hk[1] is None
    h, hk, _ = contrast(s, [sc, None, None], 100.0)
    assert float(hk[0].abs().sum()) == 0  # δ = 100: empty support
    h1, _, _ = contrast(s[:1], [None], 50)  # one cluster: its own (clipped) map
    torch.testing.assert_close(h1, s[:1])


def test_delta_changes_class_support():
    model = three_class_model()
    loose = cwox(model, images(), CLUSTERS, delta=0)
    tight = cwox(model, images(), CLUSTERS, delta=95)
    n_loose = int((loose.class_maps[0][0] > 0).sum())
    n_tight = int((tight.class_maps[0][0] > 0).sum())
    assert n_tight < n_loose
    torch.testing.assert_close(loose.cluster_maps[0], tight.cluster_maps[0])


def test_tree_and_top_classes():
    tree = load_tree(
        [
            {
                "id": "Z2",
                "text": "",
                "data": {"level": 2},
                "children": [
                    {
                        "id": "Z0",
                        "text": "c000-a 0.5 c001-a_prime 0.5",
                        "data": {"level": 1},
                        "children": [],
                    },
                    {"id": "Z1", "text": "c002-b 0.5", "data": {"level": 1}, "children": []},
                ],
            }
        ]
    )
    model = three_class_model()
    e = cwox(model, images(), tree, top=3)
    assert sorted(sorted(c) for c in e.clusters[0]) == [[A, A2], [B]]
    e1 = cwox(model, images(), tree, top=3, cut_level=1)
    assert len(e1.clusters[0]) == 1 and len(e1.class_maps[0][0]) == 3
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.2, 0.2, 0.2, 0.4]])
    assert top_classes(p) == [[0, 1, 2], [3, 0, 1, 2]]
    assert top_classes(p, top_p=0.5) == [[0], [3, 0]]
    assert top_classes(p, max_top=2) == [[0, 1], [3, 0]]
    summary = e.summary(model.class_names)
    row = summary["images"][0]["clusters"][0]
    assert row["probability"] == pytest.approx(sum(row["class_probabilities"]))


def test_stage_layers_on_a_block_model():
    model = three_class_model()
    assert stage_layers(model, "gradcam") == ("features", "features")
    with pytest.raises(ValueError, match="base"):
        stage_layers(model, "rise")


@pytest.mark.parametrize(
    "clusters, match",
    [
        ([[A, 5], [B]], "clusters\\[0\\]: class 5 is outside"),
        ([[A], []], "clusters\\[1\\]: a cluster needs at least one class"),
        ([[A, B], [B]], "class 2 appears twice"),
        ([], "clusters"),
        ([[A], ["x"]], "clusters\\[1\\]: expected class indices"),
    ],
)
def test_bad_clusters(clusters, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cwox(three_class_model(), images(), clusters)


@pytest.mark.parametrize("delta", [-1, 100.5, True])
def test_bad_delta(delta):
    with pytest.raises((ValueError, TypeError), match="delta"):
        CWOX(three_class_model(), delta=delta)


def test_negative_base_maps():
    model = three_class_model()
    spec = {"method": "occlusion", "patch_size": 8, "stride": 8, "removal": "gray"}
    with pytest.raises(ValueError, match="non-negative base maps.*negative='clamp'"):
        cwox(model, images(), CLUSTERS, cluster_explainer=spec)
    signed = cwox(model, images(), CLUSTERS, cluster_explainer=spec, negative="keep")
    clamped = cwox(model, images(), CLUSTERS, cluster_explainer=spec, negative="clamp")
    assert float(signed.cluster_base[0].min()) < 0 <= float(clamped.cluster_base[0].min())
    with pytest.raises(ValueError, match="negative"):
        CWOX(model, negative="drop")
    with pytest.raises(ValueError, match="clusters: give either"):
        cwox(model, images())
    with pytest.raises(TypeError, match="cluster_explainer"):
        CWOX(model, cluster_explainer=3.0)


def test_stage_layers_on_resnet_style_names():
    """Feature layer ``layer4``: Grad-CAM's class layer is the last block of ``layer3``
    (twice the resolution), MWP's the first block of ``layer4``, as the original on ResNet-50."""

    class Block(nn.Module):
        def __init__(self, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(4, 4, 3, stride=stride, padding=1)
            self.downsample = (
                nn.Sequential(nn.Conv2d(4, 4, 1, stride=stride)) if stride > 1 else None
            )
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skip = x if self.downsample is None else self.downsample(x)
            return self.relu(self.conv1(x) + skip)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.layer3 = nn.Sequential(Block(2), Block(1), Block(1))
            self.layer4 = nn.Sequential(Block(2), Block(1))
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.layer4(self.layer3(self.conv1(x))).mean(dim=(2, 3)))

    model = Classifier(
        Net(),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=list("abc"),
        feature_layer="layer4",
    )
    assert stage_layers(model, "gradcam") == ("layer4", "layer3.2")
    assert stage_layers(model, "mwp") == ("layer4", "layer4.0")


def test_presets_per_base():
    model = three_class_model()
    lime = CWOX(model, "lime")  # one explainer for both stages: one pass of samples
    assert lime.cluster_explainer is lime.class_explainer
    assert (lime.delta, lime.negative, lime.rescale) == (85.0, "clamp", "max")
    rise = CWOX(model, "rise")
    assert rise.cluster_explainer is not rise.class_explainer and rise.rescale == "minmax"
    assert (rise.cluster_explainer.num_masks, rise.class_explainer.num_masks) == (5000, 3000)
    assert (CWOX(model, "mwp").delta, CWOX(model, "gradcam").delta) == (60.0, 50.0)
    assert CWOX(model, "occlusion").delta == 50.0 and CWOX(model, "occlusion").negative == "error"


def test_plot_marks_weak_classes_and_has_colour_bars():
    """The figure: a colour bar per map, each panel's probability, weak (< 10 %) panels marked."""
    import dataclasses

    from unmask.contrastive.plot import WEAK, plot_cwox

    model = three_class_model()
    x = images()
    e = cwox(model, x, CLUSTERS)
    e = dataclasses.replace(e, probabilities=torch.tensor([[0.60, 0.05, 0.35]]))  # A′ weak
    p = e.probabilities[0]
    fig = plot_cwox(x, e, class_names=model.class_names)
    maps = [ax for ax in fig.axes if ax.get_title().startswith(("cluster", "A", "B"))]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(maps) == 4 and len(bars) == 4  # 2 cluster maps, 2 class maps, a bar each
    for ax in maps:
        title = ax.get_title()
        name = title.split("\n")[0]
        prob = float(p[[A, A2]].sum()) if name.startswith("cluster 1") else None
        prob = float(p[B]) if name.startswith("cluster 2") else prob
        prob = float(p[A]) if name == "A" else float(p[A2]) if name == "A prime" else prob
        assert f"{prob:.1%}" in title
        assert ("weak" in title) == (prob < WEAK)
        assert ("%" in ax.get_xlabel()) or "zero everywhere" in title  # the range caption
    assert [ax.get_title().split("\n")[0] for ax in maps if "weak" in ax.get_title()] == ["A prime"]


# -- the original's combination (vaynexie/CWOX, CWOX_2s.py and its base explainers), written
# -- here independently in numpy on the preset's raw base maps.
def _original_scaling(m: np.ndarray, base: str) -> np.ndarray:
    """rise.py / rise_cwox.py: min-max; lime.py / lime_cwox.py: positive weights / max."""
    if base == "rise":
        return (m - m.min()) / (m.max() - m.min())
    if base == "lime":
        m = np.where(m > 0, m, 0.0)
        return m / m.max()
    return m  # grad_cam.py, excitation_backprop.py: the raw map


def _one_v_one(pos: np.ndarray, negs: list[np.ndarray]) -> np.ndarray:
    return pos * len(negs) - sum(negs) if negs else pos


def _original_cwox(cluster_maps, class_maps, clusters, delta):
    out = {}
    for i, members in enumerate(clusters):
        others = [cluster_maps[j] for j in range(len(clusters)) if j != i]
        s1 = np.clip(_one_v_one(cluster_maps[i], others), 0, 10000)
        out[f"cluster{i + 1}"] = s1
        if len(members) > 1:
            support = np.where(s1 > np.percentile(s1, delta), 1, 0)
            for c in members:
                mates = [class_maps[m] for m in members if m != c]
                s3 = support * _one_v_one(class_maps[c], mates)
                out[f"cluster{i + 1}_{c}"] = np.clip(s3, 0, 10000)
    return out


# MWP shares Grad-CAM's path (raw maps, no scaling); on this toy model its cluster maps are
# equal distributions, so every contrast is 0 and the comparison would prove nothing.
@pytest.mark.parametrize("base", ["gradcam", "rise", "lime"])
def test_presets_compute_the_originals_combination(base):
    """The preset's raw base maps, scaled and combined as the original does, equal CWOX's maps."""
    model = three_class_model()
    x = images()
    clusters = [[A, A2], [B]]
    cw = CWOX(model, base, seed=3)
    e = cw.explain(x, clusters)

    def raw(explainer, target) -> np.ndarray:
        return explainer.explain(x, target).saliency[0, 0].double().numpy()

    if base == "rise":  # rise_cwox sums the cluster explainer's class maps (Σ p_c is linear)
        cluster_raw = [sum(raw(cw.cluster_explainer, c) for c in cl) for cl in clusters]
    else:
        cluster_raw = [raw(cw.cluster_explainer, [cl]) for cl in clusters]
    class_raw = {c: raw(cw.class_explainer, c) for c in clusters[0]}
    expected = _original_cwox(
        [_original_scaling(m, base) for m in cluster_raw],
        {c: _original_scaling(m, base) for c, m in class_raw.items()},
        clusters,
        cw.delta,
    )
    assert cw.delta == {"gradcam": 50.0, "rise": 70.0, "lime": 85.0}[base]
    for i in range(len(clusters)):
        got = e.cluster_maps[0][i].double().numpy()
        np.testing.assert_allclose(got, expected[f"cluster{i + 1}"], atol=1e-5, rtol=1e-4)
    for k, c in enumerate(clusters[0]):
        got = e.class_maps[0][0][k].double().numpy()
        np.testing.assert_allclose(got, expected[f"cluster1_{c}"], atol=1e-5, rtol=1e-4)
    assert float(e.cluster_maps[0].sum()) > 0  # not a vacuous comparison of zeros


def test_rescale_choices():
    model = three_class_model()
    assert CWOX(model, "gradcam", rescale=True).rescale == "max"
    assert CWOX(model, "rise", rescale=False).rescale == "none"
    with pytest.raises(ValueError, match="rescale"):
        CWOX(model, "gradcam", rescale="zscore")
    with pytest.raises(TypeError, match="rescale"):
        CWOX(model, "gradcam", rescale=1)
