"""How the terminal view handles joblogger's log records: hand-off, propagation, levels, styles, text."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import _format, semconv
from ._levels import MILESTONE, RESERVED_RECORD_KEYS

LEVEL_STYLE = {
    semconv.LEVEL_DEBUG: "dim",
    semconv.LEVEL_INFO: "cyan",
    semconv.LEVEL_MILESTONE: "bold green",
    semconv.LEVEL_WARNING: "yellow",
    semconv.LEVEL_ERROR: "bold red",
}
RESULT_STYLE = {
    semconv.RESULT_SUCCESS: "bold green",
    semconv.RESULT_SKIP: "bold yellow",
    semconv.RESULT_CANCELLATION: "bold yellow",
}
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@dataclass
class Line:
    run_id: str
    level: str
    text: str
    context: str


class Handoff(logging.Handler):
    """Receives joblogger records on the job's thread and only queues them (and waits for a run's summary)."""

    def __init__(
        self, sink: deque[logging.LogRecord], level: int, on_milestone: Callable[[logging.LogRecord], None]
    ) -> None:
        super().__init__(level)
        self._sink = sink
        self._on_milestone = on_milestone

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.append(record)

    def handle(self, record: logging.LogRecord) -> bool:
        handled = super().handle(record)
        if handled and record.levelno == MILESTONE:  # outside the handler's lock: it may wait for the view
            self._on_milestone(record)
        return bool(handled)


#: Record attributes that are not the job's context: stdlib ones and joblogger's own extras.
NOT_CONTEXT = RESERVED_RECORD_KEYS | {
    semconv.JOB_NAME,
    semconv.JOB_RUN_ID,
    semconv.JOB_RUN_SLOT,
    semconv.JOB_STAGE,
    semconv.JOB_LOG_LEVEL,
    "joblogger.warning",
}


def context_text(record: logging.LogRecord) -> str:
    pairs = [f"{k}: {v!r}" for k, v in record.__dict__.items() if k not in NOT_CONTEXT]
    return "{ " + ", ".join(pairs) + " }" if pairs else ""


def level_of(record: logging.LogRecord) -> str:
    level = getattr(record, semconv.JOB_LOG_LEVEL, None)
    if isinstance(level, str):
        return level
    if record.levelno >= logging.ERROR:
        return semconv.LEVEL_ERROR
    if record.levelno >= logging.WARNING:
        return semconv.LEVEL_WARNING
    if record.levelno >= MILESTONE:
        return semconv.LEVEL_MILESTONE
    return semconv.LEVEL_INFO if record.levelno >= logging.INFO else semconv.LEVEL_DEBUG


def persist_style(line: Line, record: logging.LogRecord) -> str:
    """Summary lines in bold green (success) or bold red; other lines in their level's colour."""
    if line.level == semconv.LEVEL_MILESTONE:
        text = record.getMessage()
        for result, prefix in _format.RESULT_PREFIX.items():
            if text.startswith(prefix):
                return RESULT_STYLE.get(result, "bold red")
    return LEVEL_STYLE.get(line.level, "")


class PropagateAbove(logging.Handler):
    """Passes on to the parent loggers' handlers only the records the application's levels enabled.

    Installed (with ``propagate = False`` on the ``joblogger`` logger) while the view has lowered that
    logger's level for itself, so the application's root handlers never see the extra records.
    """

    def __init__(self, threshold: int, propagate: bool) -> None:
        super().__init__(logging.NOTSET)
        self.threshold = threshold
        self.propagate = propagate

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.propagate or record.levelno < self.threshold:
            return False
        logger = logging.getLogger("joblogger").parent
        while logger is not None:
            for handler in logger.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
            logger = logger.parent if logger.propagate else None
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does the work
        pass
