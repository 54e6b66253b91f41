"""``make_model(spec)``: the one model grammar of the CLI, the bench, the explorer and Ray."""

from __future__ import annotations

import pytest
import torch

import unmask
from unmask.model_specs import make_model, parse_model_spec
from unmask.testing import region_model


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("efficientnet_lite0", ("efficientnet_lite0", {})),
        ("efficientnet_lite0:weights=ft.pt", ("efficientnet_lite0", {"weights": "ft.pt"})),
        ("tv:resnet50", ("tv:resnet50", {})),
        (
            "tv:resnet50:weights=r.pth,device=cpu",
            ("tv:resnet50", {"weights": "r.pth", "device": "cpu"}),
        ),
        ("unmask.testing:region_model", ("unmask.testing:region_model", {})),
        ("pkg.mod:build:execution=eager", ("pkg.mod:build", {"execution": "eager"})),
    ],
)
def test_parse(spec, expected):
    assert parse_model_spec(spec) == expected


def test_a_function_spec_builds_the_same_model_as_calling_it():
    model = make_model("unmask.testing:region_model")
    assert isinstance(model, unmask.Classifier) and not model.training
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(x), region_model()(x), rtol=0, atol=0)
    assert unmask.make_model is make_model


def test_a_registered_name_loads_as_load_model():
    a, b = make_model("synthetic_cnn:execution=eager"), unmask.load_model("synthetic_cnn")
    assert a.execution == "eager" != b.execution  # the option reached load_model
    assert make_model("synthetic_cnn").execution == b.execution  # and its default otherwise
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert make_model(a) is a  # a Classifier is returned as it is


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("resnet9000", ValueError, "model: unknown model 'resnet9000'"),
        ("efficientnet_lite0:colour=red", ValueError, "unknown option 'colour'"),
        ("no_such_module_xyz:build", ValueError, "model: cannot import 'no_such_module_xyz:build'"),
        (
            "unmask.testing:region_images",
            TypeError,
            "returned a Tensor, expected an unmask.Classifier",
        ),
        ("unmask.testing:region_model:weights=w.pt", ValueError, "takes no weights"),
        ("tv:resnet50", ValueError, "(torchvision|weights)"),  # a loader prefix, never imported
        ("", TypeError, "model: expected a model spec"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, error, message):
    with pytest.raises(error, match=message):
        make_model(spec)
