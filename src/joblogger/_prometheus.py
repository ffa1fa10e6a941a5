"""Optional Prometheus pull endpoint (``configure(prometheus_port=...)``), built on prometheus-client.

A pull-based :class:`MetricReader` collects from the SDK when Prometheus
scrapes, and translates the data the same way the collector does
(``job.outcomes`` -> ``job_outcomes_total``, attribute dots -> underscores).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import semconv
from ._producer import ProgressProducer

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def _name(metric: str) -> str:
    if metric in semconv.METRICS:
        name = semconv.prometheus_name(metric)
        return name.removesuffix("_total")
    return _INVALID.sub("_", metric)


def _label(key: str) -> str:
    return _INVALID.sub("_", key)


class PullReader(MetricReader):
    """Collects on demand and serves the result to prometheus-client (cumulative)."""

    def __init__(self, producer: ProgressProducer | None = None) -> None:
        super().__init__(
            preferred_temporality={
                Counter: AggregationTemporality.CUMULATIVE,
                ObservableCounter: AggregationTemporality.CUMULATIVE,
                Histogram: AggregationTemporality.CUMULATIVE,
            }
        )
        self._data: MetricsData | None = None
        self._lock = threading.Lock()
        self._producer = producer

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        # The active runs' progress points are added here, after the SDK's collection (see _producer).
        self._data = metrics_data if self._producer is None else self._producer.add_to(metrics_data, self)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to release."""

    def collect_families(self) -> Iterator[Any]:
        """Collect now and yield prometheus-client metric families."""
        with self._lock:
            self.collect()
            data, self._data = self._data, None
        if data is None:
            return
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    yield from _families(metric)


def _families(metric: Any) -> Iterator[Any]:
    name = _name(metric.name)
    points = list(metric.data.data_points)
    if not points:
        return
    keys = sorted({_label(k) for p in points for k in (p.attributes or {})})

    def labels(point: Any) -> list[str]:
        attrs = {_label(k): str(v) for k, v in (point.attributes or {}).items()}
        return [attrs.get(k, "") for k in keys]

    data = metric.data
    if isinstance(data, Sum) and data.is_monotonic:
        family: Any = CounterMetricFamily(name, metric.description or name, labels=keys)
        for p in points:
            family.add_metric(labels(p), p.value)
    elif isinstance(data, (Sum, Gauge)):
        family = GaugeMetricFamily(name, metric.description or name, labels=keys)
        for p in points:
            family.add_metric(labels(p), p.value)
    elif isinstance(data, HistogramData):
        family = HistogramMetricFamily(name, metric.description or name, labels=keys)
        for p in points:
            cumulative, buckets = 0, []
            for bound, count in zip([*p.explicit_bounds, float("inf")], p.bucket_counts, strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            family.add_metric(labels(p), buckets, p.sum)
    else:
        return
    yield family


class _Collector:
    def __init__(self, reader: PullReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[Any]:
        return self._reader.collect_families()

    def describe(self) -> list[Any]:
        # Saying "nothing to describe" stops prometheus-client from collecting at registration.
        return []


def serve(
    port: int,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry = REGISTRY,
    producer: ProgressProducer | None = None,
) -> PullReader:
    """Start ``/metrics`` on ``addr:port`` and return the reader to add to a MeterProvider."""
    reader = PullReader(producer)
    registry.register(_Collector(reader))  # type: ignore[arg-type]
    start_http_server(port, addr=addr, registry=registry)
    return reader
