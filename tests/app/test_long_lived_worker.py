"""A long-lived worker keeps reporting each active run's progress after thousands of runs.

The OpenTelemetry SDK keeps every attribute set an observable instrument ever
reported and caps each stream at 2,000; per-run gauges used to fall into
``otel.metric.overflow`` after about 2,000 runs (fewer with several stages).
Each test runs a worker of 2,500 runs with two stages each, collected while
they are active, through a real SDK MeterProvider: joblogger's own OTLP/HTTP
export (decoded from the wire), its Prometheus endpoint (scraped over HTTP), and
drop-in mode (the application's own MeterProvider).
"""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from joblogger import create_job_logger, semconv

RUNS = 2_500
CONCURRENT = 25
OVERFLOW = "otel.metric.overflow"

#: The worker: RUNS runs of two stages, CONCURRENT at a time, each batch collected while active;
#: then one last run that stays active at progress 42 until stdin closes.
WORKER = textwrap.dedent("""
    import sys
    from joblogger import create_job_logger, otlp

    runs, concurrent, mode, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if mode == "otlp":
        telemetry = otlp.configure(
            service_name="worker", protocol="http/protobuf", endpoint=f"http://127.0.0.1:{port}",
            metric_export_interval_s=3600, snapshots=False, handle_sigterm=False,
        )
    else:
        telemetry = otlp.configure(
            service_name="worker", otlp=False, prometheus_port=port, snapshots=False, handle_sigterm=False
        )
    for batch in range(runs // concurrent):
        jobs = [create_job_logger(f"run-{batch}-{i}", "worker-job") for i in range(concurrent)]
        for stage in ("Fetching", "Writing"):
            for job in jobs:
                job.set_stage(stage)
                job.increment_progress(3)
            telemetry.meter_provider.force_flush()
        for job in jobs:
            job.log_summary()
    final = create_job_logger("final-run", "worker-job")
    final.set_stage("Final stage")
    final.set_total(100, "items")
    final.increment_progress(42)
    telemetry.meter_provider.force_flush()
    print("READY", flush=True)
    sys.stdin.read()
    final.log_summary()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_worker(mode: str, port: int, on_ready: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(RUNS), str(CONCURRENT), mode, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY", proc.stderr
        on_ready()
    finally:
        _, stderr = proc.communicate("", timeout=120)
    assert proc.returncode == 0, stderr


def _value(kv: KeyValue) -> Any:
    which = kv.value.WhichOneof("value")
    return getattr(kv.value, which) if which else None


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports; decodes each metrics request into (metric name, attributes, value) points."""

    points: list[list[tuple[str, dict[str, Any], float]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/metrics":
            self._decode(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def _decode(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest.FromString(body)
        export = []
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    data = getattr(metric, metric.WhichOneof("data"))
                    for p in data.data_points:
                        value = getattr(p, "sum", None) if metric.WhichOneof("data") == "histogram" else None
                        if value is None:
                            value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                        export.append((metric.name, {kv.key: _value(kv) for kv in p.attributes}, value))
        self.points.append(export)

    def log_message(self, *args: Any) -> None:
        pass


def test_otlp_export_keeps_each_active_runs_progress_after_thousands_of_runs() -> None:
    """Through configure()'s OTLP export: the last run's progress has its run id, never an overflow point."""
    exports: list[list[tuple[str, dict[str, Any], float]]] = []
    handler = type("Receiver", (_Receiver,), {"points": exports})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_worker("otlp", server.server_address[1], lambda: None)
    finally:
        server.shutdown()
    assert len(exports) >= RUNS // CONCURRENT * 2
    overflow = [p for export in exports for p in export if OVERFLOW in p[1]]
    assert overflow == []
    progress = [[p for p in export if p[0] == semconv.METRIC_PROGRESS_CURRENT] for export in exports]
    # every collection reported exactly the runs active at that moment, with their ids and slots
    assert all(len(points) in (CONCURRENT, 1) for points in progress[:-1]), [len(p) for p in progress]
    last_run = [p for points in progress for p in points if p[1].get(semconv.JOB_RUN_ID) == "final-run"]
    assert last_run, progress[-2:]
    _, attrs, value = last_run[0]
    assert value == 42
    assert attrs == {
        semconv.JOB_NAME: "worker-job",
        semconv.JOB_RUN_ID: "final-run",
        semconv.JOB_RUN_SLOT: 0,
        semconv.JOB_STAGE: "Final stage",
        semconv.JOB_ENTITY_TYPE: "items",
    }
    ratio = [p for export in exports for p in export if p[0] == semconv.METRIC_PROGRESS_RATIO]
    assert [(p[1][semconv.JOB_RUN_ID], p[2]) for p in ratio] == [("final-run", 0.42)]
    seen_ids = {p[1][semconv.JOB_RUN_ID] for points in progress for p in points}
    assert len(seen_ids) == RUNS + 1


def test_prometheus_endpoint_keeps_each_active_runs_progress_after_thousands_of_runs() -> None:
    """Through configure(prometheus_port=...): the last run is scraped with its id and slot, no overflow series."""
    port = free_port()
    scraped: list[str] = []
    run_worker(
        "prometheus",
        port,
        lambda: scraped.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()),
    )
    text = scraped[0]
    assert "otel_metric_overflow" not in text
    progress = [line for line in text.splitlines() if line.startswith("job_progress_current{")]
    assert len(progress) == 1, progress
    assert 'job_run_id="final-run"' in progress[0] and 'job_run_slot="0"' in progress[0]
    assert progress[0].endswith(" 42.0")


def test_drop_in_provider_reports_bounded_slots_after_thousands_of_runs() -> None:
    """With the application's own MeterProvider: gauges carry job.run.slot (bounded), never overflow.

    The run is found from the gauge by job + slot: its run span carries the same slot.
    """
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(spans))

    def progress_points() -> list[tuple[dict[str, Any], float]]:
        data = reader.get_metrics_data()
        assert data is not None
        points = [
            (m.name, dict(p.attributes or {}), getattr(p, "value", None))
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            for p in m.data.data_points
        ]
        assert [p for p in points if OVERFLOW in p[1]] == []
        return [(attrs, value) for name, attrs, value in points if name == semconv.METRIC_PROGRESS_CURRENT]

    for batch in range(RUNS // CONCURRENT):
        jobs = [
            create_job_logger(f"run-{batch}-{i}", "worker-job", tracer_provider=tracer, meter_provider=meter)
            for i in range(CONCURRENT)
        ]
        for stage in ("Fetching", "Writing"):
            for job in jobs:
                job.set_stage(stage)
                job.increment_progress(3)
            progress_points()
        for job in jobs:
            job.log_summary()
        spans.clear()
    final = create_job_logger("final-run", "worker-job", tracer_provider=tracer, meter_provider=meter)
    final.set_stage("Final stage")
    final.increment_progress(42)
    current = [
        (attrs, value)
        for attrs, value in progress_points()
        if attrs[semconv.JOB_STAGE] == "Final stage" and value == 42
    ]
    assert current == [
        (
            {
                semconv.JOB_NAME: "worker-job",
                semconv.JOB_RUN_SLOT: 0,
                semconv.JOB_STAGE: "Final stage",
                semconv.JOB_ENTITY_TYPE: "entities",
            },
            42,
        )
    ]
    final.log_summary()
    run_span = next(s for s in spans.get_finished_spans() if s.name == "worker-job")
    assert run_span.attributes is not None
    assert run_span.attributes[semconv.JOB_RUN_SLOT] == 0
    assert run_span.attributes[semconv.JOB_RUN_ID] == "final-run"
