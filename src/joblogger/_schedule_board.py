"""Per-job schedule gauges: what Prometheus needs to judge a schedule after the process is gone.

One board per meter provider (owned by the metrics hub). Runs that declare a
:class:`~joblogger.Schedule` report their start and end here (two calls per run,
never per item); the observable gauges read the board when the SDK collects.
Every series is labelled with ``job.name`` only, so the series count is bounded
by the hub's job cap, never by runs. Times are unix seconds (the alert rules
compare them with PromQL's ``time()``). The model is in docs/schedules.md.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import semconv
from ._schedule import Schedule


@dataclass(slots=True)
class _JobState:
    """What one job's scheduled runs in this process left behind (guarded by the board's lock)."""

    schedule: Schedule
    next_expected: float
    interval: float
    #: 0 until a run of the job started in this process (a declared schedule only).
    last_start: float = 0.0
    last_end: float | None = None
    last_success: float | None = None
    last_duration: float | None = None
    last_processed: int | None = None
    #: id(run) -> (weak reference to the run, its start): the job's active runs in this process.
    active: dict[int, tuple[weakref.ref[Any], float]] = field(default_factory=dict)
    #: The schedule ``declare_schedule()`` gave the job: its runs without a schedule of their own take it.
    declared: Schedule | None = None

    def active_since(self) -> float:
        """Start of the oldest live active run, 0 when none."""
        starts = [start for ref, start in self.active.values() if ref() is not None]
        return min(starts) if starts else 0.0


def _gauges() -> tuple[tuple[str, str, Callable[[_JobState], float | None]], ...]:
    return (
        (semconv.METRIC_SCHEDULE_NEXT_EXPECTED, "When the job's next run is expected to start (unix time).",
         lambda s: s.next_expected),
        (semconv.METRIC_SCHEDULE_INTERVAL, "Seconds between the job's expected starts.", lambda s: s.interval),
        (semconv.METRIC_SCHEDULE_GRACE, "How late a run may start before it is missed.", lambda s: s.schedule.grace_s),
        (semconv.METRIC_SCHEDULE_MAX_RUNTIME, "Longest a run may take.", lambda s: s.schedule.max_runtime_s),
        (semconv.METRIC_SCHEDULE_MIN_RUNTIME, "Shortest a run may take.", lambda s: s.schedule.min_runtime_s),
        (semconv.METRIC_SCHEDULE_OVERLAP_POLICY, "Overlapping runs: 0 allow, 1 warn, 2 forbid.",
         lambda s: s.schedule.overlap_level),
        (semconv.METRIC_SCHEDULE_LAST_START, "Start of the job's latest run in this process (unix time; 0: none yet).",
         lambda s: s.last_start),
        (semconv.METRIC_SCHEDULE_LAST_END, "End of the job's latest ended run (unix time).", lambda s: s.last_end),
        (semconv.METRIC_SCHEDULE_LAST_SUCCESS, "End of the job's latest successful run (unix time).",
         lambda s: s.last_success),
        (semconv.METRIC_SCHEDULE_LAST_DURATION, "Duration of the job's latest ended run.", lambda s: s.last_duration),
        (semconv.METRIC_SCHEDULE_LAST_PROCESSED, "Entities processed by the job's latest ended run.",
         lambda s: s.last_processed),
        (semconv.METRIC_SCHEDULE_ACTIVE_SINCE, "Start of the job's oldest active run (unix time; 0: none active).",
         lambda s: s.active_since()),
    )  # fmt: skip


class ScheduleBoard:
    """The schedule state of every scheduled job of one meter provider, and its gauges."""

    __slots__ = ("_instruments", "_jobs", "_lock")

    def __init__(self, meter: Meter) -> None:
        # Re-entrant: a signal handler that ends a run may interrupt this thread inside start().
        self._lock = threading.RLock()
        self._jobs: dict[str, _JobState] = {}
        units = {name: unit for name, (_, unit) in semconv.METRICS.items()}
        self._instruments = [
            meter.create_observable_gauge(name, [self._callback(read)], unit=units[name], description=text)
            for name, text, read in _gauges()
        ]

    def _callback(
        self, read: Callable[[_JobState], float | None]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> list[Observation]:
            with self._lock:
                values = [(job, read(state)) for job, state in self._jobs.items()]
            return [Observation(value, {semconv.JOB_NAME: job}) for job, value in values if value is not None]

        return callback

    def declare(self, job: str, schedule: Schedule, now: float) -> None:
        """Export ``schedule`` for ``job`` before (or without) a run: the next start is expected from ``now``."""
        with self._lock:
            state = self._jobs.get(job)
            if state is None:
                state = self._jobs[job] = _JobState(schedule, schedule.next_after(now), schedule.interval_at(now))
            elif state.schedule != schedule:
                state.schedule = schedule
                state.next_expected = schedule.next_after(max(now, state.last_start))
                state.interval = schedule.interval_at(now)
            state.declared = schedule

    def declared(self, job: str) -> Schedule | None:
        """The schedule declared for ``job`` in this process (``declare_schedule``), if any."""
        with self._lock:
            state = self._jobs.get(job)
            return None if state is None else state.declared

    def start(self, job: str, schedule: Schedule, run: object, started: float) -> int:
        """A run of ``job`` started at unix time ``started``; returns how many other runs of it are active here."""
        next_expected = schedule.next_for_run(started)
        interval = schedule.interval_at(started)
        with self._lock:
            state = self._jobs.get(job)
            if state is None:
                state = self._jobs[job] = _JobState(schedule, next_expected, interval)
            state.schedule = schedule
            state.next_expected = (
                max(next_expected, state.next_expected) if started <= state.last_start else next_expected
            )
            state.interval = interval
            state.last_start = max(state.last_start, started)
            others = sum(1 for ref, _ in state.active.values() if ref() is not None)
            state.active = {key: value for key, value in state.active.items() if value[0]() is not None}
            state.active[id(run)] = (weakref.ref(run), started)
        return others

    def end(self, job: str, run: object, ended: float, duration: float, *, result: str, processed: int) -> None:
        """A run of ``job`` ended at unix time ``ended``."""
        with self._lock:
            state = self._jobs.get(job)
            if state is None:
                return
            state.active.pop(id(run), None)
            if state.last_end is None or ended >= state.last_end:
                state.last_end = ended
                state.last_duration = duration
                state.last_processed = processed
            if result == semconv.RESULT_SUCCESS:
                state.last_success = max(ended, state.last_success or 0.0)

    def forget_runs(self) -> None:
        """In a forked child: the parent's active runs are not ours."""
        self._lock = threading.RLock()
        for state in self._jobs.values():
            state.active.clear()
