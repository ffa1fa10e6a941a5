"""JobLogger: every public method and property, the context manager, logging, budgets, threads and asyncio."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace

from joblogger import MILESTONE, JobLogger, Summary, create_job_logger, semconv
from joblogger.testing import Capture, capture

from ._helpers import FakeClock, assert_telemetry_valid, attrs, joblogger_warnings


def stage_span(cap: Capture, name: str) -> Any:
    """The one finished span called ``name``."""
    return cap.span(name)


def levels(span: Any) -> list[str]:
    """The job.log.level of each event of a span."""
    return [(e.attributes or {}).get(semconv.JOB_LOG_LEVEL) for e in span.events]


# --- read-only state ------------------------------------------------------------------------------


def test_initial_state(cap: Capture) -> None:
    """A new logger has no stage, no progress, no outcomes and an open run span named after the job."""
    job = cap.job_logger("run-1", "match-scores")
    assert isinstance(job, JobLogger)
    assert (job.job_name, job.job_run_id) == ("match-scores", "run-1")
    assert (job.stage, job.message, job.current, job.processed_total, job.total) == (None, None, 0, 0, None)
    assert (job.entity_type, job.percent, job.rate, job.eta_seconds) == (None, None, None, None)
    assert job.progress_text == "match-scores"
    assert dict(job.outcomes) == {}
    assert dict(job.log_counts) == dict.fromkeys(semconv.LEVELS, 0)
    assert (job.ended, job.summary) == (False, None)
    assert job.span.is_recording()
    assert cap.spans() == []  # nothing ended yet
    assert repr(job) == "<JobLogger 'match-scores' run='run-1' 'match-scores'>"
    job.log_summary()


def test_outcomes_and_log_counts_are_read_only(cap: Capture) -> None:
    """outcomes and log_counts are read-only snapshots."""
    job = cap.job_logger("r", "j")
    job.add_outcome("updates", 2)
    outcomes = job.outcomes
    with pytest.raises(TypeError):
        outcomes["updates"] = 5  # type: ignore[index]
    with pytest.raises(TypeError):
        job.log_counts["info"] = 5  # type: ignore[index]
    job.add_outcome("updates")
    assert outcomes["updates"] == 2 and job.outcomes["updates"] == 3


def test_create_job_logger_takes_injected_providers(cap: Capture, clock: FakeClock) -> None:
    """create_job_logger itself accepts the providers and clock as keyword arguments."""
    job = create_job_logger("r", "direct", tracer_provider=cap.tracer_provider, meter_provider=cap.meter_provider,
                            clock=clock)  # fmt: skip
    clock.advance(2)
    assert job.log_summary().duration_ms == 2000.0
    assert cap.span("direct").name == "direct"


# --- stages --------------------------------------------------------------------------------------------


def test_set_stage_ends_previous_and_logs_milestone(cap: Capture, clock: FakeClock) -> None:
    """set_stage ends the previous stage span, starts a child of the run span and logs "Starting: <stage>".

    The milestone is a log record and a count, not a span event: the stage span's name and start say it.
    The stage span carries only ``job.stage`` (``job.name`` and ``job.run.id`` are the run span's).
    """
    job = cap.job_logger("r", "j")
    job.set_stage("A", "Loading")
    assert (job.stage, job.message, job.progress_text) == ("A", "Loading", "A (loading)")
    clock.advance(3)
    job.set_stage("B")
    assert (job.stage, job.message) == ("B", None)
    a = stage_span(cap, "A")
    assert a.parent is not None and a.parent.span_id == job.span.get_span_context().span_id
    assert [e.name for e in a.events] == []
    assert attrs(a) == {semconv.JOB_STAGE: "A", semconv.JOB_PROGRESS_CURRENT: 0}
    clock.advance(7)
    job.log_summary()
    durations = {p.attributes[semconv.JOB_STAGE]: (p.value, p.histogram_sum) for p in cap.metrics()
                 if p.name == semconv.METRIC_STAGE_DURATION}  # fmt: skip
    assert durations == {"A": (1, 3.0), "B": (1, 7.0)}
    assert job.log_counts["milestone"] == 3  # two stage starts and the summary


def test_stage_start_is_a_log_record_not_a_span_event(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """``Starting: <stage>`` reaches logging (with the stage's context) and job.logs, but adds no span event."""
    caplog.set_level(MILESTONE, logger="joblogger")
    job = cap.job_logger("r", "j")
    job.set_stage("Loading")
    job.milestone("half way")
    job.log_summary()
    stage = stage_span(cap, "Loading")
    assert [e.name for e in stage.events] == ["half way"]
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Starting: ")]
    assert record.levelno == MILESTONE and record.getMessage() == "Starting: Loading"
    assert getattr(record, semconv.JOB_STAGE) == "Loading"
    assert getattr(record, semconv.JOB_RUN_ID) == "r"
    assert job.log_counts["milestone"] == 3  # the stage start, half way and the summary
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: "milestone"}) == 3


def test_set_stage_never_resets_counts(cap: Capture) -> None:
    """Counts carry across stages; each stage span records what it processed."""
    job = cap.job_logger("r", "j")
    job.set_total(10)
    job.set_stage("A")
    job.increment_progress(4)
    job.set_stage("B")
    assert job.current == 4
    job.increment_progress(6)
    assert job.progress_text == "B (10 / 10)"
    job.log_summary()
    assert attrs(stage_span(cap, "A"))[semconv.JOB_PROGRESS_CURRENT] == 4
    assert attrs(stage_span(cap, "B"))[semconv.JOB_PROGRESS_CURRENT] == 6


# --- progress --------------------------------------------------------------------------------------------


def test_increment_progress(cap: Capture) -> None:
    """increment_progress adds 1 by default, or count, and a message describes the step."""
    job = cap.job_logger("r", "j")
    job.set_stage("S")
    job.increment_progress()
    job.increment_progress(9)
    job.increment_progress(0)
    assert job.current == 10 and job.message is None
    job.increment_progress(1, "Step done")
    assert (job.current, job.message, job.progress_text) == (11, "Step done", "S (11 processed): step done")
    job.log_summary()
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 11


