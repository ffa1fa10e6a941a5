"""Counts of one run, written lock-free on the hot path and read by the metrics hub."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from operator import length_hint

from opentelemetry import context as otel_context

from . import _format, semconv
from ._sanitize import MAX_INT


def _ignore(*args: object) -> None:
    """The warner of a tally that belongs to no run."""


#: What a ticks counter can count to (2**62 increments: centuries at 100 million a second).
_TICKS_SPAN = 2**62

#: The range every ticks counter iterates (immutable, so one serves all).
_TICKS_RANGE = range(_TICKS_SPAN)

#: A ticks counter: ``next()`` counts one (a single C call, atomic under the GIL, no lock).
Ticks = Iterator[int]


def new_ticks() -> Ticks:
    """A ticks counter at 0.

    An iterator over ``range(2**62)``: ``next()`` costs what ``next()`` on an
    ``itertools.count`` costs, and the count is read back with one C call
    (``__length_hint__``, the items left), where ``itertools.count`` can only be
    read by parsing its ``repr()`` (4x slower; its ``__reduce__`` is deprecated).
    """
    return iter(_TICKS_RANGE)


def ticks_value(ticks: Ticks) -> int:
    """Current value of a ticks counter (see :func:`new_ticks`) without advancing it."""
    return _TICKS_SPAN - length_hint(ticks)


#: Where a run counts its job's log calls until the metrics hub registers it (read by nobody).
_UNREGISTERED = {level: new_ticks() for level in semconv.LEVELS}


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
        "job_logs",
        "labels",
        "log_ticks",
        "outcome_extra",
        "outcome_ticks",
        "slot",
        "ticks",
        "type_base",
        "warn",
    )

    def __init__(
        self,
        job: str,
        warn: Callable[..., None] | None = None,
        job_logs: dict[str, Ticks] | None = None,
    ) -> None:
        self.job = job
        #: the run's warner (one warning per kind), for what the metrics hub finds at flush time.
        self.warn: Callable[..., None] = warn or _ignore
        self.ended = False
        #: job.run.slot while the run is active (set by the hub), -1 once freed.
        self.slot = -1
        #: +1 increments of progress (the per-item path).
        self.ticks = new_ticks()
        #: progress added by bulk increments and forward ``set_progress`` jumps.
        self.extra = 0
        #: processed counts attributed to entity types before the current one.
        self.type_base: dict[str, int] = {}
        self.entity_type = _format.DEFAULT_ENTITY_TYPE
        self.outcome_ticks: dict[str, Ticks] = {}
        #: metric label of each outcome key (the key itself, or "other" beyond the process's label cap);
        #: set before the key's ticks exist, so a reader that sees a key finds its label.
        self.labels: dict[str, str] = {}
        self.outcome_extra: dict[str, int] = {}
        self.log_ticks = {level: iter(_TICKS_RANGE) for level in semconv.LEVELS}
        #: the job's log counters, shared by all its runs in this process (set by the metrics hub);
        #: job.logs reads these, so a collection costs the same whatever the number of active runs.
        self.job_logs = _UNREGISTERED if job_logs is None else job_logs
        #: outcome values already added to the SDK counter, and the context they are added in.
        self.flushed: dict[str, int] = {}
        self.flush_lock = threading.Lock()
        self.ctx: otel_context.Context | None = None

    def processed(self) -> int:
        """Entities processed over all phases."""
        return _TICKS_SPAN - length_hint(self.ticks) + self.extra

    def outcomes_changed(self) -> bool:
        """Whether any outcome differs from what was last flushed (``flushed``); builds nothing.

        The check every flush makes for every live run, so it reads each key's
        counter once and stops at the first difference.
        """
        flushed = self.flushed
        ticks = self.outcome_ticks
        if len(ticks) != len(flushed):
            return True
        extra = self.outcome_extra
        get = flushed.get
        for key, t in list(ticks.items()):
            value = _TICKS_SPAN - length_hint(t)
            if extra:
                value += extra.get(key, 0)
            if get(key) != (value if value <= MAX_INT else MAX_INT):
                return True
        return False

    def outcomes(self, *, clamp: bool = True) -> dict[str, int]:
        """Outcome totals by key, in first-recorded order, clamped to int64 unless ``clamp=False``."""
        extra = self.outcome_extra
        totals = {key: ticks_value(t) + extra.get(key, 0) for key, t in list(self.outcome_ticks.items())}
        if clamp:
            for key, value in totals.items():
                if value > MAX_INT:
                    totals[key] = MAX_INT
        return totals

    def logs(self) -> dict[str, int]:
        """Log calls by level."""
        return {level: _TICKS_SPAN - length_hint(t) for level, t in self.log_ticks.items()}

    def count_log(self, level: str) -> None:
        """Count one log call of ``level`` for the run and for its job."""
        next(self.log_ticks[level])
        next(self.job_logs[level])

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
