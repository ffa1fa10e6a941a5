"""joblogger benchmarks: every target of the performance issue, measured side by side in one process.

Run:   .venv/bin/python benchmarks/bench.py            (full run, about 10 minutes)
       .venv/bin/python benchmarks/bench.py --quick    (smoke run used by the tests; sizes tiny, no verdicts)
       .venv/bin/python benchmarks/bench.py --cpu --fixed-cost   (only a run's fixed cost and its floors)

Each row times joblogger and its peer in the same process, alternating, with
warm-up and several repeats, and reports medians in ns per operation, the ratio
and whether the target is met. The SDK providers are configured as a real
application would (batch span processor, periodic metric reader, exporters that
accept everything), so nothing is measured against a no-op API.
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import os
import platform
import resource
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from joblogger import create_job_logger, semconv
from joblogger._producer import ProgressProducer
from joblogger.console import ConsoleView
from joblogger.otlp import _PerProcessIdentity


class AcceptAllSpans(SpanExporter):
    """Stands in for a collector that accepts everything instantly."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class AcceptAllMetrics(MetricExporter):
    """Stands in for a collector that accepts every metric export instantly."""

    def __init__(self) -> None:
        super().__init__()

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def app_providers() -> tuple[TracerProvider, MeterProvider]:
    """SDK providers as ``joblogger.otlp.configure()`` builds them (batching, periodic export every 2 s,
    progress points produced from the live runs by the metric exporter)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(AcceptAllSpans()))
    producer = ProgressProducer()
    reader = PeriodicExportingMetricReader(
        _PerProcessIdentity(AcceptAllMetrics(), None, None, producer), export_interval_millis=2000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    producer.bind(meter_provider)
    return tracer_provider, meter_provider


class ProducingReader(InMemoryMetricReader):
    """An in-memory reader that adds the progress points, as joblogger's own exporters do."""

    def __init__(self) -> None:
        super().__init__()
        self.producer = ProgressProducer()

    def get_metrics_data(self) -> Any:
        data = super().get_metrics_data()
        return None if data is None else self.producer.add_to(data, self)