def test_set_progress_forward_and_backwards(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """set_progress jumps forward (counted), may go backwards for display (one warning), never un-counts."""
    job = cap.job_logger("r", "j")
    job.set_total(100)
    job.set_progress(40, "Batch 1")
    assert (job.current, job.percent, job.message) == (40, 40.0, "Batch 1")
    job.set_progress(30)
    job.set_progress(20)
    assert job.current == 20
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 40
    job.set_progress(150)
    assert (job.current, job.percent) == (150, 100.0)
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 170
    assert sorted(joblogger_warnings(caplog.records)) == ["progress-backwards", "progress-over-total"]
    assert job.log_summary().entities_processed == 150


def test_set_total_and_entity_type(cap: Capture) -> None:
    """set_total sets total and entity type; counts already made stay attributed to the old type."""
    job = cap.job_logger("r", "j")
    job.increment_progress(5)
    job.set_total(50, "users")
    assert (job.total, job.entity_type, job.current, job.percent) == (50, "users", 5, 10.0)
    job.increment_progress(5)
    job.set_total(80)  # a new phase: the count restarts; the entity type is kept
    assert (job.total, job.entity_type, job.current, job.processed_total) == (80, "users", 0, 10)
    job.log_summary()
    processed = {p.attributes[semconv.JOB_ENTITY_TYPE]: p.value for p in cap.metrics()
                 if p.name == semconv.METRIC_ENTITIES_PROCESSED}  # fmt: skip
    assert processed == {"entities": 5, "users": 5}


def test_percent_and_progress_text_follow_total(cap: Capture) -> None:
    """percent is None without a total and follows current / total with one."""
    job = cap.job_logger("r", "j")
    job.set_stage("Scoring users")
    job.increment_progress(1250)
    assert (job.percent, job.progress_text) == (None, "Scoring users (1,250 processed)")
    job.set_total(5000, "users")
    assert (job.percent, job.progress_text) == (25.0, "Scoring users (1,250 / 5,000)")


def test_rate_and_eta_with_fake_clock(cap: Capture, clock: FakeClock) -> None:
    """rate is per second since the stage began; eta is what is left at that rate; both freeze or vanish at the end."""
    job = cap.job_logger("r", "j")
    job.set_total(1000)
    clock.advance(100)  # time before the stage does not count
    job.set_stage("Work")
    assert (job.rate, job.eta_seconds) == (None, None)
    job.increment_progress(250)
    assert (job.rate, job.eta_seconds) == (None, None)  # no time has passed
    clock.advance(10)
    assert job.rate == 25.0
    assert job.eta_seconds == 30.0
    clock.advance(10)
    assert (job.rate, job.eta_seconds) == (12.5, 60.0)
    job.set_total(100)  # new phase: the anchor moves
    assert (job.rate, job.eta_seconds) == (None, None)
    clock.advance(2)
    job.increment_progress(50)
    assert (job.rate, job.eta_seconds) == (25.0, 2.0)
    job.log_summary()
    clock.advance(100)
    assert (job.rate, job.eta_seconds) == (25.0, None)


def test_get_elapsed_ms(cap: Capture, clock: FakeClock) -> None:
    """get_elapsed_ms follows the injected clock and freezes when the run ends."""
    job = cap.job_logger("r", "j")
    assert job.get_elapsed_ms() == 0.0
    clock.advance(1.5)
    assert job.get_elapsed_ms() == 1500.0
    clock.advance(152.5)
    summary = job.log_summary()
    clock.advance(60)
    assert job.get_elapsed_ms() == 154_000.0
    assert summary.duration_ms == 154_000.0
    assert summary.line == "Completed in 2m 34s | Processed: 0 entities"


# --- track() ---------------------------------------------------------------------------------------------


def test_track_sized(cap: Capture) -> None:
    """track() over a sized iterable sets the total from len(), starts the stage and counts each item."""
    job = cap.job_logger("r", "j")
    seen = []
    for item in job.track(["a", "b", "c"], stage="Letters"):
        seen.append((item, job.current))
    assert seen == [("a", 0), ("b", 1), ("c", 2)]
    assert (job.stage, job.total, job.current, job.progress_text) == ("Letters", 3, 3, "Letters (3 / 3)")
    job.log_summary()
    assert attrs(stage_span(cap, "Letters"))[semconv.JOB_PROGRESS_CURRENT] == 3


def test_track_unsized_and_explicit_total(cap: Capture) -> None:
    """track() over a generator leaves the total unknown unless given; an early break counts finished items."""
    job = cap.job_logger("r", "j")
    for _ in job.track(x for x in range(7)):
        pass
    assert (job.total, job.current, job.progress_text) == (None, 7, "j (7 processed)")
    job2 = cap.job_logger("r2", "j2")
    for i in job2.track((x for x in range(100)), total=100, stage="Gen"):
        if i == 9:
            break
    assert (job2.total, job2.current, job2.percent) == (100, 9, 9.0)


def test_track_generator_after_a_counted_phase_starts_an_unknown_phase(cap: Capture) -> None:
    """track() over a generator after a finished known-total phase does not report "11 / 10"."""
    job = cap.job_logger("r", "j")
    for _ in job.track(range(10), stage="Sized"):
        pass
    for _ in job.track((x for x in range(7)), stage="Unsized"):
        pass
    assert (job.total, job.current, job.processed_total) == (None, 7, 17)
    assert job.progress_text == "Unsized (7 processed)"


def test_track_keeps_a_total_set_before_it(cap: Capture) -> None:
    """set_total(n) then track(generator) counts against n."""
    job = cap.job_logger("r", "j")
    job.set_total(20, "rows")
    for _ in job.track(x for x in range(5)):
        pass
    assert (job.total, job.current, job.percent) == (20, 5, 25.0)


# --- outcomes ----------------------------------------------------------------------------------------------


def test_add_outcome_and_summary_rules(cap: Capture) -> None:
    """add_outcome accumulates any key; errors/warnings default to log counts unless recorded."""
    job = cap.job_logger("r", "j")
    job.add_outcome("merged", 3)
    job.add_outcome("updates")
    job.add_outcome("updates", 4)
    job.add_outcome("inserts", 0)
    job.warning("w1")
    job.warning("w2")
    job.error("e1")
    assert dict(job.outcomes) == {"updates": 5, "merged": 3, "errors": 1, "warnings": 2}
    job.add_outcome("warnings", 7)
    assert dict(job.outcomes) == {"updates": 5, "merged": 3, "errors": 1, "warnings": 7}
    summary = job.log_summary()
    assert list(summary.outcomes) == ["updates", "merged", "errors", "warnings"]
    run = cap.span("j")
    # The span carries what add_outcome recorded, as the metric does; the error() call is job.logs.error.
    assert {k: v for k, v in attrs(run).items() if k.startswith("job.outcomes.")} == {
        "job.outcomes.updates": 5, "job.outcomes.merged": 3, "job.outcomes.inserts": 0, "job.outcomes.warnings": 7,
    }  # fmt: skip
    assert attrs(run)["job.logs.error"] == 1
    metric = {p.attributes[semconv.JOB_OUTCOME]: p.value for p in cap.metrics() if p.name == semconv.METRIC_OUTCOMES}
    assert metric == {"merged": 3, "updates": 5, "inserts": 0, "warnings": 7}


def test_save_outcome_records_on_run_span_and_flushes(cap: Capture) -> None:
    """save_outcome puts the outcome snapshot on the run span and flushes metrics."""
    job = cap.job_logger("r", "j")
    job.add_outcome("updates", 2)
    job.save_outcome(timeout_s=0.5)
    assert dict(job.span.attributes or {})["job.outcomes.updates"] == 2  # type: ignore[attr-defined]
    job.log_summary()


# --- logging -------------------------------------------------------------------------------------------------


def test_levels_become_events_with_context(cap: Capture) -> None:
    """info/milestone/warning/error become events on the current stage with context and kwargs as attributes."""
    job = cap.job_logger("r", "j")
    job.info("before any stage", {"k": 1})
    job.set_stage("S")
    job.info("i", {"a": 1}, b="two")
    job.milestone("m", {"n": [1, 2, 3]})
    job.warning("w", userId="1234")
    job.error("e", {"nested": {"x": 1}, "when": None})
    job.log_summary()
    stage = stage_span(cap, "S")
    assert [(e.name, dict(e.attributes or {})) for e in stage.events] == [
        ("i", {"a": 1, "b": "two", semconv.JOB_LOG_LEVEL: "info"}),
        ("m", {"n": (1, 2, 3), semconv.JOB_LOG_LEVEL: "milestone"}),
        ("w", {"userId": "1234", semconv.JOB_LOG_LEVEL: "warning"}),
        ("e", {"nested": '{"x": 1}', "when": "null", semconv.JOB_LOG_LEVEL: "error"}),
    ]
    run = cap.span("j")
    assert run.events[0].name == "before any stage"


def test_debug_not_exported_by_default(cap: Capture) -> None:
    """debug() is counted but not a span event unless debug_events=True."""
    job = cap.job_logger("r", "default")
    job.set_stage("S")
    job.debug("quiet", {"x": 1})
    job.log_summary()
    assert levels(stage_span(cap, "S")) == []
    job2 = cap.job_logger("r2", "verbose", debug_events=True)
    job2.set_stage("T")
    job2.debug("loud", {"x": 1})
    job2.log_summary()
    t = stage_span(cap, "T")
    assert [(e.name, levels(t)[i]) for i, e in enumerate(t.events)] == [("loud", "debug")]
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_NAME: "default", semconv.JOB_LOG_LEVEL: "debug"}) == 1
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_NAME: "verbose", semconv.JOB_LOG_LEVEL: "debug"}) == 1


