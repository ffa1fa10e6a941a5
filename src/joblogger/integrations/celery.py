"""Celery: every task execution is a joblogger run, with one line per app (extra ``joblogger[celery]``).

Example (what a user writes; see docs/integrations.md and examples/celery_app.py)::

    from celery import Celery
    from joblogger import current_job
    from joblogger.integrations import celery as joblogger_celery

    app = Celery("shop", broker="redis://localhost", backend="redis://localhost")
    joblogger_celery.instrument(app)

    @app.task
    def import_orders(n):
        job = current_job()
        job.set_total(n, "orders")
        ...

How it works, and why this way:

- :func:`instrument` wraps each of the app's task bodies (``task.run``, the
  callable Celery's tracer calls) when the app is finalized and again when a
  worker starts, and connects Celery signals: the way Celery's own tooling and
  the OpenTelemetry, Sentry and Datadog integrations hook in, with no change to
  the user's task classes. Wrapping the body (not only ``task_prerun`` and
  ``task_postrun``) matters twice: the run starts inside the
  ``opentelemetry-instrumentation-celery`` ``run/<task>`` span whatever order the
  signal receivers were connected in, and the run (with its progress publisher)
  ends before Celery stores the final state, so a late ``PROGRESS`` write can
  never replace it.
- A task opts out with ``@app.task(joblogger=False)``; with
  ``instrument(app, default=False)`` only tasks with ``joblogger=True`` run as runs.
- Results: success; an exception -> ``failure``; ``Retry`` -> ``failure`` for that
  attempt, with the retry reason recorded on the span (the attempt did fail;
  the next attempt is a new run span with the same run id and ``job.attempt`` + 1);
  ``SoftTimeLimitExceeded`` -> ``timeout``; ``Ignore``/``Reject`` -> ``skip``. The
  exception always propagates untouched, so Celery's own states never change.
- A terminate signal (``revoke(terminate=True)``, the hard time limit's SIGTERM)
  reaches the task as billiard's ``SystemExit``: the run ends there as
  ``cancellation``, or ``timeout`` once the hard limit has passed. What the
  task's process cannot see (a SIGKILL revoke, a lost pool process, a task
  revoked before it ran or expired) the worker's main process records
  (:mod:`joblogger.integrations._celery_main`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .. import semconv
from .._logger import JobLogger
from ._celery_context import (
    ATTR_BEAT,
    ATTR_BEAT_ENTRY,
    ATTR_END_REASON,
    FRAMEWORK,
    _attributes,
    _configure,
    _enabled,
    _inject_trace_context,
    _is_prefork,
    _log,
    _parent,
    _Settings,
    _state,
    _telemetry,
    mark_beat_sends,
    parent_carrier,
)
from ._celery_main import _on_main_process_failure, _on_revoked
from ._celery_progress import PROGRESS_STATE, native_progress, yield_to_own_states
from ._common import DEFAULT_PROGRESS_INTERVAL_S, start_task_run

__all__ = ["ATTR_BEAT", "ATTR_BEAT_ENTRY", "ATTR_END_REASON", "PROGRESS_STATE", "instrument"]
_WRAPPED = "__joblogger_wrapped__"


def instrument(
    app: Celery,
    *,
    default: bool = True,
    configure: bool | Mapping[str, Any] = True,
    progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Make every task execution of ``app`` a joblogger run; call once, where the app is created.

    Args:
        app: The Celery application.
        default: Whether tasks are runs unless they say ``joblogger=False`` (True), or only
            those that say ``joblogger=True`` (False).
        configure: Set up OpenTelemetry in the worker with :func:`joblogger.otlp.configure`
            (a mapping: its keyword arguments): in each prefork child after the fork
            (``worker_process_init``), in the worker process for the solo and threads pools
            (``worker_init``). An application's own SDK providers are kept (drop-in) and made
            fork-safe with :func:`joblogger.otlp.after_fork`. False: the application does it.
        progress_interval_s: How often at most a running task's progress is stored as its
            ``PROGRESS`` state (``AsyncResult(id).info``, Flower).
        tracer_provider: Providers for the runs (tests: :func:`joblogger.testing.capture`'s);
            default the global ones.
        meter_provider: See ``tracer_provider``.

    Example:
        >>> from celery import Celery
        >>> app = Celery("doc", set_as_current=False)
        >>> instrument(app)
        >>> @app.task(name="shop.add")
        ... def add(x, y):
        ...     from joblogger import current_job
        ...     return x + y, current_job().job_name
        >>> add.apply((1, 2), task_id="t-1").get()
        (3, 'shop.add')
    """
    if getattr(app, "_joblogger", None) is not None:
        return
    providers = {k: v for k, v in (("tracer_provider", tracer_provider), ("meter_provider", meter_provider)) if v}
    settings = _Settings(configure, bool(default), float(progress_interval_s), providers)
    app._joblogger = settings  # type: ignore[attr-defined]

    def wrap_all(**_: Any) -> None:
        for task in list(app.tasks.values()):
            _wrap_instance(task, settings)

    _hook_task_classes(app, settings)

    def on_worker_init(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        wrap_all()
        if settings.configure and not _is_prefork(sender):
            _configure(settings, after_fork=False)

    def on_worker_process_init(**_: Any) -> None:
        if settings.configure:
            _configure(settings, after_fork=True)

    def on_worker_process_shutdown(**_: Any) -> None:
        # A prefork child ends with os._exit(): export what it holds first (atexit would not run).
        telemetry = _telemetry[0]
        if telemetry is not None:
            telemetry.force_flush()
            telemetry.shutdown()

    app.on_after_finalize.connect(wrap_all, weak=False)
    if app.finalized:
        wrap_all()
    signals.worker_init.connect(on_worker_init, weak=False)
    signals.worker_process_init.connect(on_worker_process_init, weak=False)
    signals.worker_process_shutdown.connect(on_worker_process_shutdown, weak=False)
    signals.before_task_publish.connect(_inject_trace_context, weak=False)
    mark_beat_sends()  # in a `celery beat` process: the messages name their schedule entry
    yield_to_own_states()  # a task's own update_state() ends joblogger's PROGRESS writes for it
    signals.task_revoked.connect(functools.partial(_on_revoked, app, settings), weak=False)
    signals.task_failure.connect(functools.partial(_on_main_process_failure, app, settings), weak=False)


def _hook_task_classes(app: Celery, settings: _Settings) -> None:
    """Wrap ``run`` of every task class made from ``app.Task`` from now on (``@app.task`` tasks)."""
    base = app.Task
    previous = base.__dict__.get("__init_subclass__")

    def init_subclass(cls: type[Task], /, **kwargs: Any) -> None:
        if previous is not None:
            previous.__func__(cls, **kwargs)
        else:
            super(base, cls).__init_subclass__(**kwargs)
        _wrap_class(cls, settings)

    base.__init_subclass__ = classmethod(init_subclass)  # type: ignore[assignment]
    for task in list(app._tasks.values()):  # tasks made before instrument() (not lazily)
        _wrap_instance(task, settings)


def _wrap_class(cls: type[Task], settings: _Settings) -> None:
    """Make each execution of ``cls.run`` by Celery a run (``run`` stays the same callable for every other use)."""
    raw = cls.__dict__.get("run")
    if raw is None or getattr(raw, _WRAPPED, False) or not _enabled(cls, settings):
        return
    if isinstance(raw, staticmethod):
        fn = raw.__func__

        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            if _plain_call(self):
                return fn(*args, **kwargs)
            return _execute(self, settings, fn, *args, **kwargs)

    elif callable(raw):
        fn = raw

        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            if _plain_call(self):
                return fn(self, *args, **kwargs)
            return _execute(self, settings, fn, self, *args, **kwargs)

    else:
        return
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(run, attr, getattr(fn, attr, None))
    setattr(run, _WRAPPED, True)
    cls.run = run  # type: ignore[method-assign]


def _wrap_instance(task: Task, settings: _Settings) -> None:
    """Wrap ``task.run`` of a task whose class was not made from ``app.Task``; idempotent."""
    if getattr(task.run, _WRAPPED, False) or getattr(type(task).run, _WRAPPED, False):
        return
    if not _enabled(task, settings):
        return
    body = task.run

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        if _plain_call(task):
            return body(*args, **kwargs)
        return _execute(task, settings, body, *args, **kwargs)

    setattr(run, _WRAPPED, True)
    task.run = run  # type: ignore[method-assign]


def _plain_call(task: Task) -> bool:
    """Not an execution by Celery's tracer: a direct call, or the body of a run already started."""
    request = task.request
    return request.called_directly or not request.id or getattr(_state, "active", None) == _key(request)


def _key(request: Any) -> tuple[str, int]:
    return request.id, getattr(request, "retries", 0)


def _start(task: Task, request: Any, settings: _Settings) -> JobLogger:
    queue, worker, attempt, extra = _attributes(request)
    return start_task_run(
        task.name,
        str(request.id),
        framework=FRAMEWORK,
        queue=queue,
        worker=worker,
        attempt=attempt,
        parent=_parent(request),
        parent_run=parent_carrier(request),
        attributes=extra,
        **settings.providers,
    )


def _execute(task: Task, settings: _Settings, body: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    request = task.request
    _state.ended = None
    try:
        job = _start(task, request, settings)
    except Exception as exc:  # noqa: BLE001 - joblogger failing must not fail the task
        _log.warning("joblogger: could not start the run of Celery task %s: %r", task.name, exc)
        return body(*args, **kwargs)
    job.__enter__()  # never raises (the run guards itself)
    try:
        stop = native_progress(task, request, job, settings.progress_interval_s)
    except Exception as exc:  # noqa: BLE001
        _log.warning("joblogger: no PROGRESS state for Celery task %s: %r", task.name, exc)
        stop = _noop
    outer, _state.active = getattr(_state, "active", None), _key(request)
    try:
        result = body(*args, **kwargs)
    except BaseException as exc:
        _state.active = outer
        _end(task, job, stop, request, exc)
        raise
    _state.active = outer
    _end(task, job, stop, request, None)
    return result


def _end(task: Task, job: JobLogger, stop: Callable[[], None], request: Any, exc: BaseException | None) -> None:
    try:
        stop()  # before Celery stores the final state: no PROGRESS write after it
        result, error, reason = _result_of(task, job, request, exc)
        if reason:
            job.span.set_attribute(ATTR_END_REASON, reason)
        job.end(result=result, error=error)
        job.__exit__(None, None, None)
        _state.ended = request.id
    except Exception as internal:  # noqa: BLE001
        _log.warning("joblogger: could not end the run of Celery task %s: %r", request.id, internal)


def _result_of(
    task: Task, job: JobLogger, request: Any, exc: BaseException | None
) -> tuple[str | None, BaseException | None, str | None]:
    """(result, exception to record, reason) of an attempt that ``exc`` ended."""
    if exc is None:
        return semconv.RESULT_SUCCESS, None, None
    if isinstance(exc, (Ignore, Reject)):
        return semconv.RESULT_SKIP, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, Retry):
        cause = exc.exc if isinstance(exc.exc, BaseException) else exc
        return semconv.RESULT_FAILURE, cause, f"retry: {exc}"
    if isinstance(exc, (SoftTimeLimitExceeded, TimeLimitExceeded)):
        return semconv.RESULT_TIMEOUT, exc, "soft time limit" if isinstance(exc, SoftTimeLimitExceeded) else None
    if isinstance(exc, SystemExit) and _terminated_by_signal(exc):
        # billiard turned a terminate signal into SystemExit: revoke(terminate=True) or the hard time limit.
        limit = _hard_time_limit(task, request)
        if limit is not None and job.get_elapsed_ms() >= limit * 1000.0 * 0.98:
            return semconv.RESULT_TIMEOUT, None, "hard time limit"
        return semconv.RESULT_CANCELLATION, None, "terminated"
    return None, exc, None  # the usual mapping: failure, cancellation for KeyboardInterrupt ...


def _terminated_by_signal(exc: SystemExit) -> bool:
    """Whether billiard's terminate-signal handler raised ``exc`` (prefork child being stopped or killed)."""
    try:
        from billiard import common

        fired = getattr(common, "terminate_handler_fired", None)
        if fired is not None:
            return bool(fired())
    except Exception:  # noqa: BLE001, S110 - fall back to the exit code billiard uses
        pass
    return isinstance(exc.code, int) and -255 <= exc.code < 0


def _hard_time_limit(task: Task, request: Any) -> float | None:
    limits = getattr(request, "timelimit", None)
    if isinstance(limits, (list, tuple)) and limits and limits[0]:
        return float(limits[0])
    limit = getattr(task, "time_limit", None) or task.app.conf.task_time_limit
    return float(limit) if limit else None


def _noop() -> None:
    pass
