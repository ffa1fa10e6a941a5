"""APScheduler 3.x: every fire of a scheduled job is a joblogger run, with one line of set-up.

::

    from apscheduler.schedulers.background import BackgroundScheduler
    from joblogger.integrations import apscheduler as joblogger_aps

    scheduler = joblogger_aps.instrument(BackgroundScheduler())

Each fire that runs becomes a run: run id = a new id per fire, job name = the
APScheduler job's ``name`` (the function's name unless you gave one),
``job.queue`` = the job store alias, ``job.worker`` = ``host:pid``, plus
``apscheduler.job.id``, ``apscheduler.executor`` and
``apscheduler.scheduled_run_time`` (the fire time it was scheduled for, ISO
8601). ``joblogger.current_job()`` is that run inside the job, with thread-pool
and asyncio executors (coroutine jobs run as asyncio tasks; plain functions in
the loop's thread pool). The job's exception is recorded and re-raised
untouched, so APScheduler's own events and logging are unchanged.

Fires APScheduler does not run are runs too, ended at once with result ``skip``,
a ``job.skip.reason`` attribute (``missed``: later than ``misfire_grace_time``;
``max_instances``: the previous fire was still running) and a warning saying
why. Process-pool executors are left alone (the job runs in another process).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from apscheduler.events import (
    EVENT_EXECUTOR_ADDED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
    SchedulerEvent,
)
from apscheduler.executors.base import BaseExecutor
from apscheduler.executors.pool import ProcessPoolExecutor
from apscheduler.job import Job
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.util import iscoroutinefunction_partial

from .. import semconv
from .._logger import JobLogger
from ._common import mark_untracked, start_task_run

__all__ = [
    "ATTR_EXECUTOR",
    "ATTR_JOB_ID",
    "ATTR_SCHEDULED_RUN_TIME",
    "ATTR_SKIP_REASON",
    "SKIP_MAX_INSTANCES",
    "SKIP_MISSED",
    "instrument",
    "untracked",
]

_log = logging.getLogger("joblogger")

#: Run-span attributes of this integration.
ATTR_JOB_ID = "apscheduler.job.id"
ATTR_EXECUTOR = "apscheduler.executor"
ATTR_SCHEDULED_RUN_TIME = "apscheduler.scheduled_run_time"
#: Why a fire was a ``skip`` run.
ATTR_SKIP_REASON = "job.skip.reason"
SKIP_MISSED = "missed"
SKIP_MAX_INSTANCES = "max_instances"

_MARK = "__joblogger_apscheduler__"
_F = TypeVar("_F", bound=Callable[..., Any])
_S = TypeVar("_S", bound=BaseScheduler)


def untracked(func: _F) -> _F:
    """Leave this job function out: its fires (and skipped fires) are not runs.

    Example:
        >>> @untracked
        ... def heartbeat(): ...
        >>> getattr(heartbeat, "__joblogger_apscheduler__")
        'untracked'
    """
    return mark_untracked(func, _MARK)


class _Instrumentation:
    """What ``instrument(scheduler)`` installed: the executor patch and the skip listener."""

    __slots__ = ("exclude", "include", "run_options", "scheduler")

    def __init__(
        self, scheduler: BaseScheduler, include: set[str] | None, exclude: set[str], run_options: dict[str, Any]
    ) -> None:
        self.scheduler = scheduler
        self.include = include
        self.exclude = exclude
        self.run_options = run_options

    def tracked(self, job: Job | None, job_id: str) -> bool:
        if job is not None and getattr(_unwrap(job.func), _MARK, None) == "untracked":
            return False
        names = {job_id} if job is None else {job.id, job.name}
        if names & self.exclude:
            return False
        return self.include is None or bool(names & self.include)

    def patch(self, executor: BaseExecutor, alias: str) -> None:
        """Make ``executor`` hand APScheduler's ``run_job`` a job whose function runs as a run."""
        if getattr(executor, _MARK, None) is not None:
            return
        if isinstance(executor, ProcessPoolExecutor):
            _log.warning(
                "joblogger: APScheduler executor %r runs jobs in other processes; its jobs are not runs", alias
            )
            setattr(executor, _MARK, "skipped")
            return
        original = executor._do_submit_job

        def submit(job: Job, run_times: Sequence[datetime]) -> Any:
            if not self.tracked(job, job.id):
                return original(job, run_times)
            return original(_Firing(job, run_times, alias, self.run_options), run_times)

        executor._do_submit_job = submit
        setattr(executor, _MARK, "patched")

    def on_event(self, event: SchedulerEvent) -> None:
        try:
            if event.code == EVENT_EXECUTOR_ADDED:
                self.patch(self.scheduler._lookup_executor(event.alias), event.alias)
            elif event.code == EVENT_JOB_MISSED and isinstance(event, JobExecutionEvent):
                self.skip(event.job_id, event.jobstore, [event.scheduled_run_time], SKIP_MISSED)
            elif event.code == EVENT_JOB_MAX_INSTANCES and isinstance(event, JobSubmissionEvent):
                self.skip(event.job_id, event.jobstore, list(event.scheduled_run_times), SKIP_MAX_INSTANCES)
        except Exception as exc:  # noqa: BLE001 - the scheduler's event dispatch must go on
            _log.warning("joblogger: APScheduler event %r not reported: %r", event, exc)

    def skip(self, job_id: str, jobstore: str | None, run_times: Iterable[datetime], reason: str) -> None:
        """One ``skip`` run per fire APScheduler did not run."""
        try:
            job = self.scheduler.get_job(job_id, jobstore)
        except Exception:  # noqa: BLE001 - e.g. the job store is unreachable: report under the job id
            job = None
        if not self.tracked(job, job_id):
            return
        name = job.name if job is not None else job_id
        for run_time in run_times:
            run = _start(job, job_id, name, jobstore, run_time, None, {**self.run_options})
            run.span.set_attribute(ATTR_SKIP_REASON, reason)
            if reason == SKIP_MISSED:
                late = (datetime.now(timezone.utc) - run_time).total_seconds()
                grace = getattr(job, "misfire_grace_time", None)
                run.warning(f"Skipped: missed its run time by {late:.3f} s (misfire_grace_time={grace} s)")
            else:
                limit = getattr(job, "max_instances", None)
                run.warning(f"Skipped: the job is still running (max_instances={limit})")
            run.end(result=semconv.RESULT_SKIP)


