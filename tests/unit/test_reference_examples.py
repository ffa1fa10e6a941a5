"""Every example of the reference JobLogger guide, ported, with the exact telemetry each produces."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace

from joblogger import MILESTONE, JobLogger, format_count, semconv
from joblogger.testing import Capture

from ._helpers import FakeClock, assert_telemetry_valid, attrs


def live_log(records: list[logging.LogRecord]) -> list[str]:
    """The job's own stdlib records as the reference guide prints them: ``[LEVEL] message``."""
    return [f"[{r.levelname}] {r.getMessage()}" for r in records if not hasattr(r, "joblogger.warning")]


def run_and_stages(cap: Capture, job_name: str, stages: list[str]) -> tuple[Any, list[Any]]:
    """The run span and its stage spans (checked to be its children, in order, with the stage attributes).

    A stage span carries only ``job.stage``: ``job.name`` and ``job.run.id`` are the run span's.
    """
    run = cap.span(job_name)
    children = [s for s in cap.spans() if s.parent is not None and s.parent.span_id == run.context.span_id]
    children.sort(key=lambda s: s.start_time)
    assert [s.name for s in children] == stages
    for span in children:
        a = attrs(span)
        assert semconv.JOB_NAME not in a and semconv.JOB_RUN_ID not in a
        assert a[semconv.JOB_STAGE] == span.name
        assert span.context.trace_id == run.context.trace_id
    stage_ids = {s.context.span_id for s in children}
    assert not [s.name for s in cap.spans() if s.parent is not None and s.parent.span_id in stage_ids]
    return run, children


def event_view(span: Any) -> list[tuple[str, str | None]]:
    """(message, level) of each event of a span, in order."""
    return [(e.name, (e.attributes or {}).get(semconv.JOB_LOG_LEVEL)) for e in span.events]


def gauges(cap: Capture, name: str) -> list[Any]:
    """Data points of a progress gauge right now."""
    return [p for p in cap.metrics() if p.name == name]


def assert_run_metrics(cap: Capture, job: str, result: str, duration_s: float, stages: list[str]) -> None:
    """The run-level metrics of an ended run: one run, its duration, no longer active, no progress gauges."""
    assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_NAME: job, semconv.JOB_RESULT: result}) == 1
    durations = [p for p in cap.metrics() if p.name == semconv.METRIC_RUN_DURATION]
    assert len(durations) == 1 and durations[0].value == 1
    assert durations[0].attributes == {semconv.JOB_NAME: job, semconv.JOB_RESULT: result}
    assert durations[0].histogram_sum == pytest.approx(duration_s)
    assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE, **{semconv.JOB_NAME: job}) == 0
    stage_points = {p.attributes[semconv.JOB_STAGE]: p.value for p in cap.metrics()
                    if p.name == semconv.METRIC_STAGE_DURATION}  # fmt: skip
    assert stage_points == dict.fromkeys(stages, 1)
    for name in (semconv.METRIC_PROGRESS_CURRENT, semconv.METRIC_PROGRESS_EXPECTED,
                 semconv.METRIC_PROGRESS_RATIO, semconv.METRIC_PROGRESS_ETA):  # fmt: skip
        assert gauges(cap, name) == []
    for point in cap.metrics():
        if point.name not in (semconv.METRIC_PROGRESS_CURRENT, semconv.METRIC_PROGRESS_EXPECTED,
                              semconv.METRIC_PROGRESS_RATIO, semconv.METRIC_PROGRESS_ETA):  # fmt: skip
            assert semconv.JOB_RUN_ID not in point.attributes, point


# --- Quick start --------------------------------------------------------------------------------


