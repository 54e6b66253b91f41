"""Networks that return a tuple, a dict or a Hugging Face ``ModelOutput`` (``Classifier.wrap(...,
output=...)``), and NaN / infinite logits: refused with the images named.

Every registered method (with the contract suite's fast settings) and every metric that calls a
model gives the same result on a network returning its logits inside a tuple, a dict or an
``ImageClassifierOutput`` as on the network returning the tensor itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import unmask
import unmask.metrics  # noqa: F401  (registers every metric)
from unmask import Classifier
from unmask.api import make_explainer
from unmask.metrics.kinds import kind_of
from unmask.models import NonFiniteLogits, pick_logits
from unmask.registry import METRICS
from unmask.testing import region_images

sys.path.insert(0, str(Path(__file__).resolve().parent / "explainers"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "metrics"))
from test_contract import FAST, _images, _model  # noqa: E402
from test_contract_metrics import FACTORIES  # noqa: E402

transformers = pytest.importorskip("transformers")
from transformers.modeling_outputs import ImageClassifierOutput  # noqa: E402

KINDS = ("tuple", "dict", "hf")


class Outputs(nn.Module):
    """``inner``'s logits returned as ``kind``: (features, logits), a dict, or a ModelOutput."""

    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: Tensor) -> object:
        z = self.inner(x)
        extra = x.mean(dim=(2, 3))  # (B, 3): another tensor beside the logits
        if self.kind == "tuple":
            return extra, z
        if self.kind == "dict":
            return {"features": extra, "scores": z}
        return ImageClassifierOutput(logits=z, hidden_states=(extra,))


def returning(model: Classifier, kind: str, output: object = None) -> Classifier:
    """``model`` with its network returning ``kind`` (same name, so explanation keys agree)."""
    layer = None if model.feature_layer is None else f"inner.{model.feature_layer}"
    return Classifier(
        Outputs(model.net, kind),
        mean=model.mean.flatten().tolist(),
        std=model.std.flatten().tolist(),
        input_size=model.input_size,
        class_names=model.class_names,
        name=model.name,
        feature_layer=layer,
        output=output,
    ).eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", sorted(FAST))
def test_every_method_reads_tuple_dict_and_model_outputs(method, kind):
    model, x = _model(method), _images()[:2]
    plain = unmask.explain(model, x, method=method, target=[1, 0], seed=0, **FAST[method])
    other = unmask.explain(
        returning(model, kind), x, method=method, target=[1, 0], seed=0, **FAST[method]
    )
    torch.testing.assert_close(other.saliency, plain.saliency, rtol=1e-5, atol=1e-6)


MODEL_METRICS = sorted(e.name for e in METRICS if "model" in kind_of(e.name).inputs)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODEL_METRICS)
def test_every_metric_reads_tuple_dict_and_model_outputs(name, kind):
    metric = METRICS.get(name).build()
    spec = kind_of(metric)
    inputs = FACTORIES[spec.name](2)
    plain = spec.call(metric, inputs)
    model = returning(inputs["model"], kind)
    other = {**inputs, "model": model}
    if "explainer" in inputs:
        other["explainer"] = make_explainer(model, method="input_x_gradient")
    torch.testing.assert_close(
        torch.nan_to_num(spec.call(metric, other), 7.0), torch.nan_to_num(plain, 7.0)
    )


def test_output_picks_by_index_key_attribute_and_callable():
    z, h = torch.randn(2, 3), torch.randn(2, 3)
    assert pick_logits((h, z), 1, 3) is z
    assert pick_logits({"a": h, "b": z}, "b", 3) is z
    assert pick_logits(ImageClassifierOutput(logits=z), "logits", 3) is z
    assert pick_logits({"a": h, "b": z}, lambda out: out["b"], 3) is z
    assert pick_logits([z], None, 3) is z  # one candidate
    assert pick_logits((torch.randn(2, 5), z), None, 3) is z  # the only (B, 3) part
    assert pick_logits({"logits": z, "other": h}, None, 3) is z  # a dict's "logits"


