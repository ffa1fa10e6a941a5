"""A parent run that fans out with ``job.map()`` (the child-run live tests run it as a subprocess).

Usage: ``python _children_app.py METHOD SCENARIO``: METHOD is a start method (fork, forkserver,
spawn) or ``thread``; SCENARIO ``work`` (items 0..N-1, item 7 raises) or ``die`` (item 3 kills its
worker). Exports to the stack from the ``OTEL_*`` environment; prints the parent's summary as JSON.
"""

from __future__ import annotations

import json
import os
import sys

import joblogger.otlp
from joblogger import create_job_logger, current_job

ITEMS = 24


def work(i: int) -> int:
    """Count ``i % 4 + 1`` rows in the child, one ``inserts`` outcome per row; item 7 raises."""
    job = current_job()
    assert job is not None
    if i == 7:
        raise LookupError(f"item {i}")
    job.set_stage("Loading")
    for _ in range(i % 4 + 1):
        job.increment_progress()
        job.add_outcome("inserts")
    return i


def die(i: int) -> int:
    """Item 3 kills its worker process."""
    if i == 3:
        os._exit(9)
    return work(i)


def main() -> None:
    method, scenario = sys.argv[1], sys.argv[2]
    telemetry = joblogger.otlp.configure()
    fn = work if scenario == "work" else die
    kind = "thread" if method == "thread" else "process"
    with create_job_logger(name="fan-out") as job:
        error = None
        try:
            job.map(fn, range(ITEMS), workers=3, kind=kind, mp_context=None if kind == "thread" else method)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
    assert job.summary is not None
    print(json.dumps({"run_id": job.job_run_id, "error": error, "summary": job.summary.to_dict()}), flush=True)
    telemetry.shutdown()


if __name__ == "__main__":
    main()
