"""Snapshot spans: make runs and stages visible in trace backends before they end.

A span reaches Tempo only when it ends, so a two-hour stage is invisible for two
hours and a killed process loses its open spans. When snapshots are on, joblogger
also emits short, already-ended *snapshot* spans as children of the open run or
stage span:

- ``run.start`` when a run starts and ``stage.start`` when a stage starts;
- ``checkpoint`` every ``interval_s`` seconds for every active run, carrying the
  current stage, progress, outcomes and log counts.

Each carries ``job.snapshot.kind`` (and only they do), so dashboards and
TraceQL can tell them from finished spans and skip them where they would double
count (``{ span.job.result != nil }`` matches only finished run spans). A killed
run keeps its story: the last checkpoint says which stage it was in and how far
it got. Volume: one span per run start, one per stage, one per active run per
interval (default 15 s): about 240 spans per run-hour.

Snapshots are off for bare ``create_job_logger()`` calls (unit tests and
libraries see exactly the run and stage spans) and on by default once
``joblogger.otlp.configure()`` sets up export; ``snapshots=`` on
``create_job_logger`` overrides either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from . import _fork

__all__ = ["DEFAULT_INTERVAL_S", "configure_snapshots", "ensure_checkpointer", "snapshots_default"]

DEFAULT_INTERVAL_S = 15.0
_log = logging.getLogger("joblogger")
_state = {"enabled": False, "interval_s": DEFAULT_INTERVAL_S}
_lock = threading.Lock()
_thread: threading.Thread | None = None
_wake = threading.Event()


def configure_snapshots(enabled: bool, interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """Set the process-wide default for snapshot spans and the checkpoint interval."""
    with _lock:
        _state["enabled"] = bool(enabled)
        _state["interval_s"] = max(0.05, float(interval_s))
    _wake.set()  # a sleeping checkpoint thread picks up the new interval now


def snapshots_default() -> bool:
    """Whether runs created without ``snapshots=`` emit snapshot spans."""
    return bool(_state["enabled"])


def ensure_checkpointer(active: Callable[[], list[object]]) -> None:
    """Start the background thread that emits checkpoints for active runs (once per process)."""
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _thread = threading.Thread(target=_loop, args=(active,), name="joblogger-checkpoints", daemon=True)
        _thread.start()


def _loop(active: Callable[[], list[object]]) -> None:
    while True:
        if _wake.wait(float(_state["interval_s"])):
            _wake.clear()
            continue  # the interval changed: start a full new interval
        for run in active():
            checkpoint = getattr(run, "_checkpoint", None)
            if checkpoint is None:
                continue
            try:
                checkpoint()
            except Exception as exc:  # noqa: BLE001 - a checkpoint must never take the process down
                _log.debug("joblogger: checkpoint failed: %r", exc)


def _after_fork_in_child() -> None:
    global _thread, _lock
    _thread = None  # threads do not survive fork; the next snapshot-enabled run starts a new one
    _lock = threading.Lock()  # another thread may have held it when the process forked


_fork.register(_after_fork_in_child)
