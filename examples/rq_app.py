"""RQ with joblogger: every job is a run, its progress is in ``job.meta`` and in Grafana.

Run it against a Redis server and a collector (``python scripts/stack.py up``)::

    REDIS_URL=redis://127.0.0.1:6379 python examples/rq_app.py

It enqueues three imports under one producer span through
``joblogger.integrations.rq.Queue`` (which carries the trace context in
``job.meta``), then runs RQ's forking worker in burst mode with joblogger's
worker class - what ``rq worker --worker-class joblogger.integrations.rq.Worker``
does in production - and prints what RQ itself now knows about each job.
"""

from __future__ import annotations

import os
import time

from opentelemetry import trace
from redis import Redis

from joblogger import current_job, otlp
from joblogger.integrations.rq import Queue, Worker, task


@task(name="import-rows")  # the job name (default: the function's path, "rq_app.import_rows")
def import_rows(source: str, rows: int) -> int:
    """A job: import ``rows`` rows from ``source``, with stages, progress and outcomes."""
    job = current_job()  # this job's run (None only outside a joblogger worker)
    assert job is not None
    job.set_stage("Reading")
    job.set_total(rows, "rows")
    for i in job.track(range(rows)):
        job.add_outcome("inserts" if i % 4 else "updates")
        time.sleep(0.01)
    job.info("Imported", source=source)
    return rows


def main() -> None:
    otlp.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "rq-example"))
    conn = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    queue = Queue(os.environ.get("RQ_QUEUE", "imports"), connection=conn)
    # RQ imports jobs by path, never from __main__: "rq_app" is this file, on sys.path as the script's folder.
    with trace.get_tracer("rq-example").start_as_current_span("nightly-import") as span:
        jobs = [
            queue.enqueue("rq_app.import_rows", source, rows)
            for source, rows in (("crm", 40), ("erp", 25), ("web", 10))
        ]
    print(f"trace {span.get_span_context().trace_id:032x}")
    Worker([queue], connection=conn).work(burst=True)
    for job in jobs:
        p = job.get_meta()["progress"]  # what rq-dashboard and your own code read while the job runs
        print(
            f"{job.id} {job.get_status().value} result={job.return_value()} attempt={job.meta['joblogger_attempt']}"
            f" progress: {p['stage']} {p['current']}/{p['total']} {p['entity_type']} {p['percent']}% {p['outcomes']}"
        )


if __name__ == "__main__":
    main()
