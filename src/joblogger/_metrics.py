"""Metric instruments, shared by every run that uses one meter provider.

The per-item hot path never calls the OpenTelemetry SDK: runs count locally
(see ``_logger.Tally``) and this hub reports those counts through observable
instruments when the SDK collects. Only run and stage boundaries record
synchronously (``_runrecords``: into joblogger's own aggregates in produced
mode, one SDK histogram or counter call each in drop-in mode).

Progress gauges are per run, so they must not leave state behind in the SDK:
an asynchronous instrument keeps every attribute set it ever reported (and caps
each stream at 2,000 sets). Two modes:

- **Produced** (providers built by ``joblogger.otlp.configure()`` or
  ``joblogger.testing``; see :func:`produce_progress`): the hub creates no gauge
  instruments; joblogger's own exporter and readers add the progress points of
  the live runs to each collection (``joblogger._producer``). Nothing is kept
  per run, so ``job.run.id`` can label the points at no cost to the process.
- **Drop-in** (any other meter provider): observable gauges through the SDK,
  labelled with the bounded per-process ``job.run.slot`` (and ``job.run.id``
  only when the run asked for it explicitly).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING

from opentelemetry import metrics

from . import _fork, semconv
from ._observe import GAUGES, MAX_INT, ActiveRun, ObserveMixin
from ._runrecords import RunRecorder
from ._schedule_board import ScheduleBoard
from ._tally import Ticks, new_ticks
from ._version import __version__

if TYPE_CHECKING:
    from ._tally import Tally


#: Distinct job names reported per meter provider before new ones fold into "other".
MAX_JOBS = 500


_produced: weakref.WeakSet[metrics.MeterProvider] = weakref.WeakSet()


def produce_progress(meter_provider: metrics.MeterProvider) -> None:
    """Declare that the readers of ``meter_provider`` add progress points themselves.

    Must be called before the first run uses the provider (its hub then creates no
    progress gauges); ``joblogger._producer.ProgressProducer.bind`` does it.
    """
    with _hubs_lock:
        if meter_provider in _hubs:
            raise RuntimeError("produce_progress() must be called before the first run uses the provider")
        _produced.add(meter_provider)


class Hub(ObserveMixin):
    """Instruments of one meter provider plus the live and retired counts behind them."""

    __slots__ = (
        "__weakref__",
        "_active",
        "_caps",
        "_instruments",
        "_job_logs",
        "_jobs",
        "_lock",
        "_outcome_totals",
        "_pending",
        "_retired",
        "_slots",
        "_tallies",
        "_unflushed",
        "outcomes",
        "produced",
        "records",
        "schedules",
    )

    def __init__(self, meter_provider: metrics.MeterProvider) -> None:
        meter = meter_provider.get_meter(semconv.SCOPE_NAME, __version__)
        self._lock = threading.Lock()
        #: True when joblogger's readers produce the progress points (no SDK gauges, see produce_progress).
        self.produced = meter_provider in _produced
        # job label -> slots taken by its active runs (job.run.slot: lowest free index at start).
        # job label -> its log counters by level, shared by its runs (job.logs reads only these).
        self._job_logs: dict[str, dict[str, Ticks]] = {}
        self._slots: dict[str, set[int]] = {}
        # id(run) -> weak reference to the run, for progress gauges.
        self._active: dict[int, weakref.ref[ActiveRun]] = {}
        # id(tally) -> tally of every live run, for counters.
        self._tallies: dict[int, Tally] = {}
        # (metric, job, attribute value) -> count folded in from ended runs.
        self._retired: dict[tuple[str, str, str], int] = {}
        # tallies of runs that were garbage-collected without ending (lock-free hand-off).
        self._pending: deque[tuple[int, Tally]] = deque()
        # distinct job-name labels seen; beyond MAX_JOBS new names report as "other".
        self._jobs: set[str] = set()
        # (kind, job) -> distinct values seen, for capped labels (stages, outcome keys).
        self._caps: dict[tuple[str, str], set[str]] = {}
        # (job, outcome label) -> everything added to the outcomes counter: the SDK's cumulative sum
        # of that series, kept <= int64 so exports never fail (bounded like the labels).
        self._outcome_totals: dict[tuple[str, str], int] = {}
        self._gauge_cache = None
        # tallies of abandoned runs whose last outcomes still need flushing (by the flusher thread).
        self._unflushed: list[Tally] = []
        unit = {name: u for name, (_, u) in semconv.METRICS.items()}
        #: job.runs, job.run.duration and job.stage.duration: joblogger's own aggregates in produced
        #: mode, SDK instruments in drop-in mode (see _runrecords).
        self.records = RunRecorder(meter_provider, meter, self.produced)
        # Outcomes are a synchronous counter fed in the background (see flush_outcomes), so each
        # addition carries the run's trace context and errors/skips get exemplars linking to the trace.
        self.outcomes = meter.create_counter(
            semconv.METRIC_OUTCOMES, unit="{outcome}", description="Outcomes recorded with add_outcome, by key."
        )
        #: Per-job schedule gauges of the runs that declare a Schedule (see _schedule_board).
        self.schedules = ScheduleBoard(meter)
        self._instruments = (
            meter.create_observable_up_down_counter(
                semconv.METRIC_RUNS_ACTIVE,
                [self._observe_active],
                unit=unit[semconv.METRIC_RUNS_ACTIVE],
                description="Job runs in progress.",
            ),
            *(
                ()
                if self.produced
                else (
                    meter.create_observable_gauge(name, [self._observe_gauge(index)], unit=unit[name], description=text)
                    for index, (name, text) in enumerate(GAUGES)
                )
            ),
            meter.create_observable_counter(
                semconv.METRIC_ENTITIES_PROCESSED,
                [self._observe_counts(0)],
                unit="{entity}",
                description="Entities processed, over all phases and runs.",
            ),
            meter.create_observable_counter(
                semconv.METRIC_LOGS,
                [self._observe_counts(1)],
                unit="{log}",
                description="Log calls, by level (counted even when not exported).",
            ),
        )

    # --- run lifecycle -----------------------------------------------------
    def take_slot(self, tally: Tally) -> int:
        """Give the run of ``tally`` the lowest slot free among its job's active runs (``tally.slot``)."""
        with self._lock:
            taken = self._slots.setdefault(tally.job, set())
            slot = 0
            while slot in taken:
                slot += 1
            taken.add(slot)
            tally.slot = slot
        return slot

    def _free_slot(self, tally: Tally) -> None:
        """Release the run's slot (caller holds the lock)."""
        taken = self._slots.get(tally.job)
        if taken is not None and tally.slot >= 0:
            taken.discard(tally.slot)
            tally.slot = -1

    def start(self, run: ActiveRun, tally: Tally) -> None:
        """Register a run; one that is garbage-collected (or still active at exit) without ending is retired.

        The registration is a weak reference whose callback retires the run: :meth:`end` drops
        the reference, and a dropped reference never calls back (cheaper than a
        ``weakref.finalize`` to create and to detach; at exit :func:`_abandon_at_exit` does what
        a finalizer's exit hook did).
        """
        ref = _RunRef(run, self._collected)
        ref.run_id = id(run)
        ref.tally = tally
        with self._lock:
            self._active[id(run)] = ref
            self._tallies[id(tally)] = tally
            counters = self._job_logs.get(tally.job)
            if counters is None:
                counters = self._job_logs[tally.job] = {level: new_ticks() for level in semconv.LEVELS}
            if tally.job_logs is not counters:  # a tally made without them (see job_log_counters)
                for level, value in tally.logs().items():  # calls made before the run registered
                    for _ in range(value):
                        next(counters[level])
                tally.job_logs = counters
        _ensure_flusher()

    def job_log_counters(self, job: str) -> dict[str, Ticks]:
        """The log counters of ``job``, shared by its runs (a new run's Tally starts with them)."""
        with self._lock:
            counters = self._job_logs.get(job)
            if counters is None:
                counters = self._job_logs[job] = {level: new_ticks() for level in semconv.LEVELS}
            return counters

    def end(self, run: ActiveRun, tally: Tally) -> None:
        """Fold an ended run's counts into the retired totals and free its slot."""
        with self._lock:
            self._active.pop(id(run), None)
            self._tallies.pop(id(tally), None)
            self._free_slot(tally)
            self._fold(tally)

    def _collected(self, ref: _RunRef) -> None:
        # Runs from the garbage collector, at any point (late in interpreter shutdown too): take no
        # lock, call no SDK, look up no module global.
        self._pending.append((ref.run_id, ref.tally))

    def _drain(self) -> None:
        """Fold the tallies of abandoned runs (caller holds the lock)."""
        while self._pending:
            run_id, tally = self._pending.popleft()
            if self._tallies.pop(id(tally), None) is not None:
                self._active.pop(run_id, None)
                tally.ended = True
                self._free_slot(tally)
                self._fold(tally)
                self._unflushed.append(tally)

    def flush_outcomes(self, tally: Tally) -> None:
        """Add what ``tally`` recorded since its last flush to the outcomes counter.

        Called by the background flusher every ``FLUSH_INTERVAL_S`` and, synchronously, when a
        run ends or saves its outcome; never on the per-item path. The additions run in the
        context of the run's current stage span, so the SDK can attach exemplars.
        """
        if not tally.outcome_ticks and not tally.outcome_extra:
            return  # nothing recorded yet (the common case for many runs)
        with tally.flush_lock:
            # Compared under the lock: another thread's flush may have marked values flushed and not yet
            # added them; a run's final flush that returned then could end before they are exported.
            if not tally.outcomes_changed():
                return  # nothing new since the last flush
            adds: list[tuple[str, int, bool]] = []
            for key, raw in tally.outcomes(clamp=False).items():
                if raw > MAX_INT:
                    tally.warn(
                        "outcome-int64", "outcome %r passed 2**63-1, the largest count OTLP carries; capped", key
                    )
                value = min(raw, MAX_INT)
                done = tally.flushed.get(key)
                if done is None or value > done:  # a new key starts its series, even at 0
                    tally.flushed[key] = value
                    adds.append((tally.labels.get(key, semconv.OUTCOME_OTHER), value - (done or 0), done is None))
            for label, delta, new in self._reserve(tally, adds):
                if delta > 0 or new:
                    attrs = {semconv.JOB_NAME: tally.job, semconv.JOB_OUTCOME: label}
                    self.outcomes.add(delta, attrs, context=tally.ctx)

    def _reserve(self, tally: Tally, adds: list[tuple[str, int, bool]]) -> list[tuple[str, int, bool]]:
        """Cut additions so no series' cumulative sum passes int64 (an OTLP export would fail on it, forever)."""
        granted = []
        full = []
        with self._lock:
            for label, delta, new in adds:
                series = (tally.job, label)
                added = self._outcome_totals.get(series, 0)
                room = MAX_INT - added
                if delta > room:
                    full.append(label)
                granted.append((label, min(delta, room), new))
                self._outcome_totals[series] = added + min(delta, room)
        for label in full:
            tally.warn(
                "outcome-total-int64",
                "job.outcomes{%s} of this process reached 2**63-1; further additions are not exported",
                label,
            )
        return granted

    def flush_all(self) -> None:
        """Flush every live and abandoned run of this hub."""
        with self._lock:
            self._drain()
            tallies = list(self._tallies.values())
            tallies.extend(self._unflushed)
            self._unflushed.clear()
        for tally in tallies:
            self.flush_outcomes(tally)

    def job_label(self, job_name: str) -> str | None:
        """Metric label for ``job_name``, or None when the cap folded it into ``other``."""
        if job_name in self._jobs:  # seen before (every run but the job's first): no lock
            return job_name
        with self._lock:
            if job_name in self._jobs:
                return job_name
            if len(self._jobs) < MAX_JOBS:
                self._jobs.add(job_name)
                return job_name
        return None

    def _fold(self, tally: Tally) -> None:
        # Only entities: the SDK keeps the outcomes counter's sums itself, and log calls are
        # counted in the job's own counters (Tally.job_logs) as they happen.
        retired = self._retired
        if not tally.type_base:  # one entity type all along (most runs)
            slot = (semconv.METRIC_ENTITIES_PROCESSED, tally.job, tally.entity_type)
            retired[slot] = retired.get(slot, 0) + tally.processed()
            return
        for key, value in tally.points(semconv.METRIC_ENTITIES_PROCESSED).items():
            slot = (semconv.METRIC_ENTITIES_PROCESSED, tally.job, key)
            retired[slot] = retired.get(slot, 0) + value

    def cap_value(self, kind: str, job: str, value: str, limit: int) -> bool:
        """True when ``value`` may be a label of ``kind`` for ``job`` (at most ``limit`` distinct per process)."""
        seen = self._caps.get((kind, job))
        if seen is not None and value in seen:  # seen before: no lock (sets only grow)
            return True
        with self._lock:
            seen = self._caps.setdefault((kind, job), set())
            if value in seen:
                return True
            if len(seen) < limit:
                seen.add(value)
                return True
            return False


