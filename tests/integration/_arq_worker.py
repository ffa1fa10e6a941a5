"""The arq worker of test_arq_live.py: ``python -m arq _arq_worker.WorkerSettings`` (this folder on PYTHONPATH).

Exports through ``joblogger.otlp.configure()`` (``OTEL_*`` from the environment);
Redis and the queue come from ``JOBLOGGER_ARQ_REDIS`` and ``JOBLOGGER_ARQ_QUEUE``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from arq import Retry, func
from arq.connections import RedisSettings

from joblogger import current_job, otlp
from joblogger.integrations import arq as joblogger_arq

otlp.configure()


def _job() -> Any:
    job = current_job()
    assert job is not None, "no current run inside an instrumented arq job"
    return job


async def work(ctx: dict[str, Any], n: int) -> dict[str, Any]:
    """Counts ``n`` items as outcomes; returns what its run saw."""
    job = _job()
    job.set_total(n, "items")
    job.set_stage("Counting")
    for _ in range(n):
        job.increment_progress()
        job.add_outcome("items")
        await asyncio.sleep(0)
    return {"run_id": job.job_run_id, "items": n, "job_id": ctx["job_id"]}


async def flaky(ctx: dict[str, Any]) -> int:
    """Asks for a retry on its first try."""
    if ctx["job_try"] == 1:
        raise Retry(defer=0.1)
    return int(ctx["job_try"])


async def slow(ctx: dict[str, Any]) -> None:
    """Outlives its 1 s timeout."""
    _job().set_stage("Sleeping")
    await asyncio.sleep(30)


async def sleeper(ctx: dict[str, Any]) -> None:
    """Waits until it is aborted."""
    _job().set_stage("Waiting")
    await asyncio.sleep(60)


async def broken(ctx: dict[str, Any]) -> None:
    """Fails."""
    raise ValueError("boom 42")


async def concurrent(ctx: dict[str, Any], steps: int) -> dict[str, Any]:
    """Steps through ``steps`` awaits, noting which run ``current_job()`` returns at each."""
    seen: set[str] = set()
    for _ in range(steps):
        job = _job()
        seen.add(job.job_run_id)
        job.increment_progress()
        job.add_outcome("steps")
        await asyncio.sleep(0.02)
    return {"seen": sorted(seen), "current": _job().current, "job_id": ctx["job_id"]}


@joblogger_arq.untracked
async def probe(ctx: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Not a run: reports whether it has a current run and which keyword arguments it got."""
    return {"current": current_job() is not None, "kwargs": sorted(kwargs)}


@joblogger_arq.instrument
class WorkerSettings:
    functions = [work, flaky, func(slow, timeout=1), sleeper, broken, concurrent, probe]  # noqa: RUF012
    redis_settings = RedisSettings.from_dsn(os.environ["JOBLOGGER_ARQ_REDIS"])
    queue_name = os.environ.get("JOBLOGGER_ARQ_QUEUE", "arq:queue")
    allow_abort_jobs = True
    poll_delay = 0.05
    max_jobs = 20
    keep_result = 600
