"""Celery + joblogger: every task execution is a joblogger run (docs/integrations.md, "Celery").

Needs ``pip install 'joblogger[celery]'`` (plus ``opentelemetry-instrumentation-celery``
for Celery's own spans). Start a worker, then send tasks and watch their progress::

    export CELERY_BROKER_URL=redis://127.0.0.1:6379/0
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318   # your collector
    celery -A celery_app worker --pool prefork -c 2            # in this folder
    python celery_app.py 3                                     # sends 3 tasks, prints their progress

Each task execution is a run: run id = task id, job name = task name, with
job.queue, job.worker and job.attempt on the run span. The worker exports it
(``joblogger.otlp.configure()`` in each pool process, after the fork) and
stores its progress as the task's PROGRESS state, so ``AsyncResult(id).info``
and Flower show stage, current, total, percent and outcomes while it runs.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from joblogger import current_job
from joblogger.integrations import celery as joblogger_celery

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("shop", broker=BROKER, backend=BROKER)
joblogger_celery.instrument(app)  # the one line: every task of this app is a run


@worker_process_init.connect(weak=False)
def init_celery_tracing(**_: Any) -> None:
    """Celery's own spans, as opentelemetry-instrumentation-celery recommends; the runs become their children."""
    try:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError:
        return
    CeleryInstrumentor().instrument()


@app.task(name="shop.import_orders", bind=True, max_retries=3)
def import_orders(self: Any, batch: int, n: int = 40) -> dict[str, int]:
    """Import ``n`` orders of ``batch``; every tenth is a duplicate."""
    job = current_job()  # this task execution's run
    assert job is not None
    job.set_total(n, "orders")
    job.set_stage(f"Importing batch {batch}")
    for i in range(n):
        time.sleep(0.1)  # about 4 s a task: PROGRESS shows from 1 s after the start (the interval) to its end
        job.increment_progress()
        job.add_outcome("duplicates" if i % 10 == 0 else "inserted")
    return dict(job.outcomes)


def main(batches: int) -> None:
    """Send ``batches`` tasks and print their progress until they are done."""
    results = [import_orders.delay(b) for b in range(batches)]
    while not all(r.ready() for r in results):
        for r in results:
            # One read of the stored meta: `r.state` then `r.info` are two reads, and a task that
            # ends between them has its result (not its progress) in the second.
            meta = r.backend.get_task_meta(r.id)
            if meta["status"] == "PROGRESS":
                info = meta["result"]
                print(f"progress {r.id} {info['stage']}: {info['current']}/{info['total']} ({info['percent']}%)")
        time.sleep(0.3)
    for r in results:
        print(f"done {r.id} {r.state} {r.get()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
