"""Single records and points at the real backends: call sites at VictoriaLogs, int64 outcomes at Prometheus,
non-finite floats at Jaeger.

Each test runs a small job as its own process, configured with
``joblogger.otlp.configure()`` and exporting through the stack's collector,
then reads what arrived from the live backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from live import eventually, get_json, job_env, scalar, tags_of

pytestmark = pytest.mark.integration

CALL_SITE_JOB = textwrap.dedent("""
    import sys

    from joblogger import create_job_logger, otlp

    otlp.configure()


    def score_users():
        with create_job_logger(sys.argv[1], "call-site-job") as job:
            job.milestone("Loaded 3 fixtures")  # milestone
            for _ in job.track(range(3), stage="Scoring"):  # track
                pass
            try:
                {}["user-7"]
            except KeyError:
                job.exception("Could not score user", userId=7)  # exception


    score_users()
""")

INT64_JOB = textwrap.dedent("""
    import time

    from joblogger import create_job_logger, otlp

    otlp.configure()
    with create_job_logger("huge-1", "int64-job") as job:
        job.add_outcome("bytes", 2**63 - 1)
        job.add_outcome("bytes")  # past int64: accepted before the fix, then every export failed
    time.sleep(3)  # three export intervals with the huge sum in the SDK
    with create_job_logger("huge-2", "int64-job") as job:
        job.add_outcome("bytes", 5)
        job.add_outcome("errors", 3)
    time.sleep(3)
    with create_job_logger("huge-3", "int64-job") as job:
        job.add_outcome("errors", 4)
""")

NAN_JOB = textwrap.dedent("""
    import math
    import sys

    from joblogger import create_job_logger, otlp

    otlp.configure()
    for epoch in range(3):
        with create_job_logger(f"{sys.argv[1]}-{epoch}", "nan-job", attributes={"lr": math.inf}) as job:
            job.set_stage("Training")
            job.info("epoch done", loss=math.nan if epoch == 1 else 0.5, history=[0.5, -math.inf])
""")


def logsql(stack: Any, query: str) -> list[dict[str, Any]]:
    """Rows of a LogsQL query from VictoriaLogs' /select/logsql/query."""
    form = urllib.parse.urlencode({"query": query, "limit": "1000"}).encode()
    with urllib.request.urlopen(f"{stack.logs}/select/logsql/query", data=form, timeout=10) as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]


def line_of(script: str, marker: str) -> int:
    """Line number in ``script`` of the line ending with ``# <marker>``."""
    return next(i for i, line in enumerate(script.splitlines(), 1) if line.rstrip().endswith(f"# {marker}"))


def run_job(stack: Any, script: Path, service: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a job script to completion against the stack."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env=job_env(stack, service),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_log_records_reach_victorialogs_with_the_callers_call_site(stack: Any, tmp_path: Path) -> None:
    """Milestone, track() stage milestone and exception() records carry the job's file, line and function."""
    service = f"call-site-{uuid.uuid4().hex[:8]}"
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "call_site_job.py"
    script.write_text(CALL_SITE_JOB)
    run_job(stack, script, service, run_id)
    wanted = {"Loaded 3 fixtures": "milestone", "Starting: Scoring": "track", "Could not score user": "exception"}

    def rows() -> dict[str, dict[str, Any]] | None:
        found = {r["_msg"]: r for r in logsql(stack, f'service.name:="{service}" AND job.run.id:="{run_id}"')}
        return found if set(wanted) <= set(found) else None

    found = eventually(rows, "the call-site job's records in VictoriaLogs")
    for message, marker in wanted.items():
        row = found[message]
        got = (row.get("code.file.path"), row.get("code.line.number"), row.get("code.function.name"))
        assert got == (str(script), str(line_of(CALL_SITE_JOB, marker)), "score_users"), (message, row)
    assert found["Loaded 3 fixtures"]["severity_text"] == "MILESTONE"
    assert found["Loaded 3 fixtures"]["severity_number"] == "12"
    failure = found["Could not score user"]
    assert failure["exception.type"] == "KeyError" and "Traceback" in failure["exception.stacktrace"]
    assert failure["severity_text"] == "ERROR" and failure["userId"] == "7"


def test_outcomes_past_int64_never_break_metric_export(stack: Any, tmp_path: Path) -> None:
    """An outcome pushed past 2**63-1 is capped; later runs' outcomes keep reaching Prometheus."""
    service = f"int64-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "int64_job.py"
    script.write_text(INT64_JOB)
    proc = run_job(stack, script, service)
    for failure in ("Value out of range", "EncodingException", "Failed to export", "Exception while exporting"):
        assert failure not in proc.stderr, proc.stderr
    sel = f'job="{service}", job_name="int64-job"'
    errors = eventually(
        lambda: scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="errors"}})') == 7 or None,
        "errors of the runs after the overflow",
    )
    assert errors
    assert scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="bytes"}})') == float(2**63 - 1)
    assert scalar(stack, f'sum(job_runs_total{{{sel}, job_result="success"}})') == 3
    # the first run's one warning went out as a log record like every joblogger warning
    warnings = eventually(
        lambda: logsql(stack, f'service.name:="{service}" AND joblogger.warning:="outcome-int64"'),
        "the int64 warning in VictoriaLogs",
    )
    assert len(warnings) == 1 and "int64-job huge-1" in warnings[0]["_msg"], warnings


def test_non_finite_floats_never_hide_runs_from_jaeger(stack: Any, tmp_path: Path) -> None:
    """A run that logs ``loss=nan`` (or has an infinite attribute) stays searchable in Jaeger, as do the others.

    Jaeger's query API cannot encode a non-finite double: before the fix one NaN in one
    run's event made every search of the service answer HTTP 500, so no run of it showed.
    """
    service = f"nan-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "nan_job.py"
    script.write_text(NAN_JOB)
    run_job(stack, script, service, "train")

    def runs() -> list[dict[str, Any]] | None:
        body = get_json(f"{stack.jaeger}/api/traces", {"service": service, "limit": "20", "lookback": "1h"})
        assert not body.get("errors"), body["errors"]
        spans = [s for trace in body.get("data") or [] for s in trace["spans"] if "job.result" in tags_of(s)]
        return spans if len(spans) == 3 else None

    found = eventually(runs, "the three runs in Jaeger")
    assert {tags_of(s)["lr"] for s in found} == {"Infinity"}
    trace = get_json(f"{stack.jaeger}/api/traces/{found[0]['traceID']}")["data"][0]
    stage = next(s for s in trace["spans"] if s["operationName"] == "Training")
    event = {f["key"]: f["value"] for log in stage["logs"] for f in log["fields"]}
    assert event["history"] == "[0.5, -Infinity]"
    assert event["loss"] in ("NaN", 0.5)
