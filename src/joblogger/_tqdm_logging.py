"""``logging_redirect_tqdm``: stdlib records reach the run's levelled logs once, and console lines spare the bars.

Like ``tqdm.contrib.logging.logging_redirect_tqdm``, it swaps the console
handlers (``StreamHandler`` on stdout/stderr) of the given loggers for one that
writes through ``tqdm.write``. In addition, a record logged while a run is
current becomes one of the run's log calls (a span event, a ``job.logs`` count,
an OpenTelemetry log record with the run and stage, a line in the terminal view),
keeping its message, extras, exception and call site.

No record is seen twice anywhere:

- console: the original record is printed once (by the swapped handler), the
  run's copy of it never; while joblogger's terminal view draws, the view shows
  the copy and the original is not printed;
- other handlers of those loggers (files, ...): they get the original, and a
  filter keeps the run's copy away from them;
- OpenTelemetry logging handlers of those loggers (the SDK's ``LoggingHandler``):
  a filter drops the original, and the run's copy (with its run and stage) is
  exported once, by them or by joblogger itself.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from . import semconv
from ._current import current_job
from ._levels import MILESTONE, RESERVED_RECORD_KEYS
from ._logexport import _is_otel_handler
from ._logger import JobLogger
from ._tqdm_bars import _view_drawing, warn

__all__ = ["RunLogHandler", "logging_redirect_tqdm"]

_routing = threading.local()
#: Record attributes that logging instrumentations add (trace ids): the run's copy gets its own.
_INJECTED = ("otel",)


def _is_joblogger(name: str) -> bool:
    return name == "joblogger" or name.startswith("joblogger.")


def _copying() -> bool:
    """Whether this thread is turning a record into a run's log call (its records are copies)."""
    return bool(getattr(_routing, "depth", 0))


def _target(job: JobLogger | None) -> JobLogger | None:
    run = job if job is not None else current_job()
    return None if run is None or run.ended else run


def _level(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return semconv.LEVEL_ERROR
    if levelno >= logging.WARNING:
        return semconv.LEVEL_WARNING
    if levelno == MILESTONE:
        return semconv.LEVEL_MILESTONE
    if levelno >= logging.INFO:
        return semconv.LEVEL_INFO
    return semconv.LEVEL_DEBUG


def route(run: JobLogger, record: logging.LogRecord) -> None:
    """Log ``record`` as one of ``run``'s log calls (message, extras, exception, call site, source logger)."""
    context: dict[str, Any] = {
        key: value
        for key, value in record.__dict__.items()
        if key not in RESERVED_RECORD_KEYS and key[:1] != "_" and not key.startswith(_INJECTED)
    }
    context["logger"] = record.name
    _routing.depth = getattr(_routing, "depth", 0) + 1
    try:
        run._log(
            _level(record.levelno),
            record.getMessage(),
            context,
            None,
            exc_info=record.exc_info or None,
            site=(record.pathname, record.lineno, record.funcName),
        )
    finally:
        _routing.depth -= 1


class RunLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Sends a record to the current run (or ``job``) and prints it once through ``tqdm_class.write``."""

    def __init__(self, tqdm_class: Any, job: JobLogger | None = None) -> None:
        super().__init__()
        self.tqdm_class = tqdm_class
        self._job = job

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if _is_joblogger(record.name):
                if _copying():
                    return  # the run's copy of a record this handler prints itself
            else:
                run = _target(self._job)
                if run is not None:
                    route(run, record)
                    if _view_drawing():
                        return  # the view shows the run's copy
            self.tqdm_class.write(self.format(record), file=self.stream)
            self.flush()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:  # noqa: BLE001
            self.handleError(record)


class _Deduplicate(logging.Filter):
    """On the loggers' other handlers while redirected: each record reaches them once."""

    def __init__(self, otel: bool, job: JobLogger | None) -> None:
        super().__init__()
        self._otel = otel
        self._job = job

    def filter(self, record: logging.LogRecord) -> bool:
        if _is_joblogger(record.name):
            return self._otel or not _copying()  # files keep the original; OpenTelemetry exports the copy
        return not (self._otel and _target(self._job) is not None)


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)


@contextlib.contextmanager
def logging_redirect_tqdm(
    loggers: Sequence[logging.Logger] | None = None, tqdm_class: Any = None, *, job: object = None
) -> Iterator[None]:
    """Route ``logging`` records to the current run's levelled logs and print console lines through tqdm.

    Args:
        loggers: The loggers whose handlers change (default: the root logger).
        tqdm_class: The class whose ``write`` prints (default: ``joblogger.tqdm.tqdm``).
        job: The run records go to (default: ``joblogger.current_job()`` at each record).

    Example:
        >>> import logging, io
        >>> from joblogger import create_job_logger
        >>> from joblogger.tqdm import logging_redirect_tqdm, tqdm
        >>> log = logging.getLogger("resizer")
        >>> with create_job_logger("run-1", "resize") as run, logging_redirect_tqdm([log]):
        ...     for image in tqdm(range(3), disable=True):
        ...         log.warning("image %d is tiny", image)
        ...     run.log_counts["warning"]
        3
    """
    if job is not None and not isinstance(job, JobLogger):
        warn("redirect-job-type", "job= should be a JobLogger, got %s; using the current run", type(job).__name__)
        job = None
    if tqdm_class is None:
        from ._tqdm_dropin import tqdm as tqdm_class
    if loggers is None:
        loggers = [logging.root]
    saved = [(logger, list(logger.handlers)) for logger in loggers]
    filters: list[tuple[logging.Handler, _Deduplicate]] = []
    try:
        for logger in loggers:
            handler = RunLogHandler(tqdm_class, job)
            console = next((h for h in logger.handlers if _is_console(h)), None)
            if console is not None:
                handler.setFormatter(console.formatter)  # type: ignore[arg-type]
                handler.stream = console.stream  # type: ignore[attr-defined]
            kept = [h for h in logger.handlers if not _is_console(h)]
            for other in kept:
                dedup = _Deduplicate(_is_otel_handler(other), job)
                other.addFilter(dedup)
                filters.append((other, dedup))
            logger.handlers = [*kept, handler]
        yield
    finally:
        for logger, handlers in saved:
            logger.handlers = handlers
        for other, dedup in filters:
            other.removeFilter(dedup)
