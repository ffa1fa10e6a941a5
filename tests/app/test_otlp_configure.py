"""joblogger.otlp.configure(): drop-in with existing providers, variables vs arguments, disabling, pull endpoint.

Each test runs in a fresh interpreter, because configure() sets process-wide providers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap


def run_script(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter with ``env`` added; return its stdout."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_existing_sdk_providers_are_reused_unchanged():
    """When the application already registered SDK providers, configure() replaces nothing and says so once."""
    out = run_script("""
        import logging
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        records = []
        handler = logging.Handler(); handler.emit = records.append
        logging.getLogger("joblogger").addHandler(handler); logging.getLogger("joblogger").setLevel(logging.INFO)
        spans = InMemorySpanExporter(); tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(spans))
        reader = InMemoryMetricReader(); mp = MeterProvider(metric_readers=[reader])
        trace.set_tracer_provider(tp); metrics.set_meter_provider(mp)

        from joblogger import create_job_logger, otlp
        t = otlp.configure(service_name="ignored")
        t2 = otlp.configure()
        same = trace.get_tracer_provider() is tp, metrics.get_meter_provider() is mp
        print("reused", t.reused_existing, t is t2, *same)
        with create_job_logger("r1", "dropin") as job:
            job.add_outcome("updates", 4)
        names = [s.name for s in spans.get_finished_spans()]
        print("spans", "dropin" in names)
        points = [p for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
                  for m in sm.metrics if m.name == "job.outcomes" for p in m.data.data_points]
        print("outcomes", sum(p.value for p in points))
        print("said", sum("already registered" in r.getMessage() for r in records))
    """)
    assert "reused True True True True" in out
    assert "spans True" in out
    assert "outcomes 4" in out
    assert "said 1" in out


def test_explicit_arguments_win_over_variables():
    """Arguments beat OTEL_* variables, which beat the defaults (service name, interval, protocol)."""
    out = run_script(
        """
        from joblogger import otlp
        t = otlp.configure(service_name="from-arg", metric_export_interval_s=7, otlp=True, handle_sigterm=False)
        print(t.tracer_provider.resource.attributes["service.name"], t.metric_export_interval_s, t.protocol)
        """,
        OTEL_SERVICE_NAME="from-env",
        OTEL_METRIC_EXPORT_INTERVAL="3000",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
    )
    assert out.split() == ["from-arg", "7", "http/protobuf"]
    out = run_script(
        """
        from joblogger import otlp
        t = otlp.configure(handle_sigterm=False)
        print(t.tracer_provider.resource.attributes["service.name"], t.metric_export_interval_s, t.protocol)
        """,
        OTEL_SERVICE_NAME="from-env",
        OTEL_METRIC_EXPORT_INTERVAL="3000",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
    )
    assert out.split() == ["from-env", "3.0", "http/protobuf"]


def test_sdk_disabled_configures_nothing():
    """OTEL_SDK_DISABLED=true: configure() sets up nothing and jobs still run on the no-op API."""
    out = run_script(
        """
        from opentelemetry import trace
        from joblogger import create_job_logger, otlp
        t = otlp.configure()
        with create_job_logger("r", "disabled") as job:
            job.increment_progress(3)
        print(t.enabled, type(trace.get_tracer_provider()).__name__, job.summary.entities_processed)
        """,
        OTEL_SDK_DISABLED="true",
    )
    assert out.split() == ["False", "ProxyTracerProvider", "3"]


def test_prometheus_pull_endpoint_serves_job_metrics():
    """configure(prometheus_port=...) serves the job metrics under the collector's names for Prometheus to scrape."""
    port = free_port()
    out = run_script(f"""
        import urllib.request
        from joblogger import create_job_logger, otlp
        otlp.configure(otlp=False, prometheus_port={port}, handle_sigterm=False)
        job = create_job_logger("run-p", "pulled")
        job.set_total(10, "files"); job.set_stage("Copying"); job.increment_progress(4)
        job.add_outcome("inserts", 3); job.warning("w")
        print(urllib.request.urlopen("http://127.0.0.1:{port}/metrics").read().decode())
        job.log_summary()
    """)
    lines = out.splitlines()
    assert (
        'job_progress_current{job_entity_type="files",job_name="pulled",job_run_id="run-p",job_stage="Copying"} 4.0'
        in lines
    )
    assert any(line.startswith('job_outcomes_total{job_name="pulled",job_outcome="inserts"} 3.0') for line in lines)
    assert any(line.startswith('job_logs_total{job_log_level="warning",job_name="pulled"} 1.0') for line in lines)
    assert any(line.startswith("job_runs_active") and line.endswith(" 1.0") for line in lines)
