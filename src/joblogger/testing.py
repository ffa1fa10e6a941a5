"""Capture a job's spans, events and metrics in memory, to test your own jobs.

Needs ``opentelemetry-sdk`` (installed by ``joblogger[otlp]`` or ``joblogger[testing]``).
The pytest fixture ``joblogger_capture`` is registered automatically.

Example:
    >>> from joblogger.testing import capture
    >>> with capture() as cap:
    ...     with cap.job_logger("run-1", "match-scores") as job:
    ...         job.set_stage("Scoring users")
    ...         job.warning("No valid candidates", userId="1234")
    ...         job.add_outcome("skipped")
    ...     cap.metric_value("job.outcomes", **{"job.outcome": "skipped"})
    1
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from . import semconv
from ._logger import JobLogger, create_job_logger
from ._producer import ProgressProducer

__all__ = ["Capture", "Event", "MetricPoint", "capture"]


@dataclass(frozen=True, slots=True)
class Event:
    """One span event, flattened for assertions."""

    span: str
    name: str
    level: str | None
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One exported data point: metric name, attributes and value (sum, gauge or histogram count)."""

    name: str
    attributes: Mapping[str, Any]
    value: float
    histogram_sum: float | None = None


class _ProducingReader(InMemoryMetricReader):
    """An in-memory reader that, like joblogger's own exporters, adds the active runs' progress points."""

    def __init__(self) -> None:
        super().__init__()
        self.producer = ProgressProducer()

    def get_metrics_data(self) -> MetricsData | None:
        """Collect, with the progress gauges of the active runs added."""
        data = super().get_metrics_data()
        return None if data is None else self.producer.add_to(data, self)


class Capture:
    """In-memory tracer and meter providers plus helpers to read what a job emitted."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.metric_reader = _ProducingReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metric_reader])
        self.metric_reader.producer.bind(self.meter_provider)
        self.clock = clock

    def job_logger(self, job_run_id: object, job_name: object, **kwargs: Any) -> JobLogger:
        """``create_job_logger`` wired to this capture's providers (and clock, if given)."""
        kwargs.setdefault("tracer_provider", self.tracer_provider)
        kwargs.setdefault("meter_provider", self.meter_provider)
        if self.clock is not None:
            kwargs.setdefault("clock", self.clock)
        return create_job_logger(job_run_id, job_name, **kwargs)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, in end order, optionally only those called ``name``."""
        spans = list(self.span_exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name`` (AssertionError if not exactly one)."""
        found = self.spans(name)
        assert len(found) == 1, f"expected one span {name!r}, found {len(found)}"
        return found[0]

    def events(self, level: str | None = None) -> list[Event]:
        """Every span event, in time order, optionally only of one ``job.log.level``."""
        out = []
        for span in self.spans():
            for event in span.events:
                attrs = dict(event.attributes or {})
                ev_level = attrs.get(semconv.JOB_LOG_LEVEL)
                if level is None or ev_level == level:
                    out.append((event.timestamp, Event(span.name, event.name, ev_level, attrs)))  # type: ignore[arg-type]
        return [e for _, e in sorted(out, key=lambda pair: pair[0])]

    def metrics(self) -> list[MetricPoint]:
        """Collect now and return every data point."""
        data = self.metric_reader.get_metrics_data()
        points: list[MetricPoint] = []
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        attrs = dict(point.attributes or {})
                        if isinstance(point, NumberDataPoint):
                            points.append(MetricPoint(metric.name, attrs, point.value))
                        else:
                            points.append(MetricPoint(metric.name, attrs, point.count, point.sum))
        return points

    def metric_value(self, name: str, **attributes: Any) -> float:
        """Sum of the values of ``name`` over points whose attributes include ``attributes``.

        Pass dotted attribute keys with ``**{"job.outcome": "skipped"}``.
        """
        return sum(
            p.value
            for p in self.metrics()
            if p.name == name and all(p.attributes.get(k) == v for k, v in attributes.items())
        )

    def shutdown(self) -> None:
        """Shut both providers down."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@contextmanager
def capture(clock: Callable[[], float] | None = None) -> Iterator[Capture]:
    """A :class:`Capture` for the duration of a ``with`` block."""
    cap = Capture(clock)
    try:
        yield cap
    finally:
        cap.shutdown()
