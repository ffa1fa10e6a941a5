"""``job.runs``, ``job.run.duration`` and ``job.stage.duration``: produced from joblogger's aggregates
with its own providers, SDK instruments with the application's, and the same numbers either way."""

from __future__ import annotations

import os
from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from joblogger import create_job_logger, semconv
from joblogger._producer import ProgressProducer
from joblogger.testing import Capture

from ._helpers import FakeClock, in_child

RUN_METRICS = (semconv.METRIC_RUNS, semconv.METRIC_RUN_DURATION, semconv.METRIC_STAGE_DURATION)
# Durations on both sides of bucket bounds (a bound itself belongs to its bucket), and past the last one.
STAGE_SECONDS = (0.05, 0.1, 0.3, 7.0, 100_000.0)


def _runs(tracer: TracerProvider, meter: MeterProvider, clock: FakeClock) -> None:
    """Five runs of two jobs, two results, stages of known durations."""
    for i, seconds in enumerate(STAGE_SECONDS):
        job = create_job_logger(f"r{i}", f"job-{i % 2}", tracer_provider=tracer, meter_provider=meter, clock=clock)
        job.set_stage("Fetching")
        clock.advance(seconds)
        job.set_stage("Writing")
        clock.advance(1.0)
        if i == 3:
            job.end(result="failure")
        else:
            job.log_summary()


def _points(data: Any) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
    """The run metrics' points by (metric, attributes)."""
    found = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name in RUN_METRICS:
                    assert metric.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
                    for point in metric.data.data_points:
                        found[metric.name, tuple(sorted(point.attributes.items()))] = point
    return found


def _comparable(point: Any) -> tuple[Any, ...]:
    if hasattr(point, "bucket_counts"):
        return (point.count, point.sum, tuple(point.bucket_counts), tuple(point.explicit_bounds), point.min, point.max)
    return (point.value,)


def _sdk_instruments(meter: MeterProvider) -> set[str]:
    """Names of the instruments the SDK keeps storage for (SDK internals, as in benchmarks/bench.py)."""
    consumer = meter._measurement_consumer  # type: ignore[attr-defined]
    return {
        instrument.name
        for storage in consumer._reader_storages.values()
        for instrument in storage._instrument_view_instrument_matches
    }


def test_produced_run_metrics_equal_the_sdk_instruments_of_drop_in_mode() -> None:
    """Same runs, both modes: the same series, counts, sums, buckets, min and max, cumulative, twice in a row."""
    drop_reader = InMemoryMetricReader()
    drop_meter = MeterProvider(metric_readers=[drop_reader])
    tracer = TracerProvider()
    _runs(tracer, drop_meter, FakeClock())
    cap = Capture()
    _runs(cap.tracer_provider, cap.meter_provider, FakeClock())

    expected = _points(drop_reader.get_metrics_data())
    produced = _points(cap.metric_reader.get_metrics_data())
    assert len(expected) == 3 + 3 + 4  # runs and run durations by (job, result): 3 pairs; stages by (job, stage): 4
    assert {k: _comparable(p) for k, p in produced.items()} == {k: _comparable(p) for k, p in expected.items()}
    again = _points(cap.metric_reader.get_metrics_data())  # cumulative: the next collection carries the totals
    assert {k: _comparable(p) for k, p in again.items()} == {k: _comparable(p) for k, p in expected.items()}
    for key, point in again.items():
        assert point.start_time_unix_nano == produced[key].start_time_unix_nano <= point.time_unix_nano
    # In produced mode a run's end records nothing through the SDK; in drop-in mode it must.
    assert _sdk_instruments(cap.meter_provider).isdisjoint(RUN_METRICS)
    assert set(RUN_METRICS) <= _sdk_instruments(drop_meter)
    cap.shutdown()
    drop_meter.shutdown()


