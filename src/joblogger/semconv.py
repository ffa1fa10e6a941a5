"""Every name joblogger emits: span names, attribute keys, metric names and values.

This module is the single source of truth for the telemetry contract. Dashboards,
alert rules and tests read names from here (or are checked against it), and
``docs/telemetry.md`` documents each one.

Example:
    >>> from joblogger import semconv
    >>> semconv.METRIC_OUTCOMES
    'job.outcomes'
    >>> semconv.prometheus_name(semconv.METRIC_OUTCOMES)
    'job_outcomes_total'
"""

from __future__ import annotations

from typing import Final

#: Instrumentation scope of every span, metric and log record.
SCOPE_NAME: Final = "joblogger"

# --- attribute keys -------------------------------------------------------
JOB_NAME: Final = "job.name"
JOB_RUN_ID: Final = "job.run.id"
#: Per-process slot of an active run: the lowest index free among the process's active runs of
#: the same job when the run started (0, 1, ...). Bounded by concurrency; on progress gauges,
#: the run span and log records, so job + instance + slot finds the run.
JOB_RUN_SLOT: Final = "job.run.slot"
JOB_STAGE: Final = "job.stage"
JOB_RESULT: Final = "job.result"
JOB_ENTITY_TYPE: Final = "job.entity.type"
JOB_PROGRESS_TOTAL: Final = "job.progress.total"
JOB_PROGRESS_CURRENT: Final = "job.progress.current"
#: The outcome key on the ``job.outcomes`` metric (``errors``, ``rows_merged``).
JOB_OUTCOME: Final = "job.outcome"
#: Prefix of the per-outcome counts on run and snapshot spans: ``job.outcomes.<key>``, what
#: ``add_outcome`` recorded (the ``job.outcomes`` metric's counts, per run).
JOB_OUTCOMES_PREFIX: Final = "job.outcomes."
JOB_LOG_LEVEL: Final = "job.log.level"
#: Span events joblogger dropped on a span (its total), on the span.
JOB_EVENTS_DROPPED: Final = "job.events.dropped"
#: Prefix of the per-level dropped counts on the closing event: ``job.events.dropped_by_level.<level>``.
JOB_EVENTS_DROPPED_BY_LEVEL_PREFIX: Final = "job.events.dropped_by_level."
#: On a child run's span: the run id and job name of the run that started it (``job.child()``,
#: ``job.map()``, a carrier from ``job.child_carrier()``). Span attributes only, never metric labels.
JOB_PARENT_RUN_ID: Final = "job.parent.run.id"
JOB_PARENT_NAME: Final = "job.parent.name"
#: Prefix of the parent run span's children counts by state: ``job.children.ok``, ``.failed``,
#: ``.cancelled``, ``.running`` (children still running when the parent ended).
JOB_CHILDREN_PREFIX: Final = "job.children."
#: The environment variable a child process reads its parent's carrier from (``job.child_env()``).
ENV_PARENT: Final = "JOBLOGGER_PARENT"
#: The task header (Celery) that carries the producer run's carrier.
HEADER_PARENT: Final = "joblogger_parent"
ERROR_TYPE: Final = "error.type"
#: OpenTelemetry's process attribute: the exit code of a run ended by ``SystemExit``.
PROCESS_EXIT_CODE: Final = "process.exit.code"
#: OpenTelemetry's process attributes on the run span of a command under ``joblogger run``
#: (not Python): the command's process id and its executable's name (``pg_dump``).
PROCESS_PID: Final = "process.pid"
PROCESS_EXECUTABLE_NAME: Final = "process.executable.name"
#: OpenTelemetry's log attribute: the stream (``stdout``, ``stderr``) a command's output line came from.
LOG_IOSTREAM: Final = "log.iostream"
#: ``run.start``, ``stage.start`` or ``checkpoint``: present on snapshot spans only.
JOB_SNAPSHOT_KIND: Final = "job.snapshot.kind"
#: Prefix of per-level log call counts on run and snapshot spans: ``job.logs.<level>``.
JOB_LOGS_PREFIX: Final = "job.logs."
#: Run-span attributes set by the framework integrations (joblogger.integrations): the framework
#: (``celery``, ``rq``, ``dramatiq``, ``arq``, ``apscheduler``), the queue, the worker (its
#: framework name, e.g. ``celery@host``) and the attempt (1 for the first execution, 2 for the first retry).
JOB_FRAMEWORK: Final = "job.framework"
JOB_QUEUE: Final = "job.queue"
JOB_WORKER: Final = "job.worker"
JOB_ATTEMPT: Final = "job.attempt"

