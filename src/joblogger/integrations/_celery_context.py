"""What a Celery task execution carries (settings, request attributes, parent context) and the worker's set-up.

Shared by :mod:`joblogger.integrations.celery` (the task's process) and
:mod:`joblogger.integrations._celery_main` (the worker's main process).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Mapping
from typing import Any

from celery import Task
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

from .. import semconv
from .._current import current_job

_log = logging.getLogger("joblogger")

FRAMEWORK = "celery"
#: Span attribute: the task was sent by celery beat (``True``), and the entry name where the scheduler carries it.
ATTR_BEAT = "celery.beat"
ATTR_BEAT_ENTRY = "celery.beat.entry"
#: Span attribute: why the attempt ended that way (retry reason, signal, time limit, revoke, Ignore/Reject).
ATTR_END_REASON = "celery.end.reason"


class _RequestGetter(Getter[Any]):
    """Reads trace headers (``traceparent``...) from a Celery request (message headers are its attributes)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None:  # eager apply(headers=...) keeps them apart
            headers = getattr(carrier, "headers", None)
            value = headers.get(key) if isinstance(headers, dict) else None
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Any) -> list[str]:
        return []


_GETTER = _RequestGetter()
#: What _configure() set up in this process (reset in a forked child by configure() returning its own).
_telemetry: list[Any] = [None]
_state = threading.local()


class _Settings:
    __slots__ = ("configure", "default", "progress_interval_s", "providers")

    def __init__(
        self,
        configure: bool | Mapping[str, Any],
        default: bool,
        progress_interval_s: float,
        providers: dict[str, Any],
    ) -> None:
        self.configure = configure
        self.default = default
        self.progress_interval_s = progress_interval_s
        self.providers = providers


def _is_prefork(worker: Any) -> bool:
    pool = getattr(worker, "pool_cls", None)
    name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    return "prefork" in name or name.rsplit(":", 1)[-1] in ("processes", "prefork")


def _configure(settings: _Settings, *, after_fork: bool) -> None:
    """Set up OpenTelemetry in this worker process; never raises into Celery."""
    try:
        from .. import otlp

        options = dict(settings.configure) if isinstance(settings.configure, Mapping) else {}
        options.setdefault("handle_sigterm", False)  # Celery owns the worker's signals
        telemetry = otlp.configure(**options)
        _telemetry[0] = telemetry
        if after_fork and telemetry.reused_existing:
            otlp.after_fork()  # the application's own providers, inherited from the parent
    except Exception as exc:  # noqa: BLE001 - a telemetry set-up problem must not stop the worker
        _log.warning("joblogger: setting up OpenTelemetry in the Celery worker failed: %r", exc)


def _enabled(task: Task | type[Task], settings: _Settings) -> bool:
    flag = getattr(task, "joblogger", None)
    return settings.default if flag is None else bool(flag)


def _attributes(request: Any) -> tuple[str | None, str | None, int, dict[str, object]]:
    delivery = getattr(request, "delivery_info", None) or {}
    queue = delivery.get("routing_key") or delivery.get("exchange") or None
    retries = getattr(request, "retries", 0)
    attempt = (retries if isinstance(retries, int) else 0) + 1
    extra: dict[str, object] = {}
    if getattr(request, "celery_beat_task", False):
        extra[ATTR_BEAT] = True
        entry = getattr(request, "periodic_task_name", None)  # instrument() in beat, django-celery-beat
        if isinstance(entry, str) and entry:
            extra[ATTR_BEAT_ENTRY] = entry
    return queue, getattr(request, "hostname", None), attempt, extra


def _parent(request: Any) -> otel_context.Context | None:
    """The current context when it has a span (the Celery instrumentation's), else the producer's, else None."""
    if trace.get_current_span().get_span_context().is_valid:
        return None
    extracted = propagate.extract(request, getter=_GETTER)
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


#: The celery beat schedule entry being sent by this thread (set around ``Scheduler.apply_async``).
_BEAT_ENTRY: contextvars.ContextVar[str | None] = contextvars.ContextVar("joblogger_celery_beat_entry", default=None)


def parent_carrier(request: Any) -> str | None:
    """The ``joblogger_parent`` header of a request (the producer run's carrier), if any."""
    value = _GETTER.get(request, semconv.HEADER_PARENT)
    return value[0] if value else None


def _inject_trace_context(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Carry the producer's trace context in the task message unless something already did.

    A task sent while a run is current (``with job:``) also gets that run's carrier in the
    ``joblogger_parent`` header (unless the producer set one): the task's run is then a child
    run of it (docs/children.md). Not when the message is the run's own task sent again
    (``self.retry()`` re-sends the task with its id): the next attempt is the same run id,
    not a child of the attempt before it.

    A message that celery beat sends also gets ``celery_beat_task`` and, unless the scheduler
    set one, ``periodic_task_name`` (the schedule entry's name): Celery's own scheduler marks
    nothing, so without this a worker cannot tell a scheduled task from any other.
    """
    try:
        if headers is None:
            return
        entry = _BEAT_ENTRY.get()
        if entry is not None:
            headers.setdefault("celery_beat_task", True)
            headers.setdefault("periodic_task_name", entry)
        if semconv.HEADER_PARENT not in headers:
            job = current_job()
            if job is not None and not job.ended and headers.get("id") != job.job_run_id:
                headers[semconv.HEADER_PARENT] = job.child_carrier()
        if "traceparent" in headers:
            return
        if trace.get_current_span().get_span_context().is_valid:
            propagate.inject(headers)
    except Exception as exc:  # noqa: BLE001 - never break sending a task
        _log.warning("joblogger: could not add the trace context to a Celery task: %r", exc)


def mark_beat_sends() -> None:
    """Wrap ``celery.beat.Scheduler.apply_async`` (once) so the messages it sends name their entry."""
    from celery import beat

    original = beat.Scheduler.apply_async
    if getattr(original, "__joblogger_beat__", False):
        return

    @functools.wraps(original)
    def apply_async(self: Any, entry: Any, *args: Any, **kwargs: Any) -> Any:
        token = _BEAT_ENTRY.set(str(getattr(entry, "name", "") or getattr(entry, "task", "")))
        try:
            return original(self, entry, *args, **kwargs)
        finally:
            _BEAT_ENTRY.reset(token)

    apply_async.__joblogger_beat__ = True  # type: ignore[attr-defined]
    beat.Scheduler.apply_async = apply_async  # type: ignore[method-assign]


# --- what the worker's main process sees: the task's process was killed -------------------------
