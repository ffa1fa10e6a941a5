"""A Dramatiq app for tests/integration/test_dramatiq_live.py, loaded by the real ``dramatiq`` CLI.

The broker comes from ``REDIS_URL`` and ``DRAMATIQ_NAMESPACE``; the integration is one line.
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, SkipMessage

from joblogger import current_job
from joblogger.integrations.dramatiq import JobLoggerMiddleware

broker = RedisBroker(url=os.environ["REDIS_URL"], namespace=os.environ["DRAMATIQ_NAMESPACE"])
broker.add_middleware(CurrentMessage())
broker.add_middleware(JobLoggerMiddleware())
dramatiq.set_broker(broker)


def _run_of_this_message() -> object:
    """The joblogger run of the message being processed; fails it if it is not the message's own run."""
    run = current_job()
    message = CurrentMessage.get_current_message()
    if run is None or message is None or run.job_run_id != message.message_id:
        raise AssertionError(f"current_job() is {run!r}, not the run of message {message and message.message_id}")
    return run


def _sleep(seconds: float) -> None:
    """Sleep in short steps, so Dramatiq's asynchronous interrupts (time limit, shutdown) get through."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


@dramatiq.actor(max_retries=0)
def count(n: int) -> None:
    """Count ``n`` rows, one update each."""
    run = _run_of_this_message()
    run.set_total(n, "rows")  # type: ignore[attr-defined]
    for _ in range(n):
        run.increment_progress()  # type: ignore[attr-defined]
        run.add_outcome("updates")  # type: ignore[attr-defined]


@dramatiq.actor(max_retries=0)
def boom() -> None:
    """Always fails."""
    _run_of_this_message()
    raise ValueError("boom")


@dramatiq.actor(max_retries=1, min_backoff=50, max_backoff=100)
def flaky(key: str) -> None:
    """Fails on its first attempt, succeeds on the retry (a counter in Redis)."""
    run = _run_of_this_message()
    if broker.client.incr(key) == 1:
        raise RuntimeError("first attempt fails")
    run.add_outcome("updates", 2)  # type: ignore[attr-defined]


@dramatiq.actor(max_retries=0, time_limit=1000)
def slow(seconds: float) -> None:
    """Runs past its 1 s time limit."""
    _run_of_this_message()
    _sleep(seconds)


@dramatiq.actor(max_retries=0, time_limit=120_000, notify_shutdown=True)
def sleeper(seconds: float) -> None:
    """Still running when the worker shuts down (interrupted by ShutdownNotifications)."""
    _run_of_this_message()
    _sleep(seconds)


@dramatiq.actor(max_retries=0)
def skipped() -> None:
    """Skips itself."""
    _run_of_this_message()
    raise SkipMessage("nothing to do")


@dramatiq.actor(max_retries=0, joblogger=False)
def untracked() -> None:
    """Opted out: no run."""
    if current_job() is not None:
        raise AssertionError("an opted-out actor has a run")
