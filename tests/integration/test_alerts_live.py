"""Live: the bundled alert rules fire in the real Prometheus for real job processes, and only then.

Jobs run as separate processes exporting through the collector to the stack's
Prometheus, which evaluates backends/prometheus/alerts.yml every 5 s; the tests
read the alerts back from ``/api/v1/alerts``. A SIGKILLed job must raise
``JobRunVanished`` (by design only after the process has been silent for 120 s)
and leave its last snapshot span, with stage and progress, in Jaeger.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from live import eventually, get_json, jaeger_traces, job_env, promql, scalar, tags_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stack"))
from dashboard_queries import dashboard_queries  # tests/stack is not a package on the path

ERRORS_ALERT_TIMEOUT_S = 60.0
#: JobRunVanished needs 120 s of silence (rules' freshness threshold) plus evaluation; bounded well above.
VANISHED_TIMEOUT_S = 240.0
TOTAL_ROWS = 100_000


def alerts(stack: Any, service: str) -> list[dict[str, Any]]:
    """Alerts (pending or firing) in the live Prometheus whose `job` label is ``service``."""
    body = get_json(f"{stack.prometheus}/api/v1/alerts")
    assert body["status"] == "success", body
    return [a for a in body["data"]["alerts"] if a["labels"].get("job") == service]


def last_evaluation(stack: Any, group: str) -> float:
    """Unix time of the last evaluation of the rule group ``group``."""
    groups = get_json(f"{stack.prometheus}/api/v1/rules")["data"]["groups"]
    stamp = next(g["lastEvaluation"] for g in groups if g["name"] == group)
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")  # nanoseconds -> microseconds
    return datetime.fromisoformat(stamp).timestamp()


def run_demo(stack: Any, service: str, users: int) -> subprocess.Popen[str]:
    """Start `joblogger demo` (no pauses) as a real process exporting to the stack."""
    return subprocess.Popen(
        [sys.executable, "-m", "joblogger", "demo", "--users", str(users), "--speed", "0", "--no-console", "--json"],
        env=job_env(stack, service),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def finished_jobs(stack: Any) -> dict[str, Any]:
    """Two demo processes that end normally: one recording 2 errors, one clean (9 users: no errors, no skips)."""
    errors, clean = f"alert-errors-{uuid.uuid4().hex[:6]}", f"alert-clean-{uuid.uuid4().hex[:6]}"
    procs = {errors: run_demo(stack, errors, 300), clean: run_demo(stack, clean, 9)}
    for proc in procs.values():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    return {"errors": errors, "clean": clean, "ended": time.time()}


def test_errors_alert_fires_for_a_job_with_errors_not_for_a_clean_one(
    stack: Any, finished_jobs: dict[str, Any]
) -> None:
    """JobErrorsRecorded fires, naming the job, for the job that recorded errors and never for the clean job."""
    errors, clean = finished_jobs["errors"], finished_jobs["clean"]

    def firing() -> dict[str, Any] | None:
        return next(
            (
                a
                for a in alerts(stack, errors)
                if a["labels"]["alertname"] == "JobErrorsRecorded" and a["state"] == "firing"
            ),
            None,
        )

    alert = eventually(firing, "JobErrorsRecorded firing for the job with errors", timeout=ERRORS_ALERT_TIMEOUT_S)
    print(f"JobErrorsRecorded firing {time.time() - finished_jobs['ended']:.1f} s after the job ended")
    assert alert["labels"]["job_name"] == "match-scores" and alert["labels"]["severity"] == "warning"
    assert float(alert["value"]) == 4  # 2 `errors` outcomes plus 2 `error` log records
    assert "match-scores" in alert["annotations"]["summary"] and errors in alert["annotations"]["description"]

    # The clean job's final counts are in Prometheus, and the rules were evaluated twice since.
    eventually(lambda: scalar(stack, f'sum(job_runs_total{{job="{clean}", job_result="success"}})'), "clean counts")
    seen = time.time()
    eventually(lambda: last_evaluation(stack, "joblogger.outcomes") > seen + 6, "two evaluations after the clean run")
    assert scalar(stack, f'sum(job_runs_total{{job="{clean}"}})') == 1
    assert alerts(stack, clean) == []


KILLED_JOB = textwrap.dedent("""
    import sys, time
    from joblogger import create_job_logger, otlp

    otlp.configure(checkpoint_interval_s=1.0)  # endpoint, service and 1 s metric interval from OTEL_* variables
    with create_job_logger(sys.argv[1], "nightly-import") as job:
        job.set_stage("Preparing")
        time.sleep(0.5)
        job.set_total(int(sys.argv[2]), "rows")
        job.set_stage("Importing rows")
        for _ in range(int(sys.argv[2])):
            job.add_outcome("inserts")
            job.increment_progress()
            time.sleep(0.01)
