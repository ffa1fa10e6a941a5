"""What the Celery worker's main process records: tasks whose process could not end their run.

A ``revoke(terminate=True, signal="SIGKILL")``, a lost pool process
(``WorkerLostError``), a task revoked before it ran or expired: Celery reports
them in the main process only, where this module records a run span of the
task's run id that ends at once with the result.
"""

from __future__ import annotations

import signal
from typing import Any

from celery import Celery, Task
from celery.exceptions import WorkerLostError

from .. import semconv
from ._celery_context import (
    ATTR_END_REASON,
    FRAMEWORK,
    _attributes,
    _configure,
    _enabled,
    _log,
    _parent,
    _Settings,
    _state,
    _telemetry,
)
from ._common import start_task_run


def _on_revoked(
    app: Celery,
    settings: _Settings,
    *,
    sender: Any = None,
    request: Any = None,
    terminated: bool = False,
    expired: bool = False,
    signum: Any = None,
    **_: Any,
) -> None:
    if not _ours(app, settings, sender) or request is None:
        return
    if expired:
        _record(
            sender, request, result=semconv.RESULT_SKIP, error=None, reason="expired before it ran", settings=settings
        )
    elif not terminated:
        reason = "revoked before it ran"
        _record(sender, request, result=semconv.RESULT_CANCELLATION, error=None, reason=reason, settings=settings)
    elif _signal_number(signum) == signal.SIGKILL:  # any other signal: the task's process ends the run itself
        _record(sender, request, result=semconv.RESULT_CANCELLATION, error=None, reason="killed", settings=settings)


def _on_main_process_failure(
    app: Celery,
    settings: _Settings,
    *,
    sender: Any = None,
    task_id: str | None = None,
    exception: Any = None,
    **_: Any,
) -> None:
    """A lost worker (the task's process died: SIGKILL, out of memory, a crash) is reported by the main process."""
    if not isinstance(exception, WorkerLostError) or not _ours(app, settings, sender):
        return
    if task_id is None or getattr(_state, "ended", None) == task_id:
        return  # the task itself raised it and its run already ended
    request = sender.request if getattr(sender.request, "id", None) == task_id else None
    _record(
        sender,
        request,
        result=semconv.RESULT_CANCELLATION,
        error=exception,
        reason=str(exception),
        settings=settings,
        task_id=task_id,
    )


def _signal_number(signum: Any) -> int | None:
    try:
        return int(signum)
    except (TypeError, ValueError):
        found = getattr(signal, str(signum), None)
        return int(found) if isinstance(found, int) else None


def _ours(app: Celery, settings: _Settings, task: Any) -> bool:
    return isinstance(task, Task) and task.app is app and _enabled(task, settings)


def _record(
    task: Task,
    request: Any,
    *,
    result: str,
    error: BaseException | None,
    reason: str,
    settings: _Settings,
    task_id: str | None = None,
) -> None:
    """A run span for an attempt whose process could not end it, ending at once with ``result``."""
    try:
        if settings.configure and _telemetry[0] is None:
            _configure(settings, after_fork=False)  # the prefork main process configures on first need
        run_id = task_id or str(request.id)
        if request is not None:
            queue, worker, attempt, extra = _attributes(request)
            parent = _parent(request)
        else:
            queue, worker, attempt, extra, parent = None, None, None, {}, None  # type: ignore[assignment]
        extra[ATTR_END_REASON] = reason
        job = start_task_run(
            task.name,
            run_id,
            framework=FRAMEWORK,
            queue=queue,
            worker=worker,
            attempt=attempt,
            parent=parent,
            attributes=extra,
            snapshots=False,
            **settings.providers,
        )
        job.end(result=result, error=error)
    except Exception as exc:  # noqa: BLE001
        _log.warning("joblogger: could not record the end of Celery task %s: %r", task_id, exc)
