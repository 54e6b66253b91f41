"""The job queue: progress, cancellation, the result cache, sharing, bounds, failures, threads.

Every test orders its threads with events (no sleeps, no timing assertions); ``wait`` has a
timeout only so that a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import torch

from unmask.progress import reporter, track
from unmask.serve.jobs import (
    Cancelled,
    Job,
    JobQueue,
    Progress,
    QueueFull,
    TimeLimit,
    error_message,
    map_large_buffers,
    release_memory,
)

T = 20  # seconds: only ever reached when something is broken


@pytest.fixture
def queue() -> Iterator[JobQueue]:
    q = JobQueue(workers=1, max_pending=4, cache_size=8)
    yield q
    q.close()


def _blocking(
    release: threading.Event,
    started: threading.Event | None = None,
    value: object = "ok",
    calls: Counter | None = None,
    key: str = "",
) -> Callable:
    def fn(progress: Callable[[int, int], None]) -> object:
        if calls is not None:
            calls[key] += 1
        if started is not None:
            started.set()
        assert release.wait(T)
        return value

    return fn


def _finished(q: JobQueue, job: Job) -> Job:
    out = q.wait(job.id, timeout=T)
    assert out.finished, f"job still {out.status}"
    return out


def test_runs_and_reports(queue: JobQueue) -> None:
    job = queue.submit("explain", lambda progress: 6 * 7, key="k")
    assert job.status in ("queued", "running", "done")
    job = _finished(queue, job)
    assert (job.status, job.result, job.cached, job.error) == ("done", 42, False, None)
    data = job.to_json()
    assert data == {
        "id": job.id,
        "kind": "explain",
        "key": "k",
        "status": "done",
        "progress": {"done": 0, "total": 0},
        "error": None,
        "cached": False,
    }
    assert "result" not in data and queue.get(job.id) is job
    assert len(job.id) == 32 and job.id != queue.submit("x", lambda p: 1).id


def test_progress_is_visible_while_running(queue: JobQueue) -> None:
    ticked, release = threading.Event(), threading.Event()

    def fn(progress: Callable[[int, int], None]) -> str:
        progress(1, 3)
        ticked.set()
        assert release.wait(T)
        progress(2, 3)
        return "end"

    job = queue.submit("explain", fn)
    assert ticked.wait(T)
    snap = queue.get(job.id).to_json()
    assert snap["status"] == "running" and snap["progress"] == {"done": 1, "total": 3}
    release.set()
    job = _finished(queue, job)
    assert job.status == "done" and (job.done, job.total) == (3, 3)


def test_cancel_queued_never_runs(queue: JobQueue) -> None:
    release, started = threading.Event(), threading.Event()
    calls: Counter = Counter()
    first = queue.submit("a", _blocking(release, started, calls=calls, key="first"))
    assert started.wait(T)
    second = queue.submit("b", _blocking(release, calls=calls, key="second"))
    assert second.status == "queued"
    assert queue.cancel(second.id).status == "cancelled"
    assert queue.stats()["queued"] == 0  # the slot is free at once
    release.set()
    assert _finished(queue, first).status == "done"
    assert queue.wait(second.id, T).status == "cancelled"
    # run one more job through the single worker: the cancelled one was skipped, not run late
    assert _finished(queue, queue.submit("c", lambda p: 1)).result == 1
    assert calls == Counter({"first": 1})


def test_cancel_running_lands_at_next_tick(queue: JobQueue) -> None:
    ticking, seen = threading.Event(), []

    def fn(progress: Callable[[int, int], None]) -> str:
        try:
            for i in range(10_000):
                progress(i, 10_000)
                ticking.set()
                threading.Event().wait(0.001)
        except Cancelled:
            seen.append("cancelled")
            stopped.set()
            raise
        return "finished"  # pragma: no cover - only if cancel failed

    stopped = threading.Event()
    job = queue.submit("explain", fn, key="slow")
    assert ticking.wait(T)
    queue.cancel(job.id)
    job = _finished(queue, job)  # the job is final at once; the computation stops at its tick
    assert job.status == "cancelled" and job.result is None
    assert stopped.wait(T) and seen == ["cancelled"]
    _finished(queue, queue.submit("sync", lambda p: None))  # the worker is free again
    assert queue.stats()["running"] == 0 and queue.stats()["cached"] == 0
    # the same key later computes again (nothing cached, nothing stuck)
    again = _finished(queue, queue.submit("explain", lambda p: "fresh", key="slow"))
    assert (again.result, again.cached) == ("fresh", False)


def test_cancel_finished_is_unchanged(queue: JobQueue) -> None:
    job = _finished(queue, queue.submit("a", lambda p: 5))
    assert queue.cancel(job.id).status == "done" and job.result == 5


def test_cache_hit_does_not_recompute(queue: JobQueue) -> None:
    calls: Counter = Counter()

    def fn(progress: Callable[[int, int], None]) -> list[int]:
        calls["k"] += 1
        return [1, 2, 3]

    first = _finished(queue, queue.submit("explain", fn, key="k"))
    second = queue.submit("explain", fn, key="k")
    assert second.status == "done" and second.cached and second.result is first.result
    assert second.id != first.id and calls["k"] == 1
    other = _finished(queue, queue.submit("explain", fn, key="other"))
    assert not other.cached and calls["k"] == 2
    nokey = [_finished(queue, queue.submit("explain", fn)) for _ in range(2)]
    assert calls["k"] == 4 and not any(j.cached for j in nokey)


def test_cache_is_lru_bounded() -> None:
    calls: Counter = Counter()
    with JobQueue(cache_size=2) as q:

        def run(key: str) -> Job:
            def fn(progress: Callable[[int, int], None]) -> str:
                calls[key] += 1
                return key

            return _finished(q, q.submit("x", fn, key=key))

        run("a"), run("b")
        run("a")  # cached, and now most recent
        run("c")  # evicts b
        run("a")
        run("b")  # recomputed
        assert calls == Counter({"a": 1, "b": 2, "c": 1})
        assert q.stats()["cached"] == 2


def test_same_key_pending_jobs_share_one_computation(queue: JobQueue) -> None:
    release, started = threading.Event(), threading.Event()
    calls: Counter = Counter()
    blocker = queue.submit("block", _blocking(release, started))
    assert started.wait(T)
    fn = _blocking(release, value={"map": 1}, calls=calls, key="k")
    a = queue.submit("explain", fn, key="k")  # queued behind the blocker
    b = queue.submit("explain", fn, key="k")  # shares a's computation
    c = queue.submit("explain", fn, key="k")
    assert (a.cached, b.cached, c.cached) == (False, True, True)
    assert queue.stats()["queued"] == 1  # one computation for three jobs
    queue.cancel(c.id)  # one sharer leaves: the others still get the result
    release.set()
    for job in (blocker, a, b):
        assert _finished(queue, job).status == "done"
    assert a.result is b.result and a.result == {"map": 1}
    assert queue.wait(c.id, T).status == "cancelled" and c.result is None
    assert calls == Counter({"k": 1})


def test_shared_running_computation_stops_only_when_all_cancel(queue: JobQueue) -> None:
    ticking, release = threading.Event(), threading.Event()

    def fn(progress: Callable[[int, int], None]) -> str:
        progress(0, 2)
        ticking.set()
        assert release.wait(T)
        progress(1, 2)  # raises Cancelled only if no job waits any more
        return "shared"

    a = queue.submit("explain", fn, key="k")
    assert ticking.wait(T)
    b = queue.submit("explain", fn, key="k")
    assert b.status == "running" and b.cached
    queue.cancel(a.id)
    release.set()
    assert _finished(queue, b).result == "shared"
    assert queue.wait(a.id, T).status == "cancelled"


def test_queue_full(queue: JobQueue) -> None:
    release, started = threading.Event(), threading.Event()
    jobs = [queue.submit("a", _blocking(release, started), key="0")]
    assert started.wait(T)
    jobs += [queue.submit("a", _blocking(release), key=str(i)) for i in range(1, 4)]
    with pytest.raises(QueueFull, match="4 computations are pending"):
        queue.submit("a", _blocking(release), key="new")
    assert isinstance(QueueFull("x"), RuntimeError)
    shared = queue.submit("a", _blocking(release), key="2")  # shares: does not count
    assert shared.cached
    release.set()
    for job in [*jobs, shared]:
        assert _finished(queue, job).status == "done"
    assert _finished(queue, queue.submit("a", lambda p: "room again")).result == "room again"


@pytest.mark.parametrize(
    "exc,message",
    [
        (
            ValueError("steps: expected at most 100, got 1000"),
            "steps: expected at most 100, got 1000",
        ),
        (TypeError("target: expected an int, got str"), "target: expected an int, got str"),
        (RuntimeError("boom\n  deep inside"), "RuntimeError: boom deep inside"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
        (KeyError("layer"), "KeyError: 'layer'"),
        (MemoryError(), "MemoryError"),
        (SystemExit(3), "SystemExit: 3"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
    ],
)
def test_failure_is_one_line(queue: JobQueue, exc: Exception, message: str) -> None:
    def fn(progress: Callable[[int, int], None]) -> None:
        raise exc

    job = _finished(queue, queue.submit("explain", fn, key="bad"))
    assert (job.status, job.error, job.result) == ("failed", message, None)
    assert "\n" not in job.error and "Traceback" not in job.error
    assert job.to_json()["error"] == message
    assert queue.stats()["cached"] == 0  # failures are not cached: a retry recomputes
    assert _finished(queue, queue.submit("explain", lambda p: 1, key="bad")).result == 1


def test_error_message_is_bounded() -> None:
    assert len(error_message(RuntimeError("x" * 10_000))) == 500


def test_unknown_job_and_bad_arguments(queue: JobQueue) -> None:
    for bad in ("nope", "", None, 3):
        with pytest.raises(KeyError, match="unknown job"):
            queue.get(bad)  # type: ignore[arg-type]
        with pytest.raises(KeyError):
            queue.cancel(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn: expected a callable"):
        queue.submit("x", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key: expected a str"):
        queue.submit("x", lambda p: 1, key=3)  # type: ignore[arg-type]
    for kwargs in ({"workers": 0}, {"max_pending": 0}, {"cache_size": -1}, {"workers": True}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            JobQueue(**kwargs)  # type: ignore[arg-type]


def test_close_cancels_pending_and_refuses_more() -> None:
    q = JobQueue(workers=1, max_pending=4)
    ticking = threading.Event()

    def fn(progress: Callable[[int, int], None]) -> None:
        while True:
            progress(0, 1)
            ticking.set()
            threading.Event().wait(0.001)

    running = q.submit("a", fn)
    assert ticking.wait(T)
    queued = q.submit("b", lambda p: 1)
    q.close()
    assert running.status == "cancelled" and queued.status == "cancelled"
    assert not any(t.is_alive() for t in q._threads)
    with pytest.raises(RuntimeError, match="closed"):
        q.submit("c", lambda p: 1)


def test_old_finished_jobs_are_forgotten() -> None:
    with JobQueue(max_jobs=3) as q:
        jobs = [_finished(q, q.submit("x", lambda p: 1)) for _ in range(5)]
        with pytest.raises(KeyError):
            q.get(jobs[0].id)
        assert q.get(jobs[-1].id) is jobs[-1] and q.stats()["jobs"] == 3


def test_many_threads_submit_and_read() -> None:
    """16 threads submit and poll 40 jobs each over 5 keys: every result is its key's, the queue
    never corrupts, and no more computations run than submitted."""
    calls: Counter = Counter()
    count_lock = threading.Lock()
    errors: list[BaseException] = []

    def make(key: int) -> Callable:
        def fn(progress: Callable[[int, int], None]) -> tuple[int, list[int]]:
            with count_lock:
                calls[key] += 1
            for i in range(3):
                progress(i + 1, 3)
            return key, [key * k for k in range(50)]

        return fn

    with JobQueue(workers=2, max_pending=6, cache_size=3) as q:

        def client(c: int) -> None:
            try:
                for r in range(40):
                    key = (c * 7 + r) % 5
                    try:
                        job = q.submit("explain", make(key), key=f"key{key}")
                    except QueueFull:
                        continue
                    if r % 9 == 0:
                        q.cancel(job.id)
                    snap = q.get(job.id).to_json()
                    assert snap["status"] in ("queued", "running", "done", "cancelled")
                    job = q.wait(job.id, T)
                    assert job.finished
                    if job.status == "done":
                        assert job.result == (key, [key * k for k in range(50)])
                    else:
                        assert job.status == "cancelled"
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(T * 3)
        assert not errors, errors[0]
        assert q.stats()["queued"] == 0 and q.stats()["running"] == 0
        assert 1 <= sum(calls.values()) <= 16 * 40


# --- a cancel reaches into unmask's own loops ---------------------------------------------------


def test_exceptions_from_progress_callbacks_propagate() -> None:
    def cb(done: int, total: int) -> None:
        if done == 2:
            raise Cancelled("stop")

    seen = []
    with pytest.raises(Cancelled, match="stop"):
        for item in track(range(5), 5, cb):
            seen.append(item)
    assert seen == [0, 1]
    update = reporter(cb, 4)
    update(1)
    with pytest.raises(Cancelled):
        update(2)


def test_cancel_stops_a_real_explainer(queue: JobQueue) -> None:
    from unmask import explain
    from unmask.testing import region_images, region_model

    torch.set_num_threads(1)
    model, x = region_model(), region_images(1, size=32)
    ticks: list[tuple[int, int]] = []
    ticked, release = threading.Event(), threading.Event()

    def fn(progress: Callable[[int, int], None]) -> object:
        def spy(done: int, total: int) -> None:
            ticks.append((done, total))
            if total > 2 and not ticked.is_set():  # the first chunk of the perturbations
                ticked.set()
                assert release.wait(T)
            progress(done, total)

        return explain(
            model,
            x,
            method="occlusion",
            target=1,
            patch_size=4,
            stride=2,
            batch_size=2,
            progress=spy,
        )

    job = queue.submit("explain", fn, key="occ")
    assert ticked.wait(T)
    queue.cancel(job.id)
    release.set()
    assert _finished(queue, job).status == "cancelled"
    total = ticks[-1][1]
    assert total > 2 and ticks[-1] == (1, total)  # stopped at the first chunk, not after all
    done = _finished(
        queue,
        queue.submit(
            "explain",
            lambda p: explain(
                model,
                x,
                method="occlusion",
                target=1,
                patch_size=4,
                stride=2,
                batch_size=2,
                progress=p,
            ),
            key="occ2",
        ),
    )
    assert done.status == "done" and done.result.saliency.shape[-2:] == (32, 32)
    assert (done.done, done.total) == (total, total)


def test_check_cancels_without_reporting(queue: JobQueue) -> None:
    """``progress.check()``: a cancellation point that reports nothing (the explorer calls it
    before each forward pass)."""
    started, checks = threading.Event(), Counter()

    def fn(progress: Progress) -> object:
        progress(3, 10)
        started.set()
        while True:
            progress.check()
            checks["n"] += 1
            time.sleep(0.005)

    job = queue.submit("long", fn)
    assert started.wait(T)
    assert queue.get(job.id).to_json()["progress"] == {"done": 3, "total": 10}
    queue.cancel(job.id)
    assert _finished(queue, job).status == "cancelled"
    follow = _finished(queue, queue.submit("next", lambda progress: 1))
    assert follow.status == "done" and checks["n"] >= 1


def test_a_time_limit_fails_the_job_with_its_own_message(queue: JobQueue) -> None:
    def fn(progress: Progress) -> object:
        raise TimeLimit("job: stopped at the limit of 2 s for one job")

    job = _finished(queue, queue.submit("slow", fn))
    assert (job.status, job.error) == ("failed", "job: stopped at the limit of 2 s for one job")


def test_memory_release_is_harmless() -> None:
    release_memory()  # glibc's malloc_trim, or nothing
    assert map_large_buffers() in (True, False)
