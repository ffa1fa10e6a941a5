"""arq + joblogger: every job execution is a run, enabled with one decorator.

In production the worker runs with arq's CLI and producers enqueue through
``joblogger.integrations.arq.enqueue_job`` (which sends the trace context)::

    arq examples.arq_app.WorkerSettings

``python examples/arq_app.py`` runs the whole thing once: a producer run enqueues
three imports, then a burst worker in the same process works them off and exits.
Needs Redis at $REDIS_URL (default redis://localhost:6379); exports to
$OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318), e.g. the bundled
stack (``python scripts/stack.py up``). Prints one JSON line: the producer run's
trace id and each job's id and result.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import create_worker

from joblogger import create_job_logger, current_job, otlp
from joblogger.integrations import arq as joblogger_arq

otlp.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "arq-example"))


async def import_rows(ctx: dict[str, Any], rows: int) -> int:
    """An arq job: ``current_job()`` is its run (run id = the arq job id)."""
    job = current_job()
    assert job is not None
    job.set_total(rows, "rows")
    job.set_stage("Importing")
    for _ in range(rows):
        await asyncio.sleep(0.001)  # the real work
        job.increment_progress()
        job.add_outcome("inserts")
    return rows


@joblogger_arq.instrument  # the one line
class WorkerSettings:
    functions = [import_rows]  # noqa: RUF012 - arq reads class attributes
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    queue_name = "arq:joblogger-example"


async def main() -> None:
    redis = await create_pool(WorkerSettings.redis_settings, default_queue_name=WorkerSettings.queue_name)
    # The producer's own run: each job's run span becomes its child in the trace.
    with create_job_logger(name="nightly-import") as producer:
        jobs = [await joblogger_arq.enqueue_job(redis, "import_rows", rows) for rows in (50, 120, 80)]
    worker = create_worker(WorkerSettings, burst=True, handle_signals=False)
    await worker.async_run()
    await worker.close()
    results = {job.job_id: await job.result(timeout=10) for job in jobs if job is not None}
    await redis.aclose()
    trace_id = f"{producer.span.get_span_context().trace_id:032x}"
    print(json.dumps({"trace_id": trace_id, "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
