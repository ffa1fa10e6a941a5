"""Where a run's and a stage's end are recorded: ``job.runs``, ``job.run.duration``, ``job.stage.duration``.

With joblogger's own providers (produced mode) into the in-process aggregates of
``joblogger._runmetrics``, which the exporter adds to each collection; with the
application's own MeterProvider (drop-in) through SDK instruments, in the span's
context so the SDK attaches exemplars. This module needs the API only; the
aggregates (which build SDK data points) are imported when produced mode asks
for them, and produced mode exists only where ``joblogger._producer`` (SDK) bound
the provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import metrics

from . import semconv

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from ._runmetrics import RunAggregates

#: Histogram buckets (seconds) for run and stage durations: 100 ms to 1 day.
DURATION_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1_800.0, 3_600.0, 7_200.0, 14_400.0, 43_200.0, 86_400.0,
)  # fmt: skip


class RunRecorder:
    """The run-boundary metrics of one meter provider, in the mode its hub runs in."""

    __slots__ = ("aggregates", "run_duration", "runs", "stage_duration")

    def __init__(self, meter_provider: metrics.MeterProvider, meter: metrics.Meter, produced: bool) -> None:
        self.aggregates: RunAggregates | None = None
        self.runs: metrics.Counter | None = None
        self.run_duration: metrics.Histogram | None = None
        self.stage_duration: metrics.Histogram | None = None
        if produced:
            from ._runmetrics import RunAggregates, exemplar_policy

            self.aggregates = RunAggregates(DURATION_BUCKETS, exemplar_policy(meter_provider))
            return
        self.runs = meter.create_counter(
            semconv.METRIC_RUNS,
            unit=semconv.METRICS[semconv.METRIC_RUNS][1],
            description="Job runs that ended, by result.",
        )
        self.run_duration = meter.create_histogram(
            semconv.METRIC_RUN_DURATION,
            unit="s",
            description="Duration of ended job runs.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.stage_duration = meter.create_histogram(
            semconv.METRIC_STAGE_DURATION,
            unit="s",
            description="Duration of ended job stages.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def record_run(self, job: str, result: str, seconds: float, span: Span, ctx: Context) -> None:
        """An ended run: ``job.runs`` +1 and its ``job.run.duration``, linked to the trace of ``span``."""
        aggregates = self.aggregates
        if aggregates is not None:
            aggregates.record_run(job, result, seconds, span)
            return
        attrs = {semconv.JOB_NAME: job, semconv.JOB_RESULT: result}
        if self.runs is not None and self.run_duration is not None:
            self.runs.add(1, attrs, context=ctx)
            self.run_duration.record(seconds, attrs, context=ctx)

    def record_stage(self, job: str, stage: str, seconds: float, span: Span, ctx: Context) -> None:
        """An ended stage's ``job.stage.duration``, linked to the trace of ``span``."""
        aggregates = self.aggregates
        if aggregates is not None:
            aggregates.record_stage(job, stage, seconds, span)
        elif self.stage_duration is not None:
            attrs = {semconv.JOB_NAME: job, semconv.JOB_STAGE: stage}
            self.stage_duration.record(seconds, attrs, context=ctx)

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's aggregates (the SDK instruments' storage is _otlp_fork's)."""
        if self.aggregates is not None:
            self.aggregates.reset_after_fork()