def test_quick_start(cap: Capture, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Quick start: try/finally log_summary, total, stage, progress, the four log levels and outcomes."""
    caplog.set_level(logging.DEBUG, logger="joblogger")
    users = list(range(1, 21))
    logger = cap.job_logger("run-qs", "my-job-name")
    try:
        logger.set_total(len(users), "users")
        logger.set_stage("Scoring users")
        for _user in users:
            clock.advance(0.5)
            logger.increment_progress()
        logger.info("Processing batch 1", {"batchSize": 500})  # noqa: PLE1205 - not stdlib logging
        logger.milestone("Phase 1 complete", {"usersScored": 2500})
        logger.warning("User 1234 has no quiz data, skipping", {"userId": 1234})  # noqa: PLE1205
        logger.error("Failed to process user 5678", {"userId": 5678, "error": "timeout"})  # noqa: PLE1205
        logger.add_outcome("updates", 1)
        logger.add_outcome("inserts", 5)
        logger.add_outcome("deletes", 2)
        logger.add_outcome("skipped", 1)
    finally:
        summary = logger.log_summary()

    assert summary.line == (
        "Completed in 10s | Processed: 20 users | Updates: 1 | Inserts: 5 | Deletes: 2 | Skipped: 1"
        " | Errors: 1 | Warnings: 1"
    )
    assert summary.to_dict()["outcomeSummary"] == {
        "updates": 1, "inserts": 5, "deletes": 2, "skipped": 1, "errors": 1, "warnings": 1,
    }  # fmt: skip
    run, (stage,) = run_and_stages(cap, "my-job-name", ["Scoring users"])
    assert event_view(stage) == [  # "Starting: Scoring users" is a record only (the live log above)
        ("Processing batch 1", "info"),
        ("Phase 1 complete", "milestone"),
        ("User 1234 has no quiz data, skipping", "warning"),
        ("Failed to process user 5678", "error"),
    ]
    assert stage.events[0].attributes == {"batchSize": 500, semconv.JOB_LOG_LEVEL: "info"}
    assert stage.events[1].attributes == {"usersScored": 2500, semconv.JOB_LOG_LEVEL: "milestone"}
    assert stage.events[2].attributes == {"userId": 1234, semconv.JOB_LOG_LEVEL: "warning"}
    assert stage.events[3].attributes == {"userId": 5678, "error": "timeout", semconv.JOB_LOG_LEVEL: "error"}
    assert event_view(run) == [(summary.line, "milestone")]
    assert live_log(caplog.records) == [
        "[MILESTONE] Starting: Scoring users",
        "[INFO] Processing batch 1",
        "[MILESTONE] Phase 1 complete",
        "[WARNING] User 1234 has no quiz data, skipping",
        "[ERROR] Failed to process user 5678",
        f"[MILESTONE] {summary.line}",
    ]
    assert attrs(run) == {
        semconv.JOB_NAME: "my-job-name",
        semconv.JOB_RUN_SLOT: 0,
        semconv.JOB_RUN_ID: "run-qs",
        semconv.JOB_RESULT: "success",
        semconv.JOB_ENTITY_TYPE: "users",
        semconv.JOB_PROGRESS_TOTAL: 20,
        semconv.JOB_PROGRESS_CURRENT: 20,
        "job.outcomes.updates": 1,
        "job.outcomes.inserts": 5,
        "job.outcomes.deletes": 2,
        "job.outcomes.skipped": 1,
        # errors and warnings were only logged (the summary counts them): job.logs.<level>, not outcomes
        "job.logs.info": 1,
        "job.logs.milestone": 3,
        "job.logs.warning": 1,
        "job.logs.error": 1,
    }
    assert run.status.status_code == trace.StatusCode.UNSET
    assert_run_metrics(cap, "my-job-name", "success", 10.0, ["Scoring users"])
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED, **{semconv.JOB_ENTITY_TYPE: "users"}) == 20
    for key, n in {"updates": 1, "inserts": 5, "deletes": 2, "skipped": 1}.items():
        assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: key}) == n
    # warnings and errors were only logged, never add_outcome'd: they live in job.logs
    assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "errors"}) == 0
    logs = {lvl: cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: lvl}) for lvl in semconv.LEVELS}
    assert logs == {"debug": 0, "info": 1, "milestone": 3, "warning": 1, "error": 1}
    assert_telemetry_valid(cap)


# --- Overview ("What You Get") -------------------------------------------------------------------


def test_overview_what_you_get(cap: Capture, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """The overview's live view and outcome: 5,000 users, 150 skipped with a warning each, 2m 34s."""
    caplog.set_level(logging.INFO, logger="joblogger")
    no_quiz = set(list(range(1_000, 5_000, 26))[:150])
    with cap.job_logger("run-ov", "quiz-scores") as job:
        job.set_total(5_000, "users")
        job.set_stage("Scoring users")
        job.info(f"Will process {format_count(5_000)} users")
        for user in range(5_000):
            clock.advance(0.0309)
            if user in no_quiz:
                job.warning(f"User {user} has no quiz data, skipping", userId=user)
                job.add_outcome("skipped")
            else:
                job.add_outcome("updates")
            job.increment_progress()
            if user == 499:
                job.info("Batch 1-500 complete (avg score: 0.72)", avgScore=0.72)
            if user == 1_249:
                assert job.stage == "Scoring users"
                assert job.progress_text == "Scoring users (1,250 / 5,000)"
                assert job.percent == 25.0
            if user == 2_499:
                job.milestone(f"Phase 1 complete: {format_count(2_500)} users scored")
    assert job.summary is not None
    assert job.summary.line == (
        "Completed in 2m 34s | Processed: 5,000 users | Updates: 4,850 | Skipped: 150 | Warnings: 150"
    )
    assert live_log(caplog.records)[:4] == [
        "[MILESTONE] Starting: Scoring users",
        "[INFO] Will process 5,000 users",
        "[INFO] Batch 1-500 complete (avg score: 0.72)",
        "[WARNING] User 1000 has no quiz data, skipping",
    ]
    assert "[MILESTONE] Phase 1 complete: 2,500 users scored" in live_log(caplog.records)
    assert all(r.levelno == MILESTONE for r in caplog.records if r.getMessage().startswith("Phase 1"))
    assert_telemetry_valid(cap)


# --- Complete example: match-scores --------------------------------------------------------------

N_USERS = 5_000
SKIPPED = frozenset(range(1_100, 1_100 + 150 * 31, 31))  # 150 users with no valid candidates
FAILING = frozenset({1_005, 1_017})  # 2 users whose scoring fails


def compute_scores(user_id: int, successes_so_far: int) -> list[float]:
    """Scores for one user: none for SKIPPED, failure for FAILING; 235,750 scores over the rest."""
    if user_id in FAILING:
        raise RuntimeError(f"candidate service timed out for {user_id}")
    if user_id in SKIPPED:
        return []
    return [0.5] * (49 if successes_so_far < 3_046 else 48)


def run_match_scores(job: JobLogger, clock: FakeClock, checkpoints: dict[str, Any]) -> None:
    """The guide's runMatchScoreJobWithFeedback, line by line."""
    try:
        # ===== STAGE 1: Setup =====
        job.set_stage("Initializing", "Loading configuration")
        checkpoints["init"] = (job.progress_text, job.percent)
        clock.advance(4.5)
        job.info("Configuration loaded", {"algorithmVersion": "v1", "weights": {"skill": 0.7, "location": 0.3}})
        # ===== STAGE 2: Fetch Users =====
        job.set_stage("Fetching users", "Fetching from database")
        checkpoints["fetch"] = (job.progress_text, job.percent)
        users = list(range(1_000, 1_000 + N_USERS))
        job.set_total(len(users), "users")
        job.milestone(f"Loaded {format_count(len(users))} users to process")
        # ===== STAGE 3: Process Each User =====
        job.set_stage("Scoring users")
        total_scores = 0
        total_skipped = 0
        successes = 0
        for i, user_id in enumerate(users):
            try:
                scores = compute_scores(user_id, successes)
                if not scores:
                    total_skipped += 1
                    job.warning(f"No valid candidates for user {user_id}", {"userId": str(user_id)})
                    job.add_outcome("skipped", 1)
                else:
                    successes += 1
                    total_scores += len(scores)
                    job.add_outcome("updates", len(scores))
            except Exception as err:
                job.error(f"Failed to process user {user_id}", {"userId": str(user_id), "error": str(err)})
                job.add_outcome("errors", 1)
            # The guide's code updates progress inside the try, so failed users would not count; its
            # output ("Processed: 5,000", entitiesProcessed 5000) counts every user: we follow the output.
            job.increment_progress(1)
            clock.advance(0.03)
            if (i + 1) % 100 == 0:
                job.info(f"Batch {format_count(i + 1)}/{format_count(len(users))} complete", {
                    "avgScoresPerUser": total_scores / (i + 1), "skippedCount": total_skipped,
                })  # fmt: skip
            if i + 1 == 1_250:
                checkpoints["scoring"] = (job.progress_text, job.percent, job.eta_seconds, {
                    name: gauges(checkpoints["cap"], name) for name in (
                        semconv.METRIC_PROGRESS_CURRENT, semconv.METRIC_PROGRESS_EXPECTED,
                        semconv.METRIC_PROGRESS_RATIO, semconv.METRIC_PROGRESS_ETA)
                }, checkpoints["cap"].metric_value(semconv.METRIC_RUNS_ACTIVE))  # fmt: skip
        # ===== STAGE 4: Finalize =====
        job.set_stage("Finalizing", "Saving results")
        checkpoints["final"] = (job.progress_text, job.percent)
        job.milestone("All users processed", {
            "totalUsers": len(users), "totalScores": total_scores, "totalSkipped": total_skipped,
        })  # fmt: skip
        checkpoints["summary"] = job.log_summary()
    except Exception as err:  # pragma: no cover - the guide's catch block; this run never fails
        job.error("Job failed", {"error": str(err)})
        raise


def test_match_scores_complete_example(cap: Capture, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """The complete match-scores example: live progress, live logs, summary line, dict and telemetry."""
    caplog.set_level(logging.INFO, logger="joblogger")
    tracer = cap.tracer_provider.get_tracer("celery")
    checkpoints: dict[str, Any] = {"cap": cap}
    with tracer.start_as_current_span("celery.task run_match_scores") as task_span:
        job = cap.job_logger("run-2024-06-01-0300", "match-scores")
        run_match_scores(job, clock, checkpoints)
    summary = checkpoints["summary"]

    # Live progress updates
    assert checkpoints["init"] == ("Initializing (loading configuration)", None)
    assert checkpoints["fetch"] == ("Fetching users (fetching from database)", None)
    text, pct, eta, points, active = checkpoints["scoring"]
    assert (text, pct) == ("Scoring users (1,250 / 5,000)", 25.0)
    assert eta == pytest.approx(3_750 * 0.03)
    assert checkpoints["final"] == ("Finalizing (saving results)", 100.0)
    # Progress gauges while the run was active carry the run id
    gauge_attrs = {semconv.JOB_NAME: "match-scores", semconv.JOB_RUN_ID: "run-2024-06-01-0300",
                   semconv.JOB_STAGE: "Scoring users", semconv.JOB_ENTITY_TYPE: "users",
                   semconv.JOB_RUN_SLOT: 0}  # fmt: skip
    assert [(p.attributes, p.value) for p in points[semconv.METRIC_PROGRESS_CURRENT]] == [(gauge_attrs, 1_250)]
    assert [(p.attributes, p.value) for p in points[semconv.METRIC_PROGRESS_EXPECTED]] == [(gauge_attrs, 5_000)]
    assert [(p.attributes, p.value) for p in points[semconv.METRIC_PROGRESS_RATIO]] == [(gauge_attrs, 0.25)]
    [eta_point] = points[semconv.METRIC_PROGRESS_ETA]
    assert eta_point.attributes == gauge_attrs and eta_point.value == pytest.approx(112.5)
    assert active == 1

    # Summary line and dict
    line = "Completed in 2m 34s | Processed: 5,000 users | Updates: 235,750 | Skipped: 150 | Errors: 2 | Warnings: 150"
    assert summary.line == line
    assert str(summary) == line
    d = summary.to_dict()
    assert {k: d[k] for k in ("entitiesProcessed", "entitiesTotal", "outcomeSummary")} == {
        "entitiesProcessed": 5000,
        "entitiesTotal": 5000,
        "outcomeSummary": {"updates": 235750, "skipped": 150, "errors": 2, "warnings": 150},
    }
    assert list(d) == ["entitiesProcessed", "entitiesTotal", "outcomeSummary", "entityType", "durationMs", "result",
                       "line"]  # fmt: skip
    assert list(d["outcomeSummary"]) == ["updates", "skipped", "errors", "warnings"]
    assert (d["entityType"], d["result"], d["line"]) == ("users", "success", line)
    assert d["durationMs"] == pytest.approx(154_500.0)
    assert job.get_elapsed_ms() == pytest.approx(154_500.0)

    # Live logs (stdlib, in call order)
    log = live_log(caplog.records)
    assert log[:6] == [
        "[MILESTONE] Starting: Initializing",
        "[INFO] Configuration loaded",
        "[MILESTONE] Starting: Fetching users",
        "[MILESTONE] Loaded 5,000 users to process",
        "[MILESTONE] Starting: Scoring users",
        "[ERROR] Failed to process user 1005",
    ]
    assert log[-3:] == [
        "[MILESTONE] Starting: Finalizing",
        "[MILESTONE] All users processed",
        f"[MILESTONE] {line}",
    ]
    assert log.count("[INFO] Batch 100/5,000 complete") == 1
    assert sum(1 for x in log if x.startswith("[WARNING] No valid candidates")) == 150
    assert sum(1 for x in log if x.startswith("[ERROR]")) == 2
    warn_record = next(r for r in caplog.records if r.getMessage() == "No valid candidates for user 1100")
    assert warn_record.userId == "1100"  # type: ignore[attr-defined]
    assert getattr(warn_record, semconv.JOB_STAGE) == "Scoring users"
    assert getattr(warn_record, semconv.JOB_NAME) == "match-scores"
    assert getattr(warn_record, semconv.JOB_RUN_SLOT) == 0

    # Spans: run span child of the Celery task span; four stage spans under it
    run, stages = run_and_stages(cap, "match-scores", ["Initializing", "Fetching users", "Scoring users", "Finalizing"])
    assert run.parent is not None and run.parent.span_id == task_span.get_span_context().span_id
    assert attrs(run) == {
        semconv.JOB_NAME: "match-scores",
        semconv.JOB_RUN_ID: "run-2024-06-01-0300",
        semconv.JOB_RUN_SLOT: 0,
        semconv.JOB_RESULT: "success",
        semconv.JOB_ENTITY_TYPE: "users",
        semconv.JOB_PROGRESS_TOTAL: 5000,
        semconv.JOB_PROGRESS_CURRENT: 5000,
        "job.outcomes.updates": 235750,
        "job.outcomes.skipped": 150,
        "job.outcomes.errors": 2,
        **{k: v for k, v in attrs(run).items() if k.startswith(semconv.JOB_LOGS_PREFIX)},
    }
    assert attrs(run)["job.logs.warning"] == 150 and attrs(run)["job.logs.error"] == 2
    assert [attrs(s)[semconv.JOB_PROGRESS_CURRENT] for s in stages] == [0, 0, 5000, 0]
    init, fetch, scoring, final = stages
    assert event_view(init) == [("Configuration loaded", "info")]  # "Starting: ..." is a record, no event
    assert init.events[0].attributes == {
        "algorithmVersion": "v1", "weights": '{"location": 0.3, "skill": 0.7}', semconv.JOB_LOG_LEVEL: "info",
    }  # fmt: skip
    assert event_view(fetch) == [("Loaded 5,000 users to process", "milestone")]
    assert event_view(final) == [("All users processed", "milestone")]
    assert dict(final.events[0].attributes or {}) == {
        "totalUsers": 5000, "totalScores": 235750, "totalSkipped": 150, semconv.JOB_LOG_LEVEL: "milestone",
    }  # fmt: skip
    assert event_view(run) == [(line, "milestone")]

    # The scoring stage logged 150 + 2 + 50 events: over the default budget of 128, low levels go first
    emitted = {"warning": 150, "error": 2, "info": 50}
    assert len(scoring.events) <= semconv_budget()
    assert scoring.dropped_events == 0  # the SDK itself dropped nothing
    *kept, closing = scoring.events
    assert closing.name == semconv.EVENT_EVENTS_DROPPED
    kept_levels = [(e.attributes or {})[semconv.JOB_LOG_LEVEL] for e in kept]
    dropped = {
        k.removeprefix(semconv.JOB_EVENTS_DROPPED_BY_LEVEL_PREFIX): v for k, v in (closing.attributes or {}).items()
    }
    for level, n in emitted.items():
        assert kept_levels.count(level) + dropped.get(level, 0) == n, level
    assert attrs(scoring)[semconv.JOB_EVENTS_DROPPED] == sum(dropped.values()) == sum(emitted.values()) - len(kept)
    assert [e.name for e in kept if (e.attributes or {})[semconv.JOB_LOG_LEVEL] == "error"] == [
        "Failed to process user 1005", "Failed to process user 1017",
    ]  # fmt: skip
    assert dropped.get("info", 0) > 0  # info went before any warning was dropped
    first_dropped_warning = 2 + 150 - dropped.get("warning", 0)
    assert kept_levels.count("warning") + 2 == first_dropped_warning
    assert summary.events_dropped == dropped

    # Metrics
    assert_run_metrics(cap, "match-scores", "success", 154.5,
                       ["Initializing", "Fetching users", "Scoring users", "Finalizing"])  # fmt: skip
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 5000
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED, **{semconv.JOB_ENTITY_TYPE: "users"}) == 5000
    outcomes = {p.attributes[semconv.JOB_OUTCOME]: p.value for p in cap.metrics() if p.name == semconv.METRIC_OUTCOMES}
    assert outcomes == {"updates": 235750, "skipped": 150, "errors": 2}
    logs = {p.attributes[semconv.JOB_LOG_LEVEL]: p.value for p in cap.metrics() if p.name == semconv.METRIC_LOGS}
    assert logs == {"debug": 0, "info": 51, "milestone": 7, "warning": 150, "error": 2}
    assert_telemetry_valid(cap)


def semconv_budget() -> int:
    """The default per-span event budget."""
    from joblogger._logger import DEFAULT_EVENT_BUDGET

    return DEFAULT_EVENT_BUDGET


# --- API reference examples -------------------------------------------------------------------------


def test_api_reference_examples(cap: Capture, clock: FakeClock) -> None:
    """The API reference's one-liners: stages with messages, increments, set_progress, levels, custom outcomes."""
    job = cap.job_logger("run-api", "api-examples")
    job.set_stage("Scanning database")
    assert job.progress_text == "Scanning database"
    job.set_stage("Processing batch 1", "Computing scores")
    assert job.progress_text == "Processing batch 1 (computing scores)"
    job.set_total(5000, "users")
    job.increment_progress()
    assert job.current == 1
    job.increment_progress(100, "Batch complete")
    assert (job.current, job.progress_text) == (101, "Processing batch 1 (101 / 5,000): batch complete")
    job.set_progress(2500, "Halfway done")
    assert (job.current, job.percent) == (2500, 50.0)
    assert job.progress_text == "Processing batch 1 (2,500 / 5,000): halfway done"
    job.debug("Fetching user data", {"userId": 123})
    job.info("Batch processed", {"batchSize": 500, "avgScore": 0.72})
    job.milestone("Phase 1 complete", {"entitiesProcessed": 2500})
    job.warning("Missing quiz data", {"userId": 456})
    job.error("Failed to save", {"userId": 789, "error": "duplicate key"})
    for key in ("indexed", "cached", "merged", "validated", "updates", "errors", "warnings"):
        job.add_outcome(key, 1)
    clock.advance(61)
    assert job.get_elapsed_ms() == 61_000.0
    job.set_stage("Saving results")
    job.save_outcome()
    summary = job.log_summary()
    assert summary.line == (
        "Completed in 1m 01s | Processed: 2,500 users | Updates: 1 | Indexed: 1 | Cached: 1 | Merged: 1"
        " | Validated: 1 | Errors: 1 | Warnings: 1"
    )
    _, (scan, batch, saving) = run_and_stages(
        cap, "api-examples", ["Scanning database", "Processing batch 1", "Saving results"]
    )
    assert event_view(batch) == [
        ("Batch processed", "info"),
        ("Phase 1 complete", "milestone"),
        ("Missing quiz data", "warning"),
        ("Failed to save", "error"),
    ]  # the debug call is not an event by default
    assert attrs(batch)[semconv.JOB_PROGRESS_CURRENT] == 2500
    assert [attrs(s)[semconv.JOB_PROGRESS_CURRENT] for s in (scan, saving)] == [0, 0]
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: "debug"}) == 1
    assert_telemetry_valid(cap)


