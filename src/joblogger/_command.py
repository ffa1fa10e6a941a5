"""``joblogger run -- COMMAND`` for any command that is not a Python program: one run, from outside.

A Python program runs in-process under ``joblogger run`` (its own runs, from the
bootstrap, see :mod:`joblogger.cli`). Anything else (a shell script, a Go binary,
``pg_dump``) is *supervised* (:mod:`joblogger._supervise`): joblogger starts one
run for it, passes its output through unchanged, logs each output line as a record
of the run, and ends the run with the command's exit status. So is a Python program
whose interpreter cannot import joblogger (the bootstrap hands it back, with one
warning). The rules are in docs/commands.md; :func:`is_python_command` decides
which path a command takes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from . import _streamlines, semconv
from ._logger import JobLogger, create_job_logger
from ._ratelimit import DEFAULT_LOG_RATE_LIMITS, TokenBucket
from ._supervise import CANCEL_SIGNALS, MAX_QUEUED_BYTES, supervise

__all__ = ["CommandExit", "command_outcome", "is_python_command", "run_command", "start_command_run"]

#: ``python``, ``python3``, ``python3.12``, ``python3.13t``, ``pypy3``: an interpreter's file name.
_PYTHON: Final = re.compile(r"(?:python|pypy)(?:\d+(?:\.\d+)*)?[dmtu]?")
#: Variables joblogger sets for the command (and its children): which run they belong to.
ENV_RUN_ID: Final = "JOBLOGGER_RUN_ID"
ENV_JOB_NAME: Final = "JOBLOGGER_JOB_NAME"
#: Default level of a line by stream, when the line does not state one.
DEFAULT_LEVELS: Final = {"stdout": semconv.LEVEL_INFO, "stderr": semconv.LEVEL_WARNING}
_PROPAGATION_VARS: Final = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")


def _interpreter_of(path: str) -> str | None:
    """The program a ``#!`` line names (``env``'s argument for ``#!/usr/bin/env [-S] python3``)."""
    try:
        with open(path, "rb") as file:
            head = file.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env":
        rest = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return rest[0] if rest else None
    return words[0]


def is_python_command(argv: Sequence[str], path: str | None = None) -> bool:
    """Whether ``joblogger run`` runs ``argv`` in-process (a Python program) rather than supervising it.

    Python: the program (found on ``PATH`` as ``exec`` would) is a Python
    interpreter by name (``python``, ``python3.12``, ``pypy3``) or through its
    symlinks, or a script whose ``#!`` line names one (console scripts such as
    ``celery`` or ``opentelemetry-instrument``, ``#!/usr/bin/env python3``).
    Anything else, including a program that cannot be found, is a command.

    Example:
        >>> is_python_command(["python3", "job.py"]), is_python_command(["sh", "-c", "true"])
        (True, False)
    """
    if not argv:
        return False
    program = argv[0]
    if _PYTHON.fullmatch(os.path.basename(program)):
        return True
    found = shutil.which(program, path=path) if os.sep not in program else program
    if found is None or not os.path.isfile(found):
        return False
    if _PYTHON.fullmatch(os.path.basename(os.path.realpath(found))):
        return True
    interpreter = _interpreter_of(found)
    return interpreter is not None and _PYTHON.fullmatch(os.path.basename(interpreter)) is not None


class CommandExit(SystemExit):
    """A command under ``joblogger run`` did not succeed: its exit status and what happened, for the run span.

    Example:
        >>> exit = CommandExit(3, "exited with status 3")
        >>> exit.code, str(exit)
        (3, 'exited with status 3')
    """

    def __init__(self, status: int, description: str) -> None:
        super().__init__(status)
        self.description = description

    def __str__(self) -> str:
        return self.description


CommandExit.__module__ = "joblogger"  # error.type: joblogger.CommandExit


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def command_outcome(returncode: int, signalled: int | None = None) -> tuple[str, int, str]:
    """The run's result, the supervisor's exit status and a description, from the command's end.

    ``returncode`` is ``Popen``'s (-N: killed by signal N); ``signalled`` the
    termination signal the supervisor received and forwarded, if any. A command
    killed by a termination request (SIGTERM, SIGINT, SIGHUP, SIGQUIT), or ended in
    any way after the supervisor forwarded one, is a ``cancellation``; killed by
    another signal (SIGKILL, SIGSEGV, SIGABRT), a ``failure``. The status for a
    signal is 128+N, as a shell reports it.

    Example:
        >>> command_outcome(0), command_outcome(3)
        (('success', 0, 'exited with status 0'), ('failure', 3, 'exited with status 3'))
        >>> command_outcome(-15), command_outcome(-9)
        (('cancellation', 143, 'killed by SIGTERM'), ('failure', 137, 'killed by SIGKILL'))
        >>> command_outcome(1, signalled=2)
        ('cancellation', 1, 'exited with status 1 after SIGINT')
    """
    if returncode < 0:
        signum = -returncode
        status, description = 128 + signum, f"killed by {_signal_name(signum)}"
        cancelled = signum in CANCEL_SIGNALS
    else:
        status, description = returncode, f"exited with status {returncode}"
        cancelled = False
    if signalled is not None and not (returncode < 0 and -returncode == signalled):
        description += f" after {_signal_name(signalled)}"
    if cancelled or signalled is not None:
        return semconv.RESULT_CANCELLATION, status, description
    if status == 0:
        return semconv.RESULT_SUCCESS, 0, description
    return semconv.RESULT_FAILURE, status, description