_hubs: weakref.WeakKeyDictionary[metrics.MeterProvider, Hub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


#: Seconds between background flushes of outcome counts into the SDK.
FLUSH_INTERVAL_S = 0.5
_flusher: threading.Thread | None = None
_flusher_lock = threading.Lock()
#: Whether :func:`_abandon_at_exit` is registered (once per process; a forked child inherits it).
_exit_hook = [False]


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL_S)
        with _hubs_lock:
            hubs = list(_hubs.values())
        for hub in hubs:
            try:
                hub.flush_all()
            except Exception as exc:  # noqa: BLE001 - the flusher must survive anything
                logging.getLogger("joblogger").debug("joblogger: outcome flush failed: %r", exc)


class _RunRef(weakref.ref):  # type: ignore[type-arg]
    """A hub's weak reference to an active run, with what retiring the run needs once it is gone."""

    __slots__ = ("run_id", "tally")
    run_id: int
    tally: Tally


def _abandon_at_exit() -> None:
    """At exit, retire the runs still active (what a ``weakref.finalize`` per run did at exit).

    Registered when the process's first run starts, so it runs before the exit-time
    shutdown of a ``configure()`` made earlier, whose final flush drains them.
    """
    for hub in list(_hubs.values()):
        for ref in list(hub._active.values()):
            if isinstance(ref, _RunRef) and ref() is not None:
                hub._pending.append((ref.run_id, ref.tally))


