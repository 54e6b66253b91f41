"""Job planners: a job request, checked, becomes a result key and the function that computes it.

:func:`plan` checks a request before anything is queued (names, parameters and bounds through
:mod:`unmask.serve.validate`; targets against the model; the estimated time against the limit,
:mod:`unmask.serve.costs`) and returns its result key (:func:`unmask.explanation.result_key`:
the same request is answered from the cache) and ``run(progress)``, which computes the result
on a worker thread, stores its maps in the :class:`~unmask.serve.results.ResultStore` and
returns its JSON. The four kinds:

- ``explain``: one map with any registered method (:func:`unmask.make_explainer`);
- ``cwox``: :class:`unmask.contrastive.CWOX` with CWOX's per-stage presets;
- ``metrics``: :func:`unmask.metrics.evaluate` on a stored map (shared curves computed once);
- ``removal``: what a removal does to the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .._limits import batch_bytes, check_memory, largest_batch
from ..api import make_explainer
from ..contrastive import CWOX, CWOX_BASES
from ..contrastive.cwox import DEFAULT_DELTA
from ..explanation import image_digest, result_key, target_json
from ..metrics import evaluate
from ..metrics.deletion import Curve
from ..models import Classifier
from ..params import params_of
from ..registry import METHODS, METRICS, spec_of, to_json
from ..removal import bind, make_removal
from . import validate
from .costs import check_seconds
from .jobs import Progress
from .results import StoredResult, map_info
from .schemas import CwoxJob, ExplainJob, MetricsJob, RemovalJob
from .state import Served, short

__all__ = ["plan", "Run", "METRIC_KINDS_SERVED", "HIDDEN_REMOVALS"]

#: Metric kinds the metrics job can run: they need only the model, the image, the map, a target.
METRIC_KINDS_SERVED = ("faithfulness", "map")

#: Removals the page does not offer (a TorchScript inpainter needs a file path: never from a
#: client).
HIDDEN_REMOVALS = ("torchscript",)

#: A job's computation: ``run(progress) -> the result's JSON``.
Run = Callable[[Progress], dict[str, Any]]

_CUT = 1000  # progress units per CWOX stage


def plan(state: Served, body: ExplainJob | CwoxJob | MetricsJob | RemovalJob) -> tuple[str, Run]:
    """Check a job request; returns (its result key, the function computing it).

    Raises:
        ValueError: a field is not allowed (one line naming it).
        TooCostly: the job's estimated time is above the limit (a ValueError).
        LookupError: the image or the source result is not stored.
    """
    name, model = state.model(body.model)
    x = state.input(body.image_id, model)
    digest = image_digest(x[0])
    with state.memory():  # every check of a batch's memory against one job's
        if isinstance(body, ExplainJob):
            return _plan_explain(state, body, name, model, x, digest)
        if isinstance(body, CwoxJob):
            return _plan_cwox(state, body, name, model, x, digest)
        if isinstance(body, MetricsJob):
            return _plan_metrics(state, body, name, model, x, digest)
        return _plan_removal(state, body, name, model, x, digest)


# ---------------------------------------------------------------------- shared checks
def _names(model: Classifier, classes: Sequence[int]) -> list[str]:
    return [model.class_names[c] for c in classes]


def _target_arg(target: int | list[int]) -> int | set[int]:
    """A JSON target (a class or a list of classes) as the explainers take it for one image."""
    return set(target) if isinstance(target, list) else target


def _check_target(
    target: int | list[int], model: Classifier, name: str = "target"
) -> int | list[int]:
    classes = target if isinstance(target, list) else [target]
    if isinstance(target, list) and not target:
        raise ValueError(f"{name}: expected a class or a non-empty list of classes, got []")
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int):
            raise ValueError(f"{name}: expected class indices (integers), got {c!r}")
        if not 0 <= c < model.num_classes:
            raise ValueError(
                f"{name}: class {c} is outside [0, {model.num_classes}) for this model"
            )
    if isinstance(target, list):
        if len(set(target)) != len(target):
            raise ValueError(f"{name}: a class appears twice in {target}")
        return sorted(target)
    return target


def _method_params(
    name: str, params: dict[str, Any], size: int, model: Classifier
) -> tuple[str, dict[str, Any]]:
    spec = dict(validate.method_spec(name, params, size=size, model=model))
    method = METHODS.get(spec.pop("method", name)).name
    return method, _fit_batch(method, spec, size, model)


def _fit_batch(method: str, params: dict[str, Any], size: int, model: Classifier) -> dict[str, Any]:
    """``params`` with a ``batch_size`` that one job's memory holds (run under
    :meth:`Served.memory`): a method's default lowered to the largest batch that fits when the
    client leaves it (a forward and backward pass of EfficientNet-Lite0 keeps about 90 MB of
    activations per image: its default 16 would take 1.5 GB), a larger one the client gives
    refused. ``batch_size`` changes how a result is computed, never what it is (it is not part
    of the result key)."""
    entry = METHODS.get(method)
    declared = params_of(entry).get("batch_size")
    n = params.get("batch_size", declared.default if declared is not None else None)
    if isinstance(n, bool) or not isinstance(n, int):  # no batch size, or "auto" (fits itself)
        return params
    grad = entry.passes == "autograd"
    if "batch_size" in params:
        check_memory(
            batch_bytes(n, 3, size, size, model.input_size, grad=grad),
            "params.batch_size",
            f"a batch of {n} images of {size}x{size}{' with gradients' if grad else ''}",
        )
        return params
    fit = largest_batch(n, batch_bytes(1, 3, size, size, model.input_size, grad=grad))
    return params if fit == n else {**params, "batch_size": fit}


def _with_progress(
    method: str, params: dict[str, Any], progress: Callable[[int, int], None] | None
) -> dict[str, Any]:
    if progress is not None and METHODS.get(method).accepts("progress"):
        return {**params, "progress": progress}
    return dict(params)


def _evaluations(method: str, params: dict[str, Any], x: torch.Tensor, model: Classifier) -> int:
    """Model evaluations of one explanation: the method's declared cost (at least one pass)."""
    return validate.evaluations(method, params, size=x.shape[-1], model=model) or 1