""")


def test_sigkilled_run_fires_vanished_and_keeps_its_last_snapshot(
    stack: Any, tmp_path: Path, finished_jobs: dict[str, Any]
) -> None:
    """A SIGKILLed run fires JobRunVanished after about 2 min; Jaeger keeps its last checkpoint, stage and progress."""
    service, run_id = f"alert-killed-{uuid.uuid4().hex[:6]}", f"killed-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "killed_job.py"
    script.write_text(KILLED_JOB)
    proc = subprocess.Popen(
        [sys.executable, str(script), run_id, str(TOTAL_ROWS)],
        env=job_env(stack, service, OTEL_METRIC_EXPORT_INTERVAL="1000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sel = f'job="{service}", job_run_id="{run_id}", job_stage="Importing rows"'

    def checkpoints() -> list[dict[str, Any]]:
        spans = [s for t in jaeger_traces(stack, service, {"job.run.id": run_id}) for s in t["spans"]]
        return [s for s in spans if tags_of(s).get("job.snapshot.kind") == "checkpoint"]

    try:
        eventually(lambda: (scalar(stack, f"max(job_progress_current{{{sel}}})") or 0) >= 200, "progress in Prometheus")
        eventually(
            lambda: any(tags_of(s)["job.stage"] == "Importing rows" for s in checkpoints()), "a checkpoint mid-stage"
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    killed = time.time()
    assert proc.returncode == -signal.SIGKILL

    def vanished() -> dict[str, Any] | None:
        return next(
            (
                a
                for a in alerts(stack, service)
                if a["labels"]["alertname"] == "JobRunVanished" and a["labels"].get("job_run_id") == run_id
            ),
            None,
        )

    alert = eventually(vanished, "JobRunVanished for the killed run", timeout=VANISHED_TIMEOUT_S)
    after = time.time() - killed
    print(f"JobRunVanished {alert['state']} {after:.0f} s after SIGKILL (value {float(alert['value']):.0f} s)")
    assert alert["state"] == "firing"  # no `for:`: it fires at once
    assert 110 <= after <= VANISHED_TIMEOUT_S  # not before the 120 s of silence the rule waits for
    assert float(alert["value"]) >= 120
    labels = alert["labels"]
    assert labels["job_name"] == "nightly-import" and labels["severity"] == "critical" and labels["instance"]
    assert "nightly-import" in alert["annotations"]["summary"]

    # Jaeger: the run span and the killed stage's span never ended, so only the finished first stage and
    # snapshots are there; the last snapshot is a checkpoint of the killed stage. Checked once the alert fired,
    # 2 minutes after the kill: whatever the process exported before it has arrived by then (was: a 3 s sleep).
    last_progress = scalar(stack, f"max(last_over_time(job_progress_current{{{sel}}}[5m]))")
    assert last_progress is not None and 200 <= last_progress < TOTAL_ROWS
    spans = [s for t in jaeger_traces(stack, service, {"job.run.id": run_id}) for s in t["spans"]]
    assert {s["operationName"] for s in spans if not tags_of(s).get("job.snapshot.kind")} == {"Preparing"}
    assert len({s["traceID"] for s in spans}) == 1
    last = tags_of(max(spans, key=lambda s: s["startTime"]))
    assert last["job.snapshot.kind"] == "checkpoint" and last["job.stage"] == "Importing rows"
    assert last["job.name"] == "nightly-import" and last["job.progress.total"] == TOTAL_ROWS
    # the checkpoint (every 1 s) and the progress gauge (every 1 s) agree to within a few seconds of work
    assert 0 < last["job.progress.current"] <= last_progress + 100
    assert last_progress - last["job.progress.current"] <= 500
    assert last["job.outcomes.inserts"] == last["job.progress.current"]

    # The dashboard's "Interrupted runs" panel lists the killed run (its own query, variables substituted).
    (panel,) = [
        q
        for q in dashboard_queries(service=service, job="nightly-import", run=run_id)
        if q.title.startswith("Interrupted runs")
    ]
    rows = eventually(
        lambda: [r for r in promql(stack, panel.query) if r["metric"].get("job_run_id") == run_id],
        "the killed run in the Interrupted runs panel",
    )
    assert float(rows[0]["value"][1]) >= 120

    # The jobs that ended normally more than 2 minutes ago never look vanished.
    assert time.time() - finished_jobs["ended"] > 125
    for normal in (finished_jobs["errors"], finished_jobs["clean"]):
        assert not [a for a in alerts(stack, normal) if a["labels"]["alertname"] == "JobRunVanished"]


ONE_SHOT_JOB = textwrap.dedent("""
    import sys
    from joblogger import create_job_logger, otlp

    otlp.configure()  # OTEL_METRIC_EXPORT_INTERVAL=600000: the only metric export is the one at exit
    with create_job_logger(sys.argv[1], "nightly-cleanup") as job:
        job.add_outcome("errors")
