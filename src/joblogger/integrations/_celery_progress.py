"""Celery: a running task's progress as its ``PROGRESS`` state, unless the task keeps its own states.

A task that calls ``self.update_state(...)`` itself (its own ``PROGRESS`` meta, a custom
state such as ``UPLOADING``) owns its state: from that call on, joblogger writes nothing for
that execution, so clients polling ``AsyncResult(id).info`` keep seeing what the task wrote.
A run that has reported no progress at all writes nothing either.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from .._logger import JobLogger
from ._common import no_progress, publish_progress

__all__ = ["PROGRESS_STATE", "native_progress", "yield_to_own_states"]

#: The Celery state the run's progress is stored under (``AsyncResult(id).info`` is the progress dict).
PROGRESS_STATE = "PROGRESS"

#: The gates of the executions whose progress is being stored, by task id (``update_state()`` names
#: its task: by ``task_id=``, from any thread, or by the calling thread's request).
_gates: dict[Any, _Gate] = {}
_gates_lock = threading.Lock()


class _Gate:
    """Whether joblogger may still write the task's state; closed at the run's end or by ``update_state``."""

    __slots__ = ("lock", "open")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held while writing: close() returns only after a write in flight
        self.open = True

    def close(self) -> None:
        with self.lock:
            self.open = False


def native_progress(task: Any, request: Any, job: JobLogger, interval_s: float) -> Callable[[], None]:
    """Store the run's progress as the task's ``PROGRESS`` state while it runs; returns the stopper."""
    backend = task.backend
    if type(backend).__name__ == "DisabledBackend" or interval_s <= 0:
        return _noop
    gate = _Gate()
    task_id = request.id
    wrote = [False]

    def sink(meta: dict[str, Any]) -> None:
        if not wrote[0] and no_progress(meta):
            return  # nothing to show: the task's own state (if any) stays
        with gate.lock:
            if gate.open:
                backend.store_result(task_id, meta, PROGRESS_STATE, request=request)
                wrote[0] = True

    # A task that ends within the first interval writes nothing: no backend write per short task.
    unsubscribe = publish_progress(job, sink, interval_s, first_after_s=interval_s)
    with _gates_lock:
        _gates[task_id] = gate

    def stop() -> None:
        unsubscribe(final=False)  # Celery's final state replaces the progress anyway
        gate.close()
        with _gates_lock:
            if _gates.get(task_id) is gate:
                del _gates[task_id]

    return stop


def yield_to_own_states() -> None:
    """Wrap ``celery.Task.update_state`` (once): a task writing its own state stops joblogger's writes."""
    from celery.app.task import Task

    original = Task.update_state
    if getattr(original, "__joblogger__", False):
        return

    @functools.wraps(original)
    def update_state(self: Any, task_id: Any = None, state: Any = None, meta: Any = None, **kwargs: Any) -> Any:
        # Celery's own default: no task_id is the request this thread is executing.
        with _gates_lock:
            gate = _gates.get(self.request.id if task_id is None else task_id)
        if gate is not None:
            gate.close()
        return original(self, task_id, state, meta, **kwargs)

    update_state.__joblogger__ = True  # type: ignore[attr-defined]
    Task.update_state = update_state  # type: ignore[method-assign]


def _noop() -> None:
    pass