def mode_providers(mode: str) -> tuple[TracerProvider, MeterProvider, InMemoryMetricReader]:
    """Providers of one metrics mode: ``produced`` (configure()) or ``drop-in`` (the application's own)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(AcceptAllSpans()))
    reader: InMemoryMetricReader = ProducingReader() if mode == "produced" else InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    if isinstance(reader, ProducingReader):
        reader.producer.bind(meter_provider)
    return tracer_provider, meter_provider, reader


def sdk_attribute_sets(meter_provider: MeterProvider) -> tuple[int, bool]:
    """Attribute sets the SDK holds over all instruments and readers, and whether any overflowed.

    Reads SDK internals (opentelemetry-sdk 1.4x); for this benchmark only.
    """
    total, overflow = 0, False
    consumer = meter_provider._measurement_consumer  # type: ignore[attr-defined]
    for storage in consumer._reader_storages.values():
        for matches in storage._instrument_view_instrument_matches.values():
            for match in matches:
                total += len(match._attributes_aggregation)
                overflow = overflow or any("otel.metric.overflow" in repr(k) for k in match._attributes_aggregation)
    return total, overflow


TRACER, METER = app_providers()


def new_job(**kwargs: Any) -> Any:
    kwargs.setdefault("tracer_provider", TRACER)
    kwargs.setdefault("meter_provider", METER)
    return create_job_logger("bench-run", "bench", **kwargs)


# --- timing helpers ----------------------------------------------------------------------

#: The timer of per_op_ns and collect_ms: wall time, or the calling thread's CPU time with --cpu
#: (on a machine shared with other work, wall time mostly measures the other work).
CLOCK: Callable[[], int] = time.perf_counter_ns


def per_op_ns(fn: Callable[[int], None], n: int, repeats: int) -> float:
    """Median ns per operation of fn(n), which performs n operations."""
    fn(max(1, n // 10))  # warm-up
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = CLOCK()
        fn(n)
        samples.append((CLOCK() - start) / n)
    return statistics.median(samples)


def side_by_side(ours: Callable[[int], None], peer: Callable[[int], None], n: int, repeats: int) -> tuple[float, float]:
    """Alternate ours and peer so drift affects both; return both medians (ns/op)."""
    a, b = [], []
    for _ in range(repeats):
        a.append(per_op_ns(ours, n, 1))
        b.append(per_op_ns(peer, n, 1))
    return statistics.median(a), statistics.median(b)


@dataclass
class Row:
    name: str
    ours: float
    peer: float
    peer_name: str
    target: float | None  # ratio ours/peer must be <= target
    unit: str = "ns/op"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("inf")

    def verdict(self, quick: bool) -> str:
        if quick or self.target is None:
            return "-"
        return "PASS" if self.ratio <= self.target else "FAIL"


# --- peers -------------------------------------------------------------------------------


class Bare:
    """The cheapest possible counter: a bare method call doing self.n += 1."""

    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> None:
        self.n += 1


def devnull() -> io.TextIOWrapper:
    return open(os.devnull, "w")


# --- rows ------------------------------------------------------------------------------


def bench_increment(n: int, repeats: int) -> list[Row]:
    from tqdm import tqdm

    job = new_job()
    bar = tqdm(total=10**12, file=devnull())
    bare = Bare()

    def ours(k: int) -> None:
        inc = job.increment_progress
        for _ in range(k):
            inc()

    def tq(k: int) -> None:
        upd = bar.update
        for _ in range(k):
            upd(1)

    def bare_call(k: int) -> None:
        inc = bare.inc
        for _ in range(k):
            inc()

    o, t = side_by_side(ours, tq, n, repeats)
    _, b = side_by_side(ours, bare_call, n, repeats)
    job.log_summary()
    bar.close()
    return [
        Row("increment_progress() vs tqdm.update(1)", o, t, "tqdm.update(1)", 1.0),
        Row("increment_progress() vs bare self.n += 1", o, b, "bare method", 3.0),
    ]


def bench_track(n: int, repeats: int) -> list[Row]:
    from tqdm import tqdm

    data = list(range(n))
    sink = devnull()

    def ours(k: int) -> None:
        job = new_job()
        for _ in job.track(data[:k]):
            pass
        job.log_summary()

    def tq(k: int) -> None:
        for _ in tqdm(data[:k], file=sink):
            pass

    o, t = side_by_side(ours, tq, n, repeats)
    return [Row("track(iterable) per item vs tqdm(iterable)", o, t, "tqdm iterator", 1.0)]


def bench_tqdm_bridge(n: int, repeats: int) -> list[Row]:
    """joblogger.tqdm bars inside a run vs plain tqdm bars, same settings: the per-item path is tqdm's own."""
    from tqdm import tqdm

    from joblogger.tqdm import tqdm as bridged

    data = list(range(n))
    sink = devnull()
    job = new_job()
    job.__enter__()  # the bars find the run as current_job(), as in a job

    def iter_ours(k: int) -> None:
        for _ in bridged(data[:k], file=sink):
            pass

    def iter_tq(k: int) -> None:
        for _ in tqdm(data[:k], file=sink):
            pass

    def update_ours(k: int) -> None:
        with bridged(total=k, file=sink) as bar:
            upd = bar.update
            for _ in range(k):
                upd(1)

    def update_tq(k: int) -> None:
        with tqdm(total=k, file=sink) as bar:
            upd = bar.update
            for _ in range(k):
                upd(1)

    oi, ti = side_by_side(iter_ours, iter_tq, n, repeats)
    ou, tu = side_by_side(update_ours, update_tq, n, repeats)
    counted = job.processed_total
    job.__exit__(None, None, None)
    assert counted > 0, "the bridged bars did not report to the run"
    return [
        Row("joblogger.tqdm `for x in tqdm(it)` in a run vs tqdm(it)", oi, ti, "tqdm iterator", 1.05),
        Row("joblogger.tqdm `bar.update(1)` in a run vs tqdm", ou, tu, "tqdm.update(1)", 1.05),
    ]


