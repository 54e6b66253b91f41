"""Background jobs: a bounded queue of computations on worker threads, with progress,
cancellation and a cache of results by key.

A job is what a client asked for; a computation is the work behind it. Two jobs with the same
key, both pending, share one computation; a key whose result is cached gives a job that is done
at once. A computation runs ``fn(progress)``: ``progress(done, total)`` records how far it got
and raises :class:`Cancelled` once every job waiting for it was cancelled, so that a cancel lands
at the next progress tick (unmask's explainers and metrics take the callback as their
``progress=`` argument); ``progress.check()`` does the same without reporting anything, for
cancellation points that are not progress (the explorer checks before every forward pass of
the model). A computation's exception fails its jobs with a one-line message;
the traceback goes to the ``unmask.serve`` log, never to the client.

Results are shared between the jobs of one key and the cache: treat them as read-only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "QueueFull",
    "Cancelled",
    "TimeLimit",
    "Progress",
    "Job",
    "JobQueue",
    "STATUSES",
    "MAX_WORKERS",
    "MAX_PENDING",
    "error_message",
    "release_memory",
    "map_large_buffers",
]

log = logging.getLogger("unmask.serve")

#: A job's states; the last three are final.
STATUSES = ("queued", "running", "done", "failed", "cancelled")
_FINAL = ("done", "failed", "cancelled")
_MAX_MESSAGE = 500
#: The most worker threads, and the most computations queued or running, of one queue (each
#: model runs one job at a time: more workers than models only wait).
MAX_WORKERS = 64
MAX_PENDING = 10_000


#: glibc's ``mallopt`` parameter: allocations from this size on are mapped, and unmapped when
#: freed (glibc otherwise raises the threshold to the largest buffer freed, up to 32 MiB).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1024**2


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_memory() -> None:
    """Give the heap memory a finished computation freed back to the system (glibc's
    ``malloc_trim``; nothing elsewhere), so that the server's RSS returns to its idle level
    after heavy jobs instead of staying at their peak."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def map_large_buffers() -> bool:
    """Make every allocation of 1 MiB or more its own memory mapping, returned to the system
    when freed (glibc's ``M_MMAP_THRESHOLD``; process-wide, so ``unmask serve`` calls it, not
    :func:`~unmask.serve.create_app`). Without it, buffers of decoded uploads and batches stay
    in the heap and the server's RSS stays near its peak. Returns whether it applied."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))


class QueueFull(RuntimeError):
    """The queue holds its maximum of pending computations (HTTP 429)."""


class Cancelled(Exception):
    """Raised inside a computation's progress callback once its jobs were cancelled."""


class TimeLimit(RuntimeError):
    """A computation ran longer than the time one job may take (its jobs fail with this
    message)."""


class Progress:
    """What a computation's ``fn(progress)`` receives: ``progress(done, total)`` records how far
    it got, ``progress.check()`` only checks; both raise :class:`Cancelled` once every job
    waiting for the computation was cancelled."""

    def __init__(self, queue: JobQueue, comp: _Computation) -> None:
        self._queue, self._comp = queue, comp

    def __call__(self, done: int, total: int) -> None:
        self._queue._tick(self._comp, (int(done), int(total)))

    def check(self) -> None:
        """Raise :class:`Cancelled` if no job waits for this computation any more."""
        self._queue._tick(self._comp, None)


def error_message(exc: BaseException) -> str:
    """The one line a client sees for a failed computation.

    ``ValueError`` and ``TypeError`` (unmask's checks of user input, which name the argument)
    as they are; any other exception as ``"TypeName: message"``.

    Example:
        >>> error_message(ValueError("steps: expected at most 10, got 11"))
        'steps: expected at most 10, got 11'
        >>> error_message(RuntimeError("out of memory\\nat line 3"))
        'RuntimeError: out of memory at line 3'
    """
    text = " ".join(str(exc).split())
    if not isinstance(exc, ValueError | TypeError | TimeLimit) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


