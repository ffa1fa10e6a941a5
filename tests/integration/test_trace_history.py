"""Run history survives a Jaeger restart: traces live in Badger on disk, not in memory."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

from live import eventually, jaeger_traces, job_env

from conftest import stack_module

SERVICE = "joblogger-trace-history"

JOB = """
import sys
from joblogger import create_job_logger, otlp

handle = otlp.configure()
with create_job_logger(sys.argv[1], "history-job") as job:
    job.set_stage("Only stage")
    job.add_outcome("updates", 3)
handle.shutdown()
"""


def _run_job(stack: Any, run_id: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", JOB, run_id],
        env=job_env(stack, SERVICE),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def _trace_of(stack: Any, run_id: str) -> list[dict[str, Any]] | None:
    return jaeger_traces(stack, SERVICE, {"job.run.id": run_id}) or None


def test_runs_recorded_before_a_jaeger_restart_are_found_after_it(stack: Any) -> None:
    before = f"before-{uuid.uuid4().hex[:8]}"
    _run_job(stack, before)
    (trace,) = eventually(lambda: _trace_of(stack, before), "the run's trace in Jaeger")
    names = sorted(span["operationName"] for span in trace["spans"])

    assert stack_module.stop(services=["jaeger"]) == ["jaeger"]
    stack_module.start()  # starts only what is not running: Jaeger, on the same data directory

    (again,) = eventually(lambda: _trace_of(stack, before), "the earlier run's trace after the restart")
    assert again["traceID"] == trace["traceID"]
    assert sorted(span["operationName"] for span in again["spans"]) == names
    # and the restarted Jaeger keeps recording new runs
    after = f"after-{uuid.uuid4().hex[:8]}"
    _run_job(stack, after)
    eventually(lambda: _trace_of(stack, after), "a new run's trace after the restart")
