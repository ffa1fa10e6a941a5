"""Shutdown of joblogger.otlp's set-up is bounded, whatever the exporters do."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from joblogger import _otlp_deadline, otlp

TIMEOUT_S = 0.2  # the export timeout of these tests


class HungCollectorExporter(SpanExporter):
    """Every export waits the whole export timeout, as against a collector that never answers.

    With a ``gate``, exports start only once it is set (the batch processor's worker waits there).
    """

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches = 0
        self._gate = gate

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Wait out the timeout, then fail."""
        if self._gate is not None:
            self._gate.wait()
        self.batches += 1
        time.sleep(TIMEOUT_S)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Nothing to release."""


def test_exports_stop_starting_once_the_deadline_has_passed():
    """Before the deadline exports go through; after it they fail at once and what they carried is counted."""
    deadline = _otlp_deadline.ExitDeadline()
    inner = HungCollectorExporter()
    exporter = _otlp_deadline.UntilDeadline(inner, deadline, "spans", SpanExportResult.FAILURE)
    exporter.export([])
    assert inner.batches == 1
    deadline.arm(0.0)
    started = time.monotonic()
    assert exporter.export([object(), object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert time.monotonic() - started < TIMEOUT_S / 2
    assert inner.batches == 1
    assert deadline.dropped == {"spans": 2}


def test_shutdown_with_full_queue_and_hung_collector_is_bounded(caplog: pytest.LogCaptureFixture):
    """Ten queued batches against a hung collector: shutdown takes three timeouts, not ten, and warns once."""
    deadline = _otlp_deadline.ExitDeadline()
    # The worker exports as soon as 512 spans are queued: on a loaded machine it exported several batches
    # (all ten once: 'assert 10 < 10') while the loop below was still queueing. Held at the gate, it holds
    # one batch, and all ten are still to export when shutdown starts.
    gate = threading.Event()
    inner = HungCollectorExporter(gate)
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(
            _otlp_deadline.UntilDeadline(inner, deadline, "spans", SpanExportResult.FAILURE),  # type: ignore[arg-type]
            max_queue_size=5120,
            max_export_batch_size=512,
            schedule_delay_millis=60_000,
        )
    )
    tracer = provider.get_tracer("test")
    for _ in range(5120):
        tracer.start_span("item").end()
    telemetry = otlp.Telemetry(enabled=True, tracer_provider=provider, export_timeout_s=TIMEOUT_S, _deadline=deadline)
    gate.set()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="joblogger"):
        telemetry.shutdown()
    took = time.monotonic() - started
    assert took <= (otlp.SHUTDOWN_GRACE_EXPORTS + 1) * TIMEOUT_S + 0.3, took
    assert inner.batches <= otlp.SHUTDOWN_GRACE_EXPORTS + 1  # of 10: exports start for the grace, then stop
    assert deadline.dropped["spans"] >= 512
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == [
        f"joblogger: the collector at None did not take everything within 0.4 s of shutdown; "
        f"dropped {deadline.dropped['spans']} spans"
    ]
