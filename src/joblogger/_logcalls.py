"""Levelled log calls: a span event (within the span's budget) and a stdlib record each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context

from . import _sanitize, semconv
from ._levels import LEVELNO, RESERVED_RECORD_KEYS
from ._state import RunState, pylog


class LogCallsMixin(RunState):
    """``debug()`` ... ``error()``."""

    __slots__ = ()

    def debug(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log a debug message (not a span event unless ``debug_events=True``)."""
        self._log(semconv.LEVEL_DEBUG, message, context, fields)

    def info(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log general progress information.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.info("Batch processed", {"batchSize": 500}, avgScore=0.72)
            >>> job.log_counts["info"]
            1
        """
        self._log(semconv.LEVEL_INFO, message, context, fields)

    def milestone(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log an important progress point (highlighted in UIs)."""
        self._log(semconv.LEVEL_MILESTONE, message, context, fields)

    def warning(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log a non-fatal issue; counts as a warning in the summary."""
        self._log(semconv.LEVEL_WARNING, message, context, fields)

    def error(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log a failure that does not stop the job; counts as an error in the summary."""
        self._log(semconv.LEVEL_ERROR, message, context, fields)

    def _log(
        self, level: str, message: object, context: Mapping[str, Any] | None, fields: Mapping[str, Any] | None
    ) -> None:
        try:
            if self._ended_call():
                return
            next(self._tally.log_ticks[level])
            limiter = self._limits.get(level)
            if limiter is not None and not limiter.allow():
                return
            levelno = LEVELNO[level]
            to_stdlib = pylog.isEnabledFor(levelno)
            if level == semconv.LEVEL_DEBUG and not (self._debug_events or to_stdlib):
                return
            text = _sanitize.as_text(message, "message", self._warn)
            if fields:
                merged = dict(context) if isinstance(context, Mapping) else {}
                if context is not None and not isinstance(context, Mapping):
                    merged["context"] = context
                merged.update(fields)
                context = merged
            attrs = _sanitize.context_attributes(context, self._secret_keys, self._warn)
            self._emit(level, levelno, text, attrs, to_stdlib)
        except Exception as exc:  # noqa: BLE001 - never raise into the job
            self._internal_error(level, exc)

    def _emit(
        self, level: str, levelno: int, text: str, attrs: dict[str, Any], to_stdlib: bool, *, reserved: bool = False
    ) -> None:
        """Add the span event (within the budget, or in a ``reserved`` slot) and the stdlib record."""
        with self._lock:
            slot = self._stage or self._run
            if reserved:
                slot.used += 1
                admitted = True
            else:
                admitted = (level != semconv.LEVEL_DEBUG or self._debug_events) and slot.admit(level)
            stage = self._stage_name
        if admitted:
            event_attrs = dict(attrs)
            event_attrs[semconv.JOB_LOG_LEVEL] = level
            slot.span.add_event(text, event_attrs)
        if to_stdlib:
            extra: dict[str, Any] = {}
            for key, value in attrs.items():
                extra[f"context.{key}" if key in RESERVED_RECORD_KEYS else key] = value
            extra[semconv.JOB_NAME] = self._job_name
            extra[semconv.JOB_RUN_ID] = self._run_id
            extra[semconv.JOB_LOG_LEVEL] = level
            if stage is not None:
                extra[semconv.JOB_STAGE] = stage
            token = otel_context.attach(slot.ctx)
            try:
                pylog.log(levelno, text, extra=extra)
            finally:
                otel_context.detach(token)