def _check_time(
    state: Served, name: str, method: str | None, evaluations: int, field: str, what: str = ""
) -> float:
    """The job's estimated seconds; :class:`~unmask.serve.costs.TooCostly` above the limit."""
    return check_seconds(
        evaluations,
        state.model_time(name),
        state.max_seconds,
        # a method's declared passes: forward only (timed by the forward pass) or with backward
        gradients=method is not None and METHODS.get(method).passes == "autograd",
        field=field,
        what=what,
    )


# ---------------------------------------------------------------------- explain
def _plan_explain(
    state: Served, body: ExplainJob, name: str, model: Classifier, x: torch.Tensor, digest: str
) -> tuple[str, Run]:
    method, params = _method_params(body.method, body.params, x.shape[-1], model)
    if body.target is None:
        target: int | list[int] = int(state.probabilities(body.image_id, name).argmax())
    else:
        target = _check_target(body.target, model)
    spec = spec_of(make_explainer(model, method, seed=body.seed, **params))
    _check_time(state, name, method, _evaluations(method, params, x, model), "params")
    key = result_key(spec, name, digest, target)

    def run(progress: Progress) -> dict[str, Any]:
        progress(0, 1)
        with state.use(name, progress) as tick:
            explainer = make_explainer(
                model, method, seed=body.seed, **_with_progress(method, params, tick)
            )
            e = explainer.explain(x, [_target_arg(target)])
        saliency = e.saliency[0, 0].detach().float().cpu().numpy()
        probs = state.probabilities(body.image_id, name)
        classes = target if isinstance(target, list) else [target]
        data = {
            "kind": "explain",
            "key": key,
            "model": name,
            "image_id": body.image_id,
            "image_digest": digest,
            "spec": to_json(e.spec),
            "target": target_json(e.target[0]),
            "target_names": _names(model, classes),
            "probability": float(probs[classes].sum()),
            "maps": [map_info(key, "saliency", saliency, target=target)],
        }
        state.results.put(StoredResult(key, data, {"saliency": saliency}, {"saliency": target}))
        progress(1, 1)
        return data

    return key, run


