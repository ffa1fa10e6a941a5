"""``job.runs``, ``job.run.duration`` and ``job.stage.duration`` aggregated in-process (produced mode).

With the providers of ``joblogger.otlp.configure()`` (and ``joblogger.testing``)
joblogger's own exporter and readers add these three metrics to every
collection (``joblogger._producer``) instead of recording them through SDK
instruments: an SDK ``Counter.add`` or ``Histogram.record`` costs about 40 µs
(attribute hashing, the exemplar reservoir, locks), which made up a fifth of a
small run's fixed cost. Here a run's end costs one dict lookup, a bisect and a
few additions under a lock.

What the SDK would export is kept:

- **cumulative** sums and histograms per series, from the first measurement of
  the series (or the fork that started this process) on; the series are keyed
  by the capped ``job.name``, ``job.result`` and ``job.stage`` labels, so their
  number is bounded over the process's life (500 jobs x 6 results, 100 stages
  per job);
- the same buckets (:data:`joblogger._runrecords.DURATION_BUCKETS`), sum, count,
  min and max;
- **exemplars**: the last measurement of each series (each bucket, for the
  histograms) since a reader's previous collection, with the trace and span id
  of the run (stage) span it was recorded for, when that span is sampled (the
  SDK's default ``trace_based`` filter; ``always_on`` and ``always_off`` are
  honoured too). Each reader gets each exemplar once, as with the SDK's
  reservoirs, which are emptied by every collection.

A forked child starts with empty aggregates (see ``joblogger._metrics``): its
counts are its own, exported under its own ``service.instance.id``.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from typing import Any

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)
from opentelemetry.trace import Span

from . import semconv

#: Exemplar policy: record none, only for sampled spans (the SDK's default), or for every valid span.
EXEMPLARS_OFF, EXEMPLARS_SAMPLED, EXEMPLARS_ALL = 0, 1, 2


def exemplar_policy(meter_provider: object) -> int:
    """The exemplar filter ``meter_provider`` was built with, as one of the ``EXEMPLARS_*`` policies."""
    config = getattr(meter_provider, "_sdk_config", None)
    kind = getattr(config, "exemplar_filter", None)
    if isinstance(kind, AlwaysOffExemplarFilter):
        return EXEMPLARS_OFF
    if isinstance(kind, AlwaysOnExemplarFilter):
        return EXEMPLARS_ALL
    return EXEMPLARS_SAMPLED


class _Series:
    """One cumulative histogram series (and the count that doubles as ``job.runs``)."""

    __slots__ = ("buckets", "count", "exemplars", "last", "max", "min", "start", "sum")

    def __init__(self, bounds: int, start: int) -> None:
        self.start = start
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.buckets = [0] * (bounds + 1)
        #: bucket index -> (sequence number, value, time, span context) of its last sampled measurement.
        self.exemplars: dict[int, tuple[int, float, int, Any]] = {}
        #: the last sampled measurement of the series (the counter's exemplar).
        self.last: tuple[int, float, int, Any] | None = None


class RunAggregates:
    """The three run-boundary metrics of one hub, aggregated here and produced at collection time."""

    def __init__(self, bounds: tuple[float, ...], exemplars: int = EXEMPLARS_SAMPLED) -> None:
        self._bounds = bounds
        self._policy = exemplars
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], _Series] = {}
        self._stages: dict[tuple[str, str], _Series] = {}
        #: orders exemplars, so each reader exports the ones newer than its last collection.
        self._seq = itertools.count(1)

    def reset_after_fork(self) -> None:
        """Forget the parent's counts (in a forked child; no lock may be taken)."""
        self._lock = threading.Lock()
        self._runs = {}
        self._stages = {}

    def record_run(self, job: str, result: str, seconds: float, span: Span) -> None:
        """One ended run: ``job.runs`` +1 and ``job.run.duration`` ``seconds``, for ``span``'s trace."""
        self._record(self._runs, (job, result), seconds, span)

    def record_stage(self, job: str, stage: str, seconds: float, span: Span) -> None:
        """One ended stage: ``job.stage.duration`` ``seconds``, for ``span``'s trace."""
        self._record(self._stages, (job, stage), seconds, span)

    def _record(self, table: dict[tuple[str, str], _Series], key: tuple[str, str], value: float, span: Span) -> None:
        now = time.time_ns()
        sample = None
        if self._policy:
            context = span.get_span_context()
            if context.is_valid and (context.trace_flags.sampled or self._policy == EXEMPLARS_ALL):
                sample = (next(self._seq), value, now, context)
        index = bisect.bisect_left(self._bounds, value)  # buckets are (previous bound, bound]
        with self._lock:
            series = table.get(key)
            if series is None:
                series = table[key] = _Series(len(self._bounds), now)
            series.count += 1
            series.sum += value
            series.min = min(series.min, value)
            series.max = max(series.max, value)
            series.buckets[index] += 1
            if sample is not None:
                series.exemplars[index] = sample
                series.last = sample

    def metrics(self, seen: int) -> tuple[list[Metric], int]:
        """The three metrics as of now, with the exemplars newer than ``seen``; and the newest sequence number."""
        now = time.time_ns()
        with self._lock:
            runs = [(key, s.start, s.count, s.sum, s.min, s.max, list(s.buckets), dict(s.exemplars), s.last)
                    for key, s in self._runs.items()]  # fmt: skip
            stages = [(key, s.start, s.count, s.sum, s.min, s.max, list(s.buckets), dict(s.exemplars), s.last)
                      for key, s in self._stages.items()]  # fmt: skip
        newest = seen
        counter: list[NumberDataPoint] = []
        run_hist: list[HistogramDataPoint] = []
        stage_hist: list[HistogramDataPoint] = []
        bounds = self._bounds
        for rows, second, points in ((runs, semconv.JOB_RESULT, run_hist), (stages, semconv.JOB_STAGE, stage_hist)):
            for (job, label), start, count, total, low, high, buckets, samples, last in rows:
                attrs = {semconv.JOB_NAME: job, second: label}
                fresh = [s for _, s in sorted(samples.items()) if s[0] > seen]
                newest = max([newest, *(s[0] for s in fresh)])
                points.append(
                    HistogramDataPoint(
                        attrs, start, now, count, total, buckets, bounds, low, high, [_exemplar(s) for s in fresh]
                    )
                )
                if points is run_hist:
                    tail = [] if last is None or last[0] <= seen else [_exemplar(last, 1)]
                    counter.append(NumberDataPoint(attrs, start, now, count, tail))
        cumulative = AggregationTemporality.CUMULATIVE
        produced = []
        if counter:
            produced.append(
                Metric(
                    semconv.METRIC_RUNS, "Job runs that ended, by result.", _UNIT_RUNS, Sum(counter, cumulative, True)
                )
            )
        if run_hist:
            produced.append(
                Metric(semconv.METRIC_RUN_DURATION, "Duration of ended job runs.", "s", Histogram(run_hist, cumulative))
            )
        if stage_hist:
            produced.append(
                Metric(
                    semconv.METRIC_STAGE_DURATION,
                    "Duration of ended job stages.",
                    "s",
                    Histogram(stage_hist, cumulative),
                )
            )
        return produced, newest


_UNIT_RUNS = semconv.METRICS[semconv.METRIC_RUNS][1]


def _exemplar(sample: tuple[int, float, int, Any], value: float | None = None) -> Exemplar:
    """The exemplar of one sample (``value`` replaces the measured one: 1 for the ``job.runs`` counter)."""
    _, measured, at, context = sample
    return Exemplar({}, measured if value is None else value, at, context.span_id, context.trace_id)