# --- Pattern 1: known total ----------------------------------------------------------------------------


def test_pattern_known_total(cap: Capture, clock: FakeClock) -> None:
    """Known total: "Processing users (1,250 / 5,000)" at 25%, and every user counted as an update."""
    seen: dict[str, Any] = {}
    with cap.job_logger("run-p1", "known-total") as logger:
        users = range(5_000)
        logger.set_total(len(users), "users")
        logger.set_stage("Processing users")
        seen["start"] = logger.progress_text
        for user in users:
            clock.now = 1000 + (user + 1) / 100  # set, not accumulated: exact
            logger.increment_progress()
            logger.add_outcome("updates", 1)
            if user == 1_249:
                seen["mid"] = (logger.progress_text, logger.percent)
                seen["gauges"] = {p.name: p.value for p in cap.metrics() if p.name.startswith("job.progress")}
    assert seen["start"] == "Processing users (0 / 5,000)"
    assert seen["mid"] == ("Processing users (1,250 / 5,000)", 25.0)
    assert seen["gauges"] == {
        semconv.METRIC_PROGRESS_CURRENT: 1250,
        semconv.METRIC_PROGRESS_EXPECTED: 5000,
        semconv.METRIC_PROGRESS_RATIO: 0.25,
        semconv.METRIC_PROGRESS_ETA: pytest.approx(37.5),
    }
    assert logger.summary is not None
    assert logger.summary.line == "Completed in 50s | Processed: 5,000 users | Updates: 5,000"
    run, (stage,) = run_and_stages(cap, "known-total", ["Processing users"])
    assert attrs(run)[semconv.JOB_PROGRESS_TOTAL] == 5000
    assert attrs(run)["job.outcomes.updates"] == 5000
    assert attrs(stage)[semconv.JOB_PROGRESS_CURRENT] == 5000
    assert_run_metrics(cap, "known-total", "success", 50.0, ["Processing users"])
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED, **{semconv.JOB_ENTITY_TYPE: "users"}) == 5000
    assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "updates"}) == 5000
    assert_telemetry_valid(cap)