def _unwrap(func: Any) -> Any:
    while isinstance(func, functools.partial):
        func = func.func
    return func


def _start(  # noqa: PLR0917 - private, two call sites
    job: Job | None,
    job_id: str,
    name: str,
    jobstore: str | None,
    run_time: datetime | None,
    executor: str | None,
    run_options: dict[str, Any],
) -> JobLogger:
    attributes: dict[str, object] = {ATTR_JOB_ID: job_id}
    if executor:
        attributes[ATTR_EXECUTOR] = executor
    elif job is not None:
        attributes[ATTR_EXECUTOR] = job.executor
    if run_time is not None:
        attributes[ATTR_SCHEDULED_RUN_TIME] = run_time.isoformat()
    return start_task_run(
        name,
        uuid.uuid4().hex,
        framework="apscheduler",
        queue=jobstore,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        attributes=attributes,
        **run_options,
    )


class _Firing:
    """The job as APScheduler's ``run_job`` sees it for one submission: its ``func`` runs as a run.

    Everything but ``func`` is the real job's.
    """

    __slots__ = ("_job", "_lock", "_pending", "func")

    def __init__(self, job: Job, run_times: Sequence[datetime], executor: str, run_options: dict[str, Any]) -> None:
        self._job = job
        self._pending = collections.deque(run_times)
        self._lock = threading.Lock()
        target = job.func

        def start() -> JobLogger:
            return _start(
                job, job.id, job.name, getattr(job, "_jobstore_alias", None), self._run_time(), executor, run_options
            )

        if iscoroutinefunction_partial(target):

            @functools.wraps(_unwrap(target))
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with start():
                    return await target(*args, **kwargs)

            self.func: Callable[..., Any] = run_async
        else:

            @functools.wraps(_unwrap(target))
            def run(*args: Any, **kwargs: Any) -> Any:
                with start():
                    return target(*args, **kwargs)

            self.func = run

    def _run_time(self) -> datetime | None:
        """The fire time this call is for: ``run_job`` calls the function once per fire it did not skip as missed."""
        with self._lock:
            grace = self._job.misfire_grace_time
            now = datetime.now(timezone.utc)
            # The fires before this one that run_job skipped were missed (as it decided moments ago).
            while len(self._pending) > 1 and grace is not None and now - self._pending[0] > timedelta(seconds=grace):
                self._pending.popleft()
            return self._pending.popleft() if self._pending else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)

    def __repr__(self) -> str:
        return repr(self._job)


def instrument(
    scheduler: _S,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    **run_options: Any,
) -> _S:
    """Make every fire of ``scheduler``'s jobs a joblogger run, and every missed or skipped fire a ``skip`` run.

    Call it before or after ``start()``, before or after adding jobs and
    executors. ``include`` (job ids or names) tracks only those jobs; ``exclude``
    and :func:`untracked` leave jobs out. ``run_options`` go to
    :func:`joblogger.create_job_logger`. Returns ``scheduler``; a second call does nothing.

    Example:
        >>> import threading
        >>> from datetime import datetime
        >>> from apscheduler.schedulers.background import BackgroundScheduler
        >>> from joblogger import current_job
        >>> scheduler = instrument(BackgroundScheduler())
        >>> seen, done = [], threading.Event()
        >>> def hello():
        ...     seen.append(current_job().job_name)
        ...     done.set()
        >>> _ = scheduler.add_job(hello, "interval", hours=1, next_run_time=datetime.now())
        >>> scheduler.start(); _ = done.wait(10); scheduler.shutdown(wait=True)
        >>> seen
        ['hello']
    """
    if not isinstance(scheduler, BaseScheduler):
        raise TypeError(f"instrument() needs an APScheduler 3 scheduler, got {type(scheduler).__name__}")
    if getattr(scheduler, _MARK, None) is not None:
        return scheduler
    only = None if include is None else {str(n) for n in include}
    state = _Instrumentation(scheduler, only, {str(n) for n in exclude}, dict(run_options))
    with scheduler._executors_lock:
        for alias, executor in scheduler._executors.items():
            state.patch(executor, alias)
    scheduler.add_listener(state.on_event, EVENT_EXECUTOR_ADDED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    setattr(scheduler, _MARK, state)
    return scheduler