def bench_add_outcome(n: int, repeats: int) -> list[Row]:
    job = new_job()

    def ours(k: int) -> None:
        add = job.add_outcome
        for _ in range(k):
            add("updates", 1)

    def inc(k: int) -> None:
        f = job.increment_progress
        for _ in range(k):
            f()

    o, p = side_by_side(ours, inc, n, repeats)
    job.log_summary()
    return [Row("add_outcome(key, 1) vs increment_progress()", o, p, "increment_progress()", 1.5)]


def _work(i: int) -> int:
    return (i * 2654435761) & 0xFFFF


def bench_loop_overhead(n: int, repeats: int, console: bool) -> Row:
    """Overhead a 100k-item loop pays for joblogger vs for the tqdm iterator (same trivial work)."""
    from tqdm import tqdm

    data = list(range(n))
    sink = devnull()

    def plain(k: int) -> None:
        for i in data[:k]:
            _work(i)

    def ours(k: int) -> None:
        view = ConsoleView(file=sink, force_terminal=True).start() if console else None
        job = new_job()
        job.set_total(k)
        inc = job.increment_progress
        for i in data[:k]:
            _work(i)
            inc()
        job.log_summary()
        if view is not None:
            view.stop()

    def tq(k: int) -> None:
        for i in tqdm(data[:k], file=sink):
            _work(i)

    base, o, t = [], [], []
    for _ in range(repeats):
        base.append(per_op_ns(plain, n, 1))
        o.append(per_op_ns(ours, n, 1))
        t.append(per_op_ns(tq, n, 1))
    b = statistics.median(base)
    ours_over, tq_over = max(0.1, statistics.median(o) - b), max(0.1, statistics.median(t) - b)
    if console:
        return Row("100k loop overhead, terminal view ON vs tqdm iterator", ours_over, tq_over, "tqdm overhead", 1.5)
    return Row("100k loop overhead, view off vs tqdm iterator", ours_over, tq_over, "tqdm overhead", 0.5)


def bench_logs(n: int, repeats: int) -> list[Row]:
    joblog = logging.getLogger("joblogger")
    peer_log = logging.getLogger("bench.peer")
    old = joblog.level
    joblog.setLevel(logging.INFO)
    peer_log.setLevel(logging.INFO)
    peer_log.addHandler(logging.NullHandler())
    peer_log.propagate = False
    # A budget larger than the calls, so every call really adds a span event (the expensive path), and no
    # rate limit, so info() is not timed on its suppressed path (20/s after a burst of 200 by default).
    job = new_job(event_budget=10**9, log_rate_limits={})
    job.set_stage("Logging")
    tracer = TRACER.get_tracer("bench")
    peer_span = tracer.start_span("peer")

    def info(k: int) -> None:
        for i in range(k):
            job.info("Batch complete", batch=i)

    def warning(k: int) -> None:
        for i in range(k):
            job.warning("User has no quiz data", userId=i)

    def peer(k: int) -> None:
        for i in range(k):
            peer_span.add_event("Batch complete", {"batch": i})
            peer_log.info("Batch complete", extra={"batch": i})

    oi, p1 = side_by_side(info, peer, n, repeats)
    ow, p2 = side_by_side(warning, peer, n, repeats)

    joblog.setLevel(logging.WARNING)  # debug off: neither exported nor enabled in stdlib logging
    peer_log.setLevel(logging.WARNING)

    def debug(k: int) -> None:
        for i in range(k):
            job.debug("Fetching user data", userId=i)

    def peer_debug(k: int) -> None:
        for i in range(k):
            peer_log.debug("Fetching user data", extra={"userId": i})

    od, pd = side_by_side(debug, peer_debug, n * 10, repeats)
    joblog.setLevel(old)
    job.log_summary()
    peer_span.end()
    return [
        Row("info() vs span.add_event + logger.info", oi, p1, "add_event+logger.info", 2.0),
        Row("warning() vs span.add_event + logger.info", ow, p2, "add_event+logger.info", 2.0),
        Row("debug() off vs filtered logger.debug", od, pd, "filtered logger.debug", 2.0),
    ]