# --- Pattern 2: unknown total ---------------------------------------------------------------------------


def test_pattern_unknown_total(cap: Capture, clock: FakeClock) -> None:
    """Unknown total: "Scanning for orphaned files (1,250 processed)", no percent, no expected/ratio/ETA gauges."""

    def scan_directory() -> Iterator[str]:
        for i in range(1_250):
            clock.now = 1000 + (i + 1) / 50
            yield f"/tmp/orphan-{i}"

    seen: dict[str, Any] = {}
    with cap.job_logger("run-p2", "orphan-cleanup") as logger:
        logger.set_stage("Scanning for orphaned files")
        for found, _file in enumerate(scan_directory(), start=1):
            logger.increment_progress()
            logger.add_outcome("deletes", 1)
            if found % 100 == 0:
                logger.info(f"Found {found} orphaned files so far")
        seen["end"] = (logger.progress_text, logger.percent, logger.eta_seconds)
        seen["gauges"] = {p.name: (p.attributes, p.value) for p in cap.metrics() if p.name.startswith("job.progress")}
    assert seen["end"] == ("Scanning for orphaned files (1,250 processed)", None, None)
    assert seen["gauges"] == {
        semconv.METRIC_PROGRESS_CURRENT: (
            {semconv.JOB_NAME: "orphan-cleanup", semconv.JOB_RUN_ID: "run-p2",
             semconv.JOB_STAGE: "Scanning for orphaned files", semconv.JOB_ENTITY_TYPE: "entities",
             semconv.JOB_RUN_SLOT: 0},
            1250,
        )
    }  # fmt: skip
    assert logger.summary is not None
    assert logger.summary.line == "Completed in 25s | Processed: 1,250 entities | Deletes: 1,250"
    assert logger.summary.to_dict()["entitiesTotal"] is None
    run, (stage,) = run_and_stages(cap, "orphan-cleanup", ["Scanning for orphaned files"])
    assert semconv.JOB_PROGRESS_TOTAL not in attrs(run)
    assert attrs(run)[semconv.JOB_ENTITY_TYPE] == "entities"
    assert [e.name for e in stage.events][0:2] == ["Found 100 orphaned files so far", "Found 200 orphaned files so far"]
    assert len(stage.events) == 12
    assert_run_metrics(cap, "orphan-cleanup", "success", 25.0, ["Scanning for orphaned files"])
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED, **{semconv.JOB_ENTITY_TYPE: "entities"}) == 1250
    assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "deletes"}) == 1250
    assert_telemetry_valid(cap)