SNAPSHOT_RUN_START: Final = "run.start"
SNAPSHOT_STAGE_START: Final = "stage.start"
SNAPSHOT_CHECKPOINT: Final = "checkpoint"

# --- span event names ----------------------------------------------------
#: Name of the event that lists per-level dropped event counts when a span ends.
EVENT_EVENTS_DROPPED: Final = "job.events.dropped"

# --- job.result values ----------------------------------------------------
# Exactly the values of OpenTelemetry's CI/CD conventions for
# ``cicd.pipeline.result`` and ``cicd.pipeline.task.run.result``.
#: The run finished successfully.
RESULT_SUCCESS: Final = "success"
#: The run did not finish successfully (an exception escaped it, a non-zero exit code).
RESULT_FAILURE: Final = "failure"
#: The run failed because of the system running it, not the job (e.g. the worker was lost); explicit only.
RESULT_ERROR: Final = "error"
#: A timeout interrupted the run (a ``TimeoutError`` escaped it).
RESULT_TIMEOUT: Final = "timeout"
#: The run was cancelled (Ctrl-C, SIGTERM, asyncio cancellation).
RESULT_CANCELLATION: Final = "cancellation"
#: The run was skipped, e.g. a precondition was not met; explicit only.
RESULT_SKIP: Final = "skip"
RESULTS: Final = (RESULT_SUCCESS, RESULT_FAILURE, RESULT_ERROR, RESULT_TIMEOUT, RESULT_CANCELLATION, RESULT_SKIP)
#: Results that mean the run failed (alert rules and dashboards match these).
FAILED_RESULTS: Final = (RESULT_FAILURE, RESULT_ERROR, RESULT_TIMEOUT)

# --- job.log.level values --------------------------------------------------
LEVEL_DEBUG: Final = "debug"
LEVEL_INFO: Final = "info"
LEVEL_MILESTONE: Final = "milestone"
LEVEL_WARNING: Final = "warning"
LEVEL_ERROR: Final = "error"
LEVELS: Final = (LEVEL_DEBUG, LEVEL_INFO, LEVEL_MILESTONE, LEVEL_WARNING, LEVEL_ERROR)

# --- standard outcome keys ------------------------------------------------
OUTCOME_UPDATES: Final = "updates"
OUTCOME_INSERTS: Final = "inserts"
OUTCOME_DELETES: Final = "deletes"
OUTCOME_SKIPPED: Final = "skipped"
OUTCOME_ERRORS: Final = "errors"
OUTCOME_WARNINGS: Final = "warnings"
#: Outcome key that absorbs distinct keys beyond the per-job cap.
OUTCOME_OTHER: Final = "other"
#: Stage value that absorbs distinct stage names beyond the per-job cap (metrics only).
STAGE_OTHER: Final = "other"
#: Stage value on metrics before the first ``set_stage``.
STAGE_NONE: Final = ""

