"""Log levels of joblogger and the stdlib LogRecord keys that context fields must not overwrite."""

from __future__ import annotations

import logging

from . import semconv

#: stdlib logging level of ``milestone()``, between INFO (20) and WARNING (30). Not 25: that is
#: ``multiprocessing``'s and billiard's (Celery's) ``SUBWARNING`` and verboselogs' ``NOTICE``, so
#: under a process pool milestones printed as ``SUBWARNING``. joblogger's log bridge exports it
#: as severity INFO4 (12) with severity text ``MILESTONE`` whatever name the level carries.
MILESTONE = 23
#: The OpenTelemetry severity text of milestone records.
MILESTONE_NAME = "MILESTONE"
if logging.getLevelName(MILESTONE) in (f"Level {MILESTONE}", MILESTONE_NAME):  # never rename another's level
    logging.addLevelName(MILESTONE, MILESTONE_NAME)

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
