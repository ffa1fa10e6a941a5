"""Bounded exit for joblogger's own set-up: exporters that stop once shutdown's deadline passed.

Used by :func:`joblogger.otlp.configure` only (the SDK wiring); see
docs/reliability.md for the bound and how it was measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ._otlp_settings import SignalSettings


class ExitDeadline:
    """Bounds shutdown: once its deadline has passed, the exporters of one set-up drop batches at once.

    The SDK's batch processors export *everything* queued at shutdown, one batch
    after another, each bounded only by the export timeout, and wait up to 30 s
    per signal for that. Against a collector that never answers, full queues
    (2,048 spans, 2,048 log records) held the process 21-29 s at exit. With
    this gate an export that starts after the deadline fails immediately (the
    batch is counted, not sent), and one already in flight ends within the
    export timeout, so shutdown lasts at most the deadline plus one timeout.
    """

    __slots__ = ("_at", "_lock", "dropped")

    def __init__(self) -> None:
        self._at: float | None = None
        self._lock = threading.Lock()
        self.dropped: dict[str, int] = {}

    def arm(self, seconds: float) -> None:
        """Let exports start for ``seconds`` more, then drop them."""
        self._at = time.monotonic() + seconds

    def refuse(self, what: str, count: int) -> bool:
        """Whether to drop an export of ``count`` items of ``what`` now (counting them if so)."""
        if self._at is None or time.monotonic() < self._at:
            return False
        with self._lock:
            self.dropped[what] = self.dropped.get(what, 0) + count
        return True


class UntilDeadline:
    """A span or log exporter that stops exporting once the set-up's exit deadline has passed."""

    __slots__ = ("_deadline", "_failure", "_inner", "_what")

    def __init__(self, inner: Any, deadline: ExitDeadline, what: str, failure: object) -> None:
        self._inner = inner
        self._deadline = deadline
        self._what = what
        self._failure = failure

    def export(self, batch: Sequence[Any]) -> Any:
        """Export, or drop the batch if shutdown's deadline has passed."""
        if self._deadline.refuse(self._what, len(batch)):
            return self._failure
        return self._inner.export(batch)

    def shutdown(self) -> None:
        """Delegate."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Delegate."""
        return bool(self._inner.force_flush(timeout_millis))


def batch_span_processor(exporter: Any, signal: SignalSettings, deadline: ExitDeadline) -> Any:
    """A BatchSpanProcessor; ``None`` delays and timeouts let the SDK read ``OTEL_BSP_*``."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    return BatchSpanProcessor(
        cast(Any, UntilDeadline(exporter, deadline, "spans", SpanExportResult.FAILURE)),
        schedule_delay_millis=signal.schedule_delay_ms,
        export_timeout_millis=signal.export_timeout_ms,
    )


def batch_log_processor(exporter: Any, signal: SignalSettings, deadline: ExitDeadline) -> Any:
    """A BatchLogRecordProcessor; ``None`` delays and timeouts let the SDK read ``OTEL_BLRP_*``."""
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    return BatchLogRecordProcessor(
        cast(Any, UntilDeadline(exporter, deadline, "log records", log_export_failure())),
        schedule_delay_millis=signal.schedule_delay_ms,
        export_timeout_millis=signal.export_timeout_ms,
    )


def log_export_failure() -> object:
    """The SDK's "export failed" value for log exporters (newer SDKs renamed the enum)."""
    from opentelemetry.sdk._logs import export

    result = getattr(export, "LogRecordExportResult", None) or export.LogExportResult
    return result.FAILURE
