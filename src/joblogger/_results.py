"""How a run's result follows from the exception that ended it (or from an explicit result).

The values are OpenTelemetry's CI/CD result vocabulary (``semconv.RESULTS``).
An exception that escapes a run maps to:

- nothing, or ``SystemExit`` with code 0 or None: ``success`` (a clean exit is not a failure);
- ``SystemExit`` with another code: ``failure`` with ``process.exit.code`` (``sys.exit("msg")`` is code 1);
- :class:`SignalExit` (SIGTERM turned into an exit by ``joblogger.otlp``), ``KeyboardInterrupt``,
  ``asyncio.CancelledError``, ``GeneratorExit`` and other ``BaseException``: ``cancellation``;
- ``TimeoutError`` (which ``asyncio.timeout()`` raises too): ``timeout``;
- any other ``Exception``: ``failure``.

``error`` (the system running the job failed) and ``skip`` (a precondition was
not met) are never inferred: pass them to ``JobLogger.end(result=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import semconv

__all__ = ["Outcome", "SignalExit", "classify"]


class SignalExit(SystemExit):
    """``SystemExit`` raised because the process received a termination signal (exit code 128+N).

    A run it ends is a ``cancellation``, not a ``failure``.

    Its ``error.type`` is ``joblogger.SignalExit``.

    Example:
        >>> from joblogger import SignalExit, create_job_logger
        >>> try:
        ...     with create_job_logger("r", "j") as job:
        ...         raise SignalExit(143)
        ... except SystemExit as exit:
        ...     print(exit.code, job.result)
        143 cancellation
    """


SignalExit.__module__ = "joblogger"  # the public name, for error.type and tracebacks


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of a run and what the exception adds to it."""

    result: str
    #: The exception recorded on the run span (None for success and for a clean ``SystemExit``).
    error: BaseException | None = None
    #: ``process.exit.code`` for a run ended by ``SystemExit``.
    exit_code: int | None = None


#: What a run that ended without an exception gets (frozen, so one instance serves every run).
_ENDED_NORMALLY = Outcome(semconv.RESULT_SUCCESS)


def exit_code(exc: SystemExit) -> int:
    """The process exit code a ``SystemExit`` stands for, as the interpreter computes it.

    Example:
        >>> exit_code(SystemExit()), exit_code(SystemExit(3)), exit_code(SystemExit("bye"))
        (0, 3, 1)
    """
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return 1


def classify(exc: BaseException | None) -> Outcome:
    """The result of a run that ``exc`` ended (None: it ended normally).

    Example:
        >>> classify(None).result, classify(ValueError("x")).result, classify(SystemExit(0)).result
        ('success', 'failure', 'success')
        >>> classify(SystemExit(2)).exit_code
        2
    """
    if exc is None:
        return _ENDED_NORMALLY
    if isinstance(exc, SignalExit):
        return Outcome(semconv.RESULT_CANCELLATION, exc, exit_code(exc))
    if isinstance(exc, SystemExit):
        code = exit_code(exc)
        if code == 0:
            return Outcome(semconv.RESULT_SUCCESS, None, 0)
        return Outcome(semconv.RESULT_FAILURE, exc, code)
    if isinstance(exc, TimeoutError):
        return Outcome(semconv.RESULT_TIMEOUT, exc)
    if isinstance(exc, Exception):
        return Outcome(semconv.RESULT_FAILURE, exc)
    return Outcome(semconv.RESULT_CANCELLATION, exc)
