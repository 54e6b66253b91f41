"""The unit of a benchmark: :class:`Worker` computes one (image, method run) into a record.

A **unit** is one method run on one image: load the image, pick the target, explain, compute
every metric, return a :class:`~unmask.bench.store.UnitRecord`. Units are independent (each
builds its explainer and metrics afresh from the plan, with the plan's seeds), so the result
of a unit does not depend on the order, the executor or what ran before. A worker is made once
per process (the model is loaded once) by the executors (:mod:`unmask.bench.executors`); the
driver (:func:`unmask.bench.runner.run`) writes what they return.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import torch

from .._types import Target
from ..explanation import image_digest
from ..model_specs import make_model
from ..models import Classifier
from .data import Dataset, Sample, open_dataset
from .maps import relevance_map
from .metrics import build_metric, run_contrastive, run_metrics
from .spec import Plan
from .store import ResultRecord, UnitRecord

__all__ = ["Worker", "load_bench_model", "metric_key"]


def load_bench_model(config: dict[str, Any]) -> Classifier:
    """The model of a plan's ``[model]`` table: its ``name`` is a model spec
    (:func:`unmask.model_specs.make_model`: a load_model name, ``"tv:<arch>"``, or
    ``"module:function"`` returning a Classifier), with its ``device`` and ``weights``."""
    return make_model(config["name"], device=config.get("device"), weights=config.get("weights"))


def metric_key(result_key: str, metric: str, params: dict[str, Any]) -> str:
    """A metric row's key: the explanation's result key + the metric name + its params."""
    from ..registry import EXECUTION_PARAMS

    params = {k: v for k, v in params.items() if k not in EXECUTION_PARAMS}
    payload = {"result": result_key, "metric": metric, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class Worker:
    """Computes units of a plan; loads the model and lists the data set once.

    Args:
        plan: the checked plan.
        threads: torch CPU threads of this process (None: leave as is).
    """

    def __init__(self, plan: Plan, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.plan = plan
        self.model = load_bench_model(plan.model)
        self.dataset: Dataset = open_dataset(plan.data["path"], plan.data.get("kind", "auto"))
        self.items = {i.file: i for i in self.dataset.items}
        self.runs = {m.label: m for m in plan.methods}
        self.size = plan.model.get("size") or (
            self.model.input_size[0] if self.model.input_size else 224
        )
        self._cache: tuple[str, Any] | None = None
        self.contrast = None
        if plan.contrast is not None:
            from .contrast import Contrast

            self.contrast = Contrast(plan.contrast, self.model)

    def _sample(self, file: str) -> tuple[Sample, Any]:
        """The loaded image and its target (the last one is cached: units go image by image)."""
        if self._cache is not None and self._cache[0] == file:
            return self._cache[1]
        item = self.items.get(file)
        if item is None:
            raise ValueError(f"{file}: not in the data set at {self.plan.data['path']}")
        sample = self.dataset.load(item, self.size, self.plan.model.get("fit", "crop"))
        if self.plan.data.get("target", "label") == "top1":
            with torch.no_grad():
                target: Target = int(self.model(sample.x.to(self.model.device)).argmax(1)[0])
        else:
            if item.label is None:
                raise ValueError(f'{file}: no label in the data set (use data.target = "top1")')
            target = list(item.label) if isinstance(item.label, tuple) else item.label
            classes = target if isinstance(target, list) else [target]
            if max(classes) >= self.model.num_classes:
                raise ValueError(
                    f"{file}: label {target} is not a class of the model "
                    f"({self.model.num_classes} classes)"
                )
        self._cache = (file, (sample, target))
        return sample, target

    def check(self) -> None:
        """Build every explainer and metric once (bad values fail before any work starts)."""
        for run in self.plan.methods:
            explainer = run.build(self.model)
            for metric in self.plan.metrics:
                if self.plan.applies(run, metric):
                    build_metric(metric, self.model, getattr(explainer, "representation", None))

    def compute(self, file: str, label: str) -> UnitRecord:
        """One unit: explain ``file`` with the method run ``label`` and score it."""
        run = self.runs[label]
        start = time.perf_counter()
        try:
            sample, target = self._sample(file)
        except Exception as exc:  # unreadable image, missing label: this unit fails, others go on
            return UnitRecord(file, label, "failed", error=str(exc))
        x = sample.x.to(self.model.device)
        metrics = [
            (m, build_metric(m, self.model, None))
            for m in self.plan.metrics
            if self.plan.applies(run, m) and m.kind == "contrastive"
        ]
        try:
            explainer = run.build(self.model)
            clusters = pairs = maps = None
            if self.contrast is not None:
                with torch.no_grad():
                    probs = torch.softmax(self.model(x).double(), 1)[0].cpu()
                clusters = self.contrast.clusters(probs)
                pairs = self.contrast.pairs(clusters)
            if run.method == "cwox":
                from .contrast import cwox_saliency, pair_maps

                assert clusters is not None and pairs is not None
                ce = explainer.explain(x, clusters)
                e = _cwox_explanation(
                    ce,
                    cwox_saliency(ce, clusters, target),
                    target,
                    explainer,
                    clusters,
                    self.model.num_classes,
                )
                maps = pair_maps(explainer, x, pairs, ce) if metrics and pairs else None
            else:
                e = explainer.explain(x, [target])
                if metrics and pairs:
                    from .contrast import pair_maps

                    maps = pair_maps(explainer, x, pairs)
        except Exception as exc:
            return UnitRecord(
                file,
                label,
                "failed",
                image=image_digest(x[0]),
                target=target,
                error=f"{type(exc).__name__}: {exc}",
            )
        key = e.keys(x, self.model)[0]
        x_hat = e.extras.get("image")
        relevance = relevance_map(x, x_hat) if isinstance(x_hat, torch.Tensor) else None
        if x_hat is None and isinstance(e.extras.get("keep_masks"), torch.Tensor):
            from ..metrics.cp import masked_image  # Extremal Perturbations: x̂ = m ⊙ x

            x_hat = masked_image(x, e.extras["keep_masks"][:, :1])
        contrastive = metrics
        metrics = [
            (m, build_metric(m, self.model, getattr(explainer, "representation", None)))
            for m in self.plan.metrics
            if self.plan.applies(run, m) and m.kind != "contrastive"
        ]
        values = run_metrics(
            self.model,
            x,
            e,
            metrics,
            relevance=relevance,
            boxes=sample.boxes,
            mask=sample.mask,
            x_hat=x_hat,
        )
        if maps is not None and pairs is not None:
            values.update(
                run_contrastive(
                    self.model,
                    x,
                    maps,
                    pairs,
                    contrastive,
                    "contrastive" if run.method == "cwox" else "saliency",
                )
            )
        results = []
        for m in self.plan.metrics:
            if m.label not in values:  # not applicable (no boxes, no pairs) or not for this run
                continue
            v = values[m.label]
            params = (
                {**m.params, "contrast": self.plan.contrast}
                if m.kind == "contrastive"
                else m.params
            )
            mk = metric_key(key, m.metric, params)
            if "error" in v:
                results.append(ResultRecord(m.label, mk, "failed", map=v["map"], error=v["error"]))
            else:
                results.append(ResultRecord(m.label, mk, "done", v["value"], v["data"], v["map"]))
        return UnitRecord(
            file,
            label,
            "done",
            key=key,
            image=image_digest(x[0]),
            target=target,
            spec=e.spec,
            seconds=round(time.perf_counter() - start, 4),
            saliency=e.saliency[0, 0].detach().cpu().float().numpy(),
            relevance=None if relevance is None else relevance[0, 0].detach().cpu().numpy(),
            results=results,
        )


def _cwox_explanation(
    ce: Any,
    saliency: torch.Tensor,
    target: Target,
    explainer: Any,
    clusters: list[list[int]],
    num_classes: int,
) -> Any:
    """A CWOX-2s result as the unit's Explanation: the target's cluster map, keyed by CWOX's
    resolved settings and the image's clusters."""
    from .._checks import check_targets
    from ..explanation import Explanation

    t = check_targets([target], 1, num_classes, "target")
    assert t is not None  # a target was given
    params = {**explainer.params, "clusters": [list(c) for c in clusters]}
    return Explanation(saliency, t, "cwox", params, {"clusters": [clusters]})