class _ContextHandler(logging.Handler):
    """Records each joblogger record with the OTel span context current while it is handled."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[logging.LogRecord, trace.SpanContext]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record, trace.get_current_span().get_span_context()))


@pytest.fixture
def otel_handler() -> Iterator[_ContextHandler]:
    """A handler on the joblogger logger at DEBUG, removed afterwards."""
    handler = _ContextHandler()
    log = logging.getLogger("joblogger")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old_level)


def test_stdlib_records_and_trace_correlation(cap: Capture, otel_handler: _ContextHandler) -> None:
    """Each call is a stdlib record on "joblogger" at its level, with job fields, inside the stage span's context."""
    job = cap.job_logger("run-7", "match-scores")
    job.info("pre-stage")
    job.set_stage("Scoring users")
    job.debug("d")
    job.info("i", {"userId": 1, "message": "clash", "name": "clash2"})
    job.milestone("m")
    job.warning("w")
    job.error("e")
    job.log_summary()
    stage = stage_span(cap, "Scoring users")
    run = cap.span("match-scores")
    got = [(r.getMessage(), r.levelno) for r, _ in otel_handler.seen]
    assert got == [
        ("pre-stage", logging.INFO),
        ("Starting: Scoring users", MILESTONE),
        ("d", logging.DEBUG),
        ("i", logging.INFO),
        ("m", MILESTONE),
        ("w", logging.WARNING),
        ("e", logging.ERROR),
        (job.summary.line if job.summary else "", MILESTONE),
    ]
    assert logging.getLevelName(MILESTONE) == "MILESTONE" and MILESTONE == 23
    for record, ctx in otel_handler.seen:
        assert getattr(record, semconv.JOB_NAME) == "match-scores"
        assert getattr(record, semconv.JOB_RUN_ID) == "run-7"
        assert ctx.trace_id == run.context.trace_id
    for record, ctx in otel_handler.seen[1:7]:
        assert getattr(record, semconv.JOB_STAGE) == "Scoring users"
        assert ctx.span_id == stage.context.span_id
    pre_record, pre_ctx = otel_handler.seen[0]
    assert not hasattr(pre_record, semconv.JOB_STAGE) and pre_ctx.span_id == run.context.span_id
    info_record = otel_handler.seen[3][0]
    assert info_record.userId == 1  # type: ignore[attr-defined]
    assert getattr(info_record, "context.message") == "clash"
    assert getattr(info_record, "context.name") == "clash2"
    assert info_record.name == "joblogger"
    assert otel_handler.seen[-1][1].span_id == run.context.span_id
    assert trace.get_current_span().get_span_context().is_valid is False  # nothing leaked into the caller


# --- the end of a run -------------------------------------------------------------------------------------


def test_context_manager_success(cap: Capture, clock: FakeClock) -> None:
    """On success the context manager logs the summary, ends the run and makes the run span current inside."""
    with cap.job_logger("r", "ok-job") as job:
        assert trace.get_current_span().get_span_context() == job.span.get_span_context()
        job.set_stage("S")
        clock.advance(2)
    assert trace.get_current_span().get_span_context().is_valid is False
    assert job.ended and job.summary is not None and job.summary.result == "success"
    run = cap.span("ok-job")
    assert run.status.status_code == trace.StatusCode.UNSET
    assert attrs(run)[semconv.JOB_RESULT] == "success"
    assert semconv.ERROR_TYPE not in attrs(run)
    assert [e.name for e in run.events] == ["Completed in 2.0s | Processed: 0 entities"]
    assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: "success"}) == 1


class JobError(Exception):
    """A user exception."""


def test_context_manager_exception(cap: Capture, clock: FakeClock) -> None:
    """An exception is recorded on the run span, marks the run failed and is re-raised as the same object."""
    boom = JobError("db down")
    with pytest.raises(JobError) as info, cap.job_logger("r", "bad-job") as job:
        job.set_stage("S")
        job.increment_progress(2)
        clock.advance(1)
        raise boom
    assert info.value is boom
    assert job.summary is not None
    assert job.summary.result == "failure"
    assert job.summary.line == "Failed after 1.0s | Processed: 2 entities | Errors: 1"
    run = cap.span("bad-job")
    assert run.status.status_code == trace.StatusCode.ERROR
    assert run.status.description == f"{__name__}.JobError: db down"
    assert attrs(run)[semconv.JOB_RESULT] == "failure"
    assert attrs(run)[semconv.ERROR_TYPE] == f"{__name__}.JobError"
    [exc_event] = [e for e in run.events if e.name == "exception"]
    assert (exc_event.attributes or {})["exception.type"] == f"{__name__}.JobError"
    assert (exc_event.attributes or {})["exception.message"] == "db down"
    assert stage_span(cap, "S").events[-1].name == f"Job failed: {__name__}.JobError: db down"
    assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: "failure"}) == 1
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 0
    assert_telemetry_valid(cap)


def test_context_manager_keyboard_interrupt(cap: Capture) -> None:
    """KeyboardInterrupt ends the run as a cancellation and keeps propagating."""
    with pytest.raises(KeyboardInterrupt), cap.job_logger("r", "cancelled-job") as job:
        job.set_stage("S")
        raise KeyboardInterrupt
    assert job.summary is not None
    assert job.summary.result == "cancellation"
    assert job.summary.line.startswith("Cancelled after 0ms | Processed: 0 entities")
    run = cap.span("cancelled-job")
    assert attrs(run)[semconv.JOB_RESULT] == "cancellation"
    assert attrs(run)[semconv.ERROR_TYPE] == "KeyboardInterrupt"
    assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: "cancellation"}) == 1