# --- metrics: (name, unit) -------------------------------------------------
METRIC_RUNS_ACTIVE: Final = "job.runs.active"
METRIC_RUNS: Final = "job.runs"
METRIC_RUN_DURATION: Final = "job.run.duration"
METRIC_STAGE_DURATION: Final = "job.stage.duration"
METRIC_PROGRESS_CURRENT: Final = "job.progress.current"
METRIC_PROGRESS_EXPECTED: Final = "job.progress.expected"
METRIC_PROGRESS_RATIO: Final = "job.progress.ratio"
METRIC_PROGRESS_ETA: Final = "job.progress.eta"
METRIC_ENTITIES_PROCESSED: Final = "job.entities.processed"
METRIC_OUTCOMES: Final = "job.outcomes"
METRIC_LOGS: Final = "job.logs"
# Schedule gauges (docs/schedules.md): one series per job, exported by processes that ran (or
# declared) a job with a Schedule. Times are unix seconds; the alert rules compare them with time().
METRIC_SCHEDULE_NEXT_EXPECTED: Final = "job.schedule.next_expected"
METRIC_SCHEDULE_INTERVAL: Final = "job.schedule.interval"
METRIC_SCHEDULE_GRACE: Final = "job.schedule.grace"
METRIC_SCHEDULE_MAX_RUNTIME: Final = "job.schedule.max_runtime"
METRIC_SCHEDULE_MIN_RUNTIME: Final = "job.schedule.min_runtime"
METRIC_SCHEDULE_OVERLAP_POLICY: Final = "job.schedule.overlap_policy"
METRIC_SCHEDULE_LAST_START: Final = "job.schedule.last_start"
METRIC_SCHEDULE_LAST_END: Final = "job.schedule.last_end"
METRIC_SCHEDULE_LAST_SUCCESS: Final = "job.schedule.last_success"
METRIC_SCHEDULE_LAST_DURATION: Final = "job.schedule.last_duration"
METRIC_SCHEDULE_LAST_PROCESSED: Final = "job.schedule.last_processed"
METRIC_SCHEDULE_ACTIVE_SINCE: Final = "job.schedule.active_since"

#: name -> (instrument kind, unit). Kinds: counter, updowncounter, histogram, gauge.
METRICS: Final[dict[str, tuple[str, str]]] = {
    METRIC_RUNS_ACTIVE: ("updowncounter", "{run}"),
    METRIC_RUNS: ("counter", "{run}"),
    METRIC_RUN_DURATION: ("histogram", "s"),
    METRIC_STAGE_DURATION: ("histogram", "s"),
    METRIC_PROGRESS_CURRENT: ("gauge", "{entity}"),
    METRIC_PROGRESS_EXPECTED: ("gauge", "{entity}"),
    METRIC_PROGRESS_RATIO: ("gauge", "1"),
    METRIC_PROGRESS_ETA: ("gauge", "s"),
    METRIC_ENTITIES_PROCESSED: ("counter", "{entity}"),
    METRIC_OUTCOMES: ("counter", "{outcome}"),
    METRIC_LOGS: ("counter", "{log}"),
    METRIC_SCHEDULE_NEXT_EXPECTED: ("gauge", "s"),
    METRIC_SCHEDULE_INTERVAL: ("gauge", "s"),
    METRIC_SCHEDULE_GRACE: ("gauge", "s"),
    METRIC_SCHEDULE_MAX_RUNTIME: ("gauge", "s"),
    METRIC_SCHEDULE_MIN_RUNTIME: ("gauge", "s"),
    METRIC_SCHEDULE_OVERLAP_POLICY: ("gauge", "{policy}"),
    METRIC_SCHEDULE_LAST_START: ("gauge", "s"),
    METRIC_SCHEDULE_LAST_END: ("gauge", "s"),
    METRIC_SCHEDULE_LAST_SUCCESS: ("gauge", "s"),
    METRIC_SCHEDULE_LAST_DURATION: ("gauge", "s"),
    METRIC_SCHEDULE_LAST_PROCESSED: ("gauge", "{entity}"),
    METRIC_SCHEDULE_ACTIVE_SINCE: ("gauge", "s"),
}

_UNIT_SUFFIX: Final = {"s": "seconds", "1": "ratio"}


def prometheus_name(metric: str) -> str:
    """Return the Prometheus name the collector gives an OTel metric.

    Dots become underscores; a known unit adds its suffix (``_seconds``; ``_ratio``
    for gauges of unit ``1``), curly-brace units add nothing, and counters get
    ``_total``. Histograms expose ``<name>_bucket``, ``_sum`` and ``_count``.

    Example:
        >>> prometheus_name("job.run.duration")
        'job_run_duration_seconds'
    """
    kind, unit = METRICS[metric]
    name = metric.replace(".", "_")
    suffix = _UNIT_SUFFIX.get(unit)
    if suffix == "ratio" and kind != "gauge":
        suffix = None
    if suffix and not name.endswith("_" + suffix):
        name = f"{name}_{suffix}"
    if kind == "counter":
        name += "_total"
    return name


def prometheus_label(attribute: str) -> str:
    """Return the Prometheus label name of a metric attribute key.

    Example:
        >>> prometheus_label("job.run.id")
        'job_run_id'
    """
    return attribute.replace(".", "_")