""")

WORKER_JOB = textwrap.dedent("""
    import sys, time
    from joblogger import create_job_logger, otlp

    otlp.configure()  # exports every second (OTEL_METRIC_EXPORT_INTERVAL=1000)
    with create_job_logger(sys.argv[1], "sync-worker") as job:
        job.add_outcome("errors", 0)  # the errors series starts at 0
        time.sleep(float(sys.argv[2]))
        print(time.time(), flush=True)
        job.add_outcome("errors")
        time.sleep(4)
""")
#: How long the worker runs clean before its first error: longer than the window WORKER_WINDOW.
WORKER_CLEAN_S = 30.0
WORKER_WINDOW = "20s"


def _errors_rule(window: str) -> str:
    """JobErrorsRecorded's expression as bundled, with its 15-minute window replaced by ``window``."""
    rules = yaml.safe_load((Path(__file__).resolve().parents[2] / "backends/prometheus/alerts.yml").read_text())
    expr = next(r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == "JobErrorsRecorded")
    assert "15m" in expr
    return str(expr).replace("15m", window)


def _firing(stack: Any, service: str, alertname: str) -> dict[str, Any] | None:
    return next(
        (a for a in alerts(stack, service) if a["labels"]["alertname"] == alertname and a["state"] == "firing"),
        None,
    )


def test_new_error_series_count_from_zero_for_a_cron_process_and_a_worker(stack: Any, tmp_path: Path) -> None:
    """A one-shot process whose only sample is errors=1 and a worker's first error both fire JobErrorsRecorded."""
    cron, worker = f"alert-cron-{uuid.uuid4().hex[:6]}", f"alert-worker-{uuid.uuid4().hex[:6]}"
    (tmp_path / "one_shot.py").write_text(ONE_SHOT_JOB)
    (tmp_path / "worker.py").write_text(WORKER_JOB)
    worker_proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "worker.py"), "w-1", str(WORKER_CLEAN_S)],
        env=job_env(stack, worker, OTEL_METRIC_EXPORT_INTERVAL="1000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cron_run = subprocess.run(
        [sys.executable, str(tmp_path / "one_shot.py"), "c-1"],
        env=job_env(stack, cron, OTEL_METRIC_EXPORT_INTERVAL="600000"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cron_run.returncode == 0, cron_run.stderr

    # The cron process: one single sample, already 1, which increase() cannot see.
    cron_sel = f'job="{cron}", job_outcome="errors"'
    eventually(lambda: scalar(stack, f"sum(job_outcomes_total{{{cron_sel}}})") == 1, "the cron process's errors=1")
    assert scalar(stack, f"sum(count_over_time(job_outcomes_total{{{cron_sel}}}[10m]))") == 1
    assert promql(stack, f"increase(job_outcomes_total{{{cron_sel}}}[15m])") == []
    alert = eventually(lambda: _firing(stack, cron, "JobErrorsRecorded"), "JobErrorsRecorded for the cron process")
    assert float(alert["value"]) == 1 and alert["labels"]["job_name"] == "nightly-cleanup"

    # The worker: its errors series started at 0; its first error comes after a clean window.
    stdout, stderr = worker_proc.communicate(timeout=WORKER_CLEAN_S + 60)
    assert worker_proc.returncode == 0, stderr
    errored_at = float(stdout.split()[0])
    worker_sel = f'job="{worker}", job_outcome="errors"'
    at = str(errored_at + 3)
    body = get_json(
        f"{stack.prometheus}/api/v1/query",
        {"query": f"job_outcomes_total{{{worker_sel}}} offset {WORKER_WINDOW}", "time": at},
    )
    assert [float(r["value"][1]) for r in body["data"]["result"]] == [
        0.0
    ]  # the series existed, at 0, before the window
    body = get_json(f"{stack.prometheus}/api/v1/query", {"query": _errors_rule(WORKER_WINDOW), "time": at})
    worker_points = [r for r in body["data"]["result"] if r["metric"].get("job") == worker]
    assert len(worker_points) == 1 and 1 <= float(worker_points[0]["value"][1]) < 1.5, body
    alert = eventually(lambda: _firing(stack, worker, "JobErrorsRecorded"), "JobErrorsRecorded for the worker")
    assert float(alert["value"]) == 1 and alert["labels"]["job_name"] == "sync-worker"
