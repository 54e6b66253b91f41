"""A benchmark's TOML configuration, checked and expanded into a :class:`Plan`.

A configuration names a model, a data set, methods (each with hyperparameters, optionally several
seeds, removals or swept values) and metrics::

    name = "tiny"

    [model]
    name = "unmask.testing:region_model"   # a load_model name, "tv:<arch>", or "module:function"
                                           # (code: only with --allow-code / allow_code=True)
    size = 32                              # image side (default: the model's input size, or 224)

    [data]
    path = "images"                        # relative to the config file
    target = "label"                       # "label" (labels.csv / folder) or "top1"

    [[methods]]
    method = "occlusion"
    params = { patch_size = 8, stride = 4 }
    removals = ["gray", "blur:5"]          # one run per removal (params.removal)

    [[methods]]
    method = "rise"
    params = { masks = 500, s = 7 }
    seeds = [0, 1]                         # one run per seed

    [[metrics]]
    metric = "deletion"
    params = { max_steps = 16 }
    map = "auto"                           # saliency | relevance | auto (see unmask.bench.maps)

``metrics = ["deletion", "pointing_game"]`` is short for tables without params. Contrastive
metrics (``cauc``, ``cdrop``) and ``method = "cwox"`` (CWOX-2s over a base explainer) read an
optional ``[contrast]`` table: how each image's top classes are clustered into pairs (see
:mod:`unmask.bench.contrast`). Everything is
checked against the registries (``METHODS``, ``METRICS``, ``REMOVALS``) before any work starts:
an unknown name or key raises one ValueError naming the key and the allowed values.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._trust import refuse_code_in_config
from .._types import Model

__all__ = [
    "MethodRun",
    "MetricRun",
    "Plan",
    "load_plan",
    "parse_plan",
    "METRIC_KINDS",
    "MAP_CHOICES",
]

#: Metric kinds a benchmark computes per (image, method run); ``similarity`` metrics compare the
#: runs of one method entry (robustness) and are computed by the report.
METRIC_KINDS = (
    "faithfulness",
    "localisation",
    "explanation_image",
    "artifact",
    "contrastive",
    "similarity",
)
MAP_CHOICES = ("auto", "saliency", "relevance")

_TOP = ("name", "description", "model", "data", "contrast", "methods", "metrics")
_MODEL = ("name", "weights", "size", "fit", "device")
_DATA = ("path", "kind", "target", "limit")
_METHOD = ("method", "params", "label", "seeds", "removals", "sweep")
_METRIC = ("metric", "params", "label", "map")


@dataclass(frozen=True)
class MethodRun:
    """One explainer setting: a registered method, its hyperparameters and seed.

    Attributes:
        label: the run's name in the store and the report (unique).
        method: registered method name.
        params: hyperparameters as written (JSON values; removals as spec strings).
        seed: the seed passed to stochastic methods (None for deterministic ones).
        group: the robustness group: the ``[[methods]]`` entry it came from (its index) and,
            when the entry lists ``removals``, its removal (``"3"``, ``"3:telea"``): the runs of
            a group differ by seed or swept hyperparameters only, and the similarity metrics
            (robustness) compare them.
    """

    label: str
    method: str
    params: dict[str, Any]
    seed: int | None
    group: str

    def build(self, model: Model) -> Any:
        """The explainer for ``model`` (``cwox``: a :class:`~unmask.bench.contrast.CwoxMethod`)."""
        from ..api import make_explainer

        if self.method == "cwox":
            from .contrast import CWOX_ENTRY

            return CWOX_ENTRY.build(model, seed=self.seed or 0, **self.params)
        return make_explainer(model, self.method, seed=self.seed or 0, **self.params)


@dataclass(frozen=True)
class MetricRun:
    """One metric setting: a registered metric, its parameters and the map it reads."""

    label: str
    metric: str
    params: dict[str, Any]
    kind: str
    map: str = "auto"
    higher_is_better: bool = True

    def build(self, **context: Any) -> Any:
        from ..metrics import METRICS
        from ..removal import make_removal

        params = dict(self.params)
        if isinstance(params.get("removal"), str):
            params["removal"] = make_removal(params["removal"])
        return METRICS.get(self.metric).build(**context, **params)


@dataclass
class Plan:
    """A checked benchmark: what to run on what, and the config it came from."""

    name: str
    model: dict[str, Any]
    data: dict[str, Any]
    methods: list[MethodRun]
    metrics: list[MetricRun]
    similarity: list[MetricRun]
    config: dict[str, Any] = field(default_factory=dict)
    #: the checked ``[contrast]`` table (see :mod:`unmask.bench.contrast`), or None when the
    #: benchmark has no contrastive metric and no ``cwox`` method.
    contrast: dict[str, Any] | None = None

    @property
    def config_hash(self) -> str:
        """SHA-256 of the normalised config, without ``data.limit`` (a trial run on a few images
        and the full run share one store) and execution settings (``batch_size``...)."""
        from ..registry import EXECUTION_PARAMS

        cfg = json.loads(json.dumps(self.config))
        cfg.get("data", {}).pop("limit", None)
        for entry in cfg.get("methods", []) + cfg.get("metrics", []):
            for k in EXECUTION_PARAMS:
                entry.get("params", {}).pop(k, None)
        return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()

    def applies(self, method: MethodRun, metric: MetricRun) -> bool:
        """Whether ``metric`` is computed for ``method``: explanation-image metrics need a
        method that makes an explanation image x̂ (the representation-mask family, and
        Extremal Perturbations with x̂ = keep mask ⊙ x); contrastive metrics apply to every
        method (CWOX-2s: its contrastive maps; others: their plain maps of each pair)."""
        if metric.kind in ("explanation_image", "artifact"):
            if method.method == "cwox":
                return False
            from ..registry import METHODS

            entry = METHODS.get(method.method)
            return entry.accepts("representation") or entry.accepts("areas")
        return metric.kind != "similarity"

    def to_json(self) -> str:
        return json.dumps(self.config, sort_keys=True)


def _fail(key: str, message: str) -> ValueError:
    return ValueError(f"{key}: {message}")


def _check_keys(table: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _fail(where, f"expected a table, got {type(table).__name__}")
    for k in table:
        if k not in allowed:
            raise _fail(f"{where}.{k}", f"unknown key; expected one of: {', '.join(allowed)}")
    return table


def _check_params(entry: Any, params: Any, where: str, kind: str) -> dict[str, Any]:
    """The table as written, once :func:`unmask.params.validate_params` accepts it (the seed of a
    method comes from ``seeds``)."""
    from ..params import validate_params

    if not isinstance(params, dict):
        raise _fail(where, f"expected a table of hyperparameters, got {type(params).__name__}")
    if kind == "method" and "seed" in params:
        named = [n for n in entry.parameters() if n not in ("model", "progress", "seed")]
        raise _fail(
            f"{where}.seed",
            f"not a hyperparameter of method {entry.name!r} (use seeds = [...]); "
            f"expected one of: {', '.join(named)}",
        )
    try:
        validate_params(entry, params, where=where)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return dict(params)


def _short(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def _methods(entries: Any) -> list[MethodRun]:
    from .. import api  # noqa: F401  (registers every method)
    from ..registry import METHODS

    if not isinstance(entries, list) or not entries:
        raise _fail("methods", "expected at least one [[methods]] table")
    runs: list[tuple[str, dict[str, Any], int | None, int, list[str]]] = []
    for g, raw in enumerate(entries):
        where = f"methods[{g}]"
        table = _check_keys(raw, _METHOD, where)
        names = ", ".join([*METHODS.names(), "cwox"])
        if "method" not in table:
            raise _fail(f"{where}.method", f"missing; expected one of: {names}")
        if table["method"] == "cwox":
            from .contrast import CWOX_ENTRY

            entry = CWOX_ENTRY
        else:
            try:
                entry = METHODS.get(table["method"])
            except (ValueError, TypeError):
                raise _fail(
                    f"{where}.method",
                    f"unknown method {table['method']!r}; expected one of: {names}",
                ) from None
        params = _check_params(entry, table.get("params", {}), f"{where}.params", "method")
        if entry.name == "cwox":
            base = params.get("base", "gradcam")
            if not isinstance(base, str) or base not in METHODS:
                raise _fail(
                    f"{where}.params.base",
                    f"expected a registered method; expected one of: {', '.join(METHODS.names())}",
                )
        sweep = table.get("sweep", {})
        if not isinstance(sweep, dict) or not all(
            isinstance(v, list) and v for v in sweep.values()
        ):
            raise _fail(
                f"{where}.sweep",
                "expected a table of non-empty lists, e.g. { patch_size = [4, 8] }",
            )
        for k, values in sweep.items():  # every swept value, as if given in params
            for v in values:
                _check_params(entry, {k: v}, f"{where}.sweep", "method")
        removals = table.get("removals")
        if removals is not None:
            if (
                not isinstance(removals, list)
                or not removals
                or not all(isinstance(r, str) for r in removals)
            ):
                raise _fail(
                    f"{where}.removals",
                    "expected a non-empty list of removal specs, e.g. ['gray', 'blur:5']",
                )
            if not entry.accepts("removal"):
                raise _fail(f"{where}.removals", f"method {entry.name!r} takes no removal")
            from ..removal import make_removal

            for i, r in enumerate(removals):
                try:
                    make_removal(r)
                except ValueError as exc:
                    raise _fail(f"{where}.removals[{i}]", str(exc).split(": ", 1)[-1]) from None
        seeds = table.get("seeds")
        stochastic = entry.accepts("seed")
        if seeds is not None:
            if (
                not isinstance(seeds, list)
                or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            ):
                raise _fail(
                    f"{where}.seeds", f"expected a non-empty list of integers, got {seeds!r}"
                )
            if not stochastic:
                raise _fail(
                    f"{where}.seeds", f"method {entry.name!r} is deterministic (takes no seed)"
                )
        seed_list: list[int | None] = (
            list(seeds) if seeds is not None else [0 if stochastic else None]
        )
        keys = list(sweep)
        varying = (
            keys
            + (["removal"] if removals is not None else [])
            + (["seed"] if seeds and len(seeds) > 1 else [])
        )
        for values in itertools.product(*(sweep[k] for k in keys)):
            for removal in removals or [None]:
                for seed in seed_list:
                    p = {**params, **dict(zip(keys, values, strict=True))}
                    if removal is not None:
                        p["removal"] = removal
                    runs.append((entry.name, p, seed, g, varying))
        if "label" in table and not isinstance(table["label"], str):
            raise _fail(f"{where}.label", "expected a string")
    out = []
    labels: set[str] = set()
    for name, p, seed, g, varying in runs:
        base = entries[g].get("label", name)
        parts = [f"{k}={_short(p[k])}" for k in varying if k != "seed" and k in p]
        if "seed" in varying:
            parts.append(f"seed={seed}")
        label = base + (f"[{','.join(parts)}]" if parts else "")
        if label in labels:
            raise _fail(
                f"methods[{g}].label",
                f"two runs are both labelled {label!r}; give each [[methods]] table its own label",
            )
        labels.add(label)
        group = f"{g}:{p['removal']}" if "removal" in varying else str(g)
        out.append(MethodRun(label, name, p, seed, group))
    return out


def _metrics(entries: Any) -> tuple[list[MetricRun], list[MetricRun]]:
    from .. import metrics as _  # noqa: F401  (registers every metric)
    from ..registry import EXECUTION_PARAMS, METRICS

    if isinstance(entries, list) and all(isinstance(e, str) for e in entries):
        entries = [{"metric": e} for e in entries]
    if not isinstance(entries, list) or not entries:
        raise _fail(
            "metrics", 'expected at least one metric (metrics = ["deletion"] or [[metrics]] tables)'
        )
    runs: list[MetricRun] = []
    similarity: list[MetricRun] = []
    labels: set[str] = set()
    for i, raw in enumerate(entries):
        where = f"metrics[{i}]"
        table = _check_keys(raw, _METRIC, where)
        if "metric" not in table:
            raise _fail(
                f"{where}.metric", f"missing; expected one of: {', '.join(METRICS.names())}"
            )
        try:
            entry = METRICS.get(table["metric"])
        except (ValueError, TypeError):
            raise _fail(
                f"{where}.metric",
                f"unknown metric {table['metric']!r}; expected one of: "
                f"{', '.join(METRICS.names())}",
            ) from None
        from ..metrics.kinds import kind_of

        kind = kind_of(entry).name  # the kind declared with the metric (unmask.metrics.kinds)
        if kind not in METRIC_KINDS:
            raise _fail(
                f"{where}.metric",
                f"{entry.name!r} is a {kind} metric, which a benchmark "
                f"does not run; expected a metric of kind {', '.join(METRIC_KINDS)}",
            )
        params = _check_params(entry, table.get("params", {}), f"{where}.params", "metric")
        if kind == "explanation_image" and ("model" in params or "representation" in params):
            raise _fail(f"{where}.params", "model and representation come from the benchmark")
        choice = table.get("map", "auto")
        if choice not in MAP_CHOICES:
            raise _fail(
                f"{where}.map", f"unknown map {choice!r}; expected one of: {', '.join(MAP_CHOICES)}"
            )
        shown = {k: v for k, v in sorted(params.items()) if k not in EXECUTION_PARAMS}
        label = table.get("label") or entry.name + (
            "[" + ",".join(f"{k}={_short(v)}" for k, v in shown.items()) + "]" if shown else ""
        )
        if label in labels:
            raise _fail(
                f"{where}.label", f"two metrics are both labelled {label!r}; give one a label"
            )
        labels.add(label)
        run = MetricRun(
            label,
            entry.name,
            params,
            kind,
            choice,
            entry.higher_is_better is not False,
        )
        (similarity if kind == "similarity" else runs).append(run)
    return runs, similarity


def parse_plan(
    config: dict[str, Any],
    base: str | Path = ".",
    data: str | Path | None = None,
    *,
    allow_code: bool = False,
) -> Plan:
    """Check a parsed config (a dict as :mod:`tomllib` gives) and expand it into a Plan.

    Args:
        config: the configuration.
        base: folder that relative data paths are resolved against (the config file's).
        data: a data folder that replaces ``data.path`` (the command line's ``--data``).
        allow_code: accept what runs code, a ``"module:function"`` model and TorchScript
            removals (refused by default, before anything is built: :mod:`unmask._trust`).

    Example:
        >>> plan = parse_plan({"model": {"name": "unmask.testing:region_model"},
        ...                    "data": {"path": "."},
        ...                    "methods": [{"method": "rise", "seeds": [0, 1]}],
        ...                    "metrics": ["deletion"]}, allow_code=True)
        >>> [m.label for m in plan.methods], [m.label for m in plan.metrics]
        (['rise[seed=0]', 'rise[seed=1]'], ['deletion'])
    """
    _check_keys(config, _TOP, "config")
    refuse_code_in_config(config, allow_code=allow_code)  # before anything is built
    model = dict(_check_keys(config.get("model", {}), _MODEL, "model"))
    if not isinstance(model.get("name"), str):
        raise _fail(
            "model.name",
            "missing; expected a model name (see `unmask models`), 'tv:<arch>' "
            "or 'module:function'",
        )
    if "size" in model and (
        not isinstance(model["size"], int) or isinstance(model["size"], bool) or model["size"] < 1
    ):
        raise _fail("model.size", f"expected a positive integer, got {model['size']!r}")
    if model.get("fit", "crop") not in ("crop", "resize"):
        raise _fail("model.fit", f"unknown fit {model['fit']!r}; expected one of: crop, resize")
    data_cfg = dict(_check_keys(config.get("data", {}), _DATA, "data"))
    if data is not None:
        data_cfg["path"] = str(data)
    if not isinstance(data_cfg.get("path"), str):
        raise _fail("data.path", "missing; expected the data set's folder")
    path = Path(data_cfg["path"])
    if not path.is_absolute():
        path = Path(base) / path
    data_cfg["path"] = str(path.resolve())
    from .data import KINDS

    if data_cfg.get("kind", "auto") not in KINDS:
        raise _fail(
            "data.kind", f"unknown kind {data_cfg['kind']!r}; expected one of: {', '.join(KINDS)}"
        )
    if data_cfg.get("target", "label") not in ("label", "top1"):
        raise _fail(
            "data.target", f"unknown target {data_cfg['target']!r}; expected one of: label, top1"
        )
    limit = data_cfg.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise _fail("data.limit", f"expected a positive integer, got {limit!r}")
    methods = _methods(config.get("methods"))
    metrics, similarity = _metrics(config.get("metrics"))
    contrast = None
    if (
        "contrast" in config
        or any(m.kind == "contrastive" for m in metrics)
        or any(m.method == "cwox" for m in methods)
    ):
        from .contrast import check_contrast

        contrast = check_contrast(config.get("contrast"), base)
    if similarity and not any(
        len({m.label for m in methods if m.group == g}) > 1 for g in {m.group for m in methods}
    ):
        raise _fail(
            "metrics",
            f"{similarity[0].metric!r} compares the runs of one [[methods]] table "
            "(robustness): give a method several seeds, removals or sweep values",
        )
    name = config.get("name", "bench")
    if not isinstance(name, str) or not name:
        raise _fail("name", f"expected a non-empty string, got {name!r}")
    normalised = {
        "name": name,
        "model": model,
        "data": data_cfg,
        "methods": [
            {
                "label": m.label,
                "method": m.method,
                "params": m.params,
                "seed": m.seed,
                "group": m.group,
            }
            for m in methods
        ],
        "metrics": [
            {"label": m.label, "metric": m.metric, "params": m.params, "map": m.map}
            for m in metrics + similarity
        ],
    }
    if contrast is not None:  # only then: the hashes of benchmarks without one are unchanged
        normalised["contrast"] = contrast
    return Plan(name, model, data_cfg, methods, metrics, similarity, normalised, contrast)


def load_plan(
    path: str | Path,
    data: str | Path | None = None,
    base: str | Path | None = None,
    *,
    allow_code: bool = False,
) -> Plan:
    """Read and check a TOML benchmark file (see the module docstring).

    Relative data paths are resolved against ``base`` (default: the file's folder); code
    (a ``"module:function"`` model, TorchScript removals) is refused unless ``allow_code``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CONFIG: no such file {str(path)!r}")
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"CONFIG: {path} is not valid TOML ({exc})") from None
    config.setdefault("name", path.stem)
    return parse_plan(
        config, base=path.parent if base is None else base, data=data, allow_code=allow_code
    )
