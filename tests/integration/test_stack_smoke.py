"""Smoke test of the local stack: OTLP in through the collector, out of Jaeger and Prometheus."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

pytestmark = pytest.mark.integration

T = TypeVar("T")

SERVICE = "joblogger-smoke"
POLL_TIMEOUT_S = 30.0


def _get_json(url: str, params: dict[str, str] | None = None) -> Any:
    """GET ``url`` with query ``params`` and decode the JSON answer."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # e.g. Jaeger's 404 before the trace arrives
        exc.close()
        raise


def _eventually(probe: Callable[[], T | None], what: str) -> T:
    """Call ``probe`` until it returns something other than None/empty, or fail."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except OSError as exc:  # includes urllib's HTTPError/URLError
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{what} not seen within {POLL_TIMEOUT_S:.0f} s (last error: {last_error})")


@pytest.fixture(scope="module")
def sent(stack: Any) -> dict[str, str]:
    """Send one trace and three metrics (counter, histogram, gauge) through the collector."""
    instance = uuid.uuid4().hex
    resource = Resource.create(
        {
            "service.name": SERVICE,
            "service.instance.id": instance,
            "deployment.environment.name": "smoke",
        }
    )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=stack.otlp_grpc, insecure=True)))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=stack.otlp_grpc, insecure=True),
        export_interval_millis=3_600_000,
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    tracer = tracer_provider.get_tracer("joblogger.smoke")
    meter = meter_provider.get_meter("joblogger.smoke")
    items = meter.create_counter("smoke.items", unit="{item}", description="Items done.")
    duration = meter.create_histogram("smoke.duration", unit="s", description="Run time.")
    progress = meter.create_gauge("smoke.progress", unit="1", description="Done fraction.")

    with tracer.start_as_current_span("smoke-run", attributes={"smoke.id": instance}) as run:
        run.add_event("smoke started", {"smoke.step": 1})
        with tracer.start_as_current_span("smoke-stage"):
            items.add(3, {"stage": "load"})
            progress.set(0.5, {"stage": "load"})
            # Recorded inside a sampled span, so the SDK attaches an exemplar.
            duration.record(0.25, {"stage": "load"})
        trace_id = format(run.get_span_context().trace_id, "032x")

    assert meter_provider.force_flush(10_000)
    assert tracer_provider.force_flush(10_000)
    meter_provider.shutdown()
    tracer_provider.shutdown()
    return {"trace_id": trace_id, "instance": instance}


def _trace_span_names(stack: Any, trace_id: str) -> set[str] | None:
    """Return the span names of a trace fetched by id from Jaeger, if it is there."""
    body = _get_json(f"{stack.jaeger}/api/traces/{trace_id}")
    data = body.get("data") or []
    if not data:
        return None
    return {span["operationName"] for span in data[0]["spans"]}


def test_trace_is_returned_by_id(stack: Any, sent: dict[str, str]) -> None:
    """The trace sent through the collector comes back from Jaeger by its id."""
    names = _eventually(lambda: _trace_span_names(stack, sent["trace_id"]), "trace by id")
    assert names == {"smoke-run", "smoke-stage"}


def test_trace_is_found_by_search(stack: Any, sent: dict[str, str]) -> None:
    """Jaeger's search by service, operation and span attribute finds the trace."""

    def search() -> list[str] | None:
        body = _get_json(
            f"{stack.jaeger}/api/traces",
            {
                "service": SERVICE,
                "operation": "smoke-run",
                "tags": json.dumps({"smoke.id": sent["instance"]}),
                "limit": "20",
            },
        )
        return [t["traceID"] for t in body.get("data") or []] or None

    assert _eventually(search, "trace by search") == [sent["trace_id"]]


def _series(stack: Any, query: str) -> list[dict[str, Any]] | None:
    """Return the instant-query result of ``query`` from Prometheus."""
    body = _get_json(f"{stack.prometheus}/api/v1/query", {"query": query})
    assert body["status"] == "success", body
    return body["data"]["result"] or None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("smoke_items_total", "3"),
        ("smoke_progress_ratio", "0.5"),
        ("smoke_duration_seconds_count", "1"),
        ("smoke_duration_seconds_sum", "0.25"),
    ],
)
def test_metric_reaches_prometheus(stack: Any, sent: dict[str, str], name: str, value: str) -> None:
    """Each metric arrives by remote write under its translated Prometheus name."""
    selector = f'{name}{{job="{SERVICE}",instance="{sent["instance"]}"}}'
    result = _eventually(lambda: _series(stack, selector), selector)
    assert len(result) == 1
    # service.name -> job, service.instance.id -> instance; no scope labels.
    assert result[0]["metric"] == {
        "__name__": name,
        "job": SERVICE,
        "instance": sent["instance"],
        "stage": "load",
    }
    assert result[0]["value"][1] == value


def test_histogram_buckets_and_target_info(stack: Any, sent: dict[str, str]) -> None:
    """Histogram buckets use `le`, and resource attributes land on `target_info`."""
    instance = sent["instance"]
    buckets = _eventually(
        lambda: _series(stack, f'smoke_duration_seconds_bucket{{instance="{instance}"}}'),
        "histogram buckets",
    )
    # The SDK's default boundaries (0, 5, 10, ..., 10000): 0.25 s falls into le="5".
    counts = {s["metric"]["le"]: s["value"][1] for s in buckets}
    assert counts["0"] == "0"
    assert counts["5"] == counts["+Inf"] == "1"
    info = _eventually(lambda: _series(stack, f'target_info{{instance="{instance}"}}'), "target_info")
    assert info[0]["metric"] == {
        "__name__": "target_info",
        "job": SERVICE,
        "instance": sent["instance"],
        "deployment_environment_name": "smoke",
        "telemetry_sdk_language": "python",
        "telemetry_sdk_name": "opentelemetry",
        "telemetry_sdk_version": info[0]["metric"]["telemetry_sdk_version"],
    }


def test_histogram_exemplar_carries_trace_id(stack: Any, sent: dict[str, str]) -> None:
    """The remote-write exporter forwards the SDK's exemplar with a `trace_id` label."""
    now = time.time()

    def exemplars() -> list[dict[str, Any]] | None:
        body = _get_json(
            f"{stack.prometheus}/api/v1/query_exemplars",
            {
                "query": f'smoke_duration_seconds_bucket{{instance="{sent["instance"]}"}}',
                "start": str(now - 600),
                "end": str(now + 60),
            },
        )
        return [e for series in body["data"] for e in series["exemplars"]] or None

    found = _eventually(exemplars, "exemplars")
    assert [sorted(e["labels"]) for e in found] == [["span_id", "trace_id"]]
    assert found[0]["labels"]["trace_id"] == sent["trace_id"]
    assert found[0]["value"] == "0.25"