def start_command_run(
    argv: Sequence[str],
    *,
    job_name: str | None = None,
    run_id: str | None = None,
    make_job: Callable[..., JobLogger] = create_job_logger,
    **job_options: Any,
) -> JobLogger:
    """Start the run of a command: ``make_job(run_id, job_name, **job_options)``, default job name the program's.

    The run span continues the trace in ``TRACEPARENT`` (a supervisor above this one), if any.
    """
    program = os.path.basename(argv[0]) if argv else "command"
    attributes = dict(job_options.pop("attributes", None) or {})
    attributes.setdefault(semconv.PROCESS_EXECUTABLE_NAME, program)
    carrier = {name.lower(): os.environ[name] for name in _PROPAGATION_VARS if os.environ.get(name)}
    token = otel_context.attach(propagate.extract(carrier)) if carrier else None
    try:
        return make_job(run_id, job_name or program, attributes=attributes, **job_options)
    finally:
        if token is not None:
            otel_context.detach(token)


def command_env(job: JobLogger, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The command's environment: ours, the run's id and name, and the run span as ``TRACEPARENT``."""
    env = dict(os.environ if base is None else base)
    for name in _PROPAGATION_VARS:
        env.pop(name, None)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(job.span))
    env.update({key.upper(): value for key, value in carrier.items()})
    env[ENV_RUN_ID] = job.job_run_id
    env[ENV_JOB_NAME] = job.job_name
    if env.get(semconv.ENV_PARENT):  # this run took it: the command's own runs are this run's children
        env[semconv.ENV_PARENT] = job.child_carrier()
    return env


class _LineLogger:
    """Logs each output line as a record of the run, at its level; warning/error lines are rate-limited too."""

    __slots__ = ("_buckets", "_calls", "_fields", "suppressed")

    def __init__(self, job: JobLogger, limits: tuple[float, float] | None) -> None:
        self._calls = {
            semconv.LEVEL_DEBUG: job.debug,
            semconv.LEVEL_INFO: job.info,
            semconv.LEVEL_WARNING: job.warning,
            semconv.LEVEL_ERROR: job.error,
        }
        self._fields = {name: {semconv.LOG_IOSTREAM: name} for name in DEFAULT_LEVELS}
        # joblogger never limits warnings and errors a job logs itself; a command's stream can hold
        # millions, so its lines at those levels get the info limit (per level).
        self._buckets = (
            {}
            if limits is None
            else {
                level: TokenBucket(limits[0], limits[1], time.monotonic)
                for level in (semconv.LEVEL_WARNING, semconv.LEVEL_ERROR)
            }
        )
        self.suppressed = 0

    def __call__(self, stream: str, raw: bytes, cut: int) -> None:
        text = _streamlines.clean(raw)
        if not text.strip():
            return
        if cut:
            text += f" ... [{cut:,} bytes truncated]"
        level, text = _streamlines.line_level(text, DEFAULT_LEVELS[stream])
        bucket = self._buckets.get(level)
        if bucket is not None and not bucket.allow():
            self.suppressed += 1
            return
        self._calls[level](text, self._fields[stream])


def run_command(
    argv: Sequence[str],
    job: JobLogger,
    *,
    stdout_fd: int | None = 1,
    stderr_fd: int | None = 2,
    line_rate_limit: tuple[float, float] | None = DEFAULT_LOG_RATE_LIMITS[semconv.LEVEL_INFO],
    queue_bytes: int = MAX_QUEUED_BYTES,
) -> int:
    """Run ``argv`` as ``job``'s run and end the run with its result; return the status to exit with.

    The status is the command's (128+N when signal N killed it; 127 when it cannot be found,
    126 when it cannot be started). ``line_rate_limit``: ``(per_second, burst)`` of the
    warning and error lines logged (None: no limit; info and debug lines have the run's
    ``log_rate_limits``); ``queue_bytes``: see :func:`joblogger._supervise.supervise`.
    """
    lines = _LineLogger(job, line_rate_limit)
    try:
        watched = supervise(
            argv,
            command_env(job),
            lambda pid: job.span.set_attribute(semconv.PROCESS_PID, pid),
            lines,
            stdout_fd=stdout_fd,
            stderr_fd=stderr_fd,
            line_limit=_streamlines.MAX_LINE_BYTES,
            queue_bytes=queue_bytes,
        )
    except OSError as exc:
        status = 127 if isinstance(exc, FileNotFoundError) else 126
        description = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        print(f"joblogger run: {description}", file=sys.stderr, flush=True)
        job.span.set_attribute(semconv.PROCESS_EXIT_CODE, status)
        job.end(result=semconv.RESULT_FAILURE, error=CommandExit(status, description))
        return status
    assert watched.returncode is not None
    result, status, description = command_outcome(watched.returncode, watched.signalled)
    not_logged = watched.dropped_lines + lines.suppressed
    if not_logged:
        job.warning(
            f"Output lines not logged: {not_logged:,} (passed through unchanged)",
            {"rateLimited": lines.suppressed, "fellBehind": watched.dropped_lines},
        )
    job.span.set_attribute(semconv.PROCESS_EXIT_CODE, status)
    if result == semconv.RESULT_SUCCESS:
        job.end()
    else:
        job.end(result=result, error=CommandExit(status, description))
    return status