# --- Pattern 3: multi-phase ---------------------------------------------------------------------------


def test_pattern_multi_phase(cap: Capture, clock: FakeClock) -> None:
    """Multi-phase: "Fetching data", "Processing records (500 / 1,000)" at 50%, then "Saving results"."""
    seen: list[tuple[str, float | None]] = []
    with cap.job_logger("run-p3", "multi-phase") as logger:
        logger.set_stage("Fetching data")
        seen.append((logger.progress_text, logger.percent))
        data = list(range(1_000))
        clock.advance(2)
        logger.milestone(f"Fetched {format_count(len(data))} records")
        logger.set_total(len(data), "records")
        logger.set_stage("Processing records")
        for i, _record in enumerate(data):
            logger.increment_progress()
            if i == 499:
                seen.append((logger.progress_text, logger.percent))
        clock.advance(3)
        logger.set_stage("Saving results")
        seen.append((logger.progress_text, logger.percent))
        logger.milestone("Results saved successfully")
    assert seen == [
        ("Fetching data", None),
        ("Processing records (500 / 1,000)", 50.0),
        ("Saving results", 100.0),
    ]
    assert logger.summary is not None
    assert logger.summary.line == "Completed in 5.0s | Processed: 1,000 records"
    _, stages = run_and_stages(cap, "multi-phase", ["Fetching data", "Processing records", "Saving results"])
    assert [attrs(s)[semconv.JOB_PROGRESS_CURRENT] for s in stages] == [0, 1000, 0]
    assert [e.name for e in stages[0].events] == ["Fetched 1,000 records"]
    assert [e.name for e in stages[2].events] == ["Results saved successfully"]
    assert_run_metrics(cap, "multi-phase", "success", 5.0, ["Fetching data", "Processing records", "Saving results"])
    assert_telemetry_valid(cap)


