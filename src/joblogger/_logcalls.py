"""Levelled log calls: a span event (within the span's budget) and a stdlib record each."""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable, Mapping
from logging import DEBUG
from types import TracebackType
from typing import Any, TypeAlias

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from . import _callsite, _logexport, _sanitize, _signals, semconv
from ._levels import LEVELNO, RESERVED_RECORD_KEYS
from ._ratelimit import TokenBucket
from ._redact import redact_text
from ._spans import SpanSlot, record_exception
from ._state import RunState, pylog

#: What ``exc_info=`` accepts, as in :mod:`logging`: True (the exception being handled), an exception, or a tuple.
ExcInfo: TypeAlias = "bool | BaseException | tuple[type[BaseException], BaseException, TracebackType | None] | None"
_ExcTuple: TypeAlias = "tuple[type[BaseException], BaseException, TracebackType | None]"


class LogCallsMixin(RunState):
    """``debug()`` ... ``error()`` and ``exception()``.

    ``message`` is positional-only, so every other name (``message=``, ``self=``)
    is a field. ``exc_info=`` and ``stacklevel=`` work as in :mod:`logging`.
    """

    __slots__ = ()

    def debug(
        self,
        message: str,
        /,
        context: Mapping[str, Any] | None = None,
        *,
        exc_info: ExcInfo = None,
        stacklevel: int = 1,
        **fields: Any,
    ) -> None:
        """Log a debug message (not a span event unless ``debug_events=True``)."""
        try:
            # Off (the usual case): only count it, as filtered-out logging.debug costs only a level check.
            if (
                not self._debug_events
                and self._summary is None
                and _logexport.LEVEL > DEBUG
                and not pylog.isEnabledFor(DEBUG)
            ):
                tally = self._tally
                next(tally.log_ticks[semconv.LEVEL_DEBUG])
                next(tally.job_logs[semconv.LEVEL_DEBUG])
                return
        except Exception:  # noqa: BLE001, S110 - the full path below reports what went wrong
            pass
        self._log(semconv.LEVEL_DEBUG, message, context, fields, exc_info=exc_info, stacklevel=stacklevel)

    def info(
        self,
        message: str,
        /,
        context: Mapping[str, Any] | None = None,
        *,
        exc_info: ExcInfo = None,
        stacklevel: int = 1,
        **fields: Any,
    ) -> None:
        """Log general progress information.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.info("Batch processed", {"batchSize": 500}, avgScore=0.72)
            >>> job.log_counts["info"]
            1
        """
        self._log(semconv.LEVEL_INFO, message, context, fields, exc_info=exc_info, stacklevel=stacklevel)

    def milestone(
        self,
        message: str,
        /,
        context: Mapping[str, Any] | None = None,
        *,
        exc_info: ExcInfo = None,
        stacklevel: int = 1,
        **fields: Any,
    ) -> None:
        """Log an important progress point (highlighted in UIs)."""
        self._log(semconv.LEVEL_MILESTONE, message, context, fields, exc_info=exc_info, stacklevel=stacklevel)

    def warning(
        self,
        message: str,
        /,
        context: Mapping[str, Any] | None = None,
        *,
        exc_info: ExcInfo = None,
        stacklevel: int = 1,
        **fields: Any,
    ) -> None:
        """Log a non-fatal issue; counts as a warning in the summary."""
        self._log(semconv.LEVEL_WARNING, message, context, fields, exc_info=exc_info, stacklevel=stacklevel)

    def error(
        self,
        message: str,
        /,
        context: Mapping[str, Any] | None = None,
        *,
        exc_info: ExcInfo = None,
        stacklevel: int = 1,
        **fields: Any,
    ) -> None:
        """Log a failure that does not stop the job; counts as an error in the summary."""
        self._log(semconv.LEVEL_ERROR, message, context, fields, exc_info=exc_info, stacklevel=stacklevel)

    def exception(
        self,
        message: str,
        /,
        context: Mapping[str, Any] | None = None,
        *,
        exc_info: ExcInfo = True,
        stacklevel: int = 1,
        **fields: Any,
    ) -> None:
        """Log an error with the exception being handled: call it in an ``except`` block.

        The record carries the traceback (``exc_info``), the span gets an
        ``exception`` event; the job goes on and the call counts as an error.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> try:
            ...     1 / 0
            ... except ZeroDivisionError:
            ...     job.exception("Could not score user", userId=7)
            >>> job.log_counts["error"]
            1
        """
        self._log(semconv.LEVEL_ERROR, message, context, fields, exc_info=exc_info, stacklevel=stacklevel)

    def _log(
        self,
        level: str,
        message: object,
        context: Mapping[str, Any] | None,
        fields: Mapping[str, Any] | None,
        *,
        exc_info: object = None,
        stacklevel: object = 1,
        site: tuple[str, int, str] | None = None,
    ) -> None:
        try:
            if _signals.reentered():  # from a signal handler, inside one of our SDK calls: run it right after
                _signals.defer(
                    functools.partial(
                        self._log, level, message, context, fields, exc_info=exc_info, stacklevel=stacklevel, site=site
                    )
                )
                return
            if self._ended_call():
                return
            tally = self._tally
            next(tally.log_ticks[level])
            next(tally.job_logs[level])
            limiter = self._limits.get(level)
            if limiter is None:
                spec = self._limit_specs.get(level)
                if spec is not None:  # the level's first call: make its bucket (a race makes two; one stays)
                    limiter = self._limits.setdefault(level, TokenBucket(spec[0], spec[1], self._clock))
            if limiter is not None and not limiter.allow():
                return
            levelno = LEVELNO[level]
            to_stdlib = pylog.isEnabledFor(levelno)
            if level == semconv.LEVEL_DEBUG and not (self._debug_events or to_stdlib or _logexport.level() <= levelno):
                return
            text = redact_text(_sanitize.as_text(message, "message", self._warn))
            if fields:
                merged: dict[Any, Any] = {}
                if isinstance(context, Mapping):  # bounded: the rest would be dropped anyway
                    merged.update(itertools.islice(context.items(), _sanitize.MAX_CONTEXT_ITEMS + 1))
                elif context is not None:
                    merged["context"] = context
                merged.update(fields)
                context = merged
            attrs = _sanitize.context_attributes(context, self._secret_keys, self._warn)
            exc = None if exc_info is None or exc_info is False else self._exc_tuple(exc_info)
            skip = 0 if stacklevel == 1 else self._extra_frames(stacklevel)
            self._emit(level, levelno, text, attrs, to_stdlib, exc_info=exc, skip=skip, site=site)
        except Exception as error:  # noqa: BLE001 - never raise into the job
            self._internal_error(level, error)

    def _record_only(self, level: str, text: str) -> None:
        """A log call of joblogger's own that is a record and a ``job.logs`` count, but no span event.

        For ``Starting: <stage>``, which the stage span itself states. Costs two counter
        ticks and a level check when no handler or log exporter wants the record.
        """
        try:
            tally = self._tally
            next(tally.log_ticks[level])
            next(tally.job_logs[level])
            levelno = LEVELNO[level]
            to_stdlib = pylog.isEnabledFor(levelno)
            if to_stdlib or _logexport.wanted(levelno, False):
                self._emit(level, levelno, redact_text(text), {}, to_stdlib, event=False)
        except Exception as error:  # noqa: BLE001 - never raise into the job
            self._internal_error(level, error)

    def _exc_tuple(self, exc_info: object) -> _ExcTuple | None:
        """``exc_info=`` as :mod:`logging` reads it; junk and "no exception" are ignored with a warning."""
        if isinstance(exc_info, BaseException):
            return type(exc_info), exc_info, exc_info.__traceback__
        if isinstance(exc_info, tuple):
            if len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
                return exc_info  # type: ignore[return-value]
            if exc_info != (None, None, None):
                self._warn("exc_info-type", "exc_info should be True, an exception or sys.exc_info(); ignored")
            return None
        if not exc_info:  # 0, "", ... : no exception, as in logging
            return None
        current = sys.exc_info()
        if current[1] is None:
            self._warn("exc_info-none", "exc_info was given outside an except block: no exception to record")
            return None
        return current  # type: ignore[return-value]

    def _extra_frames(self, stacklevel: object) -> int:
        """Frames above the caller that ``stacklevel=`` asks for (``stacklevel=2``: the caller's caller)."""
        n = _sanitize.as_count(stacklevel, "stacklevel", self._warn)
        return max(0, (n or 1) - 1)

    def _emit(
        self,
        level: str,
        levelno: int,
        text: str,
        attrs: dict[str, Any],
        to_stdlib: bool,
        *,
        reserved: bool = False,
        event: bool = True,
        in_section: bool = False,
        exc_info: _ExcTuple | None = None,
        skip: int = 0,
        site: tuple[str, int, str] | None = None,
    ) -> None:
        """Add the span event (within the budget, or in a ``reserved`` slot; none if not ``event``) and the record.

        The record's call site (file, line, function) is the job's code that called
        joblogger, plus ``skip`` frames up, never joblogger's own; or ``site`` when given
        (a bridged stdlib record keeps its own). ``in_section``: the caller is already inside a
        ``_signals.sdk()`` section (the run's end), so no nested one is entered.
        """
        with self._lock:
            slot = self._stage or self._run
            if not event:
                admitted = False
            elif reserved:
                slot.used += 1
                admitted = True
            else:
                admitted = (level != semconv.LEVEL_DEBUG or self._debug_events) and slot.admit(level)
            # The exception event takes a slot of its own, in the same budget.
            exc_admitted = exc_info is not None and admitted and slot.admit(level)
            stage = self._stage_name
        if in_section:
            self._emit_in_section(
                slot, level, levelno, text, attrs, to_stdlib=to_stdlib, admitted=admitted,
                exc_admitted=exc_admitted, exc_info=exc_info, stage=stage, skip=skip, site=site,
            )  # fmt: skip
            return
        with _signals.sdk():
            self._emit_in_section(
                slot, level, levelno, text, attrs, to_stdlib=to_stdlib, admitted=admitted,
                exc_admitted=exc_admitted, exc_info=exc_info, stage=stage, skip=skip, site=site,
            )  # fmt: skip

    def _add_to_span(self, slot: SpanSlot, level: str, write: Callable[[Span], object]) -> None:
        """Write an event to ``slot``'s span; to the run span if another thread has just ended that stage.

        The event was admitted to the stage's budget, which has been reported as the
        stage ended; on the run span it takes a slot of the run's budget (or counts
        as dropped there). After the run's end the event is ignored, like the call.
        """
        if slot.add(write):
            return
        run = self._run
        if run is slot:
            return
        with self._lock:
            admitted = run.admit(level)
        if admitted:
            run.add(write)

    def _emit_in_section(
        self,
        slot: SpanSlot,
        level: str,
        levelno: int,
        text: str,
        attrs: dict[str, Any],
        *,
        to_stdlib: bool,
        admitted: bool,
        exc_admitted: bool,
        exc_info: _ExcTuple | None,
        stage: str | None,
        skip: int,
        site: tuple[str, int, str] | None = None,
    ) -> None:
        """The SDK and stdlib part of :meth:`_emit`, inside a ``_signals.sdk()`` section."""
        if admitted:
            event_attrs = dict(attrs)
            event_attrs[semconv.JOB_LOG_LEVEL] = level
            self._add_to_span(slot, level, lambda span: span.add_event(text, event_attrs))
        if exc_admitted and exc_info is not None:
            exc = exc_info[1]
            self._add_to_span(
                slot,
                level,
                lambda span: record_exception(span, exc, escaped=False, attributes={semconv.JOB_LOG_LEVEL: level}),
            )
        export = _logexport.wanted(levelno, to_stdlib)
        if not (to_stdlib or export):
            return
        extra: dict[str, Any] = {}
        for key, value in attrs.items():
            extra[f"context.{key}" if key in RESERVED_RECORD_KEYS else key] = value
        extra[semconv.JOB_NAME] = self._job_name
        extra[semconv.JOB_RUN_ID] = self._run_id
        extra[semconv.JOB_RUN_SLOT] = self._tally.slot
        extra[semconv.JOB_LOG_LEVEL] = level
        if stage is not None:
            extra[semconv.JOB_STAGE] = stage
        # One record for both paths, naming the job's code as its call site.
        path, line, func = site if site is not None else _callsite.caller(skip)
        record = pylog.makeRecord(pylog.name, levelno, path, line, text, (), exc_info, func, extra)
        token = otel_context.attach(slot.ctx)
        try:
            if to_stdlib:
                pylog.handle(record)
            if export:
                _logexport.emit(record)
        finally:
            otel_context.detach(token)
