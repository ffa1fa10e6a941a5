"""Live: a worker that has run thousands of runs still shows its active run in Prometheus and the stall alert.

A real worker process runs 2,500 runs of two stages (collected and exported
while active, 25 at a time), then one run that stays stuck at progress 7. It
exports through the stack's collector to Prometheus, either with
``joblogger.otlp.configure()`` (progress produced from the live runs, labelled
with ``job_run_id``) or with the application's own SDK providers (drop-in:
labelled with the bounded ``job_run_slot``). Before the fix, every run after
about 1,000 (2,000 attribute sets per gauge) reported only
``otel_metric_overflow="true"``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from live import eventually, job_env, promql

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stack"))
from dashboard_queries import dashboard_queries  # tests/stack is not a package on the path

ALERTS = Path(__file__).resolve().parents[2] / "backends" / "prometheus" / "alerts.yml"
RUNS = 2_500
#: How long the last run stays stuck before the stall expression is evaluated (its windows shortened to 20 s).
STUCK_S = 30.0

WORKER = textwrap.dedent("""
    import os, sys
    from joblogger import create_job_logger, otlp

    runs, mode, final_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if mode == "configure":
        meter_provider = otlp.configure(snapshots=False, handle_sigterm=False).meter_provider
        tracer_provider = None
    else:  # the application's own SDK providers; joblogger only uses them
        import uuid
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        resource = Resource.create({"service.instance.id": str(uuid.uuid4())})
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=1000)
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        tracer_provider = TracerProvider(resource=resource)
    kwargs = {"meter_provider": meter_provider, "tracer_provider": tracer_provider}
    for batch in range(runs // 25):
        jobs = [create_job_logger(f"bulk-{batch}-{i}", "worker-job", **kwargs) for i in range(25)]
        for stage in ("Fetching", "Writing"):
            for job in jobs:
                job.set_stage(stage)
                job.increment_progress(3)
            meter_provider.force_flush()
        for job in jobs:
            job.log_summary()
    final = create_job_logger(final_id, "worker-job", **kwargs)
    final.set_stage("Stuck")
    final.set_total(10, "items")
    final.increment_progress(7)
    print("READY", flush=True)
    sys.stdin.read()
    final.log_summary()
    meter_provider.shutdown()
""")


def stalled_expression() -> str:
    """JobRunStalled's expression from alerts.yml, its 10 m window and 120 s freshness shortened to 20 s and 5 s."""
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    expr = next(
        r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == "JobRunStalled"
    )  # fmt: skip
    assert "[10m]" in expr and "offset 10m" in expr and "< 120" in expr
    return str(expr).replace("[10m]", "[20s]").replace("offset 10m", "offset 20s").replace("< 120", "< 5")


@pytest.mark.parametrize("mode", ["configure", "drop-in"])
def test_long_lived_workers_active_run_shows_after_thousands_of_runs(stack: Any, mode: str) -> None:
    """After 2,500 runs, the stuck run is in Prometheus, the Active runs panel and the JobRunStalled expression."""
    service, final_id = f"worker-{mode}-{uuid.uuid4().hex[:6]}", f"final-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(RUNS), mode, final_id],
        env=job_env(stack, service, OTEL_METRIC_EXPORT_INTERVAL="1000"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # configure(): the run is labelled with its id; drop-in: with its job and slot (and process)
    ident = f'job_run_id="{final_id}"' if mode == "configure" else 'job_run_slot="0", job_stage="Stuck"'
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read() if proc.stderr else ""
        stuck_since = time.time()
        series = eventually(
            lambda: promql(stack, f'job_progress_current{{job="{service}", {ident}}} == 7'), "the stuck run's progress"
        )
        assert len(series) == 1, series
        labels = series[0]["metric"]
        assert labels["job_name"] == "worker-job" and labels["job_run_slot"] == "0" and labels["instance"]
        assert labels["job_stage"] == "Stuck" and labels["job_entity_type"] == "items"
        assert labels.get("job_run_id", "") == (final_id if mode == "configure" else "")
        assert promql(stack, f'{{job="{service}", otel_metric_overflow!=""}}') == []
        # The bulk runs reached Prometheus too (and ended): they were really collected while active.
        eventually(
            lambda: [r for r in promql(stack, f'sum(job_runs_total{{job="{service}"}})') if r["value"][1] == str(RUNS)],
            f"{RUNS} ended runs counted",
        )

        # The dashboard's Active runs panel (its own query, variables substituted) lists the stuck run.
        (current,) = [
            q
            for q in dashboard_queries(service=service, job="worker-job")
            if q.title == "Active runs" and q.ref_id == "B"
        ]  # fmt: skip
        rows = eventually(
            lambda: [r for r in promql(stack, current.query) if r["metric"].get("job_stage") == "Stuck"],
            "the stuck run in Active runs",
        )
        assert [(r["metric"].get("job_run_id", ""), r["metric"]["job_run_slot"], r["value"][1]) for r in rows] == [
            (final_id if mode == "configure" else "", "0", "7")
        ]

        # JobRunStalled (windows shortened) names the stuck run, and only it.
        time.sleep(max(0.0, stuck_since + STUCK_S - time.time()))
        expr = stalled_expression()
        expr = expr.replace("job_progress_current", f'job_progress_current{{job="{service}"}}')
        stalled = eventually(lambda: promql(stack, expr), "JobRunStalled")
        named = [
            (s["metric"].get("job_run_id", ""), s["metric"]["job_run_slot"], s["metric"]["job_stage"]) for s in stalled
        ]
        assert named == [(final_id if mode == "configure" else "", "0", "Stuck")]
        assert float(stalled[0]["value"][1]) == 7
    finally:
        proc.communicate("", timeout=60)
    assert proc.returncode == 0
