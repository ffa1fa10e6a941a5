"""A command that is not Python under `joblogger run`, against the real stack (issue #14).

The command is a shell script; its run is read back from Prometheus
(``job_runs_total`` by result), Jaeger (the run span with ``process.exit.code``)
and VictoriaLogs (its output lines as the run's records, with their levels).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from typing import Any

import pytest
from live import eventually, jaeger_traces, job_env, scalar, tags_of

from joblogger import semconv

pytestmark = pytest.mark.integration

JOBLOGGER = [sys.executable, "-m", "joblogger"]

BACKUP = textwrap.dedent("""
    echo "dumping 3 tables"
    echo "pg_dump: warning: table t2 has no primary key" >&2
    echo "ERROR: table t3 is locked" >&2
    echo "dumped 2 of 3 tables"
    exit "$1"
""")


def logsql(stack: Any, query: str) -> list[dict[str, Any]]:
    """Rows of a LogsQL query over the last hour."""
    now = time.time()
    form = {"query": query, "limit": "1000", "start": f"{now - 3600:.3f}", "end": f"{now + 60:.3f}"}
    request = urllib.request.Request(f"{stack.logs}/select/logsql/query", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]


def run_command(stack: Any, service: str, run_id: str, status: int) -> subprocess.CompletedProcess[bytes]:
    argv = [*JOBLOGGER, "run", "--job", "nightly-backup", "--run-id", run_id]
    argv += ["--", "sh", "-c", BACKUP, "sh", str(status)]
    env = job_env(stack, service)
    env.pop("PYTHONPATH", None)
    return subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)


def test_a_shell_command_is_a_run_in_prometheus_jaeger_and_victorialogs(stack: Any) -> None:
    """Two runs of a shell script (exit 0, exit 3): results, exit codes and output lines reach all three backends."""
    service = f"cmd-{uuid.uuid4().hex[:8]}"
    ok_id, failed_id = f"ok-{uuid.uuid4().hex[:8]}", f"failed-{uuid.uuid4().hex[:8]}"
    ok = run_command(stack, service, ok_id, 0)
    failed = run_command(stack, service, failed_id, 3)
    assert ok.returncode == 0, ok.stderr
    assert failed.returncode == 3, failed.stderr
    # The output is the command's, unchanged: nothing of joblogger's own is added (cron mails the same).
    assert failed.stdout == b"dumping 3 tables\ndumped 2 of 3 tables\n"
    assert failed.stderr == b"pg_dump: warning: table t2 has no primary key\nERROR: table t3 is locked\n"

    # Prometheus: one run per result.
    sel = f'job="{service}", job_name="nightly-backup"'
    for result in ("success", "failure"):
        query = f'sum(job_runs_total{{{sel}, job_result="{result}"}})'
        assert eventually(lambda q=query: scalar(stack, q), f"job_runs_total {result}") == 1

    # Jaeger: the run span with the exit code, the program and its pid.
    def run_span(run_id: str) -> dict[str, Any] | None:
        for trace in jaeger_traces(stack, service, {"job.run.id": run_id}):
            for span in trace["spans"]:
                if span["operationName"] == "nightly-backup" and "job.result" in tags_of(span):
                    return span
        return None

    failed_span = eventually(lambda: run_span(failed_id), "the failed run's span in Jaeger")
    tags = tags_of(failed_span)
    assert tags[semconv.JOB_RESULT] == "failure"
    assert tags[semconv.PROCESS_EXIT_CODE] == 3
    assert tags[semconv.ERROR_TYPE] == "joblogger.CommandExit"
    assert tags[semconv.PROCESS_EXECUTABLE_NAME] == "sh"
    assert isinstance(tags[semconv.PROCESS_PID], int)
    ok_tags = tags_of(eventually(lambda: run_span(ok_id), "the successful run's span in Jaeger"))
    assert ok_tags[semconv.JOB_RESULT] == "success" and ok_tags[semconv.PROCESS_EXIT_CODE] == 0

    # VictoriaLogs: each output line is a record of its run, at its level, with its stream, in the run's trace.
    query = f'service.name:="{service}" AND job.run.id:="{failed_id}"'

    def records() -> list[dict[str, Any]] | None:
        rows = logsql(stack, query)
        return rows if any(row["_msg"].startswith("Failed after") for row in rows) else None

    rows = eventually(records, "the failed run's records in VictoriaLogs")
    stream = semconv.LOG_IOSTREAM
    lines = Counter((row["_msg"], row["job.log.level"], row[stream]) for row in rows if stream in row)
    assert lines == Counter(
        {
            ("dumping 3 tables", "info", "stdout"): 1,
            ("dumped 2 of 3 tables", "info", "stdout"): 1,
            ("pg_dump: warning: table t2 has no primary key", "warning", "stderr"): 1,
            ("ERROR: table t3 is locked", "error", "stderr"): 1,
        }
    )
    assert {row["trace_id"] for row in rows} == {failed_span["traceID"]}
    assert any(row["_msg"] == "Job failed: joblogger.CommandExit: exited with status 3" for row in rows)
