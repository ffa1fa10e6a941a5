"""The hub's observable callbacks: what the SDK reads from the live runs at each collection.

A mixin of :class:`joblogger._metrics.Hub` (which owns the slots); split out so
that each module keeps one concern: here the read side, there the run lifecycle
and the outcome flushing.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.metrics import CallbackOptions, Observation

from . import semconv
from ._tally import Ticks, ticks_value

if TYPE_CHECKING:
    from ._tally import Tally

#: The progress gauges, in the order their callbacks run (the first one reads the runs' state).
GAUGES = (
    (semconv.METRIC_PROGRESS_CURRENT, "Entities processed so far in the current phase of an active run."),
    (semconv.METRIC_PROGRESS_EXPECTED, "Entities expected in the current phase of an active run."),
    (semconv.METRIC_PROGRESS_RATIO, "Fraction of the current phase done (0-1)."),
    (semconv.METRIC_PROGRESS_ETA, "Estimated seconds until the current phase is done."),
)
#: The observable counters: metric and the attribute that splits it (outcomes are a synchronous counter).
OBSERVED_COUNTERS = (
    (semconv.METRIC_ENTITIES_PROCESSED, semconv.JOB_ENTITY_TYPE),
    (semconv.METRIC_LOGS, semconv.JOB_LOG_LEVEL),
)
#: How long one collection's progress snapshot is reused by the later gauges of that collection.
_SNAPSHOT_TTL_S = 1.0
#: Largest value an OTLP integer data point can carry (int64); larger counts are clamped.
MAX_INT = 2**63 - 1


class ActiveRun(Protocol):
    """What the hub reads from a running job at collection time."""

    def _gauge_points(self) -> tuple[dict[str, Any], int, int | None, float | None] | None: ...


#: Meter providers whose progress points joblogger's own readers produce (no SDK gauges).


class ObserveMixin:
    """Observable callbacks of the hub (progress gauges, active runs, processed and log counters)."""

    __slots__ = ("_gauge_cache",)

    _gauge_cache: tuple[float, list[Any]] | None

    _lock: threading.Lock
    _active: dict[int, weakref.ref[ActiveRun]]
    _tallies: dict[int, Tally]
    _retired: dict[tuple[str, str, str], int]
    _job_logs: dict[str, dict[str, Ticks]]

    if TYPE_CHECKING:

        def _drain(self) -> None: ...
        def flush_all(self) -> None: ...

    # --- observable callbacks ------------------------------------------------
    def _runs(self) -> list[ActiveRun]:
        with self._lock:
            self._drain()
            refs = list(self._active.values())
        return [run for run in (ref() for ref in refs) if run is not None]

    def _observe_active(self, options: CallbackOptions) -> Iterator[Observation]:
        # The first of our callbacks in every collection: bring the outcomes counter up to date
        # first, so a collection always sees every outcome recorded before it started.
        self.flush_all()
        with self._lock:
            self._drain()
            jobs: dict[str, int] = {}
            for tally in self._tallies.values():
                if not tally.ended:
                    jobs[tally.job] = jobs.get(tally.job, 0) + 1
            for _metric, job, _key in self._retired:
                jobs.setdefault(job, 0)
        for job, count in jobs.items():
            yield Observation(count, {semconv.JOB_NAME: job})

    def progress_points(self) -> list[tuple[dict[str, Any], int, int | None, float | None]]:
        """``(attributes, current, total, eta)`` of every active run, read now.

        Attribute sets are distinct per run (``job.run.slot`` differs between the
        active runs of one job), so no two runs share a point.
        """
        points = []
        for run in self._runs():
            try:
                point = run._gauge_points()
            except Exception:  # noqa: BLE001 - one broken run must not hide the others
                continue
            if point is not None:  # None: the run ended since it was listed
                points.append(point)
        return points

    def _gauge_snapshot(self, fresh: bool) -> list[tuple[dict[str, Any], int, int | None, float | None]]:
        """Progress of every active run, read once per SDK collection.

        The four progress gauges are observed one after the other in each
        collection; the first computes the snapshot and the others reuse it.
        """
        cached = self._gauge_cache
        if not fresh and cached is not None and time.monotonic() - cached[0] < _SNAPSHOT_TTL_S:
            return cached[1]
        points = self.progress_points()
        self._gauge_cache = (time.monotonic(), points)
        return points

    def _observe_gauge(self, index: int):  # type: ignore[no-untyped-def]
        def callback(options: CallbackOptions) -> list[Observation]:
            points = self._gauge_snapshot(fresh=index == 0)
            if index == 0:
                return [Observation(min(current, MAX_INT), attrs) for attrs, current, _, _ in points]
            if index == 1:
                return [Observation(min(total, MAX_INT), attrs) for attrs, _, total, _ in points if total is not None]
            if index == 2:
                return [
                    Observation(min(1.0, current / total) if total > 0 else 1.0, attrs)
                    for attrs, current, total, _ in points
                    if total is not None
                ]
            return [Observation(eta, attrs) for attrs, _, _, eta in points if eta is not None]

        return callback

    def _observe_counts(self, which: int):  # type: ignore[no-untyped-def]
        metric, attr = OBSERVED_COUNTERS[which]

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                self._drain()
                totals = {(job, key): v for (m, job, key), v in self._retired.items() if m == metric}
                tallies = list(self._tallies.values())
                job_logs = list(self._job_logs.items())
            get = totals.get
            if metric == semconv.METRIC_LOGS:
                for job, counters in job_logs:
                    for level, ticks in counters.items():
                        slot = (job, level)
                        totals[slot] = get(slot, 0) + ticks_value(ticks)
                tallies = []  # every registered run counts into its job's counters
            for tally in tallies:
                job = tally.job
                if metric == semconv.METRIC_ENTITIES_PROCESSED and not any(tally.type_base.values()):
                    slot = (job, tally.entity_type)
                    totals[slot] = get(slot, 0) + tally.processed()
                    continue
                for key, value in tally.points(metric).items():
                    slot = (job, key)
                    totals[slot] = get(slot, 0) + value
            return [
                Observation(min(v, MAX_INT), {semconv.JOB_NAME: job, attr: key}) for (job, key), v in totals.items()
            ]

        return callback