def collect_ms(reader: InMemoryMetricReader, repeats: int) -> float:
    """Median milliseconds of one collection by ``reader`` (with the progress points it adds)."""
    reader.get_metrics_data()  # warm-up
    samples = []
    for _ in range(repeats):
        start = CLOCK()
        reader.get_metrics_data()
        samples.append(CLOCK() - start)
    return statistics.median(samples) / 1e6


def bench_collection(runs: int, repeats: int) -> list[Row]:
    """Collection time with ``runs`` active runs in both metric modes, and the SDK's own floor."""
    from opentelemetry.metrics import Observation

    def with_runs(mode: str) -> float:
        tracer, meter, reader = mode_providers(mode)
        jobs = []
        for i in range(runs):
            job = create_job_logger(f"run-{i}", f"job-{i % 20}", tracer_provider=tracer, meter_provider=meter)
            job.set_total(1000, "items")
            job.set_stage("Working")
            job.increment_progress(i)
            job.add_outcome("updates", i)
            jobs.append(job)
        ms = collect_ms(reader, repeats)
        for job in jobs:
            job.log_summary()
        return ms

    # The SDK's floor: the same number of gauge points (4 per run) with nothing of joblogger's around them.
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("floor")
    points = [
        Observation(
            i,
            {"job.name": f"job-{i % 20}", "job.run.slot": i // 20, "job.stage": "Working", "job.entity.type": "items"},
        )
        for i in range(runs)
    ]
    for n in range(4):
        meter.create_observable_gauge(f"floor.{n}", [lambda options: points])
    floor = collect_ms(reader, repeats)
    produced = with_runs("produced")
    drop_in = with_runs("drop-in")
    return [
        Row(f"metric collection, {runs:,} active runs (configure())", produced, 20.0, "20 ms budget", 1.0, unit="ms"),
        Row("  same, drop-in (app MeterProvider, SDK gauges)", drop_in, floor, "SDK alone, same pts", None, unit="ms"),
    ]


def one_run(
    tracer: TracerProvider,
    meter: MeterProvider,
    run_id: str,
    collect: Callable[[], object] | None,
    run_ids: bool | None,
) -> None:
    """A small task: create -> two stages -> a few items -> end; ``collect`` runs while each stage is active."""
    job = create_job_logger(
        run_id, "worker-job", tracer_provider=tracer, meter_provider=meter, snapshots=False, run_id_on_metrics=run_ids
    )
    for stage in ("Fetching", "Writing"):
        job.set_stage(stage)
        job.increment_progress(3)
        if collect is not None:
            collect()
    job.log_summary()


def long_lived_worker(mode: str, runs: int, collect_every: int) -> None:
    """Child process of bench_long_lived: print one JSON line per checkpoint."""
    import json

    run_id_on_metrics = mode == "drop-in+run-ids"
    tracer, meter, reader = mode_providers("drop-in" if run_id_on_metrics else mode)
    checkpoints = {0, runs // 10, runs // 2, runs}
    for i in range(runs + 1):
        if i in checkpoints:
            gc.collect()
            job = create_job_logger(
                f"probe-{i}", "worker-job", tracer_provider=tracer, meter_provider=meter,
                run_id_on_metrics=True if run_id_on_metrics else None, snapshots=False,
            )  # fmt: skip
            job.set_stage("Probing")
            job.increment_progress(42)
            ms = collect_ms(reader, 5)
            data = reader.get_metrics_data()
            probe = [
                dict(p.attributes or {})
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
                if m.name == semconv.METRIC_PROGRESS_CURRENT
                for p in m.data.data_points
                if p.value == 42 and (p.attributes or {}).get(semconv.JOB_STAGE) == "Probing"
            ]
            job.log_summary()
            sets, overflow = sdk_attribute_sets(meter)
            row = {"runs": i, "rss_mb": rss_bytes() / 1e6, "sets": sets, "overflow": overflow, "collect_ms": ms}
            row["probe_seen"] = bool(probe)
            print(json.dumps(row), flush=True)
        if i < runs:
            collect = reader.get_metrics_data if i % collect_every == 0 else None
            one_run(tracer, meter, f"run-{i}", collect, True if run_id_on_metrics else None)
        if i % 1000 == 999:
            tracer.force_flush()


def bench_long_lived(runs: int) -> tuple[list[Row], list[str]]:
    """``runs`` sequential runs in one worker process per mode (fresh processes, so RSS is comparable)."""
    import json
    import subprocess

    collect_every = 50  # as if a collection every 2 s caught one run in fifty mid-stage (40 ms runs)
    table, rows = [], []
    for mode in ("produced", "drop-in", "drop-in+run-ids"):
        proc = subprocess.run(
            [sys.executable, __file__, "--long-lived-worker", mode, str(runs), str(collect_every)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        points = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        first, last = points[0], points[-1]
        cells = " | ".join(
            f"{p['rss_mb']:.0f} MB, {p['sets']:,} sets, {p['collect_ms']:.2f} ms"
            + ("" if p["probe_seen"] else ", run NOT seen")
            + (", OVERFLOW" if p["overflow"] else "")
            for p in points
        )
        table.append(f"| {mode:<16} | {cells} |")
        if mode != "drop-in+run-ids":
            rows.append(
                Row(
                    f"{runs:,} sequential runs, {mode}: collection at end vs start",
                    last["collect_ms"], first["collect_ms"], "collection at 0 runs", 2.0, unit="ms",
                    note=f"RSS +{last['rss_mb'] - points[1]['rss_mb']:.1f} MB after {points[1]['runs']:,} runs, "
                    f"{last['sets']} SDK sets, last run {'seen' if last['probe_seen'] else 'LOST'}",
                )
            )  # fmt: skip
            if not last["probe_seen"] or last["overflow"]:
                rows[-1].ours = float("inf")
    head = "| mode             | " + " | ".join(f"after {p['runs']:,} runs" for p in points) + " |"
    return rows, [head, "|" + "---|" * (len(points) + 1), *table]


def bare_two_spans(tracer: Any) -> Callable[[int], None]:
    """The peer of the fixed-cost rows: ``k`` times a run span and a stage span under it, started and ended."""
    from opentelemetry import trace

    def bare(k: int) -> None:
        for _ in range(k):
            run = tracer.start_span("fixed")
            stage = tracer.start_span("Working", context=trace.set_span_in_context(run))
            stage.end()
            run.end()

    return bare


def bench_fixed_cost(n: int, repeats: int) -> Row:
    """A run's fixed cost (create -> one stage -> one item -> end) against the same two spans with the bare SDK."""

    bare_tracer = TRACER.get_tracer("bench.bare")

    def ours(k: int) -> None:
        for _ in range(k):
            job = create_job_logger("r", "fixed", tracer_provider=TRACER, meter_provider=METER, snapshots=False)
            job.set_stage("Working")
            job.increment_progress()
            job.log_summary()

    bare = bare_two_spans(bare_tracer)

    o, b = side_by_side(ours, bare, n, repeats)
    name = "run fixed cost (1 stage, 1 item) vs the bare two spans"
    return Row(name, o / 1000, b / 1000, "bare SDK spans", 2.0, unit="us")


def bench_fixed_cost_floor(n: int, repeats: int) -> list[Row]:
    """The SDK's own floor under a run's fixed cost: what joblogger asks of the SDK, with no joblogger code.

    The same two spans with the attributes and the span event a run carries (the
    summary line; a stage span has only ``job.stage`` and no ``Starting:`` event),
    then the same plus the three run metric records (``job.stage.duration``,
    ``job.run.duration``, ``job.runs``) in the spans' contexts, against the bare two spans.
    """
    from opentelemetry import trace

    tracer = TRACER.get_tracer("bench.floor")
    meter = METER.get_meter("bench.floor")
    runs = meter.create_counter("floor.runs")
    run_duration = meter.create_histogram("floor.run.duration", unit="s")
    stage_duration = meter.create_histogram("floor.stage.duration", unit="s")
    milestone = {"job.log.level": "milestone"}

    def spans(k: int, with_metrics: bool) -> None:
        for _ in range(k):
            run = tracer.start_span("fixed", attributes={"job.name": "fixed", "job.run.id": "r", "job.run.slot": 0})
            run_ctx = trace.set_span_in_context(run)
            stage = tracer.start_span("Working", context=run_ctx, attributes={"job.stage": "Working"})
            stage.set_attributes({"job.progress.current": 1})
            stage.end()
            if with_metrics:
                stage_ctx = trace.set_span_in_context(stage)
                stage_duration.record(0.001, {"job.name": "fixed", "job.stage": "Working"}, context=stage_ctx)
            run.add_event("Completed in 0ms | Processed: 1 entities", milestone)
            run.set_attributes(
                {
                    "job.result": "success",
                    "job.entity.type": "entities",
                    "job.progress.current": 1,
                    "job.logs.milestone": 2,
                }
            )
            run.end()
            if with_metrics:
                attrs = {"job.name": "fixed", "job.result": "success"}
                runs.add(1, attrs, context=run_ctx)
                run_duration.record(0.001, attrs, context=run_ctx)

    bare = bare_two_spans(tracer)

    s, b = side_by_side(lambda k: spans(k, False), bare, n, repeats)
    m, b2 = side_by_side(lambda k: spans(k, True), bare, n, repeats)
    return [
        Row("  floor: same spans, attributes, events; SDK only", s / 1000, b / 1000, "bare SDK spans", None, unit="us"),
        Row("  floor: the same + the 3 run metric records", m / 1000, b2 / 1000, "bare SDK spans", None, unit="us"),
    ]


def bench_fixed_cost_wrapper_floor(n: int, repeats: int) -> Row:
    """The practical floor of a run's fixed cost in Python: a minimal wrapper against the bare two spans.

    The wrapper does what the contract's spans ask for and nothing else: the run
    span with ``job.name``, ``job.run.id`` and ``job.run.slot``, a stage span with
    ``job.stage`` and ``job.progress.current``, a plain progress count, and at the
    end the summary line as the run span's milestone event and the run span's end
    attributes. No metrics, registry, finalizer, signal safety, log record, input
    checks, event budget or ``Summary`` object: none of joblogger's other
    guarantees. What a run costs above this row is what those guarantees cost.
    """
    import time

    from opentelemetry import trace

    tracer = TRACER.get_tracer("bench.wrapper")
    milestone = {"job.log.level": "milestone"}

    class Run:
        __slots__ = ("ctx", "current", "span", "stage", "started")

        def __init__(self, run_id: str, name: str) -> None:
            self.started = time.monotonic()
            self.span = tracer.start_span(name, attributes={"job.name": name, "job.run.id": run_id, "job.run.slot": 0})
            self.ctx = trace.set_span_in_context(self.span)
            self.stage: Any = None
            self.current = 0

        def set_stage(self, stage: str) -> None:
            if self.stage is not None:
                self.stage.end()
            self.stage = tracer.start_span(stage, context=self.ctx, attributes={"job.stage": stage})

        def increment_progress(self, n: int = 1) -> None:
            self.current += n

        def log_summary(self) -> str:
            if self.stage is not None:
                self.stage.set_attributes({"job.progress.current": self.current})
                self.stage.end()
            ms = (time.monotonic() - self.started) * 1000
            line = f"Completed in {ms:.0f}ms | Processed: {self.current:,} entities"
            self.span.add_event(line, milestone)
            self.span.set_attributes(
                {
                    "job.result": "success",
                    "job.entity.type": "entities",
                    "job.progress.current": self.current,
                    "job.logs.milestone": 2,
                }
            )
            self.span.end()
            return line

    def wrapper(k: int) -> None:
        for _ in range(k):
            job = Run("r", "fixed")
            job.set_stage("Working")
            job.increment_progress()
            job.log_summary()

    bare = bare_two_spans(tracer)

    w, b = side_by_side(wrapper, bare, n, repeats)
    name = (
        "  floor: a minimal Python wrapper (the two spans, the contract's attributes, "
        "summary line and event; no other guarantee)"
    )
    return Row(name, w / 1000, b / 1000, "bare SDK spans", None, unit="us")


def bench_threads(n: int, repeats: int) -> Row:
    threads_n = 8

    def run(parallel: bool) -> tuple[float, int]:
        job = new_job()
        per = n // threads_n

        def worker() -> None:
            inc = job.increment_progress
            add = job.add_outcome
            for _ in range(per):
                inc()
                add("updates")

        start = time.perf_counter_ns()
        if parallel:
            ts = [threading.Thread(target=worker) for _ in range(threads_n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        else:
            for _ in range(threads_n):
                worker()
        elapsed = (time.perf_counter_ns() - start) / (per * threads_n)
        summary = job.log_summary()
        assert summary.entities_processed == per * threads_n, summary
        assert summary.outcomes["updates"] == per * threads_n, summary
        return elapsed, summary.entities_processed

    multi = statistics.median(run(True)[0] for _ in range(repeats))
    single = statistics.median(run(False)[0] for _ in range(repeats))
    return Row("8 threads on one run vs 1 thread", multi, single, "single-threaded", 2.0, note="counts asserted exact")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def bench_memory(increments: int, logs: int) -> Row:
    joblog = logging.getLogger("joblogger")
    old = joblog.level
    joblog.setLevel(logging.INFO)
    gc.collect()
    job = new_job()
    job.set_total(increments, "items")
    job.set_stage("Memory")
    before = rss_bytes()
    inc = job.increment_progress
    for _ in range(increments):
        inc()
    for i in range(logs):
        job.info("Batch complete", batch=i)
    gc.collect()
    grown = (rss_bytes() - before) / 1e6
    summary = job.log_summary()
    joblog.setLevel(old)
    assert summary.entities_processed == increments
    return Row(
        f"RSS growth, {increments:,} increments + {logs:,} log calls", grown, 20.0, "20 MB budget", 1.0, unit="MB"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_dead_collector(seconds: float) -> Row:
    """Throughput of a job whose collector is down vs one whose exporters accept everything."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = f"http://127.0.0.1:{_closed_port()}"  # nothing listens: connections are refused
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)  # the exporters' retry warnings

    def throughput(dead: bool) -> float:
        tracer = TracerProvider()
        if dead:
            tracer.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=2)))
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=2), export_interval_millis=500
            )
        else:
            tracer.add_span_processor(BatchSpanProcessor(AcceptAllSpans()))
            reader = PeriodicExportingMetricReader(AcceptAllMetrics(), export_interval_millis=500)
        meter = MeterProvider(metric_readers=[reader])
        job = create_job_logger("r", "dead", tracer_provider=tracer, meter_provider=meter)
        job.set_stage("Working")
        done = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for i in range(1000):
                _work(i)
                job.increment_progress()
                job.add_outcome("updates")
            done += 1000
            if done % 50_000 == 0:
                job.info("Batch complete", done=done)
                job.set_stage(f"Working {done}")
        job.log_summary()
        start = time.perf_counter()
        tracer.shutdown()
        meter.shutdown()
        shutdown_s = time.perf_counter() - start
        rate = done / seconds
        throughput.shutdowns.append(shutdown_s)  # type: ignore[attr-defined]
        return rate

    throughput.shutdowns = []  # type: ignore[attr-defined]
    live, dead = [], []
    for _ in range(3):
        live.append(throughput(False))
        dead.append(throughput(True))
    slow = statistics.median(live) / statistics.median(dead)  # >1 means the dead collector slowed the job
    worst = max(throughput.shutdowns)  # type: ignore[attr-defined]
    return Row(
        "job time with collector down vs collector up",
        slow,
        1.0,
        "collector up",
        1.05,
        unit="x",
        note=f"worst shutdown {worst:.1f}s",
    )


def versions() -> str:
    names = ["opentelemetry-api", "opentelemetry-sdk", "tqdm", "rich", "joblogger"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no verdicts (smoke test)")
    parser.add_argument(
        "--cpu", action="store_true", help="time the calling thread's CPU time, not wall time (shared machines)"
    )
    parser.add_argument(
        "--fixed-cost", action="store_true", help="only a run's fixed cost and its floor rows (about a minute)"
    )
    parser.add_argument("--long-lived-worker", nargs=3, metavar=("MODE", "RUNS", "EVERY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.long_lived_worker:
        mode, runs, every = args.long_lived_worker
        long_lived_worker(mode, int(runs), int(every))
        return 0
    quick = args.quick
    if args.cpu:
        global CLOCK
        CLOCK = time.thread_time_ns
    n = 2_000 if quick else 200_000
    repeats = 1 if quick else 7
    print(
        f"joblogger benchmarks on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {platform.machine()}"
    )
    print(versions())
    rows: list[Row] = []
    if args.fixed_cost:
        rows.append(bench_fixed_cost(200 if quick else 5_000, 3 if quick else 9))
        rows += bench_fixed_cost_floor(200 if quick else 5_000, 3 if quick else 9)
        rows.append(bench_fixed_cost_wrapper_floor(200 if quick else 5_000, 3 if quick else 9))
        return print_rows(rows, quick, [])
    rows += bench_increment(n, repeats)
    rows += bench_track(n, repeats)
    rows += bench_add_outcome(n, repeats)
    rows += bench_tqdm_bridge(n, repeats)
    rows.append(bench_loop_overhead(2_000 if quick else 100_000, repeats, console=False))
    rows.append(bench_loop_overhead(2_000 if quick else 100_000, repeats, console=True))
    rows += bench_logs(200 if quick else 20_000, repeats)
    rows += bench_collection(50 if quick else 1_000, 3 if quick else 15)
    rows.append(bench_fixed_cost(200 if quick else 5_000, 3 if quick else 9))
    rows += bench_fixed_cost_floor(200 if quick else 5_000, 3 if quick else 9)
    rows.append(bench_fixed_cost_wrapper_floor(200 if quick else 5_000, 3 if quick else 9))
    long_rows, long_table = bench_long_lived(1_000 if quick else 100_000)
    rows += long_rows
    rows.append(bench_threads(8_000 if quick else 800_000, 1 if quick else 5))
    rows.append(bench_memory(10_000 if quick else 10_000_000, 1_000 if quick else 1_000_000))
    rows.append(bench_dead_collector(0.5 if quick else 5.0))
    return print_rows(rows, quick, long_table)


def print_rows(rows: list[Row], quick: bool, long_table: list[str]) -> int:
    """Print the table of ``rows`` (and the long-lived worker's); the exit status: 1 if a target was missed."""
    print()
    head = ("measure", "joblogger", "peer", "peer is", "ratio", "target", "ok")
    print("| {:<58} | {:>12} | {:>12} | {:<22} | {:>6} | {:>7} | {:<4} |".format(*head))
    print(f"|{'-' * 60}|{'-' * 14}|{'-' * 14}|{'-' * 24}|{'-' * 8}|{'-' * 9}|------|")
    failed = 0
    for row in rows:
        verdict = row.verdict(quick)
        failed += verdict == "FAIL"
        target = f"<= {row.target:g}" if row.target is not None else "-"
        name = row.name + (f" ({row.note})" if row.note else "")
        unit = row.unit.split("/")[0]
        ours, peer = f"{row.ours:>9.1f} {unit:<2}", f"{row.peer:>9.1f} {unit:<2}"
        print(
            f"| {name:<58} | {ours} | {peer} | {row.peer_name:<22} | {row.ratio:>6.2f} | {target:>7} | {verdict:<4} |"
        )
    if long_table:
        print()
        print("Long-lived worker: RSS, attribute sets held by the SDK, collection time (one run active)")
        print("\n".join("  " + line for line in long_table))
    print()
    targets = sum(row.target is not None for row in rows)  # floor rows (target "-") are context, not targets
    print("quick smoke run: sizes too small for verdicts" if quick else f"{targets - failed}/{targets} targets met")
    return 0 if quick or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
