"""The JobLogger: stages, progress, levelled logs and outcomes of one job run.

Design notes (see docs/design.md for the longer story):

- The hot path (``increment_progress()``, ``add_outcome()``, ``track()``) only
  bumps ``itertools.count`` objects: ``next()`` on one is a single C call that
  holds the GIL throughout, so concurrent threads lose no counts and no lock is
  taken. Counts reach OpenTelemetry through observable instruments
  (``_metrics.Hub``) when the SDK collects.
- Stage changes, log calls and the end of the run call the tracer directly;
  they are per stage or per message, never per item.
- Every public call is guarded: bad input is coerced or ignored with one
  warning per kind on the ``joblogger`` logger, internal failures are logged
  once, and nothing raises into the job. User exceptions pass through the
  context manager untouched.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

from . import _format, _sanitize, semconv
from ._metrics import Hub, hub_for
from ._snapshots import ensure_checkpointer, snapshots_default
from ._summary import Summary
from ._version import __version__

__all__ = ["MILESTONE", "JobLogger", "Tally", "active_runs", "create_job_logger", "observe_runs"]

#: stdlib logging level of ``milestone()``, between INFO (20) and WARNING (30).
#: OpenTelemetry's log bridge maps it to severity INFO4 (12).
MILESTONE = 25
logging.addLevelName(MILESTONE, "MILESTONE")

_LEVELNO = {
    semconv.LEVEL_DEBUG: logging.DEBUG,
    semconv.LEVEL_INFO: logging.INFO,
    semconv.LEVEL_MILESTONE: MILESTONE,
    semconv.LEVEL_WARNING: logging.WARNING,
    semconv.LEVEL_ERROR: logging.ERROR,
}
_LOW_LEVELS = frozenset((semconv.LEVEL_DEBUG, semconv.LEVEL_INFO))
#: LogRecord attributes that context keys must not overwrite.
_RESERVED_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
#: Distinct outcome keys / stage names per job before new ones fold into "other".
MAX_OUTCOME_KEYS = 100
MAX_STAGES = 100
DEFAULT_EVENT_BUDGET = 128

_pylog = logging.getLogger("joblogger")
_pylog.addHandler(logging.NullHandler())

#: Runs that have started and not ended, for terminal views and other UIs.
_LIVE: weakref.WeakSet[JobLogger] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


#: Callables told about every new run (terminal views); called outside any lock.
_RUN_OBSERVERS: list[Callable[[JobLogger], None]] = []


def observe_runs(callback: Callable[[JobLogger], None]) -> Callable[[], None]:
    """Call ``callback(job)`` for every run started from now on; returns the function that stops it."""
    _RUN_OBSERVERS.append(callback)

    def remove() -> None:
        if callback in _RUN_OBSERVERS:
            _RUN_OBSERVERS.remove(callback)

    return remove


def _forget_parent_runs() -> None:
    """In a forked child, the parent's runs are not ours to show."""
    global _LIVE_LOCK
    _LIVE_LOCK = threading.Lock()
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_runs)


def active_runs() -> list[JobLogger]:
    """Runs of this process that have started and not yet ended, oldest first."""
    with _LIVE_LOCK:
        runs = list(_LIVE)
    return sorted(runs, key=lambda run: run._started)


_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


def _ticks_value(counter: itertools.count[int]) -> int:
    """Current value of an ``itertools.count`` without advancing it."""
    return int(repr(counter)[6:-1])


class Tally:
    """Counts of one run, written lock-free on the hot path and read by the metrics hub."""

    __slots__ = (
        "ctx",
        "ended",
        "entity_type",
        "extra",
        "flush_lock",
        "flushed",
        "job",
        "log_ticks",
        "outcome_extra",
        "outcome_ticks",
        "slot",
        "ticks",
        "type_base",
    )

    def __init__(self, job: str) -> None:
        self.job = job
        self.ended = False
        #: job.run.slot while the run is active (set by the hub), -1 once freed.
        self.slot = -1
        #: +1 increments of progress (the per-item path).
        self.ticks = itertools.count()
        #: progress added by bulk increments and forward ``set_progress`` jumps.
        self.extra = 0
        #: processed counts attributed to entity types before the current one.
        self.type_base: dict[str, int] = {}
        self.entity_type = _format.DEFAULT_ENTITY_TYPE
        self.outcome_ticks: dict[str, itertools.count[int]] = {}
        self.outcome_extra: dict[str, int] = {}
        self.log_ticks = {level: itertools.count() for level in semconv.LEVELS}
        #: outcome values already added to the SDK counter, and the context they are added in.
        self.flushed: dict[str, int] = {}
        self.flush_lock = threading.Lock()
        self.ctx: otel_context.Context | None = None

    def processed(self) -> int:
        """Entities processed over all phases."""
        return _ticks_value(self.ticks) + self.extra

    def outcomes(self) -> dict[str, int]:
        """Outcome totals by key, in first-recorded order."""
        extra = self.outcome_extra
        return {key: _ticks_value(t) + extra.get(key, 0) for key, t in list(self.outcome_ticks.items())}

    def logs(self) -> dict[str, int]:
        """Log calls by level."""
        return {level: _ticks_value(t) for level, t in self.log_ticks.items()}

    def points(self, metric: str) -> dict[str, int]:
        """Counter values of one metric, by attribute value (entity type, outcome key or level)."""
        if metric == semconv.METRIC_OUTCOMES:
            return self.outcomes()
        if metric == semconv.METRIC_LOGS:
            return self.logs()
        base = {kind: value for kind, value in self.type_base.items() if value}
        current = self.entity_type
        base[current] = base.get(current, 0) + self.processed() - sum(self.type_base.values())
        return base

    def items(self) -> Iterator[tuple[str, str, int]]:
        """Every counter value as ``(metric, attribute value, count)``."""
        for metric in (semconv.METRIC_ENTITIES_PROCESSED, semconv.METRIC_OUTCOMES, semconv.METRIC_LOGS):
            for key, value in self.points(metric).items():
                yield metric, key, value