def test_exemplars_name_the_run_and_stage_spans_once_per_reader(cap: Capture) -> None:
    """Each reader gets each exemplar once, with the trace and span id of the span it was recorded for."""
    job = cap.job_logger("ex-1", "exemplars")
    job.set_stage("Only stage")
    job.log_summary()
    run = cap.span("exemplars").context
    stage = cap.span("Only stage").context
    producer = cap.metric_reader.producer
    reader_a, reader_b = InMemoryMetricReader(), InMemoryMetricReader()  # stand-ins: any object a producer serves
    first = {m.name: m for m in producer.metrics(reader_a) if m.name in RUN_METRICS}
    expected = {
        semconv.METRIC_RUNS: (run.trace_id, run.span_id),
        semconv.METRIC_RUN_DURATION: (run.trace_id, run.span_id),
        semconv.METRIC_STAGE_DURATION: (stage.trace_id, stage.span_id),
    }
    for name, ids in expected.items():
        (point,) = first[name].data.data_points
        assert [(e.trace_id, e.span_id) for e in point.exemplars] == [ids], name
    (runs_point,) = first[semconv.METRIC_RUNS].data.data_points
    assert runs_point.exemplars[0].value == 1
    again = [p for m in producer.metrics(reader_a) if m.name in RUN_METRICS for p in m.data.data_points]
    assert again and all(not p.exemplars for p in again)
    other = [p for m in producer.metrics(reader_b) if m.name in RUN_METRICS for p in m.data.data_points]
    assert all(len(p.exemplars) == 1 for p in other)


def test_always_off_exemplar_filter_is_honoured() -> None:
    """A meter provider built with exemplars off gets none from the produced metrics either."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
    producer = ProgressProducer()
    producer.bind(meter)
    job = create_job_logger("r", "no-exemplars", tracer_provider=TracerProvider(), meter_provider=meter)
    job.set_stage("S")
    job.log_summary()
    points = [p for m in producer.metrics() if m.name in RUN_METRICS for p in m.data.data_points]
    assert len(points) == 3 and all(not p.exemplars for p in points)
    meter.shutdown()


def test_run_metric_series_stay_bounded_by_the_label_caps(cap: Capture) -> None:
    """600 job names and 150 stage names: the series stop at the caps (500 jobs + other, 100 stages + other)."""
    job = cap.job_logger("r", "many-stages")
    for i in range(150):
        job.set_stage(f"stage-{i}")
    job.log_summary()
    for i in range(600):
        cap.job_logger("r", f"job-{i}").log_summary()
    data = cap.metric_reader.get_metrics_data()
    points = _points(data)
    runs = [k for k in points if k[0] == semconv.METRIC_RUNS]
    stages = [dict(k[1]) for k in points if k[0] == semconv.METRIC_STAGE_DURATION]
    assert len(runs) == 501
    assert len([s for s in stages if s[semconv.JOB_NAME] == "many-stages"]) == 101


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_exports_only_its_own_runs(cap: Capture) -> None:
    """Runs the parent ended before the fork are the parent's: the child's series start empty."""
    cap.job_logger("before", "forking").log_summary()
    assert cap.metric_value(semconv.METRIC_RUNS) == 1

    def child() -> dict[str, float]:
        before = cap.metric_value(semconv.METRIC_RUNS)
        cap.job_logger("in-child", "forking").log_summary()
        return {"before": before, "after": cap.metric_value(semconv.METRIC_RUNS)}

    result = in_child(child)
    assert result == {"before": 0, "after": 1}
    assert cap.metric_value(semconv.METRIC_RUNS) == 1


def test_ticks_count_and_read_back_without_advancing() -> None:
    """A ticks counter counts next() calls; reading it changes nothing."""
    from joblogger._tally import new_ticks, ticks_value

    ticks = new_ticks()
    assert ticks_value(ticks) == 0
    for _ in range(1234):
        next(ticks)
    assert ticks_value(ticks) == ticks_value(ticks) == 1234
