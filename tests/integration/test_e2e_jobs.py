"""End to end: real job processes export through the real collector to Prometheus and Jaeger.

Each test runs jobs as separate processes configured the way users configure
them (``joblogger demo`` / ``joblogger.otlp.configure()``), then reads the
results back from the live backends and compares them with the jobs' own
summaries.
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
from pathlib import Path
from typing import Any

import pytest
from live import eventually, jaeger_traces, job_env, promql, scalar, tags_of


@pytest.fixture(scope="module")
def demo_run(stack: Any) -> dict[str, Any]:
    """Run `joblogger demo` as a real process against the stack, sampling progress while it runs."""
    service = f"e2e-demo-{uuid.uuid4().hex[:8]}"
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "joblogger",
            "demo",
            "--users",
            "1500",
            "--speed",
            "0.5",
            "--run-id",
            run_id,
            "--no-console",
            "--json",
        ],
        env=job_env(stack, service),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress: list[float] = []
    query = f'max(job_progress_current{{job="{service}", job_run_id="{run_id}"}})'
    while proc.poll() is None:
        value = scalar(stack, query)
        if value is not None and (not progress or value != progress[-1]):
            progress.append(value)
        time.sleep(0.5)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {"service": service, "run_id": run_id, "summary": summary, "progress": progress}


def test_progress_moves_in_prometheus_while_the_job_runs(demo_run: dict[str, Any]):
    """While the demo runs, Prometheus shows its progress gauge at several increasing values."""
    progress = demo_run["progress"]
    assert len(progress) >= 3, progress
    assert progress == sorted(progress)
    assert 0 < progress[-1] <= 1500


def test_prometheus_counts_equal_the_jobs_summary(stack: Any, demo_run: dict[str, Any]):
    """After the run, outcome, log, processed and run counts in Prometheus equal the job's own summary."""
    service, summary = demo_run["service"], demo_run["summary"]
    outcomes = summary["outcomeSummary"]
    sel = f'job="{service}", job_name="match-scores"'

    def totals() -> dict[str, float] | None:
        found = {
            "updates": scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="updates"}})'),
            "skipped": scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="skipped"}})'),
            "errors": scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="errors"}})'),
            "warnings": scalar(stack, f'sum(job_logs_total{{{sel}, job_log_level="warning"}})'),
            "error_logs": scalar(stack, f'sum(job_logs_total{{{sel}, job_log_level="error"}})'),
            "processed": scalar(stack, f"sum(job_entities_processed_total{{{sel}}})"),
            "runs": scalar(stack, f'sum(job_runs_total{{{sel}, job_result="success"}})'),
            "durations": scalar(stack, f'sum(job_run_duration_seconds_count{{{sel}, job_result="success"}})'),
            "active": scalar(stack, f"sum(job_runs_active{{{sel}}})"),
        }
        return found if found["runs"] == 1 and found["active"] == 0 else None

    found = eventually(totals, "final counts of the demo run")
    assert found["updates"] == outcomes["updates"]
    assert found["skipped"] == outcomes["skipped"] == 45
    assert found["errors"] == outcomes["errors"] == 2
    assert found["warnings"] == outcomes["warnings"] == 45
    assert found["error_logs"] == 2
    assert found["processed"] == summary["entitiesProcessed"] == 1500
    assert found["durations"] == 1
    buckets = promql(stack, f'job_run_duration_seconds_bucket{{{sel}, job_result="success"}}')
    assert len(buckets) >= 10  # the whole histogram arrived


def test_jaeger_has_the_run_with_stages_events_and_outcomes(stack: Any, demo_run: dict[str, Any]):
    """The run's trace has the run span, one child per stage, warning/error events with context, outcome attributes."""
    service, run_id, summary = demo_run["service"], demo_run["run_id"], demo_run["summary"]

    def complete() -> list[dict[str, Any]] | None:
        traces = jaeger_traces(stack, service, {"job.run.id": run_id})
        names = {s["operationName"] for t in traces for s in t["spans"]}
        return traces if {"match-scores", "Finalizing"} <= names else None

    traces = eventually(complete, "the run's trace with its run and stage spans")
    assert len(traces) == 1
    spans = traces[0]["spans"]
    by_id = {s["spanID"]: s for s in spans}
    real = [s for s in spans if not tags_of(s).get("job.snapshot.kind")]
    run = next(s for s in real if s["operationName"] == "match-scores")
    run_tags = tags_of(run)
    assert run_tags["job.run.id"] == run_id
    assert run_tags["job.result"] == "success"
    assert run_tags["job.outcomes.updates"] == summary["outcomeSummary"]["updates"]
    assert run_tags["job.outcomes.skipped"] == 45
    assert run_tags["job.outcomes.errors"] == 2  # add_outcome("errors"), as on the metric
    assert run_tags["job.logs.error"] == 2 and run_tags["job.logs.warning"] == 45  # the log calls, by level
    assert "job.duration_ms" not in run_tags  # the span's own duration says it
    # OpenTelemetry naming: no tag key on any span of the trace is also a namespace of another key.
    keys = {k for s in spans for k in tags_of(s) if k.startswith("job.")}
    assert not [(k, o) for k in keys for o in keys if o.startswith(k + ".")], keys
    stages = [s for s in real if s is not run]
    assert [s["operationName"] for s in sorted(stages, key=lambda s: s["startTime"])] == [
        "Initializing",
        "Fetching users",
        "Scoring users",
        "Finalizing",
    ]
    for stage in stages:
        parent = next(r["spanID"] for r in stage["references"] if r["refType"] == "CHILD_OF")
        assert by_id[parent] is run
    scoring = next(s for s in stages if s["operationName"] == "Scoring users")
    events = [{f["key"]: f["value"] for f in log["fields"]} for log in scoring["logs"]]
    warnings = [e for e in events if e.get("job.log.level") == "warning"]
    errors = [e for e in events if e.get("job.log.level") == "error"]
    assert warnings and all("userId" in e for e in warnings)
    assert len(errors) == 2 and all("userId" in e and "error" in e for e in errors)
    snapshot_kinds = {tags_of(s).get("job.snapshot.kind") for s in spans if tags_of(s).get("job.snapshot.kind")}
    assert {"run.start", "stage.start"} <= snapshot_kinds


