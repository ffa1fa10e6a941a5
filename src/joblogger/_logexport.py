"""Job log records to OpenTelemetry logs, independent of the application's stdlib logging set-up.

joblogger is its own log appender (the OpenTelemetry Logs *Bridge* API is meant
for exactly this): every job log record at or above :func:`level` (INFO by
default) is emitted to the **global** ``LoggerProvider``, the same way runs go
to the global tracer provider and progress to the global meter provider. So a
job's info lines, milestones and summary reach the collector whoever set up
the SDK (``joblogger.otlp.configure()``, ``opentelemetry-instrument``, or the
application's own code), and the application's logging configuration is never
touched: the stdlib record on the ``joblogger`` logger is still produced only
where that logger is enabled, and reaches only the handlers the application
configured.

No duplicates: when the stdlib record will itself reach an OpenTelemetry
logging handler (the SDK's ``LoggingHandler`` that logging auto-instrumentation
puts on the root logger, or one the application added), that handler exports
it and joblogger does not emit it a second time.

Without an SDK (no provider registered) nothing is emitted and nothing is built.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import _logs
from opentelemetry._logs import NoOpLoggerProvider
from opentelemetry._logs import _internal as _logs_internal
from opentelemetry._logs._internal import ProxyLoggerProvider

from . import _sanitize, semconv
from ._bridge import OTelLogHandler, to_otel
from ._version import __version__

__all__ = ["emit", "level", "set_level", "wanted"]

_state: dict[str, Any] = {"logger": None, "registered": False}
#: Level from which job records are exported (read directly on the debug fast path).
LEVEL = logging.INFO
#: The API loads a provider named by this variable on first use.
_PROVIDER_FROM_ENV = "OTEL_PYTHON_LOGGER_PROVIDER" in os.environ
_pylog = logging.getLogger("joblogger")
#: Handler classes that export to OpenTelemetry, by class (computed once per class).
_otel_handler_types: dict[type, bool] = {}


def set_level(levelno: int) -> None:
    """Export job log records from ``levelno`` up (``joblogger.otlp.configure(log_level=)``)."""
    global LEVEL
    LEVEL = int(levelno)


def level() -> int:
    """The level from which job log records are exported."""
    return LEVEL


def _is_otel_handler(handler: logging.Handler) -> bool:
    cls = type(handler)
    known = _otel_handler_types.get(cls)
    if known is None:
        known = issubclass(cls, OTelLogHandler) or (
            cls.__name__ == "LoggingHandler" and cls.__module__.startswith("opentelemetry")
        )
        _otel_handler_types[cls] = known
    return known


def _reaches_otel_handler(levelno: int) -> bool:
    """Whether a record of ``levelno`` logged on ``joblogger`` reaches an OpenTelemetry handler."""
    logger: logging.Logger | None = _pylog
    while logger is not None:
        for handler in logger.handlers:
            if levelno >= handler.level and _is_otel_handler(handler):
                return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


def _provider_registered() -> bool:
    """Whether a logger provider is registered (once it is, it cannot change)."""
    if _state["registered"]:
        return True
    # get_logger_provider() reads the environment on every call until a provider is set (about 3 us);
    # the API's own global says the same for free, unless OTEL_PYTHON_LOGGER_PROVIDER names one to load.
    if getattr(_logs_internal, "_LOGGER_PROVIDER", True) is None and not _PROVIDER_FROM_ENV:
        return False
    provider = _logs.get_logger_provider()
    registered = not isinstance(provider, (NoOpLoggerProvider, ProxyLoggerProvider))
    _state["registered"] = registered
    return registered


def wanted(levelno: int, to_stdlib: bool) -> bool:
    """Whether joblogger itself should emit a job record of ``levelno`` (``to_stdlib``: it is also logged)."""
    if levelno < LEVEL or not _provider_registered():
        return False
    return not (to_stdlib and _reaches_otel_handler(levelno))


def emit(record: logging.LogRecord) -> None:
    """Emit one job record in the current context (joblogger attaches the stage's span first)."""
    logger = _state["logger"]
    if logger is None:
        logger = _state["logger"] = _logs.get_logger(semconv.SCOPE_NAME, __version__)
    try:
        logger.emit(to_otel(record))
    except Exception as exc:  # noqa: BLE001 - exporting must never break the job
        _pylog.debug("joblogger: could not emit a log record: %r", exc)


def _export_warning(record: logging.LogRecord, to_stdlib: bool) -> None:
    """joblogger's own warnings (bad input, caps) reach OpenTelemetry like the job's records."""
    if wanted(record.levelno, to_stdlib):
        emit(record)


_sanitize.WARNING_SINKS.append(_export_warning)
