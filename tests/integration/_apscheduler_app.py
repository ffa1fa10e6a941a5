"""The scheduler process of test_apscheduler_live.py: ``python _apscheduler_app.py SECONDS``.

A BackgroundScheduler (thread pool) and an AsyncIOScheduler (asyncio executor)
run side by side for SECONDS, both instrumented with one line each, exporting
through ``joblogger.otlp.configure()``. Prints one JSON line: APScheduler's own
events per job and what ``current_job()`` returned inside each fire.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler

from joblogger import current_job, otlp
from joblogger.integrations import apscheduler as joblogger_aps

CODES = {EVENT_JOB_EXECUTED: "executed", EVENT_JOB_ERROR: "error", EVENT_JOB_MISSED: "missed"}
events: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
seen: list[dict[str, Any]] = []
lock = threading.Lock()


def listen(event: Any) -> None:
    """Count APScheduler's own events, the ground truth the runs are checked against."""
    with lock:
        if isinstance(event, JobSubmissionEvent) and event.code == EVENT_JOB_MAX_INSTANCES:
            events[event.job_id]["max_instances"] += len(event.scheduled_run_times)
        elif isinstance(event, JobExecutionEvent) and event.code in CODES:
            events[event.job_id][CODES[event.code]] += 1


def note(kind: str) -> Any:
    job = current_job()
    assert job is not None, f"{kind}: no current run"
    with lock:
        seen.append({"job": kind, "name": job.job_name, "run_id": job.job_run_id})
    return job


def tick() -> None:
    note("tick").add_outcome("ticks")


def boom() -> None:
    note("boom")
    raise RuntimeError("bad tick")


def late() -> None:
    note("late")  # never runs: missed


def overlap() -> None:
    job = note("overlap")
    time.sleep(0.8)
    job.add_outcome("ticks")


@joblogger_aps.untracked
def quiet() -> None:
    with lock:
        seen.append({"job": "quiet", "current": current_job() is not None})


async def async_tick() -> None:
    job = note("async_tick")
    await asyncio.sleep(0.05)
    assert current_job() is job
    job.add_outcome("ticks")


def sync_in_loop() -> None:
    note("sync_in_loop").add_outcome("ticks")


def main(seconds: float) -> None:
    otlp.configure()
    now = datetime.now().astimezone()
    threads = joblogger_aps.instrument(BackgroundScheduler())
    threads.add_listener(listen)
    threads.add_job(tick, "interval", seconds=0.3, id="tick", next_run_time=now)
    threads.add_job(boom, "date", run_date=now + timedelta(seconds=0.2), id="boom")
    threads.add_job(late, "date", run_date=now - timedelta(seconds=5), id="late", misfire_grace_time=1)
    threads.add_job(overlap, "interval", seconds=0.25, id="overlap", max_instances=1, next_run_time=now)
    threads.add_job(quiet, "interval", seconds=0.5, id="quiet", next_run_time=now)
    threads.start()

    async def run_loop() -> None:
        loop_scheduler = AsyncIOScheduler()
        loop_scheduler.add_listener(listen)
        loop_scheduler.add_job(async_tick, "interval", seconds=0.3, id="async_tick", next_run_time=now)
        loop_scheduler.add_job(sync_in_loop, "interval", seconds=0.4, id="sync_in_loop", next_run_time=now)
        joblogger_aps.instrument(loop_scheduler)  # after adding jobs: works too
        loop_scheduler.start()
        await asyncio.sleep(seconds)
        loop_scheduler.pause()
        await asyncio.sleep(0.3)  # the last fires finish (shutdown cancels coroutine jobs still running)
        loop_scheduler.shutdown(wait=False)

    asyncio.run(run_loop())
    threads.shutdown(wait=True)
    with lock:
        print(json.dumps({"events": events, "seen": seen}), flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]))
