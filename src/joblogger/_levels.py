"""Log levels of joblogger and the stdlib LogRecord keys that context fields must not overwrite."""

from __future__ import annotations

import logging

from . import semconv

#: stdlib logging level of ``milestone()``, between INFO (20) and WARNING (30).
#: OpenTelemetry's log bridge maps it to severity INFO4 (12).
MILESTONE = 25
logging.addLevelName(MILESTONE, "MILESTONE")

LEVELNO = {
    semconv.LEVEL_DEBUG: logging.DEBUG,
    semconv.LEVEL_INFO: logging.INFO,
    semconv.LEVEL_MILESTONE: MILESTONE,
    semconv.LEVEL_WARNING: logging.WARNING,
    semconv.LEVEL_ERROR: logging.ERROR,
}
LOW_LEVELS = frozenset((semconv.LEVEL_DEBUG, semconv.LEVEL_INFO))
#: LogRecord attributes that context keys must not overwrite.
RESERVED_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