SHORT_JOB = textwrap.dedent("""
    import sys, time
    from joblogger import create_job_logger, otlp

    otlp.configure(protocol=sys.argv[2], endpoint=sys.argv[3])
    with create_job_logger(sys.argv[1], "short-job") as job:
        job.set_total(40, "files")
        job.set_stage("Copying files")
        for i in range(40):
            job.add_outcome("inserts", 3)
            if i % 10 == 0:
                job.add_outcome("errors")
                job.error("Could not copy file", fileId=i)
            job.increment_progress()
            time.sleep(0.05)
    # no explicit shutdown: the process exits right after the job
""")


def run_short_jobs(stack: Any, tmp_path: Path, service: str, protocol: str, count: int) -> list[str]:
    """Run ``count`` short-lived job processes one after another; return their run ids."""
    script = tmp_path / "short_job.py"
    script.write_text(SHORT_JOB)
    endpoint = stack.otlp_grpc if protocol == "grpc" else stack.otlp_http
    run_ids = []
    for _ in range(count):
        run_id = f"short-{uuid.uuid4().hex[:8]}"
        proc = subprocess.run(
            [sys.executable, str(script), run_id, protocol, endpoint],
            env=job_env(stack, service, OTEL_METRIC_EXPORT_INTERVAL="60000"),  # only the exit flush exports
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        run_ids.append(run_id)
    return run_ids


def collector_accepted_logs(stack: Any) -> float:
    """Log records the collector has accepted so far (its own telemetry)."""
    with urllib.request.urlopen(stack.collector_metrics, timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("otelcol_receiver_accepted_log_records")
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_configure_exports_everything_before_exit(stack: Any, tmp_path: Path, protocol: str):
    """configure() over each OTLP protocol: spans, final metrics and logs arrive though the process exits at once."""
    service = f"e2e-exit-{protocol.split('/', maxsplit=1)[0]}-{uuid.uuid4().hex[:6]}"
    logs_before = collector_accepted_logs(stack)
    (run_id,) = run_short_jobs(stack, tmp_path, service, protocol, 1)
    sel = f'job="{service}"'
    assert (
        eventually(lambda: scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="inserts"}})'), "final inserts")
        == 120
    )
    assert scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="errors"}})') == 4
    assert scalar(stack, f"sum(job_entities_processed_total{{{sel}}})") == 40
    assert scalar(stack, f'sum(job_runs_total{{{sel}, job_result="success"}})') == 1

    def span_names() -> set[str] | None:
        traces = jaeger_traces(stack, service, {"job.run.id": run_id})
        names = {s["operationName"] for t in traces for s in t["spans"]}
        return names if {"short-job", "Copying files"} <= names else None

    names = eventually(span_names, "the short run's run and stage spans")
    assert {"short-job (snapshot)", "Copying files (snapshot)"} <= names
    # 4 errors + 2 milestones (stage start, summary) at least, through the log bridge
    assert eventually(lambda: collector_accepted_logs(stack) - logs_before >= 6, "log records at the collector")


def test_short_lived_processes_add_up(stack: Any, tmp_path: Path):
    """Three short-lived processes of one job: totals and window increases equal the sum of their outcomes."""
    service = f"e2e-cron-{uuid.uuid4().hex[:6]}"
    run_short_jobs(stack, tmp_path, service, "grpc", 3)
    sel = f'job="{service}", job_outcome="inserts"'
    total = eventually(
        lambda: (v := scalar(stack, f"sum(job_outcomes_total{{{sel}}})")) == 360 and v,
        "the three processes' inserts",
    )
    assert total == 360
    instances = promql(stack, f"job_outcomes_total{{{sel}}}")
    assert len({s["metric"]["instance"] for s in instances}) == 3  # one series per process
    # increase() alone misses series born inside the window; the bundled rules add the born ones.
    window = "10m"
    born = f"(last_over_time(job_outcomes_total{{{sel}}}[{window}]) unless job_outcomes_total{{{sel}}} offset {window})"
    grown = f"(increase(job_outcomes_total{{{sel}}}[{window}]) unless {born}) or {born}"
    assert scalar(stack, f"sum({grown})") == 360
