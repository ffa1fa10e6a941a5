"""The run the current thread or asyncio task is inside: ``current_job()``."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._logger import JobLogger

__all__ = ["current_job", "enter_job", "exit_job"]

_CURRENT: contextvars.ContextVar[JobLogger | None] = contextvars.ContextVar("joblogger_current_job", default=None)


def current_job() -> JobLogger | None:
    """The :class:`JobLogger` of the innermost ``with``/``async with`` block or ``@job`` function, else None.

    Each thread and each asyncio task sees its own (a ``contextvars`` variable):
    a task started inside a run sees that run; another thread does not, unless
    it runs in a copy of the context (``contextvars.copy_context().run``).
    Integrations (task queues, web frameworks) use it to find the run a piece
    of code belongs to.

    Example:
        >>> from joblogger import create_job_logger, current_job
        >>> with create_job_logger("run-1", "match-scores") as job:
        ...     current_job() is job
        True
        >>> current_job() is None
        True
    """
    return _CURRENT.get()


def enter_job(job: object) -> contextvars.Token[JobLogger | None]:
    """Make ``job`` the current run; returns the token that :func:`exit_job` restores."""
    return _CURRENT.set(job)  # type: ignore[arg-type]


def exit_job(token: contextvars.Token[JobLogger | None]) -> None:
    """Restore the run that was current before :func:`enter_job`."""
    try:
        _CURRENT.reset(token)
    except ValueError:  # exited in another context (e.g. a generator resumed elsewhere): just clear it
        _CURRENT.set(None)
