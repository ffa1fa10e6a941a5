"""The public surface: joblogger.__all__, the semconv names of the telemetry contract, Prometheus names."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum

import joblogger
import joblogger.testing
from joblogger import semconv
from joblogger.testing import Capture


def test_all_is_pinned() -> None:
    """joblogger.__all__ is exactly the documented API and every name resolves."""
    assert sorted(joblogger.__all__) == sorted([
        "MILESTONE", "ChildReport", "JobLogger", "Schedule", "SignalExit", "Summary", "__version__",
        "create_job_logger", "current_job", "declare_schedule", "format_count", "format_duration", "job",
        "observe_runs",
    ])  # fmt: skip
    for name in joblogger.__all__:
        assert getattr(joblogger, name) is not None
    assert joblogger.MILESTONE == 23
    assert isinstance(joblogger.__version__, str) and joblogger.__version__


def test_testing_module_surface() -> None:
    """joblogger.testing exports the capture helper and its record types."""
    assert sorted(joblogger.testing.__all__) == ["Capture", "Event", "MetricPoint", "capture"]


def test_job_logger_public_methods() -> None:
    """JobLogger has every method and property of the contract."""
    for name in ("set_stage", "set_total", "increment_progress", "set_progress", "debug", "info", "milestone",
                 "warning", "error", "add_outcome", "save_outcome", "log_summary", "get_elapsed_ms", "track",
                 "stage", "progress_text", "percent", "outcomes", "__enter__", "__exit__", "end", "result",
                 "__aenter__", "__aexit__"):  # fmt: skip
        assert hasattr(joblogger.JobLogger, name), name


CONTRACT_ATTRIBUTES = {
    "SCOPE_NAME": "joblogger",
    "JOB_NAME": "job.name",
    "JOB_RUN_ID": "job.run.id",
    "JOB_RUN_SLOT": "job.run.slot",
    "JOB_STAGE": "job.stage",
    "JOB_RESULT": "job.result",
    "JOB_ENTITY_TYPE": "job.entity.type",
    "JOB_PROGRESS_TOTAL": "job.progress.total",
    "JOB_PROGRESS_CURRENT": "job.progress.current",
    "JOB_OUTCOME": "job.outcome",
    "JOB_OUTCOMES_PREFIX": "job.outcomes.",
    "JOB_LOG_LEVEL": "job.log.level",
    "JOB_EVENTS_DROPPED": "job.events.dropped",
    "JOB_EVENTS_DROPPED_BY_LEVEL_PREFIX": "job.events.dropped_by_level.",
    "JOB_SNAPSHOT_KIND": "job.snapshot.kind",
    "JOB_LOGS_PREFIX": "job.logs.",
    "EVENT_EVENTS_DROPPED": "job.events.dropped",
    "ERROR_TYPE": "error.type",
    "RESULT_SUCCESS": "success",
    "RESULT_FAILURE": "failure",
    "RESULT_CANCELLATION": "cancellation",
    "RESULT_ERROR": "error",
    "RESULT_TIMEOUT": "timeout",
    "RESULT_SKIP": "skip",
    "PROCESS_EXIT_CODE": "process.exit.code",
    "PROCESS_PID": "process.pid",
    "PROCESS_EXECUTABLE_NAME": "process.executable.name",
    "LOG_IOSTREAM": "log.iostream",
    "LEVEL_DEBUG": "debug",
    "LEVEL_INFO": "info",
    "LEVEL_MILESTONE": "milestone",
    "LEVEL_WARNING": "warning",
    "LEVEL_ERROR": "error",
    "OUTCOME_UPDATES": "updates",
    "OUTCOME_INSERTS": "inserts",
    "OUTCOME_DELETES": "deletes",
    "OUTCOME_SKIPPED": "skipped",
    "OUTCOME_ERRORS": "errors",
    "OUTCOME_WARNINGS": "warnings",
    "OUTCOME_OTHER": "other",
    "STAGE_OTHER": "other",
}


@pytest.mark.parametrize(("name", "value"), sorted(CONTRACT_ATTRIBUTES.items()))
def test_semconv_contract_names(name: str, value: str) -> None:
    """Each name of the telemetry contract has its pinned value in joblogger.semconv."""
    assert getattr(semconv, name) == value


def test_semconv_value_tuples() -> None:
    """Results and levels are listed in contract order."""
    # exactly OpenTelemetry's CI/CD vocabulary (cicd.pipeline.result, cicd.pipeline.task.run.result)
    assert semconv.RESULTS == ("success", "failure", "error", "timeout", "cancellation", "skip")
    assert semconv.FAILED_RESULTS == ("failure", "error", "timeout")
    assert semconv.LEVELS == ("debug", "info", "milestone", "warning", "error")


# name -> (kind, unit, Prometheus name) as the contract's table and the collector's translation give them
CONTRACT_METRICS = {
    "job.runs.active": ("updowncounter", "{run}", "job_runs_active"),
    "job.runs": ("counter", "{run}", "job_runs_total"),
    "job.run.duration": ("histogram", "s", "job_run_duration_seconds"),
    "job.stage.duration": ("histogram", "s", "job_stage_duration_seconds"),
    "job.progress.current": ("gauge", "{entity}", "job_progress_current"),
    "job.progress.expected": ("gauge", "{entity}", "job_progress_expected"),
    "job.progress.ratio": ("gauge", "1", "job_progress_ratio"),
    "job.progress.eta": ("gauge", "s", "job_progress_eta_seconds"),
    "job.entities.processed": ("counter", "{entity}", "job_entities_processed_total"),
    "job.outcomes": ("counter", "{outcome}", "job_outcomes_total"),
    "job.logs": ("counter", "{log}", "job_logs_total"),
    "job.schedule.next_expected": ("gauge", "s", "job_schedule_next_expected_seconds"),
    "job.schedule.interval": ("gauge", "s", "job_schedule_interval_seconds"),
    "job.schedule.grace": ("gauge", "s", "job_schedule_grace_seconds"),
    "job.schedule.max_runtime": ("gauge", "s", "job_schedule_max_runtime_seconds"),
    "job.schedule.min_runtime": ("gauge", "s", "job_schedule_min_runtime_seconds"),
    "job.schedule.overlap_policy": ("gauge", "{policy}", "job_schedule_overlap_policy"),
    "job.schedule.last_start": ("gauge", "s", "job_schedule_last_start_seconds"),
    "job.schedule.last_end": ("gauge", "s", "job_schedule_last_end_seconds"),
    "job.schedule.last_success": ("gauge", "s", "job_schedule_last_success_seconds"),
    "job.schedule.last_duration": ("gauge", "s", "job_schedule_last_duration_seconds"),
    "job.schedule.last_processed": ("gauge", "{entity}", "job_schedule_last_processed"),
    "job.schedule.active_since": ("gauge", "s", "job_schedule_active_since_seconds"),
}


def test_semconv_metrics_table() -> None:
    """semconv.METRICS lists exactly the contract's metrics with their kinds and units."""
    assert {name: (kind, unit) for name, (kind, unit, _) in CONTRACT_METRICS.items()} == semconv.METRICS
    constants = {v for k, v in vars(semconv).items() if k.startswith("METRIC_") and isinstance(v, str)}
    assert constants == set(CONTRACT_METRICS)