class _SpanSlot:
    """A span with joblogger's own event budget.

    Debug and info events may use the budget only up to ``limit - reserve``;
    milestones, warnings and errors may use all of it but the last ``tail``
    slots: one is kept for the event that lists what was dropped and, on the
    run span, one each for the summary line and the exception event, so the
    span never holds more than ``limit`` events.
    """

    __slots__ = ("ctx", "dropped", "high_cap", "low_cap", "processed_at_start", "span", "started_at", "used")

    def __init__(self, span: Span, limit: int, started_at: float, processed_at_start: int, tail: int = 1) -> None:
        self.span = span
        self.ctx = trace.set_span_in_context(span)
        self.used = 0
        self.dropped: dict[str, int] = {}
        reserve = max(1, limit // 4)
        self.high_cap = max(0, limit - tail)
        self.low_cap = max(0, self.high_cap - reserve)
        self.started_at = started_at
        self.processed_at_start = processed_at_start

    def admit(self, level: str) -> bool:
        """Take one slot for an event of ``level``, or count it as dropped."""
        cap = self.low_cap if level in _LOW_LEVELS else self.high_cap
        if self.used < cap:
            self.used += 1
            return True
        self.dropped[level] = self.dropped.get(level, 0) + 1
        return False

    def close(self, attributes: Mapping[str, Any], status: Status | None = None) -> None:
        """Report dropped events, set final attributes and end the span."""
        span = self.span
        if self.dropped:
            total = sum(self.dropped.values())
            span.set_attribute(semconv.JOB_EVENTS_DROPPED, total)
            span.add_event(
                semconv.EVENT_EVENTS_DROPPED,
                {semconv.JOB_EVENTS_DROPPED_PREFIX + k: v for k, v in self.dropped.items()},
            )
        span.set_attributes(dict(attributes))
        if status is not None:
            span.set_status(status)
        span.end()


#: Records per second and burst allowed per level before further records are suppressed.
#: Only debug and info can be limited; warnings, errors and milestones never are.
DEFAULT_LOG_RATE_LIMITS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {semconv.LEVEL_DEBUG: (20.0, 200.0), semconv.LEVEL_INFO: (20.0, 200.0)}
)


class _TokenBucket:
    """Allows ``rate`` records per second with bursts of ``burst``; counts what it suppresses."""

    __slots__ = ("burst", "clock", "last", "rate", "suppressed", "tokens")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.last = clock()
        self.suppressed = 0

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.suppressed += 1
        return False


def _rate_limits(
    limits: Mapping[str, tuple[float, float]], clock: Callable[[], float], warn: _sanitize.Warner
) -> dict[str, _TokenBucket]:
    buckets: dict[str, _TokenBucket] = {}
    for level, spec in dict(limits).items():
        if level not in _LOW_LEVELS:
            warn("rate-limit-level", "log rate limits apply to debug and info only; %r ignored", level)
            continue
        if spec is None:
            continue
        try:
            rate, burst = float(spec[0]), float(spec[1])
        except (TypeError, ValueError, IndexError):
            warn("rate-limit-spec", "log rate limit for %s should be (per_second, burst); ignored", level)
            continue
        if rate > 0 and burst >= 1:
            buckets[level] = _TokenBucket(rate, burst, clock)
    return buckets


class _Closed:
    """Stands in for the progress counter once the run has ended: warns once, counts nothing."""

    __slots__ = ("_owner",)

    def __init__(self, owner: JobLogger) -> None:
        self._owner = owner

    def __next__(self) -> int:
        self._owner._warn("ended", "the run has ended (log_summary was called); call ignored")
        return 0


