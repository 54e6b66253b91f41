"""Where a benchmark's units are computed: this process, or a Ray cluster.

An executor has ``start(plan, threads)`` (load the model, check every explainer and metric),
``run(tasks)`` (an iterator of :class:`~unmask.bench.store.UnitRecord`, in any order) and
``close()``. The driver writes what ``run`` yields into the store, so results of every executor
flow into one file through one writer.

* :class:`LocalExecutor` (default, no extra dependency): one :class:`~unmask.bench.worker.Worker`
  in this process, units in order.
* :class:`RayExecutor` (``pip install "unmask[ray]"``): ``workers`` Ray actors, each loading the
  model once; up to two units in flight per actor. An actor whose process dies is restarted by
  Ray (``max_restarts=-1``) and its units are retried (``max_task_retries=2``); a unit whose
  worker died three times is stored as failed (a unit that kills every worker does not loop
  forever). With no ``address``, a local Ray cluster with ``workers`` CPUs is started (and
  stopped at ``close``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from .spec import Plan
from .store import UnitRecord
from .worker import Worker

__all__ = ["LocalExecutor", "RayExecutor", "make_executor", "EXECUTORS"]

EXECUTORS = ("local", "ray")

#: Ray retries of a unit whose worker died (then the unit is stored as failed).
RETRIES = 2


class LocalExecutor:
    """Units one after another in this process."""

    name = "local"

    def start(self, plan: Plan, threads: int | None = None) -> None:
        self.worker = Worker(plan, threads)
        self.worker.check()

    def run(self, tasks: Sequence[tuple[str, str]]) -> Iterator[UnitRecord]:
        for file, label in tasks:
            yield self.worker.compute(file, label)

    def close(self) -> None:
        pass


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError(
            '--executor ray: Ray is not installed; pip install "unmask[ray]" '
            '(or "ray[default]"), or use --executor local'
        ) from None
    return ray


class RayExecutor:
    """Units spread over Ray actors (one model per actor); see the module docstring.

    Args:
        workers: number of actors (each takes one CPU).
        address: a running cluster's address (``"auto"``, ``"ray://host:10001"``...); None
            starts a local cluster.
    """

    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"--workers: expected a positive integer, got {workers!r}")
        self.ray = _import_ray()
        self.workers, self.address = workers, address
        self.actors: list[Any] = []
        self._started_cluster = False

    def start(self, plan: Plan, threads: int | None = None) -> None:
        Worker(plan, threads).check()  # bad values fail here, before the cluster starts
        ray = self.ray
        if not ray.is_initialized():
            src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            saved = os.environ.get("PYTHONPATH")
            if self.address is None:
                kwargs["num_cpus"] = self.workers
                os.environ["PYTHONPATH"] = path  # the local cluster's workers import this unmask
            else:
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
            try:
                ray.init(address=self.address, **kwargs)
            finally:
                if saved is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = saved
            self._started_cluster = True

        class _Actor:
            def __init__(self, plan: Plan, threads: int | None) -> None:
                self.worker = Worker(plan, threads or 1)

            def pid(self) -> int:
                return os.getpid()

            def compute(self, file: str, label: str) -> UnitRecord:
                return self.worker.compute(file, label)

        actor: Any = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=RETRIES)(_Actor)
        self.actors = [actor.remote(plan, threads) for _ in range(self.workers)]
        self.pids = ray.get([a.pid.remote() for a in self.actors])  # waits for the models

    def run(self, tasks: Sequence[tuple[str, str]]) -> Iterator[UnitRecord]:
        ray = self.ray
        queue = deque(tasks)
        pending: dict[Any, tuple[int, tuple[str, str]]] = {}

        def submit(i: int) -> None:
            if queue:
                task = queue.popleft()
                pending[self.actors[i].compute.remote(*task)] = (i, task)

        for i in range(len(self.actors)):
            submit(i)
            submit(i)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, task = pending.pop(ready[0])
            try:
                unit = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                text = str(exc).strip()
                message = text.splitlines()[0] if text else type(exc).__name__
                unit = UnitRecord(
                    task[0],
                    task[1],
                    "failed",
                    error=f"the Ray worker died {RETRIES + 1} times on this unit ({message})",
                )
            yield unit
            submit(i)

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # an actor already gone
                pass
        self.actors = []
        if self._started_cluster and self.ray.is_initialized():
            self.ray.shutdown()
            self._started_cluster = False


def make_executor(name: Any, workers: int = 1, address: str | None = None) -> Any:
    """An executor by name (``"local"`` or ``"ray"``); an executor object is returned as is."""
    if not isinstance(name, str):
        return name
    if name == "local":
        if address is not None:
            raise ValueError("--address: only with --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(workers, address)
    raise ValueError(
        f"--executor: unknown executor {name!r}; expected one of: {', '.join(EXECUTORS)}"
    )