def test_log_summary_in_finally_marks_failure(cap: Capture) -> None:
    """log_summary() in a finally: block while an exception propagates marks the run failed."""
    job = cap.job_logger("r", "j")
    with pytest.raises(JobError):
        try:
            raise JobError("x")
        finally:
            job.log_summary()
    assert job.summary is not None and job.summary.result == "failure"


def test_log_summary_inside_an_unrelated_except_block_is_success(cap: Capture) -> None:
    """A run started while handling an earlier exception (a retry) and finished normally is a success."""
    try:
        raise JobError("first attempt failed")
    except JobError:
        job = cap.job_logger("r", "retry-job")
        try:
            job.increment_progress()
        finally:
            summary = job.log_summary()
    assert summary.result == "success"
    assert summary.line == "Completed in 0ms | Processed: 1 entities"
    assert semconv.ERROR_TYPE not in attrs(cap.span("retry-job"))


def test_log_summary_is_idempotent(cap: Capture) -> None:
    """A second log_summary returns the same summary and emits nothing more."""
    job = cap.job_logger("r", "j")
    first = job.log_summary()
    second = job.log_summary()
    assert first is second
    assert isinstance(first, Summary)
    assert len(cap.span("j").events) == 1
    assert cap.metric_value(semconv.METRIC_RUNS) == 1
    assert job.log_counts["milestone"] == 1


def test_calls_after_end_are_ignored_with_one_warning(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """After the end every mutating call is a no-op and the caller hears about it exactly once."""
    job = cap.job_logger("r", "j")
    job.set_stage("S")
    job.increment_progress(3)
    summary = job.log_summary()
    caplog.clear()
    job.increment_progress()
    job.increment_progress(5, "late")
    job.set_progress(100)
    job.set_total(9)
    job.add_outcome("updates")
    job.add_outcome("updates", 4)
    job.set_stage("Late stage")
    for level in ("debug", "info", "milestone", "warning", "error"):
        getattr(job, level)("late")
    job.save_outcome()
    for _ in job.track([1, 2, 3]):
        pass
    assert job.log_summary() is summary
    warnings = [r for r in caplog.records if r.name == "joblogger" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert joblogger_warnings(warnings) == ["ended"]
    assert "log_summary" in warnings[0].getMessage()
    assert (job.current, job.total, dict(job.outcomes), job.stage) == (3, None, {}, "S")
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 3
    assert cap.metric_value(semconv.METRIC_OUTCOMES) == 0
    assert [s.name for s in cap.spans()] == ["S", "j"]


def test_run_span_attributes_option(cap: Capture) -> None:
    """attributes= goes on the run span only, coerced and redacted, never on metrics."""
    job = cap.job_logger("r", "j", attributes={"celery.task_id": "abc", "queue.depth": 3, "api_token": "s3cr3t"})
    job.set_stage("S")
    job.log_summary()
    run = attrs(cap.span("j"))
    assert (run["celery.task_id"], run["queue.depth"], run["api_token"]) == ("abc", 3, "[REDACTED]")
    assert "celery.task_id" not in attrs(stage_span(cap, "S"))
    assert all("celery.task_id" not in p.attributes for p in cap.metrics())


def test_run_span_is_child_of_current_span(cap: Capture) -> None:
    """The run span's parent is whatever span is current when the logger is created."""
    tracer = cap.tracer_provider.get_tracer("web")
    with tracer.start_as_current_span("POST /jobs") as parent:
        job = cap.job_logger("r", "j")
    job.log_summary()
    run = cap.span("j")
    assert run.parent is not None and run.parent.span_id == parent.get_span_context().span_id
    job2 = cap.job_logger("r2", "root-job")
    job2.log_summary()
    assert cap.span("root-job").parent is None


def test_user_spans_inside_context_manager_are_children_of_run(cap: Capture) -> None:
    """Spans the job starts inside the with-block nest under the run span."""
    tracer = cap.tracer_provider.get_tracer("app")
    with cap.job_logger("r", "j") as job, tracer.start_as_current_span("db.query"):
        job.info("querying")
    query = cap.span("db.query")
    assert query.parent is not None and query.parent.span_id == cap.span("j").context.span_id


# --- metrics ---------------------------------------------------------------------------------------------


def test_progress_gauges_only_while_active(cap: Capture, clock: FakeClock) -> None:
    """Progress gauges carry job.run.id while the run is active and disappear when it ends."""
    job = cap.job_logger("run-g", "gauge-job")
    job.set_stage("S")
    job.increment_progress(3)
    points = {p.name: p for p in cap.metrics() if p.name.startswith("job.progress")}
    assert set(points) == {semconv.METRIC_PROGRESS_CURRENT}
    assert points[semconv.METRIC_PROGRESS_CURRENT].attributes == {
        semconv.JOB_NAME: "gauge-job", semconv.JOB_RUN_ID: "run-g", semconv.JOB_STAGE: "S",
        semconv.JOB_ENTITY_TYPE: "entities", semconv.JOB_RUN_SLOT: 0,
    }  # fmt: skip
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE, **{semconv.JOB_NAME: "gauge-job"}) == 1
    job.set_total(10, "files")
    clock.advance(3)
    points = {p.name: p.value for p in cap.metrics() if p.name.startswith("job.progress")}
    assert points == {semconv.METRIC_PROGRESS_CURRENT: 3, semconv.METRIC_PROGRESS_EXPECTED: 10,
                      semconv.METRIC_PROGRESS_RATIO: 0.3, semconv.METRIC_PROGRESS_ETA: 7.0}  # fmt: skip
    job.log_summary()
    assert [p for p in cap.metrics() if p.name.startswith("job.progress")] == []
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE, **{semconv.JOB_NAME: "gauge-job"}) == 0


def test_progress_gauges_before_the_first_stage_carry_no_empty_stage(cap: Capture) -> None:
    """Before the first stage the gauges have no ``job.stage`` at all, not an empty one.

    Prometheus treats an empty label as absent, so nothing changes there; stores that
    validate labels (Thanos Receive, docs/scale.md) reject a series with an empty value.
    """
    job = cap.job_logger("r", "no-stage")
    job.increment_progress()
    [point] = [p for p in cap.metrics() if p.name == semconv.METRIC_PROGRESS_CURRENT]
    assert semconv.JOB_STAGE not in point.attributes
    assert all(value != "" for value in point.attributes.values())
    job.set_stage("Load")
    [point] = [p for p in cap.metrics() if p.name == semconv.METRIC_PROGRESS_CURRENT]
    assert point.attributes[semconv.JOB_STAGE] == "Load"
    job.log_summary()


