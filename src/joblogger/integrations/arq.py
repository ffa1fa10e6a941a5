"""arq (asyncio jobs on Redis): every job execution is a joblogger run, with one line of set-up.

Decorate the worker settings (``pip install 'joblogger[arq]'``)::

    from joblogger.integrations import arq as joblogger_arq

    @joblogger_arq.instrument
    class WorkerSettings:
        functions = [download, arq.func(resize, timeout=60)]

Each execution of a job function becomes a run: run id = the arq job id, job name
= the function's arq name, ``job.queue`` = the worker's queue, ``job.worker`` =
``host:pid``, ``job.attempt`` = ``ctx["job_try"]``. Inside the function,
``joblogger.current_job()`` is that run (each job is its own asyncio task, so
concurrent jobs of one worker each see their own). Results: the function returns
-> ``success``; raises -> ``failure`` (``arq.Retry`` too: that attempt did not
do its work; the next attempt is a new run with the same id); the job's
``timeout`` -> ``timeout``; ``Job.abort()`` or a worker shutdown ->
``cancellation``. The exception is re-raised untouched, so arq stores and
retries exactly as without joblogger.

Producers that enqueue through :func:`enqueue_job` send their trace context with
the job (in a keyword argument the worker removes before calling the function):
the run span is then a child of the producer's span. See docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from arq.connections import ArqRedis
from arq.constants import default_queue_name
from arq.cron import CronJob
from arq.jobs import Job
from arq.typing import WorkerCoroutine
from arq.utils import to_seconds
from arq.worker import Function
from arq.worker import func as arq_func
from opentelemetry import propagate

from .. import semconv
from .._logger import JobLogger
from ._common import mark_untracked, start_task_run

__all__ = ["CARRIER_KEY", "enqueue_job", "instrument", "untracked", "wrap"]

_log = logging.getLogger("joblogger")

#: The keyword argument that carries the producer's trace context (W3C ``traceparent``) with a job.
#: Not a Python identifier, so it never collides with a parameter of the job function.
CARRIER_KEY = "joblogger.trace"
#: ``ctx`` key: the event loop's time just before arq starts the job's timeout (set by ``on_job_start``).
_STARTED_KEY = "joblogger.started"
#: Marks what ``instrument`` made, so instrumenting twice wraps nothing twice.
_MARK = "__joblogger_arq__"
#: arq's default ``job_timeout`` (seconds).
_DEFAULT_JOB_TIMEOUT_S = 300.0
#: A cancellation this close to the job's timeout (or later) is the timeout.
_TIMEOUT_SLACK_S = 0.001

_F = TypeVar("_F", bound=Callable[..., Any])
Coroutine = Callable[..., Awaitable[Any]]
Settings = TypeVar("Settings", bound="type[Any] | dict[str, Any]")


def untracked(coroutine: _F) -> _F:
    """Leave this job function out: :func:`instrument` does not turn its executions into runs.

    Example:
        >>> @untracked
        ... async def heartbeat(ctx): ...
        >>> getattr(heartbeat, "__joblogger_arq__")
        'untracked'
    """
    return mark_untracked(coroutine, _MARK)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def wrap(
    coroutine: Coroutine,
    name: str,
    *,
    queue: str | None = None,
    timeout_s: float | None = _DEFAULT_JOB_TIMEOUT_S,
    **run_options: Any,
) -> Coroutine:
    """The job function ``coroutine`` made to run each execution as a joblogger run named ``name``.

    :func:`instrument` does this for every function of the worker settings; use
    ``wrap`` yourself only when you build ``arq.worker.Function`` objects by hand.
    ``timeout_s`` must be the job's effective timeout (the function's, else the
    worker's ``job_timeout``): a cancellation at or after it is reported as
    ``timeout``. ``run_options`` go to :func:`joblogger.create_job_logger`.

    Example:
        >>> import asyncio
        >>> from joblogger import current_job
        >>> async def hello(ctx, who):
        ...     return f"{current_job().job_name} {current_job().job_run_id} {who}"
        >>> run = wrap(hello, "hello")
        >>> asyncio.run(run({"job_id": "j-1", "job_try": 1}, "world"))
        'hello j-1 world'
    """
    queue_name = queue or default_queue_name

    @functools.wraps(coroutine)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        carrier = kwargs.pop(CARRIER_KEY, None)
        loop = asyncio.get_running_loop()
        started = ctx.get(_STARTED_KEY) if isinstance(ctx, dict) else None
        if not isinstance(started, float):
            started = loop.time()  # no on_job_start hook: slightly late, see docs/integrations.md
        job = _start_run(ctx, name, queue_name, carrier, run_options)
        job.__enter__()
        exc_info: tuple[Any, Any, Any] = (None, None, None)
        try:
            return await coroutine(ctx, *args, **kwargs)
        except asyncio.CancelledError:
            exc_info = sys.exc_info()
            if timeout_s is not None and loop.time() - started >= timeout_s - _TIMEOUT_SLACK_S:
                # arq's wait_for cancelled the job at its timeout: arq stores a TimeoutError as the result.
                job.end(result=semconv.RESULT_TIMEOUT, error=TimeoutError(f"arq job timeout ({timeout_s:g} s)"))
            raise
        except BaseException:
            exc_info = sys.exc_info()
            raise
        finally:
            job.__exit__(*exc_info)

    setattr(run, _MARK, "wrapped")
    return run


def _start_run(ctx: Any, name: str, queue: str, carrier: object, run_options: Mapping[str, Any]) -> JobLogger:
    """The run of one job execution (never raises: joblogger's own calls are guarded)."""
    parent = None
    if isinstance(carrier, dict):
        try:
            parent = propagate.extract(carrier)
        except Exception as exc:  # noqa: BLE001 - a bad carrier must not break the job
            _log.warning("joblogger: arq job %r: could not read the producer's trace context: %r", name, exc)
    elif carrier is not None:
        _log.warning("joblogger: arq job %r: %s is not a dict (%s); ignored", name, CARRIER_KEY, type(carrier).__name__)
    job_ctx = ctx if isinstance(ctx, dict) else {}
    attempt = job_ctx.get("job_try")
    return start_task_run(
        name,
        str(job_ctx.get("job_id") or uuid.uuid4().hex),
        framework="arq",
        queue=queue,
        worker=_worker_name(),
        attempt=attempt if isinstance(attempt, int) else None,
        parent=parent,
        **run_options,
    )


def _stamp_hook(user_hook: Callable[[dict[Any, Any]], Awaitable[Any]] | None) -> Callable[..., Awaitable[None]]:
    """``on_job_start``: the user's hook, then the loop time arq's timeout counts from."""

    async def on_job_start(ctx: dict[Any, Any]) -> None:
        if user_hook is not None:
            await user_hook(ctx)
        # Nothing is awaited between this hook's return and arq starting the job's timeout.
        ctx[_STARTED_KEY] = asyncio.get_running_loop().time()

    setattr(on_job_start, _MARK, "wrapped")
    return on_job_start


def _stripped(coroutine: Coroutine) -> Coroutine:
    """An untracked function, minus the trace carrier a producer may have sent (it is no parameter of it)."""

    @functools.wraps(coroutine)
    async def run(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop(CARRIER_KEY, None)
        return await coroutine(ctx, *args, **kwargs)

    setattr(run, _MARK, "stripped")
    return run


def instrument(
    settings: Settings,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    **run_options: Any,
) -> Settings:
    """Make every job function of arq worker ``settings`` (a class or a dict) run as a joblogger run.

    Replaces ``functions`` and ``cron_jobs`` by wrapped copies (names, timeouts and
    retries unchanged) and chains an ``on_job_start`` hook that lets a cancellation
    at the job's timeout be told apart from an abort. A class is changed in place
    and returned (so it works as a decorator); a dict is copied. ``include``
    (names) tracks only those functions; ``exclude`` and :func:`untracked` leave
    functions out. ``run_options`` go to :func:`joblogger.create_job_logger`.
    Instrumenting twice changes nothing more.

    Example:
        >>> async def resize(ctx, path): ...
        >>> settings = instrument({"functions": [resize], "queue_name": "images"})
        >>> [f.name for f in settings["functions"]], getattr(settings["functions"][0].coroutine, "__joblogger_arq__")
        (['resize'], 'wrapped')
    """
    if isinstance(settings, dict):
        source: Mapping[str, Any] = settings
    elif isinstance(settings, type):
        source = settings.__dict__  # what arq's get_kwargs() reads
    else:
        raise TypeError(f"instrument() needs arq worker settings (a class or a dict), got {type(settings).__name__}")
    only = None if include is None else {str(n) for n in include}
    skip = {str(n) for n in exclude}
    queue = source.get("queue_name") or default_queue_name
    default_timeout = to_seconds(source.get("job_timeout", _DEFAULT_JOB_TIMEOUT_S))

    def tracked(name: str, coroutine: object) -> bool | None:
        """True: wrap it; False: strip the carrier only; None: leave it (instrumented already)."""
        mark = getattr(coroutine, _MARK, None)
        if mark in ("wrapped", "stripped"):
            return None
        return mark is None and name not in skip and (only is None or name in only)

    def timeout_of(own: float | None) -> float | None:
        return default_timeout if own is None else own

    functions: list[Function] = []
    for entry in source.get("functions") or ():
        function = arq_func(entry)
        verdict = tracked(function.name, function.coroutine)
        if verdict is not None:
            coroutine = (
                wrap(
                    function.coroutine,
                    function.name,
                    queue=queue,
                    timeout_s=timeout_of(function.timeout_s),
                    **run_options,
                )
                if verdict
                else _stripped(function.coroutine)
            )
            function = dataclasses.replace(function, coroutine=cast("WorkerCoroutine", coroutine))
        functions.append(function)
    updates: dict[str, Any] = {"functions": functions}
    cron_jobs = source.get("cron_jobs")
    if cron_jobs is not None:
        crons: list[CronJob] = []
        for entry in cron_jobs:
            cron_job = entry
            if isinstance(entry, CronJob) and tracked(entry.name, entry.coroutine):
                coroutine = wrap(
                    cron_job.coroutine,
                    cron_job.name,
                    queue=queue,
                    timeout_s=timeout_of(cron_job.timeout_s),
                    **run_options,
                )
                cron_job = dataclasses.replace(entry, coroutine=cast("WorkerCoroutine", coroutine))
            crons.append(cron_job)
        updates["cron_jobs"] = crons
    hook = source.get("on_job_start")
    if getattr(hook, _MARK, None) is None:
        updates["on_job_start"] = _stamp_hook(hook)
    if isinstance(settings, dict):
        return cast("Settings", {**settings, **updates})
    for key, value in updates.items():
        setattr(settings, key, value)
    return settings


async def enqueue_job(redis: ArqRedis, function: str, *args: Any, **kwargs: Any) -> Job | None:
    """``redis.enqueue_job(function, *args, **kwargs)``, sending the current trace context with the job.

    The worker's run span becomes a child of the span that is current here (your
    request span, or a joblogger run). Workers must be instrumented (the worker
    removes the carrier before calling the function). Without a current span it
    is a plain ``enqueue_job``.
    """
    carrier: dict[str, str] = {}
    try:
        propagate.inject(carrier)
    except Exception as exc:  # noqa: BLE001 - tracing must not stop the enqueue
        _log.warning("joblogger: could not attach the trace context to arq job %r: %r", function, exc)
        carrier = {}
    if carrier:
        kwargs[CARRIER_KEY] = carrier
    return await redis.enqueue_job(function, *args, **kwargs)
