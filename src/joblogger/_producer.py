"""Progress points produced from the live runs at collection time (SDK side).

The OpenTelemetry Python SDK keeps every attribute set an asynchronous
instrument ever reported, for the life of the process, and caps each stream at
2,000 sets; per-run progress gauges would therefore grow memory and collection
time with every run and, after 2,000 of them, report only
``otel.metric.overflow``. The SDK has no MetricProducer, so joblogger's own
exporter (``joblogger.otlp``), Prometheus reader and test capture add the
points themselves: :meth:`ProgressProducer.add_to` reads the active runs of
the bound meter provider and appends the four progress gauges to the
collection the SDK just made. Nothing is kept between collections, and the
cost is proportional to the runs active now, not to the runs ever seen.

It also appends ``job.runs``, ``job.run.duration`` and ``job.stage.duration``,
which the hub aggregates itself in this mode (``joblogger._runmetrics``).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import semconv
from ._metrics import Hub, existing_hub, produce_progress
from ._observe import GAUGES, MAX_INT
from ._version import __version__

_UNITS = {name: unit for name, (_, unit) in semconv.METRICS.items()}


_new = object.__new__
_setattr = object.__setattr__
_NO_EXEMPLARS: tuple[()] = ()


class ProgressProducer:
    """Adds the progress gauges of one meter provider's active runs to its collections.

    And, aggregated by the hub instead of SDK instruments, ``job.runs``,
    ``job.run.duration`` and ``job.stage.duration`` (see ``joblogger._runmetrics``).
    """

    def __init__(self) -> None:
        self._provider: weakref.ref[metrics.MeterProvider] | None = None
        #: reader (the caller of add_to) -> newest exemplar it exported: each reader gets each exemplar once.
        #: No lock: the SDK never runs two collections of one reader at once, and a lock held by an export
        #: thread at a fork would stay held in the child.
        self._seen: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()

    def bind(self, meter_provider: metrics.MeterProvider) -> None:
        """Produce for ``meter_provider`` (call before any run uses it; its hub then makes no gauges)."""
        produce_progress(meter_provider)
        self._provider = weakref.ref(meter_provider)

    def metrics(self, reader: object | None = None) -> list[Metric]:
        """The produced metrics as of now: the run metrics, then the progress gauges (empty ones left out).

        ``reader`` identifies the collecting reader for exemplars (default: this producer).
        """
        provider = None if self._provider is None else self._provider()
        hub = None if provider is None else existing_hub(provider)
        if hub is None:
            return []
        produced = self._run_metrics(hub, self if reader is None else reader)
        return produced + self._progress(hub)

    def _run_metrics(self, hub: Hub, reader: object) -> list[Metric]:
        aggregates = hub.records.aggregates
        if aggregates is None:
            return []
        produced, newest = aggregates.metrics(self._seen.get(reader, 0))
        self._seen[reader] = newest
        return produced

    def _progress(self, hub: Hub) -> list[Metric]:
        points = hub.progress_points()
        if not points:
            return []
        now = time.time_ns()
        current: list[NumberDataPoint] = []
        expected: list[NumberDataPoint] = []
        ratio: list[NumberDataPoint] = []
        eta: list[NumberDataPoint] = []
        # Points are built without the frozen dataclass's per-field __setattr__ (a third of the cost);
        # the same fields, as NumberDataPoint(attributes, start, time, value, exemplars) would set them.
        new, setattr_, point, none = _new, _setattr, NumberDataPoint, _NO_EXEMPLARS
        for attrs, done, total, seconds in points:
            p = new(point)
            setattr_(p, "__dict__", {"attributes": attrs, "start_time_unix_nano": now, "time_unix_nano": now,
                                     "value": done if done <= MAX_INT else MAX_INT, "exemplars": none})  # fmt: skip
            current.append(p)
            if total is None:
                continue
            p = new(point)
            setattr_(p, "__dict__", {"attributes": attrs, "start_time_unix_nano": now, "time_unix_nano": now,
                                     "value": total if total <= MAX_INT else MAX_INT, "exemplars": none})  # fmt: skip
            expected.append(p)
            p = new(point)
            value = (done / total if done < total else 1.0) if total > 0 else 1.0
            setattr_(p, "__dict__", {"attributes": attrs, "start_time_unix_nano": now, "time_unix_nano": now,
                                     "value": value, "exemplars": none})  # fmt: skip
            ratio.append(p)
            if seconds is not None:
                p = new(point)
                setattr_(p, "__dict__", {"attributes": attrs, "start_time_unix_nano": now, "time_unix_nano": now,
                                         "value": seconds, "exemplars": none})  # fmt: skip
                eta.append(p)
        return [
            Metric(name, text, _UNITS[name], Gauge(data))
            for (name, text), data in zip(GAUGES, (current, expected, ratio, eta), strict=True)
            if data
        ]

    def add_to(self, data: MetricsData, reader: object | None = None) -> MetricsData:
        """``data`` with the produced metrics added to its ``joblogger`` scope (created if missing).

        ``reader``: the reader or exporter collecting (each gets each exemplar once); default this producer.
        """
        ours = self.metrics(reader)
        if not ours or not data.resource_metrics:
            return data
        first, *rest = data.resource_metrics
        scopes: list[Any] = list(first.scope_metrics)
        for index, scope_metrics in enumerate(scopes):
            if scope_metrics.scope.name == semconv.SCOPE_NAME:
                scopes[index] = ScopeMetrics(
                    scope_metrics.scope, [*scope_metrics.metrics, *ours], scope_metrics.schema_url
                )
                break
        else:
            scopes.append(ScopeMetrics(InstrumentationScope(semconv.SCOPE_NAME, __version__), ours, ""))
        return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])