# ---------------------------------------------------------------------- cwox
def _cwox_stage_params(
    layer_table: dict[str, list[str | None]], method: str, user: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (cluster, class) stage hyperparameters: CWOX's preset, then the user's.

    ``layer_table``: the model's stage layers by base (:attr:`Served.cwox_layers`, found once
    when the app starts: a request never runs a served model, which a job may hold)."""
    base = CWOX_BASES.get(method)
    if base is None:
        return dict(user), dict(user)
    stages = []
    layers = layer_table[base.layers] if base.layers is not None else (None, None)
    for params, layer in ((base.cluster, layers[0]), (base.classes, layers[1])):
        p = dict(params)
        if layer is not None:
            p["layer"] = layer
        p.update(user)
        stages.append(p)
    return stages[0], stages[1]


def _stage_progress(
    progress: Callable[[int, int], None], stage: int, stages: int
) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        frac = done / total if total else 1.0
        progress(stage * _CUT + round(_CUT * frac), stages * _CUT)

    return report


def _plan_cwox(
    state: Served, body: CwoxJob, name: str, model: Classifier, x: torch.Tensor, digest: str
) -> tuple[str, Run]:
    method, params = _method_params(body.method, body.params, x.shape[-1], model)
    clusters = [list(cl) for cl in body.clusters]
    if not clusters or any(not cl for cl in clusters):
        raise ValueError("clusters: expected a non-empty list of non-empty clusters")
    flat = [c for cl in clusters for c in cl]
    _check_target(flat, model, "clusters")
    base = CWOX_BASES.get(method)
    delta = body.delta if body.delta is not None else (base.delta if base else DEFAULT_DELTA)
    if not np.isfinite(delta) or not 0 <= delta <= 100:
        raise ValueError(f"delta: expected a percentile in [0, 100], got {body.delta!r}")
    negative = body.negative or (base.negative if base else "clamp")
    rescale = base.rescale if base else "none"
    cluster_params, class_params = (
        _fit_batch(method, p, x.shape[-1], model)
        for p in _cwox_stage_params(state.cwox_layers[name], method, params)
    )
    for p in (cluster_params, class_params):
        validate.method_spec(method, p, size=x.shape[-1], model=model)
    specs = [
        spec_of(make_explainer(model, method, seed=body.seed, **p))
        for p in (cluster_params, class_params)
    ]
    spec = {
        "method": "cwox-2s",
        "cluster_explainer": specs[0],
        "class_explainer": specs[1],
        "delta": float(delta),
        "negative": negative,
        "rescale": rescale,
        "clusters": clusters,
    }
    key = result_key(spec, name, digest, flat)
    same = specs[0] == specs[1]
    stages = 1 if same or all(len(cl) == 1 for cl in clusters) else 2
    # one base explanation per cluster, then one per class of each cluster of two or more
    members = sum(len(cl) for cl in clusters if len(cl) > 1)
    cost = len(clusters) * _evaluations(method, cluster_params, x, model) + members * _evaluations(
        method, class_params, x, model
    )
    _check_time(state, name, method, cost, "clusters", f"{len(clusters)} clusters")
    # a base without explain_each (the CAMs, MWP) explains (image, class) pairs in batches of
    # copies of the image: as many as one job's memory holds
    grad = METHODS.get(method).passes == "autograd"
    side = (int(x.shape[-2]), int(x.shape[-1]))
    pairs = largest_batch(16, batch_bytes(1, 3, *side, model_size=model.input_size, grad=grad))

    def run(progress: Progress) -> dict[str, Any]:
        progress(0, stages * _CUT)
        with state.use(name, progress) as tick:
            cluster_exp = make_explainer(
                model,
                method,
                seed=body.seed,
                **_with_progress(method, cluster_params, _stage_progress(tick, 0, stages)),
            )
            class_exp = (
                cluster_exp
                if same
                else make_explainer(
                    model,
                    method,
                    seed=body.seed,
                    **_with_progress(
                        method, class_params, _stage_progress(tick, stages - 1, stages)
                    ),
                )
            )
            e = CWOX(
                model,
                cluster_exp,
                class_exp,
                delta=delta,
                negative=negative,
                rescale=rescale,
                seed=body.seed,
                batch_size=pairs,
            ).explain(x, clusters)
        data, maps, targets = _cwox_json(e, key, name, body.image_id, model)
        data["image_digest"] = digest
        state.results.put(StoredResult(key, data, maps, targets))
        progress(stages * _CUT, stages * _CUT)
        return data

    return key, run


def _cwox_json(
    e: Any, key: str, name: str, image_id: str, model: Classifier
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    maps: dict[str, np.ndarray] = {}
    targets: dict[str, Any] = {}
    rows = []
    summary = e.summary(model.class_names)
    for i, members in enumerate(e.clusters[0]):
        label = f"cluster{i + 1}"
        h = e.cluster_maps[0][i].detach().float().cpu().numpy()
        maps[label] = h
        targets[label] = members if len(members) > 1 else members[0]
        info = summary["images"][0]["clusters"][i]
        row: dict[str, Any] = {
            "index": i + 1,
            "classes": members,
            "names": _names(model, members),
            "probability": info["probability"],
            "class_probabilities": info["class_probabilities"],
            "threshold": info["threshold"],
            "map": map_info(key, label, h, target=targets[label]),
            "members": [],
        }
        class_maps = e.class_maps[0][i]
        if class_maps is not None:
            s = e.class_base[0][i].double()
            raw = (len(members) * s - s.sum(0, keepdim=True)).clamp(min=0).float().numpy()
            for k, c in enumerate(members):
                cname, rname = f"{label}_{c}", f"{label}_{c}_raw"
                maps[cname] = class_maps[k].detach().float().cpu().numpy()
                maps[rname] = raw[k]
                targets[cname] = targets[rname] = c
                row["members"].append(
                    {
                        "class": c,
                        "name": model.class_names[c],
                        "probability": info["class_probabilities"][k],
                        "map": map_info(key, cname, maps[cname], target=c),
                        "raw": map_info(key, rname, raw[k], target=c),
                    }
                )
        rows.append(row)
    data = {
        "kind": "cwox",
        "key": key,
        "model": name,
        "image_id": image_id,
        "delta": e.delta,
        "negative": e.negative,
        "cluster_explainer": summary["cluster_explainer"],
        "class_explainer": summary["class_explainer"],
        "clusters": e.clusters[0],
        "rows": rows,
        "summary": summary,
        "maps": [map_info(key, n, v, target=targets[n]) for n, v in maps.items()],
    }
    return data, maps, targets


# ---------------------------------------------------------------------- metrics
def _metric_items(items: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append((item, {}))
            continue
        extra = sorted(set(item) - {"name", "params"})
        if "name" not in item or extra or not isinstance(item.get("params", {}), dict):
            raise ValueError(
                f"metrics[{i}]: expected a name or {{'name': ..., 'params': {{...}}}}, "
                f"got {short(item, 120)}"
            )
        out.append((str(item["name"]), dict(item.get("params", {}))))
    if not out:
        raise ValueError("metrics: expected at least one metric")
    return out


def _curve_json(curve: Curve) -> dict[str, Any]:
    return {
        "mode": curve.mode,
        "fractions": curve.fractions.tolist(),
        "scores": curve.scores[0].double().tolist(),
        "auc": float(curve.auc()[0]),
    }


def _plan_metrics(
    state: Served, body: MetricsJob, name: str, model: Classifier, x: torch.Tensor, digest: str
) -> tuple[str, Run]:
    source = state.source(body.result)
    if not source.targets:
        raise ValueError(
            "result: expected an explain or cwox result (this one has no maps with a target)"
        )
    map_name = body.map or next(iter(source.targets))
    if map_name not in source.maps or map_name not in source.targets:
        raise ValueError(
            f"map: expected one of {', '.join(source.targets)}, got {short(map_name, 120)}"
        )
    if source.data.get("image_digest") != digest or source.data.get("model") != name:
        raise ValueError("result: the result is of another image or model")
    target = source.targets[map_name]
    removal = validate.removal_spec(body.removal) if body.removal is not None else None
    built: dict[str, Any] = {}
    specs = []
    cost = 0
    for label, params in _metric_items(body.metrics):
        spec = dict(validate.metric_spec(label, params, size=x.shape[-1]))
        entry = METRICS.get(spec.pop("metric", label))
        if entry.kind not in METRIC_KINDS_SERVED:
            raise ValueError(
                f"metrics: {entry.name!r} is a {entry.kind!r} metric; this API "
                f"runs metrics of the kinds {', '.join(METRIC_KINDS_SERVED)}"
            )
        if entry.name in built:
            raise ValueError(f"metrics: {entry.name!r} is given twice")
        if removal is not None and entry.accepts("removal") and "removal" not in spec:
            spec["removal"] = removal
        built[entry.name] = entry.build(**spec)
        specs.append({"metric": entry.name, **to_json(spec)})
        cost += validate.evaluations(entry.name, spec, size=x.shape[-1], metric=True) or 1
    _check_time(state, name, None, cost, "metrics")
    key = result_key(
        {"method": "metrics", "metrics": specs, "source": source.key, "map": map_name},
        name,
        digest,
        target,
    )
    saliency = torch.from_numpy(source.maps[map_name]).float()[None, None]

    def run(progress: Progress) -> dict[str, Any]:
        shared: dict[str, Any] = {}
        progress(0, len(built))
        with state.use(name, progress) as tick:
            out = evaluate(
                model,
                x,
                saliency,
                built,
                target=[_target_arg(target)],
                progress=tick,
                shared=shared,
            )
        data = {
            "kind": "metrics",
            "key": key,
            "model": name,
            "image_id": body.image_id,
            "image_digest": digest,
            "source": source.key,
            "map": map_name,
            "target": target,
            "metrics": specs,
            "values": {label: float(v[0]) for label, v in out.items()},
            "curves": {
                label: _curve_json(c) for label, c in shared.items() if isinstance(c, Curve)
            },
            "higher_is_better": {
                m: getattr(obj, "higher_is_better", None) for m, obj in built.items()
            },
        }
        state.results.put(StoredResult(key, data, {}, {}))
        return data

    return key, run


# ---------------------------------------------------------------------- removal
def _plan_removal(
    state: Served, body: RemovalJob, name: str, model: Classifier, x: torch.Tensor, digest: str
) -> tuple[str, Run]:
    spec = validate.removal_spec(body.removal)
    if spec.partition(":")[0].strip().lower() in HIDDEN_REMOVALS:
        raise ValueError(f"removal: {spec!r} is not offered by the explorer")
    removal = make_removal(spec)
    side = x.shape[-1]
    if body.result is not None:
        source = state.source(body.result)
        if source.data.get("image_digest") != digest:
            raise ValueError("result: the result is of another image")
        usable = [n for n, v in source.maps.items() if v.ndim == 2]
        if not usable:
            raise ValueError("result: expected a result with maps (explain or cwox)")
        map_name = body.map or usable[0]
        if map_name not in usable:
            raise ValueError(
                f"map: expected one of {', '.join(usable)}, got {short(map_name, 120)}"
            )
        values = torch.from_numpy(source.maps[map_name]).float()[None, None]
        if tuple(values.shape[-2:]) != tuple(x.shape[-2:]):
            values = torch.nn.functional.interpolate(
                values, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False
            )
        flat = values.flatten()
        n = max(1, round(body.fraction * flat.numel()))
        mask = torch.zeros_like(flat)
        mask[flat.argsort(descending=True)[:n]] = 1.0
        mask = mask.reshape(1, 1, *x.shape[-2:])
        what: dict[str, Any] = {"source": source.key, "map": map_name, "fraction": body.fraction}
    else:
        mask = torch.zeros(1, 1, *x.shape[-2:])
        lo, hi = side // 4, side - side // 4
        mask[..., lo:hi, lo:hi] = 1.0
        what = {"source": None, "map": "centre square", "fraction": 0.25}
    key = result_key({"method": "removal", "removal": spec, **what}, name, digest, None)

    def run(progress: Progress) -> dict[str, Any]:
        progress(0, 1)
        with torch.no_grad():
            out = bind(removal, x)(mask)
        removed = out[0].permute(1, 2, 0).clamp(0, 1).float().cpu().numpy()
        maps = {"removed": removed, "mask": mask[0, 0].numpy()}
        data = {
            "kind": "removal",
            "key": key,
            "model": name,
            "image_id": body.image_id,
            "image_digest": digest,
            "removal": spec,
            **what,
            "maps": [map_info(key, n, v) for n, v in maps.items()],
        }
        state.results.put(StoredResult(key, data, maps, {}))
        progress(1, 1)
        return data

    return key, run
