"""Live: metrics through Prometheus's native OTLP receiver, and the dashboard at a 60 s export interval.

* The OTLP route (``JOBLOGGER_METRICS=otlp``, collector/metrics/otlp.yaml): a second collector,
  the stack's own build with that overlay on free ports, sends a real demo run's metrics to the
  stack's Prometheus ``/api/v1/otlp/v1/metrics``; the same demo through the stack's collector
  (remote write) must give the same metric names and label names. With created-timestamp zero
  ingestion the OTLP route's new counter series start with a 0 sample at their start time, so
  ``increase()`` counts a run's first (and only) increment; remote write v1 carries no start
  time and its series start at 1.
* A 60 s export interval (the OpenTelemetry SDK's default, ``OTEL_METRIC_EXPORT_INTERVAL=60000``):
  a ~70 s demo run is an Active runs row after its first export, JobRunVanished stays silent,
  JobErrorsRecorded fires, and after the run the bar panels (per-job minute sums) count it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import eventually, get_json, job_env, promql

from conftest import stack_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stack"))
from dashboard_queries import dashboard_queries

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB = "match-scores"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def otlp_collector(stack: Any) -> Iterator[str]:
    """The stack's collector build with the OTLP metrics overlay, on free ports; yields its OTLP gRPC URL."""
    ports = stack_module._ports(os.environ)
    grpc, http, health, telemetry = (_free_port() for _ in range(4))
    env = {
        **os.environ,
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}",
        "COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
        "COLLECTOR_TELEMETRY_HOST": "127.0.0.1",
        "COLLECTOR_TELEMETRY_PORT": str(telemetry),
        "TRACES_OTLP_ENDPOINT": f"127.0.0.1:{ports['JOBLOGGER_STACK_JAEGER_OTLP_GRPC_PORT']}",
        "PROMETHEUS_OTLP_URL": f"{stack.prometheus}/api/v1/otlp/v1/metrics",
        "VICTORIALOGS_OTLP_LOGS_ENDPOINT": f"{stack.logs}/insert/opentelemetry/v1/logs",
    }
    overlay = stack_module.collector_metrics_overlay({"JOBLOGGER_METRICS": "otlp"})
    binary = str(stack_module.ensure_built().collector)
    proc = subprocess.Popen(
        [binary, f"--config={stack_module.COLLECTOR_CONFIG}", f"--config={overlay}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        eventually(lambda: get_json(f"http://127.0.0.1:{health}/") is not None, "OTLP-route collector ready", 60)
        yield f"http://127.0.0.1:{grpc}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _demo(env: dict[str, str], run_id: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "joblogger", "demo", "--run-id", run_id, "--no-console", "--json", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str], timeout: float = 180) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


def _series(stack: Any, service: str) -> dict[str, set[frozenset[str]]]:
    """Label names of every series of ``service`` (target_info aside), by metric name."""
    body = get_json(f"{stack.prometheus}/api/v1/series", {"match[]": f'{{job="{service}"}}', "start": "0"})
    found: dict[str, set[frozenset[str]]] = {}
    for labels in body["data"]:
        name = labels.pop("__name__")
        if name != "target_info":
            found.setdefault(name, set()).add(frozenset(labels))
    return found


def _raw(stack: Any, selector: str) -> list[tuple[float, float]]:
    result = promql(stack, f"{selector}[15m]")
    assert len(result) == 1, result
    return [(float(t), float(v)) for t, v in result[0]["values"]]


def test_otlp_route_same_series_and_counters_start_at_zero(stack: Any, otlp_collector: str) -> None:
    """Both routes give the dashboard the same metric and label names; only OTLP's new counters start at 0."""
    tag = uuid.uuid4().hex[:8]
    via_otlp, via_rw = f"otlp-{tag}", f"rw-{tag}"
    short = ("--users", "300", "--speed", "0.2")
    procs = [
        _demo(job_env(stack, via_otlp, OTEL_EXPORTER_OTLP_ENDPOINT=otlp_collector), f"o-{tag}", *short),
        _demo(job_env(stack, via_rw), f"r-{tag}", *short),
    ]
    for proc in procs:
        _finish(proc)
    for service in (via_otlp, via_rw):
        eventually(lambda s=service: promql(stack, f'job_runs_total{{job="{s}"}}'), f"{service}'s job_runs_total")
    time.sleep(3)  # the last exports of both
    otlp, rw = _series(stack, via_otlp), _series(stack, via_rw)
    assert set(otlp) == set(rw), (sorted(set(otlp) ^ set(rw)), sorted(otlp), sorted(rw))
    assert otlp == rw

    otlp_runs = _raw(stack, f'job_runs_total{{job="{via_otlp}"}}')
    rw_runs = _raw(stack, f'job_runs_total{{job="{via_rw}"}}')
    # created-timestamp zero ingestion: a 0 at the counter's start time, before the run's 1
    assert otlp_runs[0][1] == 0 and otlp_runs[-1][1] == 1, otlp_runs
    assert otlp_runs[0][0] < otlp_runs[1][0]
    assert all(v == 1 for _, v in rw_runs), rw_runs  # remote write v1: born at 1
    # so plain increase() counts the OTLP route's run, and misses the remote-write one
    increase = promql(stack, f'sum by (job) (increase(job_runs_total{{job=~"{via_otlp}|{via_rw}"}}[15m]))')
    by_service = {r["metric"]["job"]: float(r["value"][1]) for r in increase}
    assert by_service.get(via_otlp, 0) >= 1, by_service
    assert by_service.get(via_rw, 0) == 0, by_service


def test_dashboard_and_alerts_at_60s_exports(stack: Any) -> None:
    """At the SDK's default 60 s export interval a ~70 s run shows as active, is not 'vanished', and is counted."""
    service = f"slow-{uuid.uuid4().hex[:8]}"
    run_id = f"s-{uuid.uuid4().hex[:8]}"
    queries = {(q.title, q.ref_id): q for q in dashboard_queries(service=service, job=[JOB])}
    active = queries[("Active runs", "A")].query
    proc = _demo(job_env(stack, service, OTEL_METRIC_EXPORT_INTERVAL="60000"), run_id, "--speed", "0.35")
    started = time.monotonic()
    rows = eventually(lambda: promql(stack, active), "the run in Active runs after its first 60 s export", 90)
    assert {r["metric"].get("job_run_id") for r in rows} == {run_id}
    # still a row 20 s later (samples 20 s old: the panel's freshness covers 60 s gaps), not vanished
    if proc.poll() is None:
        time.sleep(max(0.0, min(20.0, 75 - (time.monotonic() - started))))
        if proc.poll() is None:
            assert promql(stack, active), "active run dropped out between two 60 s exports"
    assert not promql(stack, f'job_instance:job_runs_active:vanished{{job="{service}"}}')
    summary = _finish(proc)
    elapsed = time.monotonic() - started
    assert elapsed > 60, f"the run took {elapsed:.0f} s: it must outlast one 60 s export interval"
    # JobErrorsRecorded fires for the demo's error records, from 60 s-spaced samples
    eventually(
        lambda: promql(stack, f'ALERTS{{alertname="JobErrorsRecorded", job="{service}", alertstate="firing"}}'),
        "JobErrorsRecorded",
        60,
    )
    assert not promql(stack, f'ALERTS{{alertname="JobRunVanished", job="{service}"}}')
    # the bar panels (per-job minute sums, 1 m evaluations 30 s behind): the run counted once
    finished = queries[("Finished runs by result", "A")].query.replace("[1m]", "[15m]")

    def counted() -> list[dict[str, Any]] | None:
        result = promql(stack, finished)
        return result if result and sum(float(r["value"][1]) for r in result) >= 1 else None

    result = eventually(counted, "the run in Finished runs by result", 150)
    assert summary["result"] == "success"
    assert {r["metric"]["job_result"]: float(r["value"][1]) for r in result} == {"success": 1}
    # Throughput, as Grafana asks for it (1-minute steps, $__rate_interval 1m): a rate from one sample a
    # minute needs the minute sums (rate() over a 1 m window holds one 60 s-spaced sample, so none)
    end = time.time()
    body = get_json(
        f"{stack.prometheus}/api/v1/query_range",
        {
            "query": queries[("Throughput per job", "A")].query,
            "start": f"{end - 600:.0f}",
            "end": f"{end:.0f}",
            "step": "60",
        },
    )
    rates = [float(v) for series in body["data"]["result"] for _, v in series["values"]]
    assert rates and max(rates) > 0, body["data"]
    logs = queries[("Warning and error logs", "A")].query.replace("[1m]", "[15m]")
    levels = {r["metric"]["job_log_level"]: float(r["value"][1]) for r in promql(stack, logs)}
    assert levels.get("error", 0) >= 1 and levels.get("warning", 0) >= 1, levels
