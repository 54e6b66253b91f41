"""Config checking: every unknown name or key is one ValueError naming the key and the allowed
values, before any work starts."""

from __future__ import annotations

import pytest

from unmask.bench import parse_plan
from unmask.registry import METHODS

BASE = {
    "model": {"name": "unmask.testing:region_model"},
    "data": {"path": "."},
    "methods": [{"method": "occlusion"}],
    "metrics": ["deletion"],
}


def _with(**changes):
    cfg = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in BASE.items()}
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize(
    "changes,key,allowed",
    [
        ({"methods": [{"method": "nope"}]}, "methods[0].method", "occlusion"),
        (
            {"methods": [{"method": "occlusion", "params": {"patchsize": 3}}]},
            "methods[0].params.patchsize",
            "patch_size",
        ),
        (
            {"methods": [{"method": "occlusion", "params": {"removal": "fog"}}]},
            "methods[0].params.removal",
            "blur",
        ),
        (
            {"methods": [{"method": "mp", "removals": ["blur", "fog"]}]},
            "methods[0].removals[1]",
            "blur",
        ),
        (
            {"methods": [{"method": "occlusion", "seeds": [0, 1]}]},
            "methods[0].seeds",
            "deterministic",
        ),
        ({"methods": [{"method": "occlusion", "colour": 1}]}, "methods[0].colour", "sweep"),
        # values are checked against the method's declaration (types, bounds, choices)
        (
            {"methods": [{"method": "rise", "params": {"masks": 0}}]},
            "methods[0].params.masks",
            "integer in [1, 100,000]",
        ),
        (
            {"methods": [{"method": "occlusion", "sweep": {"patch_size": [4, 0]}}]},
            "methods[0].sweep.patch_size",
            "integer in [1,",
        ),
        (
            {"metrics": [{"metric": "deletion", "params": {"rule": "odd"}}]},
            "metrics[0].params.rule",
            "seed, rise",
        ),
        ({"metrics": ["nope"]}, "metrics[0].metric", "deletion"),
        (
            {"metrics": [{"metric": "deletion", "params": {"steps": 3}}]},
            "metrics[0].params.steps",
            "max_steps",
        ),
        ({"metrics": [{"metric": "deletion", "map": "x"}]}, "metrics[0].map", "relevance"),
        ({"metrics": ["ssim"]}, "metrics", "several seeds"),
        ({"extra": 1}, "config.extra", "methods"),
        ({"data": {"path": ".", "target": "all"}}, "data.target", "top1"),
        ({"model": {"size": 3}}, "model.name", "module:function"),
    ],
)
def test_bad_config_names_the_key_and_the_choices(changes, key, allowed) -> None:
    with pytest.raises(ValueError) as info:
        parse_plan(_with(**changes), allow_code=True)
    message = str(info.value)
    assert message.startswith(f"{key}:") and allowed in message and "\n" not in message


def test_expansion_labels_and_groups() -> None:
    plan = parse_plan(
        _with(
            methods=[
                {"method": "rise", "seeds": [0, 1], "sweep": {"s": [5, 7]}},
                {"method": "mp", "removals": ["blur:10", "telea"]},
            ],
            metrics=["deletion", "ssim"],
        ),
        allow_code=True,
    )
    assert [m.label for m in plan.methods] == [
        "rise[s=5,seed=0]",
        "rise[s=5,seed=1]",
        "rise[s=7,seed=0]",
        "rise[s=7,seed=1]",
        "mp[removal=blur:10]",
        "mp[removal=telea]",
    ]
    assert {m.group for m in plan.methods[:4]} == {"0"}
    assert [m.group for m in plan.methods[4:]] == ["1:blur:10", "1:telea"]
    assert [m.seed for m in plan.methods[:2]] == [0, 1] and plan.methods[4].seed == 0
    assert [m.label for m in plan.similarity] == ["ssim"]


def test_config_hash_ignores_limit_and_execution_settings() -> None:
    a = parse_plan(_with(data={"path": ".", "limit": 2}), allow_code=True)
    b = parse_plan(
        _with(methods=[{"method": "occlusion", "params": {"batch_size": 7}}]), allow_code=True
    )
    c = parse_plan(
        _with(methods=[{"method": "occlusion", "params": {"patch_size": 7}}]), allow_code=True
    )
    assert (
        a.config_hash
        == parse_plan(BASE, allow_code=True).config_hash
        == b.config_hash
        != c.config_hash
    )


def test_every_method_is_accepted() -> None:
    for name in METHODS.names():
        parse_plan(_with(methods=[{"method": name}]), allow_code=True)


def test_every_preset_is_a_valid_plan(tmp_path) -> None:
    from unmask.bench import load_plan
    from unmask.bench.presets import PRESETS, preset_path

    assert {"generative", "figure4", "saliency-maps-metrics"} <= set(PRESETS)
    for name, summary in PRESETS.items():
        plan = load_plan(preset_path(name), data=tmp_path)
        assert plan.name == name and summary and plan.methods and plan.metrics
    generative = load_plan(preset_path("generative"), data=tmp_path)
    assert {
        "sp[patch_size=29]",
        "sp-g[patch_size=29]",
        "mp[removal=telea]",
        "fido[removal=blur:10]",
        "mp2-g",
        "lime-g[seed=1]",
    } <= {m.label for m in generative.methods}
    assert [m.metric for m in generative.similarity] == ["ssim", "hog_pearson", "spearman"]


def test_docstring_examples_run() -> None:
    import doctest
    import importlib

    for name in ("data", "spec", "store", "maps", "report"):
        module = importlib.import_module(f"unmask.bench.{name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
