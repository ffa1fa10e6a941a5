"""Runs of this process that have started and not ended, for terminal views and other UIs."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar


class _Run(Protocol):
    @property
    def started_at(self) -> float: ...


_R = TypeVar("_R", bound=_Run)

_LIVE: weakref.WeakSet[_Run] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()
#: Callables told about every new run (terminal views); called outside any lock.
_RUN_OBSERVERS: list[Callable[[_Run], None]] = []


def observe_runs(callback: Callable[[_R], None]) -> Callable[[], None]:
    """Call ``callback(job)`` for every run started from now on; returns the function that stops it."""
    _RUN_OBSERVERS.append(callback)  # type: ignore[arg-type]

    def remove() -> None:
        if callback in _RUN_OBSERVERS:
            _RUN_OBSERVERS.remove(callback)  # type: ignore[arg-type]

    return remove


def observers() -> list[Callable[[_Run], None]]:
    """The current observers (a copy, safe to iterate while others register)."""
    return list(_RUN_OBSERVERS)


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
    """In a forked child, the parent's runs are not ours to show."""
    global _LIVE_LOCK
    _LIVE_LOCK = threading.Lock()
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_runs)