def test_pattern_multi_phase_with_two_totals(cap: Capture, clock: FakeClock) -> None:
    """A second set_total restarts the phase count; the summary reports the final phase, metrics count all."""
    with cap.job_logger("run-p3b", "two-phases") as logger:
        logger.set_total(300, "users")
        logger.set_stage("Scoring users")
        for _ in range(300):
            logger.increment_progress()
        assert logger.progress_text == "Scoring users (300 / 300)"
        logger.set_total(1_000, "records")
        assert (logger.current, logger.total, logger.percent) == (0, 1000, 0.0)
        logger.set_stage("Processing records")
        assert logger.progress_text == "Processing records (0 / 1,000)"
        for _ in range(400):
            logger.increment_progress()
        assert logger.progress_text == "Processing records (400 / 1,000)"
        logger.increment_progress(600)
        assert logger.processed_total == 1_300
    assert logger.summary is not None
    assert logger.summary.line == "Completed in 0ms | Processed: 1,000 records"
    assert logger.summary.to_dict()["entitiesProcessed"] == 1000
    assert logger.summary.to_dict()["entitiesTotal"] == 1000
    run, stages = run_and_stages(cap, "two-phases", ["Scoring users", "Processing records"])
    assert [attrs(s)[semconv.JOB_PROGRESS_CURRENT] for s in stages] == [300, 1000]
    assert (attrs(run)[semconv.JOB_PROGRESS_CURRENT], attrs(run)[semconv.JOB_PROGRESS_TOTAL]) == (1000, 1000)
    assert attrs(run)[semconv.JOB_ENTITY_TYPE] == "records"
    processed = {p.attributes[semconv.JOB_ENTITY_TYPE]: p.value for p in cap.metrics()
                 if p.name == semconv.METRIC_ENTITIES_PROCESSED}  # fmt: skip
    assert processed == {"users": 300, "records": 1000}
    assert_telemetry_valid(cap)


