"""The Celery app the Celery integration tests run in real workers (``celery -A _celery_tasks worker``).

Broker and result backend: ``CELERY_TEST_REDIS`` (the harness's Redis). Instrumented
the way users are told to: ``joblogger_celery.instrument(app)`` plus, in prefork
children, ``CeleryInstrumentor().instrument()`` in ``worker_process_init`` (when
``CELERY_TEST_OTEL_INSTRUMENTOR=1``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.exceptions import Ignore
from celery.signals import worker_process_init

from joblogger import current_job
from joblogger.integrations import celery as joblogger_celery

REDIS = os.environ.get("CELERY_TEST_REDIS", "redis://127.0.0.1:6379/0")

app = Celery("jl_celery_tests", broker=REDIS, backend=REDIS)
app.conf.update(
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
joblogger_celery.instrument(app, progress_interval_s=0.2)
if os.environ.get("CELERY_TEST_BEAT_QUEUE"):  # for `celery -A _celery_tasks beat` in the beat test
    app.conf.beat_schedule = {
        "every-second-count": {
            "task": "jl.count",
            "schedule": 1.0,
            "args": (2,),
            "options": {"queue": os.environ["CELERY_TEST_BEAT_QUEUE"]},
        }
    }


@worker_process_init.connect(weak=False)
def init_celery_tracing(**_: Any) -> None:
    """As opentelemetry-instrumentation-celery's docs say: instrument in each child, after the fork."""
    if os.environ.get("CELERY_TEST_OTEL_INSTRUMENTOR") == "1":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()


@app.task(name="jl.count")
def count(n: int, delay_s: float = 0.0) -> dict[str, Any]:
    """Count ``n`` items (every third a skip), reporting progress; returns what the run counted."""
    job = current_job()
    assert job is not None
    job.set_total(n, "rows")
    job.set_stage("Counting")
    for i in range(n):
        job.increment_progress()
        job.add_outcome("skipped_rows" if i % 3 == 0 else "inserts")
        if delay_s:
            time.sleep(delay_s)
    return {"run_id": job.job_run_id, "outcomes": dict(job.outcomes), "current": job.current}


@app.task(name="jl.flaky", bind=True, max_retries=5)
def flaky(self: Any, succeed_on: int) -> int:
    """Fail with a retry until attempt ``succeed_on``; returns the attempt that succeeded."""
    attempt = self.request.retries + 1
    job = current_job()
    assert job is not None
    job.add_outcome("tries")
    if attempt < succeed_on:
        raise self.retry(exc=ConnectionError(f"attempt {attempt} failed"), countdown=0)
    return attempt


@app.task(name="jl.sleepy")
def sleepy(seconds: float) -> str:
    """Sleep (to be revoked, or to hit a time limit)."""
    job = current_job()
    assert job is not None
    job.set_stage("Sleeping")
    time.sleep(seconds)
    return "woke"


@app.task(name="jl.soft_limited", soft_time_limit=0.5)
def soft_limited() -> str:
    """Run past the soft time limit (SoftTimeLimitExceeded is raised in the task)."""
    time.sleep(5)
    return "never"


@app.task(name="jl.hard_limited", time_limit=1)
def hard_limited() -> str:
    """Run past the hard time limit (the main process kills the child)."""
    time.sleep(10)
    return "never"


@app.task(name="jl.ignored")
def ignored() -> None:
    """Tell Celery to ignore this task (a skip)."""
    raise Ignore()


@app.task(name="jl.fails")
def fails() -> None:
    """Raise (a failure)."""
    raise KeyError("no such order")


@app.task(name="jl.opted_out", joblogger=False)
def opted_out() -> bool:
    """Not a run: ``joblogger=False``."""
    return current_job() is None


@app.task(name="jl.total")
def total(results: list[dict[str, Any]]) -> dict[str, Any]:
    """A chord's callback: what the header's ``jl.count`` runs counted, added up."""
    outcomes: dict[str, int] = {}
    for result in results:
        for key, n in result["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + n
    return {"runs": len(results), "current": sum(r["current"] for r in results), "outcomes": outcomes}