def test_run_id_on_metrics_switch(cap: Capture) -> None:
    """run_id_on_metrics=False drops the run id from the progress gauges."""
    job = cap.job_logger("r", "frequent", run_id_on_metrics=False)
    job.increment_progress()
    [point] = [p for p in cap.metrics() if p.name == semconv.METRIC_PROGRESS_CURRENT]
    assert semconv.JOB_RUN_ID not in point.attributes
    job.log_summary()


def test_counters_never_carry_run_ids(cap: Capture) -> None:
    """Counters and histograms carry job name and their own label, never the run id."""
    with cap.job_logger("r", "j", attributes={"x": 1}) as job:
        job.set_stage("S")
        job.increment_progress()
        job.add_outcome("k")
        job.info("i")
    for p in cap.metrics():
        assert semconv.JOB_RUN_ID not in p.attributes, p
        assert p.attributes[semconv.JOB_NAME] == "j"


def test_metric_labels_of_name_and_run_id_are_single_line(cap: Capture) -> None:
    """job.name and job.run.id with newlines and control characters become single-line labels; spans keep them."""
    job = cap.job_logger("run\r\n42\x00", "nightly\nexport\x00")
    job.set_stage("S")
    job.increment_progress()
    live = [p for p in cap.metrics() if p.name == semconv.METRIC_PROGRESS_CURRENT]
    job.log_summary()
    assert [p.attributes[semconv.JOB_RUN_ID] for p in live] == ["run 42"]
    labels = {v for p in [*live, *cap.metrics()] for v in p.attributes.values()}
    assert "nightly export" in labels
    assert not [v for v in labels if any(ord(c) < 0x20 or ord(c) == 0x7F for c in str(v))], labels
    assert attrs(cap.span("nightly\nexport\x00"))[semconv.JOB_RUN_ID] == "run\r\n42\x00"


def _outcome_series(cap: Capture) -> dict[str, float]:
    return {p.attributes[semconv.JOB_OUTCOME]: p.value for p in cap.metrics() if p.name == semconv.METRIC_OUTCOMES}


def test_outcome_key_cap_never_rewrites_a_later_runs_own_keys(cap: Capture) -> None:
    """After 120 runs with one distinct key each, run 121 keeps its keys; errors always count on the metric."""
    for i in range(120):
        with cap.job_logger(f"r{i}", "exporter") as job:
            job.add_outcome(f"table_{i}")
            job.add_outcome("errors")
    with cap.job_logger("r121", "exporter") as job:
        job.add_outcome("table_121", 8)
        job.add_outcome("errors")
        job.add_outcome("skipped", 2)
    summary = job.summary
    assert summary is not None
    assert dict(summary.outcomes) == {"skipped": 2, "table_121": 8, "errors": 1}
    assert "Table 121: 8" in summary.line and "Other" not in summary.line
    run_attrs = attrs(next(s for s in cap.spans("exporter") if attrs(s)[semconv.JOB_RUN_ID] == "r121"))
    assert run_attrs[semconv.JOB_OUTCOMES_PREFIX + "table_121"] == 8
    assert semconv.JOB_OUTCOMES_PREFIX + "other" not in run_attrs
    series = _outcome_series(cap)
    assert series["errors"] == 121 and series["skipped"] == 2
    assert len(series) == 100 + 3  # 100 custom labels, other, errors, skipped
    assert series["other"] == 20 + 8
    assert sum(v for k, v in series.items() if k not in ("errors", "skipped")) == 120 + 8


def test_outcome_key_cap_per_run_keeps_standard_keys(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """One run with 150 custom keys: 100 kept, the rest 'other' with one warning; standard keys after that stay."""
    caplog.set_level(logging.WARNING, logger="joblogger")
    with cap.job_logger("r", "wide") as job:
        for i in range(150):
            job.add_outcome(f"k{i}")
        for key in ("updates", "inserts", "deletes", "skipped", "errors", "warnings"):
            job.add_outcome(key, 3)
    summary = job.summary
    assert summary is not None
    assert summary.outcomes["other"] == 50 and len([k for k in summary.outcomes if k.startswith("k")]) == 100
    for key in ("updates", "inserts", "deletes", "skipped", "errors", "warnings"):
        assert summary.outcomes[key] == 3 and _outcome_series(cap)[key] == 3
    assert joblogger_warnings(caplog.records).count("outcome-cap") == 1


def test_outcome_totals_of_the_process_never_pass_int64(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """Runs whose outcomes add up beyond 2**63-1 keep the exported cumulative at 2**63-1, with one warning each."""
    caplog.set_level(logging.WARNING, logger="joblogger")
    big = 2**63 - 1
    for i in range(3):
        with cap.job_logger(f"r{i}", "bytes-job") as job:
            job.add_outcome("bytes", big // 2)
            job.add_outcome("errors")
        assert job.summary is not None and job.summary.outcomes["bytes"] == big // 2
        assert_telemetry_valid(cap)  # the OTLP encoder accepts every collection
    series = _outcome_series(cap)
    assert series["bytes"] == big and series["errors"] == 3
    assert joblogger_warnings(caplog.records).count("outcome-total-int64") == 1
    with cap.job_logger("r3", "bytes-job") as job:
        job.add_outcome("errors")
    assert _outcome_series(cap)["errors"] == 4


def test_many_loggers_share_one_meter_provider(cap: Capture) -> None:
    """Many runs and job names on one meter provider report separately and add up."""
    jobs = [cap.job_logger(f"run-{i}", f"job-{i % 5}") for i in range(50)]
    for i, job in enumerate(jobs):
        job.increment_progress(i)
        job.add_outcome("updates", 2)
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 50
    for job in jobs[:25]:
        job.log_summary()
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 25
    for job in jobs[25:]:
        job.log_summary()
    for k in range(5):
        expected = sum(i for i in range(50) if i % 5 == k)
        assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED, **{semconv.JOB_NAME: f"job-{k}"}) == expected
        assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_NAME: f"job-{k}"}) == 10
        assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_NAME: f"job-{k}"}) == 20
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 0
    names = [p.name for p in cap.metrics() if p.name == semconv.METRIC_RUNS_ACTIVE]
    assert len(names) == 5  # one series per job name, not per run


def test_garbage_collected_logger_keeps_its_counts(cap: Capture) -> None:
    """A logger dropped without log_summary keeps its counts in metrics; counters never decrease."""
    job = cap.job_logger("r", "forgotten")
    job.set_stage("S")
    job.increment_progress(7)
    job.add_outcome("updates", 3)
    job.warning("w")
    before = {(p.name, tuple(sorted(p.attributes.items()))): p.value for p in cap.metrics()}
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 1
    del job
    gc.collect()
    after = {(p.name, tuple(sorted(p.attributes.items()))): p.value for p in cap.metrics()}
    for key, value in before.items():
        if key[0] in (semconv.METRIC_ENTITIES_PROCESSED, semconv.METRIC_OUTCOMES, semconv.METRIC_LOGS):
            assert after[key] == value, key
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 7
    assert cap.metric_value(semconv.METRIC_OUTCOMES) == 3
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: "warning"}) == 1
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 0
    assert [p for p in cap.metrics() if p.name.startswith("job.progress")] == []
    # a new run of the same job adds on top
    with cap.job_logger("r2", "forgotten") as job2:
        job2.increment_progress(2)
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 9