def test_ambiguous_or_missing_outputs_list_what_the_network_returned():
    z = torch.randn(2, 3)
    with pytest.raises(
        ValueError, match=r"returned tuple \(\[0\] Tensor \(2, 3\), \[1\] Tensor \(2, 3\)\)"
    ):
        pick_logits((z, z), None, 3)
    with pytest.raises(ValueError, match=r"'a': Tensor \(2, 3\), 'b': Tensor \(2, 3\)"):
        pick_logits({"a": z, "b": z}, None, 3)
    with pytest.raises(ValueError, match=r"output: cannot pick 'c' .*'a': Tensor \(2, 3\)"):
        pick_logits({"a": z, "b": z}, "c", 3)
    with pytest.raises(ValueError, match=r"output: cannot pick 5 .*: tuple \(\[0\]"):
        pick_logits((z, z), 5, 3)
    with pytest.raises(ValueError, match="output 'hidden_states' is tuple, expected a logits"):
        pick_logits(ImageClassifierOutput(logits=z, hidden_states=(z,)), "hidden_states", 3)
    with pytest.raises(TypeError, match="output: expected None, an index"):
        Classifier.wrap(nn.Identity(), class_names=["a"], output=1.5)  # type: ignore[arg-type]
    # through a method: the error reaches the user as it is
    model = returning(_model("occlusion"), "tuple")
    model.net.forward = lambda x: (model.net.inner(x), model.net.inner(x))  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=r"cannot tell which output .* tuple \(\[0\]"):
        unmask.explain(model, _images()[:1], "occlusion", patch_size=8, stride=8)


class NaNFor(nn.Module):
    """Logits of ``inner``, NaN for images whose top-left pixel is above ``threshold``."""

    def __init__(self, inner: nn.Module, threshold: float = 0.99) -> None:
        super().__init__()
        self.inner, self.threshold = inner, threshold

    def forward(self, x: Tensor) -> object:
        z = self.inner(x)
        bad = x[:, 0, 0, 0] > self.threshold
        return {"logits": torch.where(bad[:, None], torch.full_like(z, float("nan")), z)}


def _nan_model() -> Classifier:
    base = _model("gradcam")  # the convolutional region model
    return Classifier(
        NaNFor(base.net),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        input_size=None,
        class_names=base.class_names,
        name="nan-model",
        feature_layer="inner.features",
    ).eval()


def _nan_images() -> Tensor:
    x = region_images(3, 32)
    x[:, :, 0, 0] = 0.5
    x[1, :, 0, 0] = 1.0  # image 1 makes NaN logits
    return x


@pytest.mark.parametrize(
    "method,kw",
    [
        ("occlusion", {"patch_size": 8, "stride": 8}),  # the scoring engine
        ("rise", {"masks": 20, "s": 4}),
        ("gradient", {}),  # the gradient path's forward
        ("gradcam", {}),
        ("scorecam", {}),
    ],
)
def test_nan_logits_are_refused_naming_the_images(method, kw):
    with pytest.raises(
        NonFiniteLogits, match=r"^model: output 'logits' of 'nan-model' holds NaN .*1"
    ):
        unmask.explain(_nan_model(), _nan_images(), method, target=1, **kw)


def test_nan_logits_in_perturbed_copies_name_their_image():
    model = _nan_model()
    x = _nan_images()
    x[1, :, 0, 0] = 0.5
    # occlusion with a white fill: only copies whose corner patch is removed turn NaN
    with pytest.raises(NonFiniteLogits, match=r"perturbed copies of images 0, 1, 2$"):
        unmask.explain(
            model, x, "occlusion", target=1, patch_size=8, stride=8, removal="white", batch_size=64
        )
    with pytest.raises(NonFiniteLogits, match="for image 1 of a batch of 3"):
        model(_nan_images())


def test_nan_logits_refused_in_metrics():
    model, x = _nan_model(), _nan_images()
    maps = torch.rand(3, 1, 32, 32)
    with pytest.raises(NonFiniteLogits, match=r"holds NaN or infinite logits for image 1$"):
        METRICS.get("deletion").build()(model, x, maps, target=1)
