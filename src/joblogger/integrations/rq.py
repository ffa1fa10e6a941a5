"""RQ: one joblogger run per job execution (``pip install 'joblogger[rq]'``).

Enable it for a whole worker with one option::

    rq worker --worker-class joblogger.integrations.rq.Worker        # a work horse per job (RQ's default)
    rq worker --worker-class joblogger.integrations.rq.SimpleWorker  # jobs in the worker process

Each job execution is a run: run id = the RQ job id, job name = the job's
function path (``job.func_name``, e.g. ``app.tasks.send_emails``; never the
description, which contains the arguments), ``job.queue`` = the queue,
``job.worker`` = the worker's name, ``job.attempt`` = RQ's retry count + 1.
Inside the job, ``joblogger.current_job()`` is the run, and its progress is
mirrored into ``job.meta["progress"]`` (``save_meta()``, at most once a second).
Opt a task out with ``@task(enabled=False)``; with a worker class whose
``joblogger_all_tasks`` is False, only ``@task`` functions get a run.

The run span is a child of the current span when an RQ instrumentation made
one (``opentelemetry-instrumentation-rq``), else of the producer's trace
context in ``job.meta`` (W3C ``traceparent``, written by :class:`Queue` or
:func:`trace_meta`). Results: an exception is ``failure``,
``JobTimeoutException`` is ``timeout``, a job stopped with
``send_stop_job_command`` or killed by a cold shutdown is ``cancellation``, a
job that returns ``rq.Retry`` is a ``failure`` followed by a new attempt.
Exceptions propagate untouched. See docs/integrations.md.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar, overload

from opentelemetry import propagate, trace
from rq import Retry
from rq.job import Job
from rq.queue import Queue as _RQQueue
from rq.timeouts import JobTimeoutException
from rq.worker import SimpleWorker as _RQSimpleWorker
from rq.worker import Worker as _RQWorker

from .. import semconv
from .._logger import JobLogger
from ._common import DEFAULT_PROGRESS_INTERVAL_S, no_progress, publish_progress, start_task_run
from ._flush import flush_global_providers

__all__ = ["META_KEY", "JobLoggerWorkerMixin", "Queue", "SimpleWorker", "Worker", "task", "trace_meta"]

_log = logging.getLogger("joblogger")
_F = TypeVar("_F", bound=Callable[..., Any])

FRAMEWORK = "rq"
#: ``job.meta`` key the run's progress is written to.
META_KEY = "progress"
#: ``job.meta`` key that counts the job's executions (RQ counts retries of returned ``Retry`` only).
ATTEMPT_KEY = "joblogger_attempt"
_OPTIONS_ATTR = "__joblogger_rq__"
#: The run of the job this process is executing (a work horse runs one job).
_ACTIVE: list[JobLogger] = []
#: The joblogger.otlp set-up this worker made (None: not configured by us).
_TELEMETRY: list[Any] = []


@dataclass(frozen=True, slots=True)
class _TaskOptions:
    enabled: bool = True
    name: str | None = None


@overload
def task(func: _F, /) -> _F: ...
@overload
def task(*, enabled: bool = True, name: str | None = None) -> Callable[[_F], _F]: ...
def task(func: Any = None, /, *, enabled: bool = True, name: str | None = None) -> Any:
    """Per-task settings: ``@task`` opts in, ``@task(enabled=False)`` opts out, ``name=`` renames the job.

    Example:
        >>> @task(enabled=False)
        ... def ping() -> None: ...
        >>> _options(ping).enabled
        False
    """
    options = _TaskOptions(bool(enabled), None if name is None else str(name))

    def mark(target: _F) -> _F:
        try:
            setattr(target, _OPTIONS_ATTR, options)
        except (AttributeError, TypeError):
            _log.warning("joblogger: cannot mark %r as an RQ task; its settings are ignored", target)
        return target

    return mark(func) if func is not None else mark


def _options(func: object) -> _TaskOptions | None:
    found = getattr(func, _OPTIONS_ATTR, None)
    return found if isinstance(found, _TaskOptions) else None


def trace_meta(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """``meta`` plus the current trace context (W3C ``traceparent``), for ``queue.enqueue(..., meta=...)``.

    Example:
        >>> trace_meta({"owner": "ops"})  # no active span: nothing added
        {'owner': 'ops'}
    """
    carrier: dict[str, Any] = dict(meta or {})
    propagate.inject(carrier)
    return carrier


class Queue(_RQQueue):
    """``rq.Queue`` that carries the producer's trace context in each new job's ``meta``.

    Use it where jobs are enqueued (``Queue("default", connection=redis)``); the
    worker's run span then continues the producer's trace. A ``traceparent``
    already in ``meta`` is kept.
    """

    def create_job(self, *args: Any, **kwargs: Any) -> Job:
        job = super().create_job(*args, **kwargs)
        try:
            if "traceparent" not in job.meta:
                propagate.inject(job.meta)
        except Exception as exc:  # noqa: BLE001 - tracing must never stop an enqueue
            _log.warning("joblogger: could not add the trace context to RQ job %s: %r", job.id, exc)
        return job


def _job_name(job: Job, options: _TaskOptions | None) -> str:
    if options is not None and options.name:
        return options.name
    try:
        return job.func_name or "rq-job"
    except Exception:  # noqa: BLE001 - an undeserialisable job still gets a run
        return "rq-job"


def _parent(job: Job) -> Any:
    """The current span's context if an instrumentation made one, else the producer's from ``job.meta``."""
    if trace.get_current_span().get_span_context().is_valid:
        return None
    meta = job.meta if isinstance(job.meta, dict) else {}
    return propagate.extract({k: v for k, v in meta.items() if isinstance(v, str)})


def _attempt(job: Job) -> int:
    """This execution's number: executions this integration counted before, or RQ's own retry count, + 1."""
    before = job.meta.get(ATTEMPT_KEY) if isinstance(job.meta, dict) else None
    counted = before if isinstance(before, int) and not isinstance(before, bool) else 0
    return max(counted, getattr(job, "number_of_retries", None) or 0) + 1


def _meta_sink(job: Job) -> Callable[[dict[str, Any]], None]:
    """Write the progress to ``job.meta``; a job that never reports any progress costs no Redis write."""
    wrote = [False]

    def sink(meta: dict[str, Any]) -> None:
        if not wrote[0] and no_progress(meta):
            return
        wrote[0] = True
        job.meta[META_KEY] = meta
        job.save_meta()  # type: ignore[no-untyped-call]

    return sink


class JobLoggerWorkerMixin:
    """What :class:`Worker` and :class:`SimpleWorker` add to an RQ worker class; mix it into your own.

    Class attributes (override in a subclass):

    - ``joblogger_configure``: call :func:`joblogger.otlp.configure` when the worker starts (default True;
      an application's own SDK providers are reused).
    - ``joblogger_all_tasks``: a run for every job (default True); False: only ``@task`` functions.
    - ``joblogger_progress_interval_s``: how often ``job.meta["progress"]`` is written at most; None: never.
    - ``joblogger_stop_grace_s``: how long a stopped work horse may take to report its run before SIGKILL.
    """

    joblogger_configure: bool = True
    joblogger_all_tasks: bool = True
    joblogger_progress_interval_s: float | None = DEFAULT_PROGRESS_INTERVAL_S
    joblogger_stop_grace_s: float = 5.0

    # -- provided by the rq worker class this is mixed into --
    name: str
    _shutdown_requested_date: Any

    def work(self, *args: Any, **kwargs: Any) -> Any:
        if self.joblogger_configure:
            _configure_once()
        return super().work(*args, **kwargs)  # type: ignore[misc]

    def perform_job(self, job: Job, queue: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            func = job.func
        except Exception:  # noqa: BLE001 - RQ reports the job's import error itself
            func = None
        options = _options(func)
        enabled = options.enabled if options is not None else self.joblogger_all_tasks
        if not enabled:
            return super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
        original = job.perform
        job.perform = functools.partial(self._joblogger_perform, job, original, options)  # type: ignore[method-assign]
        try:
            return super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
        finally:
            try:
                del job.perform
            except AttributeError:
                pass

    def _joblogger_perform(self, job: Job, perform: Callable[[], Any], options: _TaskOptions | None) -> Any:
        attempt = _attempt(job)
        # Saved with the progress, and by RQ itself when it re-enqueues the job for a retry (job.save()).
        job.meta[ATTEMPT_KEY] = attempt
        try:
            run: JobLogger | None = start_task_run(
                _job_name(job, options),
                job.id,
                framework=FRAMEWORK,
                queue=job.origin,
                worker=self.name,
                attempt=attempt,
                parent=_parent(job),
            )
        except Exception as exc:  # noqa: BLE001 - telemetry must never stop the job
            _log.warning("joblogger: could not start the run of RQ job %s: %r", job.id, exc)
            run = None
        if run is None:
            return perform()
        interval = self.joblogger_progress_interval_s
        stop = publish_progress(run, _meta_sink(job), interval) if interval else None
        _ACTIVE[:] = [run]
        try:
            with run:
                try:
                    value = perform()
                except JobTimeoutException as exc:
                    run.end(result=semconv.RESULT_TIMEOUT, error=exc)
                    raise
                except SystemExit as exc:
                    # RQ's cold shutdown (second Ctrl-C/SIGTERM) raises SystemExit() into a SimpleWorker's job.
                    shutting_down = getattr(self, "_shutdown_requested_date", None) is not None
                    run.end(result=semconv.RESULT_CANCELLATION if shutting_down else None, error=exc)
                    raise
                if isinstance(value, Retry):
                    run.end(result=semconv.RESULT_FAILURE)
                return value
        finally:
            _ACTIVE[:] = []
            if stop is not None:
                stop()
            if getattr(self, "is_horse", False):  # the horse leaves with os._exit(): export the run now
                flush_global_providers()

    # -- forking workers: a stopped job's horse reports its run before it dies --
    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()  # type: ignore[misc]
        telemetry = _TELEMETRY[0] if _TELEMETRY else None
        if telemetry is not None and telemetry.reused_existing:
            from .. import otlp

            otlp.after_fork()  # the application's own providers: forget the parent's counts
        if self.joblogger_stop_grace_s > 0:
            signal.signal(signal.SIGTERM, _horse_terminated)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        pid = getattr(self, "_horse_pid", 0)
        grace = self.joblogger_stop_grace_s
        if not pid or sig != signal.SIGKILL or grace <= 0:
            super().kill_horse(sig)  # type: ignore[misc]
            return
        # SIGTERM first: the horse ends its run as cancelled and exports it; SIGKILL after the grace period.
        super().kill_horse(signal.SIGTERM)  # type: ignore[misc]
        parent_kill = super().kill_horse  # type: ignore[misc]

        def finish() -> None:
            if getattr(self, "_horse_pid", 0) == pid:
                parent_kill(signal.SIGKILL)

        timer = threading.Timer(grace, finish)
        timer.daemon = True
        timer.start()


def _horse_terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM in a work horse (a stop command, a cold shutdown): end the run as cancelled, export it, die."""
    for run in list(_ACTIVE):
        try:
            run.end(result=semconv.RESULT_CANCELLATION)
        except Exception as exc:  # noqa: BLE001
            _log.warning("joblogger: could not end the stopped run: %r", exc)
    flush_global_providers()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _configure_once() -> None:
    if _TELEMETRY:
        return
    try:
        from .. import otlp

        # RQ installs its own SIGTERM/SIGINT handling (warm, then cold shutdown): leave it alone.
        _TELEMETRY.append(otlp.configure(handle_sigterm=False))
    except Exception as exc:  # noqa: BLE001 - no SDK installed: runs go to whatever providers exist
        _log.warning("joblogger: could not configure OpenTelemetry for the RQ worker: %r", exc)


class Worker(JobLoggerWorkerMixin, _RQWorker):
    """RQ's forking worker (a work horse per job) with a joblogger run per job."""


class SimpleWorker(JobLoggerWorkerMixin, _RQSimpleWorker):
    """RQ's in-process worker with a joblogger run per job."""