# --- event budget ------------------------------------------------------------------------------------------


def test_default_event_budget_keeps_high_levels(cap: Capture) -> None:
    """With the default budget of 128: 300 infos, then 20 errors (all kept), then warnings until it is full."""
    job = cap.job_logger("r", "j", log_rate_limits={})  # the budget alone, no rate limit
    job.set_stage("S")
    for i in range(300):
        job.info(f"i{i}")
    for i in range(20):
        job.error(f"e{i}")
    for i in range(50):
        job.warning(f"w{i}")
    job.log_summary()
    stage = stage_span(cap, "S")
    assert len(stage.events) == 128 and stage.dropped_events == 0
    kept = levels(stage)[:-1]
    assert kept.count("error") == 20 and kept.count("milestone") == 0
    assert 0 < kept.count("info") < 127 - 20 and 0 < kept.count("warning") < 50
    assert [e.name for e in stage.events if e.name.startswith("w")] == [f"w{i}" for i in range(kept.count("warning"))]
    closing = stage.events[-1]
    assert closing.name == semconv.EVENT_EVENTS_DROPPED
    dropped = {"info": 300 - kept.count("info"), "warning": 50 - kept.count("warning")}
    assert dict(closing.attributes or {}) == {
        semconv.JOB_EVENTS_DROPPED_BY_LEVEL_PREFIX + k: v for k, v in dropped.items()
    }
    assert attrs(stage)[semconv.JOB_EVENTS_DROPPED] == sum(dropped.values())
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: "info"}) == 300
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: "warning"}) == 50
    assert job.summary is not None and job.summary.events_dropped == dropped


def test_small_event_budget(cap: Capture) -> None:
    """With a small budget, debug and info go first; milestones, warnings and errors stay until exhausted."""
    job = cap.job_logger("r", "j", event_budget=8, debug_events=True)
    job.set_stage("S")  # a milestone record, no span event
    for i in range(10):
        job.debug(f"d{i}")
        job.info(f"i{i}")
    job.warning("w0")
    job.error("e0")
    for i in range(1, 10):
        job.warning(f"w{i}")
    job.log_summary()
    stage = stage_span(cap, "S")
    assert len(stage.events) <= 8 and stage.dropped_events == 0
    *kept, closing = stage.events
    names = [e.name for e in kept]
    assert names[0] == "d0"
    assert "w0" in names and "e0" in names  # kept although lower levels were already being dropped
    low_kept = [n for n in names if n[0] in "di"]
    assert 0 < len(low_kept) < 20
    dropped = {
        k.removeprefix(semconv.JOB_EVENTS_DROPPED_BY_LEVEL_PREFIX): v for k, v in (closing.attributes or {}).items()
    }
    emitted = {"milestone": 0, "debug": 10, "info": 10, "warning": 10, "error": 1}
    kept_levels = levels(stage)[:-1]
    for level, n in emitted.items():
        assert kept_levels.count(level) + dropped.get(level, 0) == n, level
    assert dropped["warning"] > 0
    assert attrs(stage)[semconv.JOB_EVENTS_DROPPED] == sum(dropped.values())
    for level, n in emitted.items():
        # milestones: the stage start and the summary line are log calls too (records, no stage events)
        assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: level}) == n + 2 * (level == "milestone")


def test_event_budget_reserves_room_for_exception_and_summary(cap: Capture) -> None:
    """A run span full of warnings still gets its summary line and exception event within the SDK limit."""
    with pytest.raises(JobError), cap.job_logger("r", "j") as job:
        for i in range(300):
            job.warning(f"w{i}")
        raise JobError("boom")
    run = cap.span("j")
    assert len(run.events) <= 128 and run.dropped_events == 0
    names = [e.name for e in run.events]
    assert job.summary is not None and job.summary.line in names
    assert "exception" in names
    assert names[-1] == semconv.EVENT_EVENTS_DROPPED
    assert attrs(run)[semconv.JOB_EVENTS_DROPPED] == sum(job.summary.events_dropped.values())


def test_summary_counts_drops_of_every_stage(cap: Capture) -> None:
    """Summary.events_dropped adds up the drops of every stage, not only the last one."""
    job = cap.job_logger("r", "j", event_budget=4)
    for stage in ("A", "B"):
        job.set_stage(stage)
        for i in range(10):
            job.info(f"{stage}{i}")
    summary = job.log_summary()
    per_stage = [attrs(stage_span(cap, s))[semconv.JOB_EVENTS_DROPPED] for s in ("A", "B")]
    assert summary.events_dropped == {"info": sum(per_stage)}


# --- secrets -------------------------------------------------------------------------------------------------


def test_secret_context_keys_are_redacted(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """Context keys that look like secrets are redacted in events and stdlib records, nested ones too."""
    caplog.set_level(logging.INFO, logger="joblogger")
    job = cap.job_logger("r", "j", secret_keys=["ssn"])
    job.info(
        "connecting",
        {"password": "hunter2", "Authorization": "Bearer abc", "db": {"user": "u", "api_key": "k1"}, "ssn": "123"},
        refresh_token="t0k",
        user="alice",
    )
    job.log_summary()
    event = cap.span("j").events[0]
    a = dict(event.attributes or {})
    assert a["password"] == a["Authorization"] == a["ssn"] == a["refresh_token"] == "[REDACTED]"
    assert a["user"] == "alice"
    assert "k1" not in str(a["db"]) and '"user": "u"' in str(a["db"])
    record = next(r for r in caplog.records if r.getMessage() == "connecting")
    assert record.password == "[REDACTED]"  # type: ignore[attr-defined]
    assert "hunter2" not in str(vars(record)) and "t0k" not in str(vars(record)) and "k1" not in str(vars(record))


# --- concurrency ------------------------------------------------------------------------------------------------


def test_threads_lose_no_counts(cap: Capture) -> None:
    """8 threads x 100k increment_progress/add_outcome on one logger count exactly."""
    job = cap.job_logger("r", "threaded")
    job.set_stage("S")
    n, threads = 100_000, 8
    start = threading.Barrier(threads)

    def work(k: int) -> None:
        start.wait()
        key = f"t{k % 2}"
        for _ in range(n):
            job.increment_progress()
            job.add_outcome("updates")
            job.add_outcome(key)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert job.current == n * threads
    summary = job.log_summary()
    assert summary.entities_processed == n * threads
    assert dict(summary.outcomes) == {"updates": n * threads, "t0": n * threads // 2, "t1": n * threads // 2}
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == n * threads
    assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "updates"}) == n * threads