# --- Pattern 4: batch processing ------------------------------------------------------------------------


@pytest.mark.parametrize("with_message", [False, True])
def test_pattern_batch_processing(cap: Capture, clock: FakeClock, with_message: bool) -> None:
    """Batches: "Processing in batches (2,500 / 10,000)" at 25%, or with ": batch 5 complete" as the message."""
    seen: dict[int, tuple[str, float | None]] = {}
    with cap.job_logger("run-p4", "batch-job") as logger:
        users = list(range(10_000))
        logger.set_total(len(users), "users")
        logger.set_stage("Processing in batches")
        batch_size = 500
        for i in range(0, len(users), batch_size):
            batch = users[i : i + batch_size]
            clock.advance(1)
            number = i // batch_size + 1
            if with_message:
                logger.increment_progress(len(batch), f"Batch {number} complete")
            else:
                logger.increment_progress(len(batch))
            logger.info(f"Batch {number} complete", {"processed": i + len(batch), "total": len(users)})
            seen[number] = (logger.progress_text, logger.percent)
    suffix = ": batch 5 complete" if with_message else ""
    assert seen[5] == (f"Processing in batches (2,500 / 10,000){suffix}", 25.0)
    assert seen[20][1] == 100.0
    assert logger.summary is not None
    assert logger.summary.line == "Completed in 20s | Processed: 10,000 users"
    _, (stage,) = run_and_stages(cap, "batch-job", ["Processing in batches"])
    assert len(stage.events) == 20
    assert stage.events[4].name == "Batch 5 complete"
    assert stage.events[4].attributes == {"processed": 2500, "total": 10000, semconv.JOB_LOG_LEVEL: "info"}
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 10_000
    assert_run_metrics(cap, "batch-job", "success", 20.0, ["Processing in batches"])
    assert_telemetry_valid(cap)


