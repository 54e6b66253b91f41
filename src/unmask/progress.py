"""Progress reporting in one place: a bar, a callback, or nothing.

Every long loop (the scoring engine's chunks, an optimiser's steps) goes through :func:`track`,
so ``progress=`` means the same everywhere: ``False`` (silent), ``True`` (a tqdm bar), or a
callable ``progress(done, total)`` called after each item (the benchmark runner and the explorer
report progress this way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["track", "reporter", "check_progress", "Progress"]

T = TypeVar("T")

#: What ``progress=`` accepts.
Progress = bool | Callable[[int, int], object] | None


def check_progress(progress: object, name: str = "progress") -> Progress:
    """Check a ``progress`` argument: a bool, None or a callable ``(done, total)``."""
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress
    raise TypeError(f"{name}: expected a bool or a callable (done, total), got {progress!r}")


def track(
    items: Iterable[T],
    total: int,
    progress: Progress,
    desc: str = "",
    unit: str = "it",
    minimum: int = 1,
) -> Iterable[T]:
    """``items`` with progress reported as ``progress`` asks.

    A bar is shown only when there are more than ``minimum`` items; a callback is always called.

    Example:
        >>> seen = []
        >>> list(track(range(3), 3, lambda done, total: seen.append((done, total))))
        [0, 1, 2]
        >>> seen
        [(1, 3), (2, 3), (3, 3)]
    """
    if progress is True:
        if total <= minimum:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, total=total, desc=desc, unit=unit, leave=False)
    if callable(progress):
        return _calling(items, total, progress)
    return items


def _calling(items: Iterable[T], total: int, callback: Callable[[int, int], object]) -> Iterator[T]:
    done = 0
    for item in items:
        yield item
        done += 1
        callback(done, total)


def reporter(progress: Progress, total: int, desc: str = "") -> Callable[[int | None], None]:
    """A push-style ``update(done)`` for loops that :func:`track` cannot wrap (``None`` closes).

    Example:
        >>> seen = []
        >>> update = reporter(lambda done, total: seen.append((done, total)), 4)
        >>> update(2); update(4); update(None)
        >>> seen
        [(2, 4), (4, 4)]
    """
    if callable(progress):
        report = progress

        def update(done: int | None) -> None:
            if done is not None:
                report(done, total)

        return update
    if not progress:
        return lambda done: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, leave=False)

    def advance(done: int | None) -> None:
        if done is None:
            bar.close()
        else:
            bar.update(done - bar.n)

    return advance
