"""The JobLogger: stages, progress, levelled logs and outcomes of one job run.

How a call flows from the API to each signal is in docs/design.md. This module
holds construction, identity and the read-only state; each concern lives in a
mixin of its own module:

- ``_progress``: the per-item hot path (``increment_progress()``, ``add_outcome()``,
  ``track()``) only bumps ``itertools.count`` objects of the run's ``_tally.Tally``;
  counts reach OpenTelemetry through the metrics hub when the SDK collects.
- ``_stages``: one child span per stage (``_spans.SpanSlot`` keeps the event budget).
- ``_logcalls``: a span event plus a stdlib record per log call, rate-limited
  for debug and info (``_ratelimit``).
- ``_ending``: result, summary, final span attributes and run metrics.

Every public call is guarded: bad input is coerced or ignored with one warning
per kind on the ``joblogger`` logger, internal failures are logged once, and
nothing raises into the job. User exceptions pass through the context manager
untouched.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Tracer

from . import _children, _outcome_attrs, _redact, _registry, _sanitize, semconv
from ._childcalls import ChildrenMixin
from ._ending import EndingMixin
from ._identity import identity, looks_like_an_id
from ._levels import MILESTONE
from ._logcalls import LogCallsMixin
from ._metrics import hub_for
from ._progress import ProgressMixin
from ._ratelimit import DEFAULT_LOG_RATE_LIMITS, rate_limits
from ._schedule import Schedule
from ._schedule_env import default_schedule
from ._snapshots import ensure_checkpointer, snapshots_default
from ._spans import SpanSlot
from ._stages import StagesMixin
from ._state import DEFAULT_EVENT_BUDGET
from ._summary import Summary
from ._tally import Tally
from ._version import __version__

__all__ = ["MILESTONE", "JobLogger", "active_runs", "create_job_logger", "observe_runs"]

observe_runs = _registry.observe_runs


def active_runs() -> list[JobLogger]:
    """Runs of this process that have started and not yet ended, oldest first."""
    return cast("list[JobLogger]", _registry.active_runs())


#: joblogger's tracer of each tracer provider (get_tracer builds a new tracer on every call).
_TRACERS: weakref.WeakKeyDictionary[trace.TracerProvider, Tracer] = weakref.WeakKeyDictionary()


def _tracer_of(provider: trace.TracerProvider) -> Tracer:
    try:
        tracer = _TRACERS.get(provider)
        if tracer is None:
            tracer = _TRACERS[provider] = provider.get_tracer(semconv.SCOPE_NAME, __version__)
    except TypeError:  # a provider that cannot be weakly referenced
        return provider.get_tracer(semconv.SCOPE_NAME, __version__)
    return tracer


class JobLogger(ProgressMixin, StagesMixin, LogCallsMixin, EndingMixin, ChildrenMixin):
    """Live feedback for one run of a background job.

    Create it with :func:`create_job_logger`. All methods are synchronous, never
    block on I/O (except :meth:`save_outcome`, briefly) and never raise into the
    job. It is safe to share between threads and asyncio tasks.

    Example:
        >>> from joblogger import create_job_logger
        >>> with create_job_logger("run-1", "match-scores") as job:
        ...     job.set_total(3, "users")
        ...     job.set_stage("Scoring users")
        ...     for user in range(3):
        ...         job.increment_progress()
        ...     job.add_outcome("updates", 3)
        ...     job.progress_text
        'Scoring users (3 / 3)'
    """

    __slots__ = ("__weakref__",)

    def __init__(
        self,
        job_run_id: object = None,
        job_name: object = None,
        *,
        run_id: object = None,
        name: object = None,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
        attributes: Mapping[str, object] | None = None,
        debug_events: bool = False,
        event_budget: int = DEFAULT_EVENT_BUDGET,
        secret_keys: Iterable[str] = (),
        run_id_on_metrics: bool | None = None,
        snapshots: bool | None = None,
        log_rate_limits: Mapping[str, tuple[float, float]] | None = None,
        schedule: Schedule | None = None,
        parent: object = None,
    ) -> None:
        self._warn = _sanitize.Warner("joblogger: ")
        job_run_id, job_name = identity(job_run_id, job_name, run_id, name, self._warn)
        self._run_id = _sanitize.as_text(job_run_id, "job_run_id", self._warn, limit=_sanitize.MAX_LABEL_CHARS)
        name = _sanitize.as_text(job_name, "job_name", self._warn, limit=_sanitize.MAX_LABEL_CHARS)
        if not name.strip():
            self._warn("job_name-empty", "job_name is empty; using 'job'")
            name = "job"
        elif looks_like_an_id(name) and not looks_like_an_id(self._run_id):
            self._warn(
                "job_name-id",
                "job_name %r looks like a run id and job_run_id %r like a name: the order is "
                "create_job_logger(job_run_id, job_name); pass them as keywords (run_id=..., name=...)",
                name,
                self._run_id,
            )
        self._job_name = name
        run_id = self._run_id
        # The prefix is made at the first warning (most runs have none).
        self._warn.rename(lambda: f"joblogger [{_sanitize.as_label(name)} {_sanitize.as_label(run_id)}]: ")
        self._clock = clock
        # Re-entrant: an application's signal handler may call back into the logger while the
        # main thread holds the lock (a plain Lock deadlocked there).
        self._lock = threading.RLock()
        self._debug_events = bool(_sanitize.as_flag(debug_events, "debug_events", self._warn))
        budget = _sanitize.as_count(event_budget, "event_budget", self._warn)
        self._event_budget = DEFAULT_EVENT_BUDGET if budget is None else budget
        if isinstance(secret_keys, str):  # one key, not its characters
            secret_keys = (secret_keys,)
        self._secret_keys = _redact.DEFAULT_SECRET_KEYS
        if secret_keys is not None:
            try:
                extra_keys = [_redact.secret_fragment(str(k)) for k in secret_keys if k]
            except Exception:  # noqa: BLE001 - not an iterable of strings
                kind = type(secret_keys).__name__
                self._warn("secret_keys-type", "secret_keys should be strings, got %s; ignored", kind)
                extra_keys = []
            self._secret_keys += tuple(k for k in extra_keys if k)
        snap = None if snapshots is None else _sanitize.as_flag(snapshots, "snapshots", self._warn)
        self._snapshots = snapshots_default() if snap is None else snap
        self._limit_specs = rate_limits(
            DEFAULT_LOG_RATE_LIMITS if log_rate_limits is None else log_rate_limits, self._warn
        )
        self._limits = {}  # token buckets, made at the first debug/info call of their level
        self._tracer_provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = _tracer_of(self._tracer_provider)
        self._meter_provider = meter_provider or metrics.get_meter_provider()
        self._hub = hub_for(self._meter_provider)
        # Default: the run id labels progress only where it costs the process nothing (produced mode).
        by_id = None
        if run_id_on_metrics is not None:
            by_id = _sanitize.as_flag(run_id_on_metrics, "run_id_on_metrics", self._warn)
        self._run_id_on_metrics = self._hub.produced if by_id is None else by_id
        # Metric label values are single-line (the span keeps the name as given).
        label = self._hub.job_label(_sanitize.as_label(name) or "job")
        if label is None:
            self._warn("job-cap", "too many distinct job names; metrics report this one as 'other'")
            label = semconv.OUTCOME_OTHER
        self._tally = Tally(label, self._warn, self._hub.job_log_counters(label))
        self._ticks = self._tally.ticks
        self._outcome_ticks = self._tally.outcome_ticks
        self._outcome_labels = {}
        self._stage = None
        self._stage_name = None
        self._stage_label = semconv.STAGE_NONE
        self._message = None
        self._total = None
        self._entity_type = None
        self._phase_base = 0
        self._phase_adjust = 0
        self._summary = None
        #: span events dropped on stages that have ended, by level.
        self._dropped = {}
        #: the exception being handled when the run started (a retry's): not this run's failure.
        self._outer_exc = sys.exc_info()[1]
        self._ended_at = None
        self._context_token = None
        self._started = clock()
        self._rate_anchor = (self._started, 0)
        run_attrs: dict[str, Any] = {}
        if attributes is not None:
            run_attrs.update(_sanitize.context_attributes(attributes, self._secret_keys, self._warn, "attributes"))
        run_attrs[semconv.JOB_NAME] = name
        run_attrs[semconv.JOB_RUN_ID] = self._run_id
        run_attrs[semconv.JOB_RUN_SLOT] = self._hub.take_slot(self._tally)
        parent_ctx, links, parent_attrs, self._parent = _children.resolve_parent(parent, self._warn)
        run_attrs.update(parent_attrs)
        self._children = None
        span = self._tracer.start_span(name, context=parent_ctx, links=links, attributes=run_attrs)
        # Outcome attributes get the room the span's attribute limit leaves (decided once).
        attr_limit = _outcome_attrs.span_attribute_limit(span)
        self._snapshot_attr_limit = attr_limit
        self._outcome_room = _outcome_attrs.room(
            attr_limit, len(run_attrs) + _outcome_attrs.RESERVED_RUN_END_ATTRIBUTES
        )
        # tail=3: the dropped-events list, the summary line and the exception event.
        self._run = SpanSlot(span, self._event_budget, self._started, 0, tail=3)
        self._tally.ctx = self._run.ctx
        self._gauge_attrs = None  # built when a collection first reads them
        self._hub.start(self, self._tally)
        if self._parent is not None:
            self._parent._board().started(self)
        overlapping = self._start_schedule(schedule)
        _registry.add(self)
        for observer in _registry.observers():
            try:
                observer(self)
            except Exception as exc:  # noqa: BLE001 - an observer must not break the job
                self._internal_error("observer", exc)
        if self._snapshots:
            self._snapshot(self._run, semconv.SNAPSHOT_RUN_START)
            ensure_checkpointer(active_runs)  # type: ignore[arg-type]
        if overlapping and self._schedule is not None and self._schedule.overlap != "allow":
            self.warning(
                f"Run overlaps {overlapping} other active run(s) of {name} in this process "
                f"(schedule overlap policy: {self._schedule.overlap})"
            )

    def _start_schedule(self, schedule: object) -> int:
        """Report the run's start to the schedule gauges; returns the job's other active runs here."""
        self._schedule = None
        self._wall_started = 0.0
        if schedule is None:  # declare_schedule() for this job, else joblogger run --schedule
            schedule = self._hub.schedules.declared(self._tally.job) or default_schedule()
        if schedule is None:
            return 0
        if not isinstance(schedule, Schedule):
            self._warn(
                "schedule-type", "schedule= expects a joblogger.Schedule, got %s; ignored", type(schedule).__name__
            )
            return 0
        try:
            self._wall_started = time.time()
            others = self._hub.schedules.start(self._tally.job, schedule, self, self._wall_started)
        except Exception as exc:  # noqa: BLE001 - never raise into the job
            self._internal_error("schedule", exc)
            return 0
        self._schedule = schedule
        return others

    # --- read-only state -------------------------------------------------------
    @property
    def job_name(self) -> str:
        """The job's name, e.g. ``"match-scores"``."""
        return self._job_name

    @property
    def job_run_id(self) -> str:
        """This run's id."""
        return self._run_id

    @property
    def stage(self) -> str | None:
        """The current stage, or None before the first ``set_stage``."""
        return self._stage_name

    @property
    def message(self) -> str | None:
        """The current step's message, if any."""
        return self._message

    @property
    def started_at(self) -> float:
        """When the run started, on its clock (monotonic seconds by default)."""
        return self._started

    @property
    def ended(self) -> bool:
        """True once the run has ended."""
        return self._summary is not None

    @property
    def summary(self) -> Summary | None:
        """The summary once the run has ended, else None."""
        return self._summary

    @property
    def schedule(self) -> Schedule | None:
        """The run's :class:`joblogger.Schedule`, or None.

        Its own, else the one ``declare_schedule()`` gave its job, else ``joblogger run --schedule``'s.
        """
        return self._schedule

    @property
    def span(self) -> Span:
        """The run span (for attaching your own child spans)."""
        return self._run.span

    def get_elapsed_ms(self) -> float:
        """Milliseconds since the run started (frozen once it ended).

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j", clock=lambda: 5.0)
            >>> job.get_elapsed_ms()
            0.0
        """
        end = self._ended_at if self._ended_at is not None else self._clock()
        return max(0.0, (end - self._started) * 1000.0)

    def __repr__(self) -> str:
        return f"<JobLogger {self._job_name!r} run={self._run_id!r} {self.progress_text!r}>"