@pytest.mark.parametrize("metric", sorted(CONTRACT_METRICS))
def test_prometheus_name(metric: str) -> None:
    """prometheus_name gives the name the collector's Prometheus exporter uses for each metric."""
    assert semconv.prometheus_name(metric) == CONTRACT_METRICS[metric][2]


def test_prometheus_label() -> None:
    """Attribute keys become Prometheus labels with underscores."""
    assert semconv.prometheus_label(semconv.JOB_RUN_ID) == "job_run_id"
    assert semconv.prometheus_label(semconv.JOB_LOG_LEVEL) == "job_log_level"
    assert semconv.prometheus_label(semconv.JOB_NAME) == "job_name"


def _kind(data: object) -> str:
    if isinstance(data, Histogram):
        return "histogram"
    if isinstance(data, Gauge):
        return "gauge"
    assert isinstance(data, Sum)
    return "counter" if data.is_monotonic else "updowncounter"


def test_emitted_instruments_match_semconv(cap: Capture) -> None:
    """Every instrument joblogger emits has the name, kind and unit semconv declares, under scope joblogger."""
    job = cap.job_logger("r", "api-job", schedule=joblogger.Schedule(every="1h", max_runtime="1h", min_runtime=1))
    job.set_total(10, "users")
    job.set_stage("S")
    job.increment_progress(2)
    cap.clock.advance(1)  # type: ignore[union-attr]
    job.add_outcome("updates")
    job.info("i")
    live = cap.metric_reader.get_metrics_data()
    job.log_summary()
    ended = cap.metric_reader.get_metrics_data()
    seen: dict[str, tuple[str, str]] = {}
    for data in (live, ended):
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                assert sm.scope.name == semconv.SCOPE_NAME
                for metric in sm.metrics:
                    seen[metric.name] = (_kind(metric.data), metric.unit or "")
    assert seen == semconv.METRICS
