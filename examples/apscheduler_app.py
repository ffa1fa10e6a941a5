"""APScheduler + joblogger: every fire of a scheduled job is a run, enabled with one line.

``python examples/apscheduler_app.py [SECONDS]`` runs a BackgroundScheduler for
SECONDS (default 3): a report every second, and a sync every 0.5 s that takes
longer than that, so APScheduler skips overlapping fires (``max_instances=1``)
- each skipped fire is a ``skip`` run with ``job.skip.reason=max_instances``.
Exports to $OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318), e.g.
the bundled stack (``python scripts/stack.py up``). Prints one JSON line: how many fires of
each job ran and how many were skipped, as APScheduler's own events counted them.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from datetime import datetime

from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler

from joblogger import current_job, otlp
from joblogger.integrations import apscheduler as joblogger_aps

otlp.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "apscheduler-example"))


def report() -> None:
    """A scheduled job: ``current_job()`` is this fire's run."""
    job = current_job()
    assert job is not None
    job.set_total(20, "rows")
    for _ in range(20):
        job.increment_progress()
        job.add_outcome("rows_checked")


def sync() -> None:
    """Takes 1.2 s while it is scheduled every 0.5 s: the fires in between are skipped."""
    job = current_job()
    assert job is not None
    job.set_stage("Syncing")
    time.sleep(1.2)
    job.add_outcome("synced")


def main(seconds: float) -> None:
    scheduler = joblogger_aps.instrument(BackgroundScheduler())  # the one line
    now = datetime.now().astimezone()
    scheduler.add_job(report, "interval", seconds=1, id="report", next_run_time=now)
    scheduler.add_job(sync, "interval", seconds=0.5, id="sync", next_run_time=now, max_instances=1)
    counts: collections.Counter[str] = collections.Counter()

    def count(event: JobEvent) -> None:
        kind = "ran" if event.code == EVENT_JOB_EXECUTED else "skipped"
        counts[f"{event.job_id} {kind}"] += len(getattr(event, "scheduled_run_times", None) or [None])

    scheduler.add_listener(count, EVENT_JOB_EXECUTED | EVENT_JOB_MAX_INSTANCES)
    scheduler.start()
    time.sleep(seconds)
    scheduler.shutdown(wait=True)
    print(json.dumps(dict(sorted(counts.items()))))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
