"""Stages of a run: one child span each, snapshots, and the progress-gauge attributes they change."""

from __future__ import annotations

import functools
from typing import Any

from . import _format, _outcome_attrs, _sanitize, _signals, semconv
from ._spans import SpanSlot
from ._state import MAX_STAGES, RunState, guarded


class StagesMixin(RunState):
    """``set_stage`` and everything a stage change touches."""

    __slots__ = ()

    @guarded
    def set_stage(self, stage: str, message: str | None = None) -> None:
        """End the current stage and start ``stage``; logs the milestone ``Starting: <stage>``.

        The milestone is a log record (and a ``job.logs`` count), not a span event: the
        stage span's own name and start time say it.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j")
            >>> job.set_stage("Initializing", "Loading configuration")
            >>> job.progress_text
            'Initializing (loading configuration)'
        """
        if _signals.reentered():  # from a signal handler, inside one of our SDK calls: run it right after
            _signals.defer(functools.partial(self.set_stage, stage, message))
            return
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
        with _signals.sdk():
            span = self._tracer.start_span(
                name,
                context=self._run.ctx,
                # Only job.stage: job.name and job.run.id are the parent run span's (docs/telemetry.md).
                attributes={semconv.JOB_STAGE: name},
            )
        with self._lock:
            # Another thread of the run may have set a stage since this one took the old one away:
            # that stage ends here, or its span would never end (nor be exported).
            displaced, displaced_label = self._stage, self._stage_label
            processed = self.processed_total  # read once: current is the same count, phase-adjusted
            slot = self._stage = SpanSlot(span, self._event_budget, now, processed)
            self._tally.ctx = slot.ctx
            self._stage_name = name
            self._stage_label = label
            self._message = text
            self._rate_anchor = (now, processed - self._phase_base + self._phase_adjust)
            self._gauge_attrs = None  # rebuilt when a collection reads them (see _refresh_gauge_attrs)
        if displaced is not None:
            self._close_stage(displaced, displaced_label, now)
        if self._snapshots:
            self._snapshot(slot, semconv.SNAPSHOT_STAGE_START)
        self._record_only(semconv.LEVEL_MILESTONE, f"Starting: {name}")

    def _snapshot(self, slot: SpanSlot, kind: str) -> None:
        """Emit an already-ended snapshot span under ``slot`` (see ``_snapshots``)."""
        attrs: dict[str, Any] = {
            semconv.JOB_SNAPSHOT_KIND: kind,
            semconv.JOB_NAME: self._job_name,
            semconv.JOB_RUN_ID: self._run_id,
            semconv.JOB_STAGE: self._stage_name or "",
            semconv.JOB_PROGRESS_CURRENT: _sanitize.clamp_int(self.current),
            semconv.JOB_ENTITY_TYPE: self._entity_type or _format.DEFAULT_ENTITY_TYPE,
        }
        if self._total is not None:
            attrs[semconv.JOB_PROGRESS_TOTAL] = _sanitize.clamp_int(self._total)
        logs = {semconv.JOB_LOGS_PREFIX + level: value for level, value in self._tally.logs().items()}
        space = _outcome_attrs.room(self._snapshot_attr_limit, len(attrs) + len(semconv.LEVELS))
        attrs.update(self._outcome_attributes(space))
        attrs.update(logs)
        name = self._stage_name if kind != semconv.SNAPSHOT_RUN_START and self._stage_name else self._job_name
        with _signals.sdk():
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

    def _close_stage(self, slot: SpanSlot, label: str, now: float) -> None:
        with _signals.sdk():
            self._close_stage_in_section(slot, label, now)

    def _close_stage_in_section(self, slot: SpanSlot, label: str, now: float) -> None:
        """:meth:`_close_stage` for a caller already inside a ``_signals.sdk()`` section (the run's end)."""
        processed = self.processed_total - slot.processed_at_start
        slot.close({semconv.JOB_PROGRESS_CURRENT: _sanitize.clamp_int(processed)})
        if slot.dropped:
            with self._lock:
                for level, n in slot.dropped.items():
                    self._dropped[level] = self._dropped.get(level, 0) + n
        self._hub.records.record_stage(self._tally.job, label, max(0.0, now - slot.started_at), slot.span, slot.ctx)

    def _refresh_gauge_attrs(self) -> None:
        """Forget the progress-gauge attributes (caller holds the lock); rebuilt when a collection reads them.

        Most runs of a small task are never collected while active, so they never build them.
        """
        self._gauge_attrs = None

    def _build_gauge_attrs(self) -> dict[str, Any]:
        with self._lock:  # a stage change in between would otherwise be overwritten with the old attributes
            attrs = self._gauge_attrs
            if attrs is None:
                attrs = {semconv.JOB_NAME: self._tally.job}
                if self._stage_label:
                    # Before the first stage: no job.stage rather than an empty one (Prometheus reads
                    # both alike; Thanos Receive rejects a series with an empty label value).
                    attrs[semconv.JOB_STAGE] = self._stage_label
                attrs[semconv.JOB_ENTITY_TYPE] = self._tally.entity_type
                attrs[semconv.JOB_RUN_SLOT] = self._tally.slot
                if self._run_id_on_metrics:
                    attrs[semconv.JOB_RUN_ID] = _sanitize.as_label(self._run_id)
                self._gauge_attrs = attrs
            return attrs

    def _gauge_points(self) -> tuple[dict[str, Any], int, int | None, float | None] | None:
        """Attributes, current, total and ETA for the progress gauges (read once per collection and run).

        None once the run has ended: a collection that listed it just before has no point for
        it (its slot is free again; attributes built now would say ``job.run.slot`` -1).
        """
        if self._ended_at is not None:
            return None
        attrs = self._gauge_attrs
        if attrs is None:
            attrs = self._build_gauge_attrs()
        if self._ended_at is not None or attrs.get(semconv.JOB_RUN_SLOT, 0) < 0:
            return None
        current = self.current
        total = self._total
        if total is None:
            return attrs, current, total, None
        anchor_time, anchor_count = self._rate_anchor
        speed = _format.rate(current - anchor_count, self._clock() - anchor_time)
        return attrs, current, total, _format.eta(current, total, speed)
