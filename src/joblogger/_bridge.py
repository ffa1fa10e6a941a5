"""Severity mapping, and a stdlib ``logging.Handler`` that emits records as OpenTelemetry log records.

joblogger's own job records are emitted by ``_logexport`` (which uses
:func:`severity`); :class:`OTelLogHandler` bridges other stdlib records, and
``_logexport`` recognises it, like the SDK's ``LoggingHandler``, so a record is
never exported twice. The record's trace correlation comes from the current
OpenTelemetry context, which joblogger sets to the stage (or run) span while it logs.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry._logs import Logger, LogRecord, SeverityNumber

from . import semconv
from ._levels import MILESTONE, MILESTONE_NAME, RESERVED_RECORD_KEYS
from ._sanitize import attribute_value, utf8
from ._spans import error_type, exception_message

_RESERVED = RESERVED_RECORD_KEYS


def severity(levelno: int) -> SeverityNumber:
    """OpenTelemetry severity of a stdlib level (MILESTONE maps to INFO4)."""
    if levelno == MILESTONE:
        return SeverityNumber.INFO4
    if levelno < logging.INFO:
        return SeverityNumber.DEBUG
    if levelno < logging.WARNING:
        return SeverityNumber(min(12, 9 + (levelno - logging.INFO) // 2 + (1 if levelno > logging.INFO else 0)))
    if levelno < logging.ERROR:
        return SeverityNumber.WARN
    if levelno < logging.CRITICAL:
        return SeverityNumber.ERROR
    return SeverityNumber.FATAL


class OTelLogHandler(logging.Handler):
    """Sends each record to an OpenTelemetry logger, with its extras as attributes."""

    def __init__(self, otel_logger: Logger, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._otel_logger = otel_logger

    def emit(self, record: logging.LogRecord) -> None:
        """Translate and emit one record; never raises."""
        try:
            self._otel_logger.emit(to_otel(record))
        except Exception:  # noqa: BLE001
            self.handleError(record)


def to_otel(record: logging.LogRecord) -> LogRecord:
    """The OpenTelemetry log record of a stdlib record: extras as attributes, call site, exception."""
    attributes: dict[str, Any] = {
        key: attribute_value(value) for key, value in record.__dict__.items() if key not in _RESERVED
    }
    attributes["code.function.name"] = record.funcName
    attributes["code.file.path"] = record.pathname
    attributes["code.line.number"] = record.lineno
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        attributes["exception.type"] = error_type(exc)
        attributes["exception.message"] = exception_message(exc)
        attributes["exception.stacktrace"] = utf8("".join(traceback.format_exception(*record.exc_info)))
    # Milestones keep their name whatever another library registered for the level number.
    milestone = getattr(record, semconv.JOB_LOG_LEVEL, None) == semconv.LEVEL_MILESTONE
    return LogRecord(
        timestamp=int(record.created * 1e9),
        context=otel_context.get_current(),
        severity_text=MILESTONE_NAME if milestone else record.levelname,
        severity_number=SeverityNumber.INFO4 if milestone else severity(record.levelno),
        body=record.getMessage(),
        attributes=attributes,
    )
