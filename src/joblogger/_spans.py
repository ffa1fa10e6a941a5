"""Span slots (a span with joblogger's event budget) and exception recording."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status

from . import _sanitize, semconv
from ._levels import LOW_LEVELS


class SpanSlot:
    """A span with joblogger's own event budget.

    Debug and info events may use the budget only up to ``limit - reserve``;
    milestones, warnings and errors may use all of it but the last ``tail``
    slots: one is kept for the event that lists what was dropped and, on the
    run span, one each for the summary line and the exception event, so the
    span never holds more than ``limit`` events.

    Events go through :meth:`add`, which says whether the span was still open: a
    thread of the run may log while another one ends this stage (``set_stage()``),
    and the SDK drops an event added to an ended span (with a warning on its logger).
    """

    __slots__ = (
        "closed",
        "ctx",
        "dropped",
        "high_cap",
        "lock",
        "low_cap",
        "processed_at_start",
        "span",
        "started_at",
        "used",
    )

    def __init__(self, span: Span, limit: int, started_at: float, processed_at_start: int, tail: int = 1) -> None:
        self.span = span
        self.ctx = trace.set_span_in_context(span)
        self.used = 0
        self.dropped: dict[str, int] = {}
        reserve = max(1, limit // 4)
        self.high_cap = max(0, limit - tail)
        self.low_cap = max(0, self.high_cap - reserve)
        self.started_at = started_at
        self.processed_at_start = processed_at_start
        self.closed = False
        # Orders add() against close(); taken only inside a _signals.sdk() section, so a signal
        # handler's joblogger call never waits for it on the thread that holds it (it is deferred).
        self.lock = threading.Lock()

    def admit(self, level: str) -> bool:
        """Take one slot for an event of ``level``, or count it as dropped."""
        cap = self.low_cap if level in LOW_LEVELS else self.high_cap
        if self.used < cap:
            self.used += 1
            return True
        self.dropped[level] = self.dropped.get(level, 0) + 1
        return False

    def add(self, write: Callable[[Span], object]) -> bool:
        """Call ``write`` (an event, an exception event) on the span unless it has been closed; False if it was."""
        with self.lock:
            if self.closed:
                return False
            write(self.span)
            return True

    def close(self, attributes: dict[str, Any], status: Status | None = None) -> None:
        """Report dropped events, set final attributes (a dict the caller hands over) and end the span."""
        with self.lock:
            self.closed = True
            self._close(attributes, status)

    def _close(self, attributes: dict[str, Any], status: Status | None) -> None:
        span = self.span
        if self.dropped:
            total = sum(self.dropped.values())
            span.set_attribute(semconv.JOB_EVENTS_DROPPED, total)
            span.add_event(
                semconv.EVENT_EVENTS_DROPPED,
                {semconv.JOB_EVENTS_DROPPED_BY_LEVEL_PREFIX + k: v for k, v in self.dropped.items()},
            )
        span.set_attributes(attributes)
        if status is not None:
            span.set_status(status)
        span.end()


def error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def exception_message(exc: BaseException) -> str:
    """``str(exc)`` made safe: never raises, UTF-8 encodable, bounded."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not stop the run from ending
        text = f"<unprintable {type(exc).__name__}>"
    return _sanitize.truncate(_sanitize.utf8(text), _sanitize.MAX_VALUE_CHARS)


def record_exception(
    span: Span, exc: BaseException, *, escaped: bool = True, attributes: Mapping[str, Any] | None = None
) -> None:
    """Add the exception event to ``span``, even for an exception whose ``str()`` fails.

    ``escaped=False`` for an exception the job handled and logged (``job.exception()``).
    """
    message = exception_message(exc)
    stack = _sanitize.utf8("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    extra = dict(attributes or {})
    try:
        span.record_exception(
            exc, {**extra, "exception.message": message, "exception.stacktrace": stack}, escaped=escaped
        )
    except Exception:  # noqa: BLE001 - the SDK calls str(exc) itself
        span.add_event(
            "exception",
            {
                **extra,
                "exception.type": error_type(exc),
                "exception.message": message,
                "exception.escaped": str(escaped),
            },
        )
