"""Progress, phases and outcomes of a run: the per-item hot path and the state derived from it."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TypeVar, overload

from . import _children, _format, _sanitize, semconv
from ._state import MAX_OUTCOME_KEYS, RunState, guarded
from ._tally import new_ticks

_T = TypeVar("_T")
#: Outcome keys that never count against the caps.
_UNCAPPED = _format.STANDARD_OUTCOMES | {semconv.OUTCOME_OTHER}
#: Distinct raw ``add_outcome`` keys remembered per run (beyond that, new ones take the slow path each time).
_MAX_CACHED_KEYS = 4 * MAX_OUTCOME_KEYS


class ProgressMixin(RunState):
    """Progress counting, phases (totals), rate/ETA and outcome counters."""

    __slots__ = ()

    @property
    def current(self) -> int:
        """Entities processed in the current phase."""
        return self._tally.processed() + self._children_processed() - self._phase_base + self._phase_adjust

    @property
    def processed_total(self) -> int:
        """Entities processed over all phases (with the children's, docs/children.md)."""
        return self._tally.processed() + self._children_processed()

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

    @guarded
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

    @guarded
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
        """The run's name for an outcome key (caller holds the lock); registers new keys.

        The run keeps its real keys (summary, spans): up to ``MAX_OUTCOME_KEYS`` custom
        keys per run, the rest count as ``other``. The metric label is decided here too,
        once per key and run: standard keys are always their own label; a custom key
        is, while the job has fewer than ``MAX_OUTCOME_KEYS`` custom labels in this
        process, else ``other`` (on the metric only).
        """
        try:
            cached = self._outcome_labels.get(key)
        except TypeError:  # unhashable key
            cached = None
        if cached is not None:
            return cached
        text = _sanitize.as_text(key, "outcome key", self._warn, limit=_sanitize.MAX_LABEL_CHARS)
        name = _sanitize.outcome_key(text)
        if not name:
            self._warn("outcome-empty", "empty outcome key; counted as 'other'")
            name = semconv.OUTCOME_OTHER
        ticks = self._outcome_ticks
        if name not in ticks:
            if name not in _UNCAPPED and sum(1 for k in ticks if k not in _UNCAPPED) >= MAX_OUTCOME_KEYS:
                self._warn(
                    "outcome-cap",
                    "more than %d distinct outcome keys in one run; the rest count as 'other'",
                    MAX_OUTCOME_KEYS,
                )
                name = semconv.OUTCOME_OTHER
            if name not in ticks:
                label = name
                if name not in _UNCAPPED and not self._hub.cap_value(
                    "outcome", self._tally.job, name, MAX_OUTCOME_KEYS
                ):
                    self._warn(
                        "outcome-label-cap",
                        "job has more than %d distinct outcome keys in this process; metrics report %r and later "
                        "new keys as 'other' (the summary and spans keep them)",
                        MAX_OUTCOME_KEYS,
                        name,
                    )
                    label = semconv.OUTCOME_OTHER
                self._tally.labels[name] = label  # before the ticks: the flusher reads keys, then labels
                ticks[name] = new_ticks()
        if len(self._outcome_labels) < _MAX_CACHED_KEYS:
            try:
                self._outcome_labels[key] = name
            except TypeError:
                pass
        return name

    def _recorded_outcomes(self) -> dict[str, int]:
        """What ``add_outcome`` recorded, with the children's outcomes added (docs/children.md)."""
        own = self._tally.outcomes()
        board = self._children
        return own if board is None else _children.merge_outcomes(own, board.outcomes())

    @guarded
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

    @guarded
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
                    self._phase_base = self.processed_total
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

    @overload
    def track(self, iterable: Iterable[_T], total: int | None = None, stage: str | None = None) -> Iterator[_T]: ...
    @overload
    def track(
        self, iterable: AsyncIterable[_T], total: int | None = None, stage: str | None = None
    ) -> AsyncIterator[_T]: ...
    def track(
        self, iterable: Iterable[_T] | AsyncIterable[_T], total: int | None = None, stage: str | None = None
    ) -> Iterator[_T] | AsyncIterator[_T]:
        """Yield the items of ``iterable``, advancing progress by one per item.

        The stage and total are set when ``track()`` is called, not at the first
        item. The total comes from ``total`` or ``len(iterable)`` when available;
        ``stage`` starts a stage first. Without either, a total set earlier is
        kept while nothing was counted against it yet (``set_total(n)`` then
        ``track(cursor)``); otherwise a new phase starts with an unknown total.
        An async iterable (one with ``__aiter__`` and no ``__iter__``) gives an
        async iterator: ``async for row in job.track(cursor):``.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> items = job.track([1, 2, 3], stage="Adding")
            >>> job.progress_text
            'Adding (0 / 3)'
            >>> sum(items)
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
        if not hasattr(iterable, "__iter__") and hasattr(iterable, "__aiter__"):
            return self._track_async(iterable)  # type: ignore[arg-type]
        return self._track(iterable)  # type: ignore[arg-type]

    def _track(self, iterable: Iterable[_T]) -> Iterator[_T]:
        for item in iterable:
            yield item
            next(self._ticks)

    async def _track_async(self, iterable: AsyncIterable[_T]) -> AsyncIterator[_T]:
        async for item in iterable:
            yield item
            next(self._ticks)

    # --- for bridges that mirror another counter (``joblogger.tqdm``); never per item -----------
    @guarded
    def _begin_phase(self, total: int | None) -> None:
        """Start counting a pass from 0: a new phase if anything was counted in the current one.

        ``total=None`` keeps a total set earlier while nothing was counted against it (as ``track()``).
        """
        if self._summary is not None:
            return
        now = self._clock()
        with self._lock:
            if self.current != 0:
                self._phase_base = self.processed_total
                self._phase_adjust = 0
                self._rate_anchor = (now, 0)
                self._total = total
            elif total is not None:
                self._total = total

    @guarded
    def _shift_phase(self, delta: int) -> None:
        """Move the phase's count by ``delta`` for display only (``job.entities.processed`` is untouched)."""
        if self._summary is not None:
            return
        with self._lock:
            self._phase_adjust += delta

    @guarded
    def _set_phase_total(self, total: int | None) -> None:
        """Set the current phase's total without starting a new phase (None: unknown)."""
        if self._summary is not None:
            return
        with self._lock:
            self._total = total

    @guarded
    def _set_message(self, text: str | None, only_if: str | None = None) -> None:
        """Set (or clear) the step message; with ``only_if``, only while the message is still ``only_if``."""
        if self._summary is not None:
            return
        with self._lock:
            if only_if is None or self._message == only_if:
                self._message = text

    @guarded
    def _unknown_total_phase(self) -> None:
        """Start a phase of unknown total if the current one counted against a known total."""
        if self._summary is not None:
            return
        now = self._clock()
        with self._lock:
            if self._total is not None and self.current != 0:
                self._phase_base = self.processed_total
                self._phase_adjust = 0
                self._rate_anchor = (now, 0)
                self._total = None