def _guarded(method: _F) -> _F:
    """Turn an internal failure of ``method`` into one logged error and a no-op."""

    @functools.wraps(method)
    def wrapper(self: JobLogger, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - never raise into the job
            self._internal_error(method.__name__, exc)
            return None

    return wrapper  # type: ignore[return-value]


def _quietly(flush: Callable[..., object], timeout_millis: int) -> None:
    """Run a provider's force_flush on a helper thread; its failures are logged, never raised."""
    try:
        flush(timeout_millis=timeout_millis)
    except Exception as exc:  # noqa: BLE001
        _pylog.warning("joblogger: save_outcome flush failed: %r", exc)


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _exception_message(exc: BaseException) -> str:
    """``str(exc)`` made safe: never raises, UTF-8 encodable, bounded."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not stop the run from ending
        text = f"<unprintable {type(exc).__name__}>"
    return _sanitize.truncate(_sanitize.utf8(text), _sanitize.MAX_VALUE_CHARS)


class JobLogger:
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

    __slots__ = (
        "__weakref__",
        "_clock",
        "_context_token",
        "_debug_events",
        "_dropped",
        "_ended_at",
        "_entity_type",
        "_event_budget",
        "_finalizer",
        "_gauge_attrs",
        "_hub",
        "_job_name",
        "_limits",
        "_lock",
        "_message",
        "_meter_provider",
        "_outcome_labels",
        "_outcome_ticks",
        "_outer_exc",
        "_phase_adjust",
        "_phase_base",
        "_rate_anchor",
        "_run",
        "_run_id",
        "_run_id_on_metrics",
        "_secret_keys",
        "_snapshots",
        "_stage",
        "_stage_label",
        "_stage_name",
        "_started",
        "_summary",
        "_tally",
        "_ticks",
        "_total",
        "_tracer",
        "_warn",
    )

    def __init__(
        self,
        job_run_id: object,
        job_name: object,
        *,
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
    ) -> None:
        self._warn = _sanitize.Warner("joblogger: ")
        self._run_id = _sanitize.as_text(job_run_id, "job_run_id", self._warn, limit=_sanitize.MAX_LABEL_CHARS)
        name = _sanitize.as_text(job_name, "job_name", self._warn, limit=_sanitize.MAX_LABEL_CHARS)
        if not name.strip():
            self._warn("job_name-empty", "job_name is empty; using 'job'")
            name = "job"
        self._job_name = name
        self._warn = _sanitize.Warner(f"joblogger [{name} {self._run_id}]: ")
        self._clock = clock
        self._lock = threading.Lock()
        self._debug_events = bool(debug_events)
        budget = _sanitize.as_count(event_budget, "event_budget", self._warn)
        self._event_budget = DEFAULT_EVENT_BUDGET if budget is None else budget
        if isinstance(secret_keys, str):  # one key, not its characters
            secret_keys = (secret_keys,)
        self._secret_keys = _sanitize.DEFAULT_SECRET_KEYS + tuple(str(k).lower() for k in secret_keys if k)
        self._snapshots = snapshots_default() if snapshots is None else bool(snapshots)
        self._limits = _rate_limits(
            DEFAULT_LOG_RATE_LIMITS if log_rate_limits is None else log_rate_limits, clock, self._warn
        )
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(semconv.SCOPE_NAME, __version__)
        self._meter_provider = meter_provider or metrics.get_meter_provider()
        self._hub: Hub = hub_for(self._meter_provider)
        # Default: the run id labels progress only where it costs the process nothing (produced mode).
        self._run_id_on_metrics = self._hub.produced if run_id_on_metrics is None else bool(run_id_on_metrics)
        label = self._hub.job_label(name)
        if label is None:
            self._warn("job-cap", "too many distinct job names; metrics report this one as 'other'")
            label = semconv.OUTCOME_OTHER
        self._tally = Tally(label)
        self._ticks: Any = self._tally.ticks
        self._outcome_ticks: dict[str, itertools.count[int]] = self._tally.outcome_ticks
        self._outcome_labels: dict[object, str] = {}
        self._stage: _SpanSlot | None = None
        self._stage_name: str | None = None
        self._stage_label = semconv.STAGE_NONE
        self._message: str | None = None
        self._total: int | None = None
        self._entity_type: str | None = None
        self._phase_base = 0
        self._phase_adjust = 0
        self._summary: Summary | None = None
        #: span events dropped on stages that have ended, by level.
        self._dropped: dict[str, int] = {}
        #: the exception being handled when the run started (a retry's): not this run's failure.
        self._outer_exc: BaseException | None = sys.exc_info()[1]
        self._ended_at: float | None = None
        self._context_token: object | None = None
        self._started = clock()
        self._rate_anchor = (self._started, 0)
        run_attrs: dict[str, Any] = {}
        if attributes:
            run_attrs.update(_sanitize.context_attributes(attributes, self._secret_keys, self._warn))
        run_attrs[semconv.JOB_NAME] = name
        run_attrs[semconv.JOB_RUN_ID] = self._run_id
        run_attrs[semconv.JOB_RUN_SLOT] = self._hub.take_slot(self._tally)
        span = self._tracer.start_span(name, attributes=run_attrs)
        # tail=3: the dropped-events list, the summary line and the exception event.
        self._run = _SpanSlot(span, self._event_budget, self._started, 0, tail=3)
        self._tally.ctx = self._run.ctx
        self._gauge_attrs: dict[str, Any] = {}
        self._refresh_gauge_attrs()
        self._finalizer = self._hub.start(self, self._tally)
        with _LIVE_LOCK:
            _LIVE.add(self)
        for observer in list(_RUN_OBSERVERS):
            try:
                observer(self)
            except Exception as exc:  # noqa: BLE001 - an observer must not break the job
                self._internal_error("observer", exc)
        if self._snapshots:
            self._snapshot(self._run, semconv.SNAPSHOT_RUN_START)
            ensure_checkpointer(active_runs)  # type: ignore[arg-type]

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
    def current(self) -> int:
        """Entities processed in the current phase."""
        return self._tally.processed() - self._phase_base + self._phase_adjust

    @property
    def processed_total(self) -> int:
        """Entities processed over all phases."""
        return self._tally.processed()

    @property
    def total(self) -> int | None:
        """Expected entities in the current phase, or None when unknown."""
        return self._total

    @property
    def entity_type(self) -> str | None:
        """What is being processed ("users"), if known."""
        return self._entity_type

    @property
    def percent(self) -> float | None:
        """Percentage done (0-100) when the total is known, else None."""
        return _format.percent(self.current, self._total)

    @property
    def progress_text(self) -> str:
        """The progress line, e.g. ``"Scoring users (1,250 / 5,000)"``."""
        stage_slot = self._stage
        counting = stage_slot is not None and self.processed_total > stage_slot.processed_at_start
        return _format.progress_text(
            self._stage_name or self._job_name, self.current, self._total, self._message, counting=counting
        )

    @property
    def rate(self) -> float | None:
        """Entities per second since the current stage or phase began, once measurable."""
        anchor_time, anchor_count = self._rate_anchor
        now = self._ended_at if self._ended_at is not None else self._clock()
        return _format.rate(self.current - anchor_count, now - anchor_time)

    @property
    def eta_seconds(self) -> float | None:
        """Estimated seconds left in the current phase, when estimable."""
        if self._ended_at is not None:
            return None
        return _format.eta(self.current, self._total, self.rate)

    @property
    def outcomes(self) -> Mapping[str, int]:
        """Outcome counts as the summary shows them (a read-only snapshot)."""
        return MappingProxyType(_format.ordered_outcomes(self._recorded_outcomes(), self._tally.logs()))

    @property
    def log_counts(self) -> Mapping[str, int]:
        """Log calls so far, by level (a read-only snapshot)."""
        return MappingProxyType(self._tally.logs())

    @property
    def ended(self) -> bool:
        """True once the run has ended."""
        return self._summary is not None

    @property
    def summary(self) -> Summary | None:
        """The summary once the run has ended, else None."""
        return self._summary

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

    # --- progress (hot path) ------------------------------------------------------
    def increment_progress(self, count: int = 1, message: str | None = None) -> None:
        """Advance progress by ``count`` (default 1); ``message`` describes the step.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.increment_progress(); job.increment_progress(99, "Batch complete")
            >>> job.current
            100
        """
        try:
            if count == 1 and message is None:
                next(self._ticks)
                return
        except Exception:  # noqa: BLE001, S110 - odd input takes the slow path below
            pass
        self._increment(count, message)

    @_guarded
    def _increment(self, count: object, message: object) -> None:
        if self._ended_call():
            return
        n = _sanitize.as_count(count, "count", self._warn)
        text = None if message is None else _sanitize.as_text(message, "message", self._warn)
        with self._lock:
            if n:
                self._tally.extra += n
            if text is not None:
                self._message = text

    def add_outcome(self, key: str, count: int = 1) -> None:
        """Add ``count`` (default 1) to the outcome counter ``key``.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.add_outcome("updates", 5); job.add_outcome("skipped")
            >>> dict(job.outcomes)
            {'updates': 5, 'skipped': 1}
        """
        try:
            if count == 1:
                next(self._outcome_ticks[key])
                return
        except Exception:  # noqa: BLE001, S110 - new keys and odd input take the slow path
            pass
        self._add_outcome(key, count)

    @_guarded
    def _add_outcome(self, key: object, count: object) -> None:
        if self._ended_call():
            return
        n = _sanitize.as_count(count, "outcome count", self._warn)
        if n is None:
            return
        with self._warn.deferred(), self._lock:
            label = self._outcome_label(key)
            extra = self._tally.outcome_extra
            extra[label] = extra.get(label, 0) + n

    def _outcome_label(self, key: object) -> str:
        """Label of an outcome key (caller holds the lock); registers new keys."""
        try:
            cached = self._outcome_labels.get(key)
        except TypeError:  # unhashable key
            cached = None
        if cached is not None:
            return cached
        text = _sanitize.as_text(key, "outcome key", self._warn, limit=_sanitize.MAX_LABEL_CHARS)
        label = _sanitize.as_label(text)
        if not label:
            self._warn("outcome-empty", "empty outcome key; counted as 'other'")
            label = semconv.OUTCOME_OTHER
        if label not in self._outcome_ticks:
            if not self._hub.cap_value("outcome", self._tally.job, label, MAX_OUTCOME_KEYS):
                self._warn(
                    "outcome-cap", "more than %d distinct outcome keys; the rest count as 'other'", MAX_OUTCOME_KEYS
                )
                label = semconv.OUTCOME_OTHER
            self._outcome_ticks.setdefault(label, itertools.count())
        try:
            self._outcome_labels[key] = label
        except TypeError:
            pass
        return label

    def _recorded_outcomes(self) -> dict[str, int]:
        return self._tally.outcomes()

    @_guarded
    def set_progress(self, current: int, message: str | None = None) -> None:
        """Set the current phase's progress to ``current`` (for batch work).

        Moving forward counts the difference as processed. Moving backwards is
        allowed for display (e.g. a retried batch) but never un-counts
        ``job.entities.processed``; it is reported once as a warning.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.set_total(10_000); job.set_progress(2_500, "Halfway done")
            >>> job.percent
            25.0
        """
        if self._ended_call():
            return
        n = _sanitize.as_count(current, "progress", self._warn)
        text = None if message is None else _sanitize.as_text(message, "message", self._warn)
        with self._warn.deferred(), self._lock:
            if n is not None:
                delta = n - self.current
                if delta > 0:
                    self._tally.extra += delta
                elif delta < 0:
                    self._warn("progress-backwards", "set_progress moved backwards (%d -> %d)", self.current, n)
                    self._phase_adjust += delta
                if self._total is not None and n > self._total:
                    self._warn("progress-over-total", "progress %d exceeds the total %d", n, self._total)
            if text is not None:
                self._message = text

    @_guarded
    def set_total(self, total: int, entity_type: str | None = None) -> None:
        """Set how many entities this phase will process (enables percent and ETA).

        Calling it again after progress was counted against an earlier total
        starts a new phase: the phase count restarts at 0, while
        ``job.entities.processed`` keeps counting everything.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.set_total(5000, "users"); job.set_stage("Scoring users")
            >>> job.progress_text
            'Scoring users (0 / 5,000)'
        """
        if self._ended_call():
            return
        n = _sanitize.as_count(total, "total", self._warn)
        kind = None
        if entity_type is not None:
            kind = _sanitize.as_label(_sanitize.as_text(entity_type, "entity_type", self._warn)) or None
        now = self._clock()
        with self._lock:
            if n is not None:
                if self._total is not None and self.current != 0:
                    self._phase_base = self._tally.processed()
                    self._phase_adjust = 0
                    self._rate_anchor = (now, 0)
                self._total = n
            if kind is not None and kind != self._entity_type:
                tally = self._tally
                processed = tally.processed()
                attributed = sum(tally.type_base.values())
                old = tally.entity_type
                tally.type_base[old] = tally.type_base.get(old, 0) + processed - attributed
                tally.entity_type = kind
                self._entity_type = kind
            self._refresh_gauge_attrs()

    def track(self, iterable: Iterable[_T], total: int | None = None, stage: str | None = None) -> Iterator[_T]:
        """Yield the items of ``iterable``, advancing progress by one per item.

        The total comes from ``total`` or ``len(iterable)`` when available;
        ``stage`` starts a stage first. Without either, a total set earlier is
        kept while nothing was counted against it yet (``set_total(n)`` then
        ``track(cursor)``); otherwise a new phase starts with an unknown total.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> sum(job.track([1, 2, 3], stage="Adding"))
            6
            >>> job.progress_text
            'Adding (3 / 3)'
        """
        if stage is not None:
            self.set_stage(stage)
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - not sized: unknown total
                total = None
        if total is not None:
            self.set_total(total)
        else:
            self._unknown_total_phase()
        for item in iterable:
            yield item
            next(self._ticks)

    @_guarded
    def _unknown_total_phase(self) -> None:
        """Start a phase of unknown total if the current one counted against a known total."""
        if self._summary is not None:
            return
        now = self._clock()
        with self._lock:
            if self._total is not None and self.current != 0:
                self._phase_base = self._tally.processed()
                self._phase_adjust = 0
                self._rate_anchor = (now, 0)
                self._total = None

    # --- stages ----------------------------------------------------------------------
    @_guarded
    def set_stage(self, stage: str, message: str | None = None) -> None:
        """End the current stage and start ``stage``; logs the milestone ``Starting: <stage>``.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.set_stage("Initializing", "Loading configuration")
            >>> job.progress_text
            'Initializing (loading configuration)'
        """
        if self._ended_call():
            return
        name = _sanitize.as_text(stage, "stage", self._warn, limit=_sanitize.MAX_VALUE_CHARS)
        if not name.strip():
            self._warn("stage-empty", "empty stage name; using '(unnamed stage)'")
            name = "(unnamed stage)"
        text = None if message is None else _sanitize.as_text(message, "message", self._warn)
        now = self._clock()
        label = self._hub_stage_label(name)
        with self._lock:
            old, old_label = self._stage, self._stage_label
            self._stage = None
        if old is not None:
            self._close_stage(old, old_label, now)
        span = self._tracer.start_span(
            name,
            context=self._run.ctx,
            attributes={
                semconv.JOB_NAME: self._job_name,
                semconv.JOB_RUN_ID: self._run_id,
                semconv.JOB_STAGE: name,
            },
        )
        with self._lock:
            self._stage = _SpanSlot(span, self._event_budget, now, self._tally.processed())
            self._tally.ctx = self._stage.ctx
            self._stage_name = name
            self._stage_label = label
            self._message = text
            self._rate_anchor = (now, self.current)
            self._refresh_gauge_attrs()
            slot = self._stage
        if self._snapshots:
            self._snapshot(slot, semconv.SNAPSHOT_STAGE_START)
        self._log(semconv.LEVEL_MILESTONE, f"Starting: {name}", None, None)

    def _snapshot(self, slot: _SpanSlot, kind: str) -> None:
        """Emit an already-ended snapshot span under ``slot`` (see ``_snapshots``)."""
        attrs: dict[str, Any] = {
            semconv.JOB_SNAPSHOT: True,
            semconv.JOB_SNAPSHOT_KIND: kind,
            semconv.JOB_NAME: self._job_name,
            semconv.JOB_RUN_ID: self._run_id,
            semconv.JOB_STAGE: self._stage_name or "",
            semconv.JOB_PROGRESS_CURRENT: self.current,
            semconv.JOB_ENTITY_TYPE: self._entity_type or _format.DEFAULT_ENTITY_TYPE,
        }
        if self._total is not None:
            attrs[semconv.JOB_PROGRESS_TOTAL] = self._total
        for key, value in self.outcomes.items():
            attrs[semconv.JOB_OUTCOME_PREFIX + key] = value
        for level, value in self._tally.logs().items():
            attrs[semconv.JOB_LOGS_PREFIX + level] = value
        name = self._stage_name if kind != semconv.SNAPSHOT_RUN_START and self._stage_name else self._job_name
        self._tracer.start_span(f"{name} (snapshot)", context=slot.ctx, attributes=attrs).end()

    def _checkpoint(self) -> None:
        """Called by the checkpoint thread: snapshot the current stage of a run still in progress."""
        if not self._snapshots or self._summary is not None:
            return
        self._snapshot(self._stage or self._run, semconv.SNAPSHOT_CHECKPOINT)

    def _hub_stage_label(self, name: str) -> str:
        label = _sanitize.as_label(name)
        if self._hub.cap_value("stage", self._tally.job, label, MAX_STAGES):
            return label
        self._warn("stage-cap", "more than %d distinct stage names; metrics report the rest as 'other'", MAX_STAGES)
        return semconv.STAGE_OTHER

    def _close_stage(self, slot: _SpanSlot, label: str, now: float) -> None:
        processed = self._tally.processed() - slot.processed_at_start
        slot.close({semconv.JOB_PROGRESS_CURRENT: _sanitize.clamp_int(processed)})
        with self._lock:
            for level, n in slot.dropped.items():
                self._dropped[level] = self._dropped.get(level, 0) + n
        self._hub.stage_duration.record(
            max(0.0, now - slot.started_at),
            {semconv.JOB_NAME: self._tally.job, semconv.JOB_STAGE: label},
            context=slot.ctx,
        )

    def _refresh_gauge_attrs(self) -> None:
        attrs: dict[str, Any] = {
            semconv.JOB_NAME: self._tally.job,
            semconv.JOB_STAGE: self._stage_label,
            semconv.JOB_ENTITY_TYPE: self._tally.entity_type,
            semconv.JOB_RUN_SLOT: self._tally.slot,
        }
        if self._run_id_on_metrics:
            attrs[semconv.JOB_RUN_ID] = self._run_id
        self._gauge_attrs = attrs

    def _gauge_points(self) -> tuple[dict[str, Any], int, int | None, float | None]:
        """Attributes, current, total and ETA for the progress gauges."""
        return self._gauge_attrs, self.current, self._total, self.eta_seconds

    # --- logs ----------------------------------------------------------------------------
    def debug(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log a debug message (not a span event unless ``debug_events=True``)."""
        self._log(semconv.LEVEL_DEBUG, message, context, fields)

    def info(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log general progress information.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.info("Batch processed", {"batchSize": 500}, avgScore=0.72)
            >>> job.log_counts["info"]
            1
        """
        self._log(semconv.LEVEL_INFO, message, context, fields)

    def milestone(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log an important progress point (highlighted in UIs)."""
        self._log(semconv.LEVEL_MILESTONE, message, context, fields)

    def warning(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log a non-fatal issue; counts as a warning in the summary."""
        self._log(semconv.LEVEL_WARNING, message, context, fields)

    def error(self, message: str, context: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log a failure that does not stop the job; counts as an error in the summary."""
        self._log(semconv.LEVEL_ERROR, message, context, fields)

    def _log(
        self, level: str, message: object, context: Mapping[str, Any] | None, fields: Mapping[str, Any] | None
    ) -> None:
        try:
            if self._summary is not None:
                self._warn("ended", "the run has ended (log_summary was called); call ignored")
                return
            next(self._tally.log_ticks[level])
            limiter = self._limits.get(level)
            if limiter is not None and not limiter.allow():
                return
            levelno = _LEVELNO[level]
            to_stdlib = _pylog.isEnabledFor(levelno)
            if level == semconv.LEVEL_DEBUG and not (self._debug_events or to_stdlib):
                return
            text = _sanitize.as_text(message, "message", self._warn)
            if fields:
                merged = dict(context) if isinstance(context, Mapping) else {}
                if context is not None and not isinstance(context, Mapping):
                    merged["context"] = context
                merged.update(fields)
                context = merged
            attrs = _sanitize.context_attributes(context, self._secret_keys, self._warn)
            self._emit(level, levelno, text, attrs, to_stdlib)
        except Exception as exc:  # noqa: BLE001 - never raise into the job
            self._internal_error(level, exc)

    def _emit(
        self, level: str, levelno: int, text: str, attrs: dict[str, Any], to_stdlib: bool, *, reserved: bool = False
    ) -> None:
        """Add the span event (within the budget, or in a ``reserved`` slot) and the stdlib record."""
        with self._lock:
            slot = self._stage or self._run
            if reserved:
                slot.used += 1
                admitted = True
            else:
                admitted = (level != semconv.LEVEL_DEBUG or self._debug_events) and slot.admit(level)
            stage = self._stage_name
        if admitted:
            event_attrs = dict(attrs)
            event_attrs[semconv.JOB_LOG_LEVEL] = level
            slot.span.add_event(text, event_attrs)
        if to_stdlib:
            extra: dict[str, Any] = {}
            for key, value in attrs.items():
                extra[f"context.{key}" if key in _RESERVED_RECORD_KEYS else key] = value
            extra[semconv.JOB_NAME] = self._job_name
            extra[semconv.JOB_RUN_ID] = self._run_id
            extra[semconv.JOB_RUN_SLOT] = self._tally.slot
            extra[semconv.JOB_LOG_LEVEL] = level
            if stage is not None:
                extra[semconv.JOB_STAGE] = stage
            token = otel_context.attach(slot.ctx)
            try:
                _pylog.log(levelno, text, extra=extra)
            finally:
                otel_context.detach(token)

    # --- outcomes and the end of the run ----------------------------------------------
    @_guarded
    def save_outcome(self, timeout_s: float = 2.0) -> None:
        """Make the outcome snapshot durable now: record it on the run span and flush metrics.

        The one call that may wait for I/O, at most ``timeout_s`` seconds.
        """
        if self._ended_call():
            return
        outcomes = dict(self.outcomes)
        self._run.span.set_attributes(
            {semconv.JOB_OUTCOME_PREFIX + k: _sanitize.clamp_int(v) for k, v in outcomes.items()}
        )
        self._hub.flush_outcomes(self._tally)
        flush = getattr(self._meter_provider, "force_flush", None)
        if callable(flush):
            # The SDK's force_flush can outlive its own timeout against a hung collector (it waits for
            # an export already in flight), so it runs on its own thread and the job waits at most
            # timeout_s; the flush still completes in the background.
            worker = threading.Thread(
                target=_quietly, args=(flush, int(timeout_s * 1000)), name="joblogger-save-outcome", daemon=True
            )
            worker.start()
            worker.join(max(0.0, float(timeout_s)))

    def log_summary(self) -> Summary:
        """End the run and log its summary line as a milestone; idempotent.

        Ends the open stage and the run span and records the run metrics. Called
        from a ``finally:`` block while an exception propagates, it marks the run
        failed (or cancelled for ``KeyboardInterrupt`` and similar).

        Example:
            >>> from joblogger import create_job_logger
            >>> now = [0.0]
            >>> job = create_job_logger("r", "j", clock=lambda: now[0])
            >>> job.add_outcome("updates", 2)
            >>> now[0] = 154.0
            >>> job.log_summary().line
            'Completed in 2m 34s | Processed: 0 entities | Updates: 2'
        """
        exc = sys.exc_info()[1]
        return self._finish(None if exc is self._outer_exc else exc)

    def _finish(self, exc: BaseException | None) -> Summary:
        summary = self._summary
        if summary is not None:
            return summary
        try:
            return self._end_run(exc)
        except Exception as error:  # noqa: BLE001
            self._internal_error("log_summary", error)
            return self._summary or Summary("", semconv.RESULT_FAILURE, 0, None, None, {}, 0.0)

    def _end_run(self, exc: BaseException | None) -> Summary:
        if exc is None:
            result = semconv.RESULT_SUCCESS
        elif isinstance(exc, Exception):
            result = semconv.RESULT_FAILURE
        else:
            result = semconv.RESULT_CANCELLATION
        self._outer_exc = None
        exc_text = "" if exc is None else f"{_error_type(exc)}: {_exception_message(exc)}"
        if exc is not None:
            what = "Job failed" if result == semconv.RESULT_FAILURE else "Job cancelled"
            self._log(
                semconv.LEVEL_ERROR if result == semconv.RESULT_FAILURE else semconv.LEVEL_WARNING,
                f"{what}: {exc_text}",
                None,
                None,
            )
        now = self._clock()
        with self._lock:
            if self._summary is not None:  # another thread finished first
                return self._summary
            stage, stage_label = self._stage, self._stage_label
            self._stage = None
            self._ended_at = now
            duration_s = max(0.0, now - self._started)
            outcomes = _format.ordered_outcomes(self._recorded_outcomes(), self._tally.logs())
            current = self.current
            line = _format.summary_line(result, duration_s, current, self._entity_type, outcomes.items())
            dropped = dict(self._dropped)
            for slot in (stage, self._run):
                if slot is not None:
                    for level, n in slot.dropped.items():
                        dropped[level] = dropped.get(level, 0) + n
            suppressed = {level: bucket.suppressed for level, bucket in self._limits.items() if bucket.suppressed}
            if suppressed:
                line += f" | Logs suppressed: {_format.format_count(sum(suppressed.values()))}"
            summary = Summary(
                logs_suppressed=suppressed,
                line=line,
                result=result,
                entities_processed=current,
                entities_total=self._total,
                entity_type=self._entity_type,
                outcomes=outcomes,
                duration_ms=duration_s * 1000.0,
                events_dropped=dropped,
            )
            self._summary = summary
        if stage is not None:
            self._close_stage(stage, stage_label, now)
        # The summary line is the run's last log record: on the run span, counted as a milestone.
        self._emit(semconv.LEVEL_MILESTONE, MILESTONE, line, {}, _pylog.isEnabledFor(MILESTONE), reserved=True)
        next(self._tally.log_ticks[semconv.LEVEL_MILESTONE])
        with self._lock:
            self._ticks = _Closed(self)
            self._outcome_ticks = {}
        run_attrs: dict[str, Any] = {
            semconv.JOB_RESULT: result,
            semconv.JOB_ENTITY_TYPE: self._entity_type or _format.DEFAULT_ENTITY_TYPE,
            semconv.JOB_PROGRESS_CURRENT: _sanitize.clamp_int(current),
            semconv.JOB_DURATION_MS: summary.duration_ms,
        }
        if self._total is not None:
            run_attrs[semconv.JOB_PROGRESS_TOTAL] = _sanitize.clamp_int(self._total)
        for key, value in outcomes.items():
            run_attrs[semconv.JOB_OUTCOME_PREFIX + key] = _sanitize.clamp_int(value)
        status = None
        if exc is not None:
            run_attrs[semconv.ERROR_TYPE] = _error_type(exc)
            self._record_exception(exc)
            status = Status(StatusCode.ERROR, exc_text[:1024])
        self._run.close(run_attrs, status)
        metric_attrs = {semconv.JOB_NAME: self._tally.job, semconv.JOB_RESULT: result}
        # Recorded in the run span's context, so exemplars link the metric to the run's trace.
        self._hub.runs.add(1, metric_attrs, context=self._run.ctx)
        self._hub.run_duration.record(duration_s, metric_attrs, context=self._run.ctx)
        self._tally.ended = True
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self._hub.flush_outcomes(self._tally)
        self._hub.end(self, self._tally)
        self._finalizer.detach()
        return summary

    # --- context manager ---------------------------------------------------------------
    def __enter__(self) -> JobLogger:
        try:
            self._context_token = otel_context.attach(self._run.ctx)
        except Exception as exc:  # noqa: BLE001
            self._internal_error("__enter__", exc)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)
        token, self._context_token = self._context_token, None
        if token is not None:
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception as error:  # noqa: BLE001
                self._internal_error("__exit__", error)
        # Returning None lets the user's exception propagate untouched.

    # --- internals -------------------------------------------------------------------------
    def _record_exception(self, exc: BaseException) -> None:
        """Add the exception event to the run span, even for an exception whose ``str()`` fails."""
        message = _exception_message(exc)
        stack = _sanitize.utf8("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        try:
            self._run.span.record_exception(
                exc, {"exception.message": message, "exception.stacktrace": stack}, escaped=True
            )
        except Exception:  # noqa: BLE001 - the SDK calls str(exc) itself
            self._run.span.add_event(
                "exception",
                {"exception.type": _error_type(exc), "exception.message": message, "exception.escaped": "True"},
            )

    def _ended_call(self) -> bool:
        if self._summary is not None:
            self._warn("ended", "the run has ended (log_summary was called); call ignored")
            return True
        return False

    def _internal_error(self, where: str, exc: Exception) -> None:
        try:
            self._warn(f"internal-{where}", "internal error in %s ignored: %r", where, exc)
        except Exception:  # noqa: BLE001, S110 - logging itself failed; nothing left to do
            pass

    def __repr__(self) -> str:
        return f"<JobLogger {self._job_name!r} run={self._run_id!r} {self.progress_text!r}>"


def create_job_logger(
    job_run_id: object,
    job_name: object,
    *,
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
) -> JobLogger:
    """Start a run of ``job_name`` and return its :class:`JobLogger`.

    The run span starts now, as a child of the current span. Use the logger as
    a context manager, or call :meth:`JobLogger.log_summary` in a ``finally:``.

    Args:
        job_run_id: Identifies this run (goes on spans, logs and progress gauges).
        job_name: The job, e.g. ``"match-scores"`` (the run span's name).
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
    )
