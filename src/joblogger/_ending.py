"""The end of a run: result, summary line, final span attributes, run metrics; the context managers."""

from __future__ import annotations

import functools
import sys
import threading
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.trace import Status, StatusCode

from . import _format, _registry, _sanitize, _signals, semconv
from ._children import children_text as _children_text
from ._current import enter_job, exit_job
from ._inflight import is_propagating
from ._levels import MILESTONE
from ._results import classify
from ._spans import error_type, exception_message, record_exception
from ._state import Closed, RunState, guarded, pylog, quietly
from ._summary import Summary, build_summary
from ._tally import ticks_value

_S = TypeVar("_S", bound="EndingMixin")

#: An empty mapping for the summary's parts a run did not have (read only: never written to).
_NONE: dict[str, int] = {}

#: The log line that reports the exception which ended a run, by result.
_ENDED_BY = {
    semconv.RESULT_FAILURE: "Job failed",
    semconv.RESULT_ERROR: "Job errored",
    semconv.RESULT_TIMEOUT: "Job timed out",
    semconv.RESULT_CANCELLATION: "Job cancelled",
    semconv.RESULT_SUCCESS: "Job ended",
    semconv.RESULT_SKIP: "Job skipped",
}


class EndingMixin(RunState):
    """``save_outcome``, ``log_summary``, ``end`` and ``with`` / ``async with`` support."""

    __slots__ = ()

    @guarded
    def save_outcome(self, timeout_s: float = 2.0) -> None:
        """Make the outcome snapshot durable now: record it on the run span and flush metrics.

        The one call that may wait for I/O, at most ``timeout_s`` seconds.
        """
        if _signals.reentered():  # from a signal handler, inside one of our SDK calls: run it right after
            _signals.defer(functools.partial(self.save_outcome, timeout_s))
            return
        if self._ended_call():
            return
        with _signals.sdk():
            self._run.span.set_attributes(self._outcome_attributes(self._outcome_room))
            self._hub.flush_outcomes(self._tally)
        flush = getattr(self._meter_provider, "force_flush", None)
        if callable(flush):
            # The SDK's force_flush can outlive its own timeout against a hung collector (it waits for
            # an export already in flight), so it runs on its own thread and the job waits at most
            # timeout_s; the flush still completes in the background.
            worker = threading.Thread(
                target=quietly, args=(flush, int(timeout_s * 1000)), name="joblogger-save-outcome", daemon=True
            )
            worker.start()
            worker.join(max(0.0, float(timeout_s)))

    def log_summary(self) -> Summary:
        """End the run and log its summary line as a milestone; idempotent.

        Ends the open stage and the run span and records the run metrics. The
        result comes from the exception in flight, if any: called from a
        ``finally:`` block while an exception propagates, the run fails (or is
        cancelled, for ``KeyboardInterrupt`` and similar); called from an
        ``except`` clause that handles the exception (no ``raise`` in it), the
        run succeeds. The rule is in docs/telemetry.md; :meth:`end` states the
        result explicitly.

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
        if exc is self._outer_exc:
            exc = None
        elif exc is not None:
            try:
                if not is_propagating(exc):
                    exc = None
            except Exception as error:  # noqa: BLE001
                self._internal_error("log_summary", error)
        return self._finish(None if exc is None else exc)

    def end(self, result: str | None = None, error: BaseException | None = None) -> Summary:
        """End the run with an explicit result and log its summary; idempotent.

        Unlike :meth:`log_summary`, nothing is inferred from an exception in
        flight: the result is ``result`` if given, else the one ``error``
        implies (see docs/telemetry.md), else ``success``. ``error`` is recorded
        on the run span. ``result`` is one of :data:`joblogger.semconv.RESULTS`:
        ``success``, ``failure``, ``error``, ``timeout``, ``cancellation``, ``skip``;
        anything else is reported once and replaced by the inferred result.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r", "j", clock=lambda: 0.0)
            >>> job.end(result="skip").line
            'Skipped after 0ms | Processed: 0 entities'
            >>> job.result
            'skip'
        """
        try:
            if error is not None and not isinstance(error, BaseException):
                self._warn("end-error", "end(error=...) is not an exception (%r); ignored", type(error).__name__)
                error = None
            if result is not None and result not in semconv.RESULTS:
                self._warn(
                    "end-result", "unknown result %r (expected one of %s); ignored", result, ", ".join(semconv.RESULTS)
                )
                result = None
        except Exception as exc:  # noqa: BLE001
            self._internal_error("end", exc)
            result, error = None, None
        return self._finish(error, result)

    @property
    def result(self) -> str | None:
        """The run's result once it ended (one of :data:`joblogger.semconv.RESULTS`), else None."""
        summary = self._summary
        return None if summary is None else summary.result

    def _finish(self, exc: BaseException | None, result: str | None = None) -> Summary:
        summary = self._summary
        if summary is not None:
            return summary
        if _signals.reentered():
            # From a signal handler, inside one of our SDK calls (whose lock is not re-entrant): the run
            # ends as soon as that call returns; the caller gets the summary as of now.
            _signals.defer(functools.partial(self._finish, exc, result))
            return self._provisional_summary(exc, result)
        try:
            # Held signals (see _signals) are raised once the run has fully ended.
            with _signals.critical():
                return self._end_run(exc, result)
        except Exception as error:  # noqa: BLE001
            self._internal_error("log_summary", error)
            return self._summary or Summary("", semconv.RESULT_FAILURE, 0, None, None, {}, 0.0)

    def _provisional_summary(self, exc: BaseException | None, explicit: str | None) -> Summary:
        """The summary the run would end with now, without ending it."""
        result = explicit or classify(exc).result
        duration_s = max(0.0, self._clock() - self._started)
        outcomes = _format.ordered_outcomes(self._recorded_outcomes(), self._tally.logs())
        current = self.current
        line = _format.summary_line(result, duration_s, current, self._entity_type, outcomes.items())
        return Summary(line, result, current, self._total, self._entity_type, outcomes, duration_s * 1000.0)

    def _end_run(self, exc: BaseException | None, explicit: str | None) -> Summary:
        outcome = classify(exc)
        result = explicit or outcome.result
        recorded = exc if explicit is not None else outcome.error
        self._outer_exc = None
        exc_text = "" if recorded is None else f"{error_type(recorded)}: {exception_message(recorded)}"
        if recorded is not None:
            severe = result in semconv.FAILED_RESULTS
            self._log(
                semconv.LEVEL_ERROR if severe else semconv.LEVEL_WARNING,
                f"{_ENDED_BY.get(result, 'Job ended')}: {exc_text}",
                None,
                None,
            )
        now = self._clock()
        with self._lock:
            if self._summary is not None:  # another thread finished first
                return self._summary
            stage, stage_label = self._stage, self._stage_label
            duration_s = max(0.0, now - self._started)
            # Each tally is read once here: the summary, the span attributes and the line all use these.
            if self._children is not None:
                self._children.freeze()  # children still running no longer change this run
            recorded_outcomes = self._recorded_outcomes()
            logs = self._tally.logs()
            outcomes = _format.ordered_outcomes(recorded_outcomes, logs)
            current = self.current
            line = _format.summary_line(result, duration_s, current, self._entity_type, outcomes.items())
            # Most runs dropped no event, hit no rate limit and had no child: no work for those.
            dropped = dict(self._dropped)
            for slot in (stage, self._run):
                if slot is not None and slot.dropped:
                    for level, n in slot.dropped.items():
                        dropped[level] = dropped.get(level, 0) + n
            suppressed = (
                {level: bucket.suppressed for level, bucket in self._limits.items() if bucket.suppressed}
                if self._limits
                else _NONE
            )
            if suppressed:
                line += f" | Logs suppressed: {_format.format_count(sum(suppressed.values()))}"
            board = self._children
            children = _NONE if board is None else board.counts()
            if children:
                children_part = _children_text(children)
                if children_part:
                    line += f" | {children_part}"
            summary = build_summary(
                line,
                result,
                entities_processed=current,
                entities_total=self._total,
                entity_type=self._entity_type,
                outcomes=outcomes,
                duration_ms=duration_s * 1000.0,
                events_dropped=dropped,
                logs_suppressed=suppressed,
                children=children,
            )
            if self._summary is not None:  # a signal handler on this thread ended the run meanwhile
                return self._summary
            # No call between the check above and these stores: a signal handler cannot run in between.
            self._stage = None
            self._ended_at = now
            self._summary = summary
        # One signals section around the end-of-run SDK work (see _signals; sections nest).
        with _signals.sdk():
            if stage is not None:
                self._close_stage_in_section(stage, stage_label, now)
            # The summary line is the run's last log record: on the run span, counted as a milestone.
            self._emit(
                semconv.LEVEL_MILESTONE,
                MILESTONE,
                line,
                {},
                pylog.isEnabledFor(MILESTONE),
                reserved=True,
                in_section=True,
            )
            self._tally.count_log(semconv.LEVEL_MILESTONE)
            logs[semconv.LEVEL_MILESTONE] = ticks_value(self._tally.log_ticks[semconv.LEVEL_MILESTONE])
            with self._lock:
                self._ticks = Closed(self)
                self._outcome_ticks = {}
            run_attrs: dict[str, Any] = {
                semconv.JOB_RESULT: result,
                semconv.JOB_ENTITY_TYPE: self._entity_type or _format.DEFAULT_ENTITY_TYPE,
                semconv.JOB_PROGRESS_CURRENT: _sanitize.clamp_int(current),
            }
            if self._total is not None:
                run_attrs[semconv.JOB_PROGRESS_TOTAL] = _sanitize.clamp_int(self._total)
            # The span's outcomes are what add_outcome recorded (as on the job.outcomes metric); the log
            # calls the summary's errors/warnings default to are there as job.logs.<level>.
            if recorded_outcomes:
                run_attrs.update(self._outcome_attributes(self._outcome_room, recorded_outcomes))
            for level, value in logs.items():
                if value:
                    run_attrs[semconv.JOB_LOGS_PREFIX + level] = value
            for state, value in children.items():
                run_attrs[semconv.JOB_CHILDREN_PREFIX + state] = value
            if outcome.exit_code is not None and (recorded is not None or explicit is None):
                run_attrs[semconv.PROCESS_EXIT_CODE] = outcome.exit_code
            status = None
            if recorded is not None:
                run_attrs[semconv.ERROR_TYPE] = error_type(recorded)
                record_exception(self._run.span, recorded)
            if result not in (semconv.RESULT_SUCCESS, semconv.RESULT_SKIP):
                status = Status(StatusCode.ERROR, exc_text[:1024] or result)
            self._run.close(run_attrs, status)
            # Linked to the run span, so exemplars lead from the metric to the run's trace.
            self._hub.records.record_run(self._tally.job, result, duration_s, self._run.span, self._run.ctx)
            self._tally.ended = True
            _registry.discard(self)
            if self._parent is not None:
                self._parent._child_ended(self, result)
            self._hub.flush_outcomes(self._tally)
            if self._schedule is not None:
                self._hub.schedules.end(
                    self._tally.job, self, self._wall_started + duration_s, duration_s, result=result, processed=current
                )
            self._hub.end(self, self._tally)
        for observer in _registry.end_observers():
            try:
                observer(self)
            except Exception as error:  # noqa: BLE001 - an observer must not break the job
                self._internal_error("observer", error)
        return summary

    # --- context manager ---------------------------------------------------------------
    def __enter__(self: _S) -> _S:
        otel_token: object | None = None
        try:
            otel_token = otel_context.attach(self._run.ctx)
            self._context_token = (otel_token, enter_job(self))
        except Exception as exc:  # noqa: BLE001
            self._context_token = (otel_token, None)
            self._internal_error("__enter__", exc)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with _signals.critical():
            self._exit(exc)
        # Returning None lets the user's exception propagate untouched.

    def _exit(self, exc: BaseException | None) -> None:
        self._finish(exc)
        tokens, self._context_token = self._context_token, None
        if isinstance(tokens, tuple):
            otel_token, job_token = tokens
            try:
                if job_token is not None:
                    exit_job(job_token)
                if otel_token is not None:
                    otel_context.detach(otel_token)
            except Exception as error:  # noqa: BLE001
                self._internal_error("__exit__", error)

    async def __aenter__(self: _S) -> _S:
        """``async with create_job_logger(...) as job:`` works like ``with``."""
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """End the run like ``__exit__``; the exception (``CancelledError`` too) propagates untouched."""
        self.__exit__(exc_type, exc, tb)
