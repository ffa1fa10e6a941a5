"""Runs of this process that have started and not ended, for terminal views and other UIs."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

from . import _fork


class _Run(Protocol):
    @property
    def started_at(self) -> float: ...

    def _detach_after_fork(self) -> None: ...


_R = TypeVar("_R", bound=_Run)

_LIVE: weakref.WeakSet[_Run] = weakref.WeakSet()
#: Re-entrant: a signal handler may list or end runs while the main thread holds it.
_LIVE_LOCK = threading.RLock()
#: Callables told about every new run (terminal views); called outside any lock.
_RUN_OBSERVERS: list[Callable[[_Run], None]] = []
#: Callables told about every run that ends (on the thread that ends it, outside any lock).
_END_OBSERVERS: list[Callable[[_Run], None]] = []


def observe_runs(callback: Callable[[_R], None], on_end: Callable[[_R], None] | None = None) -> Callable[[], None]:
    """Call ``callback(job)`` for every run started from now on, and ``on_end(job)`` when one ends.

    Returns the function that stops both. Observers must be quick and must not
    raise; a failing observer is reported once by the run and otherwise ignored.
    ``callback`` runs on the thread that starts the run, once it has started;
    ``on_end`` on the thread that ends it, once it has ended (``job.result`` is
    set). docs/schedules.md uses them to mirror runs to check-in services.

    Example:
        >>> from joblogger import create_job_logger, observe_runs
        >>> seen = []
        >>> stop = observe_runs(lambda job: seen.append(("start", job.job_name)),
        ...                     lambda job: seen.append((job.result, job.job_name)))
        >>> with create_job_logger("r1", "nightly"):
        ...     pass
        >>> stop()
        >>> seen
        [('start', 'nightly'), ('success', 'nightly')]
    """
    _RUN_OBSERVERS.append(callback)  # type: ignore[arg-type]
    if on_end is not None:
        _END_OBSERVERS.append(on_end)  # type: ignore[arg-type]

    def remove() -> None:
        if callback in _RUN_OBSERVERS:
            _RUN_OBSERVERS.remove(callback)  # type: ignore[arg-type]
        if on_end is not None and on_end in _END_OBSERVERS:
            _END_OBSERVERS.remove(on_end)  # type: ignore[arg-type]

    return remove


def observers() -> list[Callable[[_Run], None]]:
    """The current observers (a copy, safe to iterate while others register)."""
    return list(_RUN_OBSERVERS)


def end_observers() -> list[Callable[[_Run], None]]:
    """The current end observers (a copy)."""
    return list(_END_OBSERVERS)


def add(run: _Run) -> None:
    """Register a run that has started."""
    with _LIVE_LOCK:
        _LIVE.add(run)


def discard(run: _Run) -> None:
    """Forget a run that has ended."""
    with _LIVE_LOCK:
        _LIVE.discard(run)


def active_runs() -> list[_Run]:
    """Runs of this process that have started and not yet ended, oldest first."""
    with _LIVE_LOCK:
        runs = list(_LIVE)
    return sorted(runs, key=lambda run: run.started_at)


def _forget_parent_runs() -> None:
    """In a forked child, the parent's runs are the parent's: detach the copies and forget them.

    A run belongs to the process that started it. The child's copy of a run that
    was active at the fork is detached (see ``RunState._detach_after_fork``): it
    never ends the parent's span, never counts and never exports.
    """
    global _LIVE_LOCK
    _LIVE_LOCK = threading.RLock()  # another thread may have held it at the fork
    inherited = list(_LIVE)
    _LIVE.clear()
    for run in inherited:
        run._detach_after_fork()


_fork.register(_forget_parent_runs)