def create_job_logger(
    job_run_id: object = None,
    job_name: object = None,
    *,
    run_id: object = None,
    name: object = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    clock: Callable[[], float] = time.monotonic,
    attributes: Mapping[str, object] | None = None,
    debug_events: bool = False,
    event_budget: int = DEFAULT_EVENT_BUDGET,
    secret_keys: Iterable[str] = (),
    run_id_on_metrics: bool | None = None,
    snapshots: bool | None = None,
    log_rate_limits: Mapping[str, tuple[float, float]] | None = None,
    schedule: Schedule | None = None,
    parent: object = None,
) -> JobLogger:
    """Start a run of ``job_name`` and return its :class:`JobLogger`.

    The run span starts now, as a child of the current span. Use the logger as
    a context manager (``with`` or ``async with``), or end it with
    :meth:`JobLogger.log_summary` in a ``finally:`` or :meth:`JobLogger.end`.

    The order is run id first, then job name: ``create_job_logger(run_id, "match-scores")``.
    Keywords avoid mixing them up: ``create_job_logger(name="match-scores", run_id=run_id)``
    (``job_run_id=`` and ``job_name=`` work too). A job name that looks like a run
    id (a UUID, a long hex or decimal number) next to a run id that does not is
    reported once as a likely swap.

    Args:
        job_run_id: Identifies this run (goes on spans, logs and progress gauges); also ``run_id=``.
            Default: a random UUID (``uuid4().hex``).
        job_name: The job, e.g. ``"match-scores"`` (the run span's name); also ``name=``.
        run_id: Keyword form of ``job_run_id``.
        name: Keyword form of ``job_name``.
        tracer_provider: Defaults to the global provider.
        meter_provider: Defaults to the global provider.
        clock: Monotonic seconds; every duration joblogger computes uses it.
        attributes: Extra attributes for the run span (never for metrics).
        debug_events: Also export ``debug()`` calls as span events.
        event_budget: Span events joblogger adds per span before dropping low levels first.
        secret_keys: Extra context key fragments to redact (added to the defaults).
        run_id_on_metrics: Put ``job.run.id`` on progress gauges. Default: yes with the providers of
            ``joblogger.otlp.configure()`` / ``joblogger.testing`` (no SDK state per run; 4 Prometheus
            series per stage of each run), no with the application's own providers, where each run
            id would stay in the SDK for the process's life (the gauges carry ``job.run.slot``
            either way). See docs/telemetry.md, "Progress gauges in long-lived workers".
        snapshots: Emit snapshot spans (start markers and periodic checkpoints) so the run shows
            in trace backends before it ends; default: on once ``joblogger.otlp.configure()`` ran.
        log_rate_limits: ``{"debug"|"info": (per_second, burst)}``; records beyond the limit are
            suppressed (still counted in ``job.logs``) and reported in the summary. Default
            :data:`DEFAULT_LOG_RATE_LIMITS` (20/s with bursts of 200); ``{}`` turns limits off.
            Milestones, warnings and errors are never limited.
        schedule: The job's :class:`joblogger.Schedule` (cron or interval, grace, runtime limits,
            overlap policy): the run then exports the job's schedule gauges, from which the bundled
            alert rules detect missed, overdue, too-short, empty and overlapping runs
            (docs/schedules.md). Anything else is reported once and ignored.
        parent: The run this one is a child of (docs/children.md): a :class:`JobLogger` of this
            process (prefer ``parent.child(name)``), or the carrier string of ``job.child_carrier()``
            from another process. Default: the ``JOBLOGGER_PARENT`` environment variable's carrier
            when no span is current, else none.

    Example:
        >>> from joblogger import create_job_logger
        >>> with create_job_logger("run-42", "nightly-cleanup") as job:
        ...     job.set_stage("Scanning for stale records")
        ...     job.increment_progress(1250)
        ...     job.progress_text
        'Scanning for stale records (1,250 processed)'
    """
    return JobLogger(
        job_run_id,
        job_name,
        run_id=run_id,
        name=name,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        clock=clock,
        attributes=attributes,
        debug_events=debug_events,
        event_budget=event_budget,
        secret_keys=secret_keys,
        run_id_on_metrics=run_id_on_metrics,
        snapshots=snapshots,
        log_rate_limits=log_rate_limits,
        schedule=schedule,
        parent=parent,
    )