def _ensure_flusher() -> None:
    """Start the background outcome flusher once per process (and register :func:`_abandon_at_exit`)."""
    global _flusher
    if _flusher is not None and _flusher.is_alive():
        return
    with _flusher_lock:
        if not _exit_hook[0]:
            _exit_hook[0] = True
            atexit.register(_abandon_at_exit)
        if _flusher is None or not _flusher.is_alive():
            _flusher = threading.Thread(target=_flush_loop, name="joblogger-flush", daemon=True)
            _flusher.start()


def _forget_parent_runs() -> None:
    """In a forked child: the parent's runs and totals are the parent's to report, not ours."""
    global _hubs_lock, _flusher, _flusher_lock
    _hubs_lock = threading.Lock()
    _flusher, _flusher_lock = None, threading.Lock()
    for hub in list(_hubs.values()):
        hub._lock = threading.Lock()
        hub._active.clear()
        hub._tallies.clear()
        hub._retired.clear()
        hub._pending.clear()
        hub._gauge_cache = None
        hub._unflushed.clear()
        hub._slots.clear()
        hub._job_logs.clear()
        hub.records.reset_after_fork()
        hub.schedules.forget_runs()


_fork.register(_forget_parent_runs)


def hub_for(meter_provider: metrics.MeterProvider) -> Hub:
    """Return the hub of ``meter_provider``, creating its instruments once."""
    with _hubs_lock:
        hub = _hubs.get(meter_provider)
        if hub is None:
            hub = _hubs[meter_provider] = Hub(meter_provider)
        return hub


def existing_hub(meter_provider: metrics.MeterProvider) -> Hub | None:
    """The hub of ``meter_provider`` if a run has used it, else None (creates nothing)."""
    with _hubs_lock:
        return _hubs.get(meter_provider)
