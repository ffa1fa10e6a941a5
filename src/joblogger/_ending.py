"""The end of a run: result, summary line, final span attributes, run metrics; the context manager."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.trace import Status, StatusCode

from . import _format, _registry, _sanitize, semconv
from ._levels import MILESTONE
from ._spans import error_type, exception_message, record_exception
from ._state import Closed, RunState, guarded, pylog, quietly
from ._summary import Summary

_S = TypeVar("_S", bound="EndingMixin")


class EndingMixin(RunState):
    """``save_outcome``, ``log_summary`` and ``with`` support."""

    __slots__ = ()

    @guarded
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
                target=quietly, args=(flush, int(timeout_s * 1000)), name="joblogger-save-outcome", daemon=True
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
        exc_text = "" if exc is None else f"{error_type(exc)}: {exception_message(exc)}"
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
        self._emit(semconv.LEVEL_MILESTONE, MILESTONE, line, {}, pylog.isEnabledFor(MILESTONE), reserved=True)
        next(self._tally.log_ticks[semconv.LEVEL_MILESTONE])
        with self._lock:
            self._ticks = Closed(self)
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
            run_attrs[semconv.ERROR_TYPE] = error_type(exc)
            record_exception(self._run.span, exc)
            status = Status(StatusCode.ERROR, exc_text[:1024])
        self._run.close(run_attrs, status)
        metric_attrs = {semconv.JOB_NAME: self._tally.job, semconv.JOB_RESULT: result}
        # Recorded in the run span's context, so exemplars link the metric to the run's trace.
        self._hub.runs.add(1, metric_attrs, context=self._run.ctx)
        self._hub.run_duration.record(duration_s, metric_attrs, context=self._run.ctx)
        self._tally.ended = True
        _registry.discard(self)
        self._hub.flush_outcomes(self._tally)
        self._hub.end(self, self._tally)
        self._finalizer.detach()
        for observer in _registry.end_observers():
            try:
                observer(self)
            except Exception as error:  # noqa: BLE001 - an observer must not break the job
                self._internal_error("observer", error)
        return summary

    # --- context manager ---------------------------------------------------------------
    def __enter__(self: _S) -> _S:
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