def test_threads_each_running_jobs(cap: Capture) -> None:
    """8 threads each running 25 jobs: every stage span has its own run as parent and counts are exact."""

    def work(k: int) -> None:
        for j in range(25):
            with cap.job_logger(f"t{k}-{j}", "thread-job") as job:
                job.set_stage(f"stage-{k}-{j}")
                for _ in job.track(range(10)):
                    job.add_outcome("updates")

    workers = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    runs = {attrs(s)[semconv.JOB_RUN_ID]: s for s in cap.spans("thread-job")}
    assert len(runs) == 200
    for span in cap.spans():
        if span.name.startswith("stage-"):
            _, k, j = span.name.split("-")
            assert span.parent is not None and span.parent.span_id == runs[f"t{k}-{j}"].context.span_id
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 2000
    assert cap.metric_value(semconv.METRIC_OUTCOMES) == 2000
    assert cap.metric_value(semconv.METRIC_RUNS) == 200


def test_asyncio_tasks_each_running_a_job(cap: Capture) -> None:
    """200 asyncio tasks each running a job concurrently: exact counts and the right parents."""
    tracer = cap.tracer_provider.get_tracer("worker")

    async def one(i: int) -> None:
        with tracer.start_as_current_span(f"task-{i}"), cap.job_logger(f"run-{i}", "async-job") as job:
            job.set_total(i + 1, "items")
            job.set_stage(f"fetch-{i}")
            await asyncio.sleep(0)
            job.set_stage(f"process-{i}")
            for _ in range(i + 1):
                job.increment_progress()
                job.add_outcome("updates")
                await asyncio.sleep(0)
            job.info("done", i=i)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(200)))

    asyncio.run(main())
    spans = {s.name: s for s in cap.spans() if s.name != "async-job"}
    runs = {attrs(s)[semconv.JOB_RUN_ID]: s for s in cap.spans("async-job")}
    assert len(runs) == 200
    for i in range(200):
        run = runs[f"run-{i}"]
        assert run.parent is not None and run.parent.span_id == spans[f"task-{i}"].context.span_id
        for stage in (f"fetch-{i}", f"process-{i}"):
            assert spans[stage].parent is not None and spans[stage].parent.span_id == run.context.span_id
        assert attrs(run)[semconv.JOB_PROGRESS_CURRENT] == i + 1
        assert attrs(run)["job.outcomes.updates"] == i + 1
        [done] = [e for e in spans[f"process-{i}"].events if e.name == "done"]
        assert (done.attributes or {})["i"] == i
    total = sum(range(1, 201))
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == total
    assert cap.metric_value(semconv.METRIC_OUTCOMES) == total
    assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: "success"}) == 200
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 0


def test_fixture_is_registered(joblogger_capture: Capture) -> None:
    """The joblogger_capture pytest fixture gives in-memory providers."""
    with joblogger_capture.job_logger("r", "fixture-job") as job:
        job.add_outcome("skipped")
    assert joblogger_capture.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "skipped"}) == 1


def test_capture_helpers() -> None:
    """capture() exposes spans, a single span, events by level and metric values."""
    with capture() as c:
        with c.job_logger("r", "helper-job") as job:
            job.set_stage("S")
            job.warning("w", userId="1")
        assert [s.name for s in c.spans()] == ["S", "helper-job"]
        assert [(e.span, e.name, e.level) for e in c.events("warning")] == [("S", "w", "warning")]
        assert c.events("warning")[0].attributes["userId"] == "1"
        assert len(c.events()) == 2  # the warning and the summary line ("Starting: S" is no span event)
        with pytest.raises(AssertionError):
            c.span("missing")
        assert c.metric_value(semconv.METRIC_RUNS) == 1


def test_warning_handler_may_call_back_into_the_logger():
    """A logging handler that calls the job logger while handling a joblogger warning does not deadlock."""
    import logging
    import threading

    from joblogger.testing import capture

    with capture() as cap:
        job = cap.job_logger("r", "reentrant")
        seen: list[str] = []

        class Reenter(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "joblogger.warning" in record.__dict__:
                    seen.append(record.__dict__["joblogger.warning"])
                    job.info("handler saw a warning")

        handler = Reenter()
        logging.getLogger("joblogger").addHandler(handler)
        try:
            worker = threading.Thread(
                target=lambda: (job.set_total(10), job.increment_progress(5), job.set_progress(2), job.add_outcome(" "))
            )
            worker.start()
            worker.join(10)
            assert not worker.is_alive(), "deadlocked"
        finally:
            logging.getLogger("joblogger").removeHandler(handler)
        assert {"progress-backwards", "outcome-empty"} <= set(seen)
        job.log_summary()


def test_log_rate_limits_suppress_info_flood_and_report_it(cap: Capture) -> None:
    """An info flood beyond the rate limit is suppressed, still counted in metrics, and reported in the summary."""
    now = [0.0]
    job = cap.job_logger("r", "flood", clock=lambda: now[0], log_rate_limits={"info": (10.0, 5.0)})
    job.set_stage("S")
    for i in range(20):
        job.info(f"info {i}")  # burst of 5 passes, 15 suppressed
        job.warning(f"warning {i}")  # never limited
    now[0] = 1.0  # one second later the bucket refilled, up to its burst of 5
    for i in range(12):
        job.info(f"later {i}")
    summary = job.log_summary()
    stage = stage_span(cap, "S")
    assert levels(stage).count("info") == 5 + 5
    assert levels(stage).count("warning") == 20
    assert summary.logs_suppressed == {"info": 15 + 7}
    assert summary.line.endswith(" | Logs suppressed: 22")
    assert summary.to_dict()["logsSuppressed"] == {"info": 22}
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: "info"}) == 32


def test_rate_limits_never_apply_to_warnings_errors_or_milestones(cap: Capture, caplog) -> None:
    """A limit asked for warning/error/milestone is refused with one warning; those levels always pass."""
    job = cap.job_logger("r", "j", log_rate_limits={"warning": (1.0, 1.0), "error": (1.0, 1.0)})
    for i in range(10):
        job.warning(f"w{i}")
        job.error(f"e{i}")
    summary = job.log_summary()
    assert summary.logs_suppressed == {}
    assert summary.outcomes["warnings"] == 10 and summary.outcomes["errors"] == 10
    assert sum("apply to debug and info only" in r.getMessage() for r in caplog.records) == 1


def test_default_rate_limit_buckets_made_at_first_call_allow_a_full_burst(cap: Capture) -> None:
    """The default buckets are made at a level's first call (not at run start): still a burst of 200, then 20/s."""
    now = [0.0]
    job = cap.job_logger("r", "lazy-limits", clock=lambda: now[0])
    now[0] = 500.0  # long after the start: the first info() call makes the bucket, full
    for i in range(250):
        job.info(f"info {i}")
    now[0] = 501.0  # one second later: 20 more tokens
    for i in range(30):
        job.info(f"later {i}")
    for i in range(3):
        job.debug(f"debug {i}")  # a bucket of its own, made now
    summary = job.log_summary()
    assert summary.logs_suppressed == {"info": 50 + 10}
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: "info"}) == 280


def test_warning_prefix_names_the_run_with_single_line_labels(cap: Capture, caplog) -> None:
    """joblogger's own warnings start with ``joblogger [<job> <run>]: `` (made at the first warning, one line)."""
    job = cap.job_logger("run\n7", "multi\tline  job")
    job.add_outcome("", 1)  # an empty outcome key: one warning
    job.log_summary()
    messages = [r.getMessage() for r in caplog.records if hasattr(r, "joblogger.warning")]
    assert messages, "no joblogger warning"
    assert all(m.startswith("joblogger [multi line job run 7]: ") for m in messages), messages