@dataclass(eq=False)
class Job:
    """One request for a computation, and how it stands.

    Attributes:
        id: a random hex id (unguessable).
        kind: what was asked (``"explain"``, ``"metrics"``...), chosen by the caller.
        key: the cache key (None: never cached nor shared).
        status: ``"queued"``, ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``.
        done, total: progress, as the computation last reported it.
        result: the computation's result when done (shared: read-only).
        error: the one-line message when failed.
        cached: the result came from the cache, or from a computation another job started.
    """

    id: str
    kind: str
    key: str | None
    status: str = "queued"
    done: int = 0
    total: int = 0
    result: Any = None
    error: str | None = None
    cached: bool = False
    _lock: Any = field(default=None, repr=False)
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the job reached a final status."""
        return self.status in _FINAL

    def to_json(self) -> dict[str, Any]:
        """``{id, kind, key, status, progress: {done, total}, error, cached}`` (no result)."""
        lock = self._lock or _NO_LOCK
        with lock:
            return {
                "id": self.id,
                "kind": self.kind,
                "key": self.key,
                "status": self.status,
                "progress": {"done": self.done, "total": self.total},
                "error": self.error,
                "cached": self.cached,
            }


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


@dataclass(eq=False)
class _Computation:
    fn: Callable[[Progress], Any]
    key: str | None
    jobs: list[Job]
    running: bool = False

    def live(self) -> list[Job]:
        return [j for j in self.jobs if j.status not in _FINAL]


class JobQueue:
    """Computations on worker threads, bounded, cancellable, cached by key.

    Args:
        workers: worker threads (computations run at once).
        max_pending: computations queued or running at most; :meth:`submit` raises
            :class:`QueueFull` beyond (jobs served by the cache or sharing a computation do not
            count).
        cache_size: results kept by key (least recently used dropped).
        max_jobs: finished jobs remembered for :meth:`get` (oldest forgotten).

    Example:
        >>> queue = JobQueue(workers=1)
        >>> job = queue.submit("square", lambda progress: 7 * 7, key="7")
        >>> queue.wait(job.id, timeout=10).result
        49
        >>> queue.submit("square", lambda progress: 0, key="7").cached  # from the cache
        True
        >>> queue.close()
    """

    def __init__(
        self, *, workers: int = 1, max_pending: int = 8, cache_size: int = 128, max_jobs: int = 1024
    ) -> None:
        for name, value, low, high in (
            ("workers", workers, 1, MAX_WORKERS),
            ("max_pending", max_pending, 1, MAX_PENDING),
            ("cache_size", cache_size, 0, None),
            ("max_jobs", max_jobs, 1, None),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
            if high is not None and value > high:
                raise ValueError(f"{name}: expected an int in [{low}, {high:,}], got {value:,}")
        self.max_pending = max_pending
        self.cache_size = cache_size
        self.max_jobs = max_jobs
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Computation] = deque()
        self._running: set[_Computation] = set()
        self._by_key: dict[str, _Computation] = {}
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"unmask-job-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # --- the client's side ---------------------------------------------------------------------

    def submit(self, kind: str, fn: Callable[[Progress], Any], key: str | None = None) -> Job:
        """Run ``fn(progress)`` on a worker thread (see the module docstring).

        Returns:
            The job, ``"queued"`` (or already ``"done"`` with ``cached=True`` from the cache).

        Raises:
            QueueFull: ``max_pending`` computations are queued or running.
        """
        if not callable(fn):
            raise TypeError(f"fn: expected a callable fn(progress), got {type(fn).__name__}")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key: expected a str or None, got {type(key).__name__}")
        with self._lock:
            if self._closed:
                raise RuntimeError("JobQueue: closed")
            job = Job(uuid.uuid4().hex, str(kind), key, _lock=self._lock)
            if key is not None and key in self._cache:
                self._cache.move_to_end(key)
                job.result, job.cached, job.status = self._cache[key], True, "done"
                job._finished.set()
            elif key is not None and key in self._by_key:
                comp = self._by_key[key]
                first = comp.live()[0] if comp.live() else None
                job.cached = True
                if first is not None:
                    job.status, job.done, job.total = first.status, first.done, first.total
                comp.jobs.append(job)
            else:
                pending = len(self._queue) + len(self._running)
                if pending >= self.max_pending:
                    raise QueueFull(
                        f"queue: {pending} computations are pending, the most this "
                        "server runs at once; try again when one has finished"
                    )
                comp = _Computation(fn, key, [job])
                self._queue.append(comp)
                if key is not None:
                    self._by_key[key] = comp
                self._wake.notify()
            self._remember(job)
            return job

    def get(self, job_id: str) -> Job:
        """The job ``job_id`` (KeyError for an unknown id)."""
        with self._lock:
            if not isinstance(job_id, str) or job_id not in self._jobs:
                shown = repr(job_id)[:80]
                raise KeyError(f"job: unknown job {shown}")
            return self._jobs[job_id]

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once if it is queued; a running computation stops at its next
        progress tick once none of its jobs is waiting for it. A finished job is unchanged."""
        with self._lock:
            job = self.get(job_id)
            if job.finished:
                return job
            self._finish(job, "cancelled")
            for comp in [*self._queue]:
                if job in comp.jobs and not comp.live():
                    self._queue.remove(comp)
                    self._forget(comp)
            return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is finished (or ``timeout`` seconds passed); returns it."""
        job = self.get(job_id)
        job._finished.wait(timeout)
        return job

    def stats(self) -> dict[str, int]:
        """Counts: queued and running computations, cached results, remembered jobs."""
        with self._lock:
            return {
                "queued": len(self._queue),
                "running": len(self._running),
                "cached": len(self._cache),
                "jobs": len(self._jobs),
            }

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the workers: queued jobs are cancelled, running ones at their next progress
        tick; waits up to ``timeout`` seconds per worker."""
        with self._lock:
            self._closed = True
            for comp in [*self._queue, *self._running]:
                for job in comp.live():
                    self._finish(job, "cancelled")
            self._queue.clear()
            self._wake.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the workers' side ---------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                comp = self._queue.popleft()
                comp.running = True
                self._running.add(comp)
                for job in comp.live():
                    job.status = "running"
            self._run(comp)

    def _tick(self, comp: _Computation, done_total: tuple[int, int] | None) -> None:
        with self._lock:
            live = comp.live()
            if not live:
                self._forget(comp)  # a new job of this key starts its own computation
                raise Cancelled("every job of this computation was cancelled")
            if done_total is not None:
                for job in live:
                    job.done, job.total = done_total

    def _run(self, comp: _Computation) -> None:
        try:
            self._compute(comp)
        finally:
            release_memory()

    def _compute(self, comp: _Computation) -> None:
        try:
            result = comp.fn(Progress(self, comp))
        except Cancelled:
            with self._lock:
                for job in comp.live():  # a computation cancelled by its own fn
                    self._finish(job, "cancelled")
                self._end(comp)
            return
        except BaseException as exc:  # noqa: BLE001 -- one line to the client, the rest to the
            # log; even SystemExit or KeyboardInterrupt in fn must not kill the worker thread
            message = error_message(exc)
            if not isinstance(exc, ValueError | TypeError | TimeLimit):
                log.warning("job failed: %s", message, exc_info=exc)
            with self._lock:
                for job in comp.live():
                    job.error = message
                    self._finish(job, "failed")
                self._end(comp)
            return
        with self._lock:
            if comp.key is not None and self.cache_size:
                self._cache[comp.key] = result
                self._cache.move_to_end(comp.key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            for job in comp.live():
                job.result = result
                if job.total:
                    job.done = job.total
                self._finish(job, "done")
            self._end(comp)

    # --- bookkeeping (under the lock) ----------------------------------------------------------

    def _finish(self, job: Job, status: str) -> None:
        job.status = status
        job._finished.set()

    def _end(self, comp: _Computation) -> None:
        self._running.discard(comp)
        self._forget(comp)

    def _forget(self, comp: _Computation) -> None:
        if comp.key is not None and self._by_key.get(comp.key) is comp:
            del self._by_key[comp.key]

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        if len(self._jobs) > self.max_jobs:
            for old in [j for j in self._jobs.values() if j.finished][
                : len(self._jobs) - self.max_jobs
            ]:
                del self._jobs[old.id]
