"""RQ tasks for tests/integration/test_rq_live.py (imported by the real ``rq worker`` subprocesses)."""

from __future__ import annotations

import time

from rq import get_current_job

from joblogger import current_job
from joblogger.integrations.rq import SimpleWorker, task


def _run_of_this_job() -> object:
    """The joblogger run of the executing job; fails the job if it is not the RQ job's own run."""
    run = current_job()
    rq_job = get_current_job()
    if run is None or rq_job is None or run.job_run_id != rq_job.id:
        raise AssertionError(f"current_job() is {run!r}, not the run of RQ job {rq_job and rq_job.id}")
    return run


def count(n: int, pause: float = 0.0) -> int:
    """Count ``n`` rows, one update each, sleeping ``pause`` seconds per row."""
    run = _run_of_this_job()
    run.set_total(n, "rows")  # type: ignore[attr-defined]
    run.set_stage("Counting")  # type: ignore[attr-defined]
    for _ in range(n):
        run.increment_progress()  # type: ignore[attr-defined]
        run.add_outcome("updates")  # type: ignore[attr-defined]
        if pause:
            time.sleep(pause)
    return n


def boom() -> None:
    """Always fails."""
    _run_of_this_job()
    raise ValueError("boom")


def flaky(key: str) -> str:
    """Fails on its first attempt, succeeds on the next (a counter in Redis)."""
    run = _run_of_this_job()
    rq_job = get_current_job()
    assert rq_job is not None
    if rq_job.connection.incr(key) == 1:
        raise RuntimeError("first attempt fails")
    run.add_outcome("updates", 2)  # type: ignore[attr-defined]
    return "ok"


def slow(seconds: float) -> None:
    """Sleeps (for timeouts, stop commands and shutdowns)."""
    run = _run_of_this_job()
    run.set_stage("Sleeping")  # type: ignore[attr-defined]
    time.sleep(seconds)


@task(enabled=False)
def untracked() -> bool:
    """Opted out: no run."""
    return current_job() is None


@task(name="renamed-task")
def renamed() -> str:
    """Opted in under another job name."""
    run = _run_of_this_job()
    return str(run.job_name)  # type: ignore[attr-defined]


def no_run_expected() -> bool:
    """Not marked with @task: under an opt-in worker it has no run."""
    return current_job() is None


class OptInWorker(SimpleWorker):
    """Runs only for @task functions."""

    joblogger_all_tasks = False