@pytest.mark.parametrize(
    "value",
    ["plain", "two words", " lead", "trail ", "a  b", "tab\there", "new\nline", "\x7fdel", "nbsp\u00a0x",
     "é accent", "x" * 300, "", "   ", "a\x85b", "mixed \t\n end"],
)  # fmt: skip
def test_as_label_fast_path_matches_the_regex_rules(value: str) -> None:
    """as_label skips its regex passes for plain ASCII labels; every input gets the same label as with them."""
    import re

    from joblogger import _sanitize

    expected = re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f]+", " ", value)).strip()[: _sanitize.MAX_LABEL_CHARS]
    assert _sanitize.as_label(value) == expected


def test_a_runs_final_outcome_flush_waits_for_a_flush_in_flight():
    """The end-of-run flush never returns while another thread has marked outcomes flushed but not added them."""

    from joblogger._metrics import hub_for

    with capture() as cap:
        job = cap.job_logger("r-race", "flush-race")
        job.add_outcome("updates", 2500)
        hub = hub_for(cap.meter_provider)
        tally = job._tally
        in_flight = threading.Event()
        release = threading.Event()

        def background_flush_midway() -> None:
            # As the flusher thread: values marked flushed, the counter add still to come. It adds only what
            # it marked (the real background flusher may have flushed the 2,500 already on a loaded machine).
            with tally.flush_lock:
                outcomes = tally.outcomes()
                new = outcomes.get("updates", 0) - tally.flushed.get("updates", 0)
                tally.flushed.update(outcomes)
                in_flight.set()
                release.wait(5)
                if new:
                    hub.outcomes.add(new, {"job.name": tally.job, "job.outcome": "updates"}, context=tally.ctx)

        flusher = threading.Thread(target=background_flush_midway)
        flusher.start()
        assert in_flight.wait(5)
        final = threading.Thread(target=hub.flush_outcomes, args=(tally,))
        final.start()
        final.join(0.3)
        waited = final.is_alive()
        release.set()
        final.join(5)
        flusher.join(5)
        assert waited, "the final flush returned while another flush was still adding its values"
        job.log_summary()
        assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "updates"}) == 2500


def test_an_ended_run_is_freed_without_the_cyclic_garbage_collector(cap: Capture) -> None:
    """An ended run holds no reference cycle: it goes with its last reference (fixed cost, BENCHMARKS.md).

    Its stand-in progress counter referred back to the run, so every ended run (its spans,
    locks, tally) waited for the cyclic collector, which cost each run of a small task time.
    """
    import weakref

    gc.collect()
    gc.disable()
    try:
        job = cap.job_logger("r", "j")
        job.set_stage("S")
        job.increment_progress()
        job.log_summary()
        job.increment_progress()  # after the end: the stand-in counter still warns through the run
        ref = weakref.ref(job)
        del job
        assert ref() is None
    finally:
        gc.enable()


def test_summary_built_at_the_end_equals_the_dataclass_and_is_read_only(cap: Capture) -> None:
    """The summary a run builds equals ``Summary(...)`` with the same values; its mappings are read-only copies."""
    job = cap.job_logger("r", "j", clock=FakeClock())
    job.add_outcome("updates", 2)
    summary = job.log_summary()
    expected = Summary(summary.line, "success", 0, None, None, {"updates": 2}, 0.0)
    assert summary == expected
    assert repr(summary) == repr(expected)
    assert summary.to_dict() == expected.to_dict()
    for mapping in (summary.outcomes, summary.events_dropped, summary.logs_suppressed, summary.children):
        with pytest.raises(TypeError):
            mapping["x"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        summary.line = "changed"  # type: ignore[misc]


def test_runs_still_active_at_exit_are_retired_before_the_final_flush(cap: Capture) -> None:
    """At exit a run never ended counts as abandoned (its counts kept, no longer active), as when collected."""
    from joblogger import _metrics

    job = cap.job_logger("r", "left-running")
    job.increment_progress(4)
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 1
    _metrics._abandon_at_exit()  # what the interpreter runs at exit, before configure()'s shutdown
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 0
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 4
    assert job.ended is False  # the run itself is untouched (its span is not ended)


def test_threads_sharing_a_run_end_every_stage_and_lose_no_span_event(
    cap: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """Threads of one run log while others change its stage: every stage span ends, every warning is kept or counted.

    Before the fix, two threads' ``set_stage()`` at once left one of the new stage spans
    never ended (never exported, with its events), and a log call that picked the current
    stage span just before another thread ended it added its event to the ended span: the
    SDK dropped it ("Tried calling _add_event on an ended span") while joblogger counted it as kept.
    """
    job = cap.job_logger("r", "shared-stages")
    job.set_stage("S0")
    threads, rounds = 8, 400
    start = threading.Barrier(threads)

    def work(k: int) -> None:
        start.wait()
        for i in range(rounds):
            if i % 4 == k % 4:
                job.set_stage(f"S{i % 3}")
            job.warning("w", k=k, i=i)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so log calls and stage changes interleave
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(switch)
    job.log_summary()
    ended_span = [r.getMessage() for r in caplog.records if "ended span" in r.getMessage()]
    assert not ended_span, ended_span[:3]
    kept = [e for s in cap.spans() for e in s.events if e.name == "w"]
    dropped = [
        (e.attributes or {}).get(semconv.JOB_EVENTS_DROPPED_BY_LEVEL_PREFIX + "warning", 0)
        for s in cap.spans()
        for e in s.events
        if e.name == semconv.EVENT_EVENTS_DROPPED
    ]
    assert len(kept) + sum(dropped) == threads * rounds  # each call is an event or counted as dropped
    stages = [s for s in cap.spans() if s.name.startswith("S")]
    assert len(stages) == 1 + threads * rounds // 4  # S0, then one per set_stage() call


@pytest.mark.parametrize("produced", [True, False], ids=["configure-providers", "drop-in"])
def test_a_run_ending_during_a_collection_leaves_no_progress_point(
    produced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that ends after a collection listed the active runs gets no point (before: one with ``job.run.slot`` -1).

    Seen live with a drop-in MeterProvider: a series ``job_run_slot="-1"`` showing an ended
    run's stage and progress, a run that no slot names.
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from joblogger._metrics import Hub, produce_progress

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    if produced:
        produce_progress(provider)
    job = create_job_logger("r-1", "ending-job", meter_provider=provider)
    job.set_total(10, "rows")
    job.set_stage("Write")
    job.increment_progress(6)
    listed = Hub._runs

    def list_then_end(hub: Hub) -> list[Any]:
        runs = listed(hub)
        job.log_summary()  # another thread ends the run right after the collection listed it
        return runs

    monkeypatch.setattr(Hub, "_runs", list_then_end)
    points = job._hub.progress_points()
    assert points == [], points