# --- Pattern 5: cleanup / reconciliation -------------------------------------------------------------------


def test_pattern_cleanup_reconciliation(cap: Capture, clock: FakeClock) -> None:
    """Cleanup: "Scanning for stale records (1,250 processed)", deletes counted, failures as warnings."""
    stale = list(range(1, 1_251))

    def find_stale_records(limit: int) -> list[int]:
        batch = stale[:limit]
        del stale[:limit]
        clock.advance(0.5)
        return batch

    seen: list[str] = []
    with cap.job_logger("run-p5", "stale-cleanup") as logger:
        logger.set_stage("Scanning for stale records")
        deleted = 0
        errors = 0
        while True:
            stale_records = find_stale_records(100)
            if not stale_records:
                break
            for record in stale_records:
                if record % 250 == 0:
                    errors += 1
                    logger.warning(f"Failed to delete record {record}", {"recordId": record, "error": "locked"})
                else:
                    deleted += 1
                    logger.add_outcome("deletes", 1)
            logger.info(f"Deleted {deleted} stale records so far")
            logger.increment_progress(len(stale_records))
            seen.append(logger.progress_text)
        logger.milestone(f"Cleanup complete: {deleted} records deleted, {errors} errors")
    assert seen[-1] == "Scanning for stale records (1,250 processed)"
    assert seen[0] == "Scanning for stale records (100 processed)"
    assert logger.summary is not None
    assert logger.summary.line == "Completed in 7.0s | Processed: 1,250 entities | Deletes: 1,245 | Warnings: 5"
    _, (stage,) = run_and_stages(cap, "stale-cleanup", ["Scanning for stale records"])
    assert stage.events[-1].name == "Cleanup complete: 1245 records deleted, 5 errors"
    warnings = [e for e in stage.events if (e.attributes or {}).get(semconv.JOB_LOG_LEVEL) == "warning"]
    assert dict(warnings[0].attributes or {}) == {
        "recordId": 250, "error": "locked", semconv.JOB_LOG_LEVEL: "warning",
    }  # fmt: skip
    assert len(warnings) == 5
    assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "deletes"}) == 1245
    assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: "warning"}) == 5
    assert_run_metrics(cap, "stale-cleanup", "success", 7.0, ["Scanning for stale records"])
    assert_telemetry_valid(cap)


# --- Best practice: the guide's failure handling --------------------------------------------------------


def test_finally_log_summary_on_failure(cap: Capture, clock: FakeClock) -> None:
    """The guide's try/finally log_summary while the job raises marks the run failed and keeps the exception."""
    boom = ValueError("database went away")
    with pytest.raises(ValueError) as info:
        logger = cap.job_logger("run-bp", "fragile")
        try:
            logger.set_stage("Processing data")
            logger.increment_progress(3)
            clock.advance(2)
            raise boom
        finally:
            logger.log_summary()
    assert info.value is boom
    assert logger.summary is not None
    assert logger.summary.result == "failure"
    assert logger.summary.line == "Failed after 2.0s | Processed: 3 entities | Errors: 1"
    run, (stage,) = run_and_stages(cap, "fragile", ["Processing data"])
    assert attrs(run)[semconv.JOB_RESULT] == "failure"
    assert attrs(run)[semconv.ERROR_TYPE] == "ValueError"
    assert run.status.status_code == trace.StatusCode.ERROR
    assert event_view(stage)[-1] == ("Job failed: ValueError: database went away", "error")
    assert_run_metrics(cap, "fragile", "failure", 2.0, ["Processing data"])
    assert_telemetry_valid(cap)
