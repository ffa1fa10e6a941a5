"""Dramatiq with joblogger: one middleware, every message processed is a run.

As a worker (each worker process configures OpenTelemetry when it boots)::

    REDIS_URL=redis://127.0.0.1:6379 dramatiq examples.dramatiq_app -p 2 -t 2

As a self-contained demo (enqueues three imports under one span, processes them
with an in-process worker, prints what happened)::

    REDIS_URL=redis://127.0.0.1:6379 python examples/dramatiq_app.py
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from opentelemetry import trace

from joblogger import current_job, otlp
from joblogger.integrations.dramatiq import JobLoggerMiddleware

broker = RedisBroker(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
broker.add_middleware(JobLoggerMiddleware())  # the one line
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def import_rows(source: str, rows: int) -> None:
    """An actor: import ``rows`` rows from ``source``, with stages, progress and outcomes."""
    job = current_job()  # this message's run
    assert job is not None
    job.set_stage("Reading")
    job.set_total(rows, "rows")
    for i in job.track(range(rows)):
        job.add_outcome("inserts" if i % 4 else "updates")
        time.sleep(0.01)
    job.info("Imported", source=source)


@dramatiq.actor(max_retries=0, joblogger=False)
def heartbeat() -> None:
    """An actor opted out of joblogger: no run."""


def main() -> None:
    # The dramatiq CLI's worker processes configure themselves (after_process_boot); this demo's
    # in-process worker and producer share this process, so it configures once here.
    otlp.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "dramatiq-example"))
    with trace.get_tracer("dramatiq-example").start_as_current_span("nightly-import") as span:
        messages = [import_rows.send(source, rows) for source, rows in (("crm", 40), ("erp", 25), ("web", 10))]
        heartbeat.send()
    print(f"trace {span.get_span_context().trace_id:032x}")
    worker = dramatiq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        broker.join(import_rows.queue_name, timeout=30_000)
        worker.join()
    finally:
        worker.stop()
    for message in messages:
        print(f"{message.message_id} processed")


if __name__ == "__main__":
    main()
