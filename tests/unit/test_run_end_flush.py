"""The run-end flush of multiprocessing children keeps a job's pace when the collector is slow or away."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from joblogger import _otlp_fork


class SlowTelemetry:
    """A stand-in for the set-up's telemetry whose flush takes ``delay`` seconds (a collector that does not answer)."""

    export_timeout_s = 5.0

    def __init__(self) -> None:
        self.delay = 0.0
        self.flushes = 0
        self.lock = threading.Lock()

    def force_flush(self, timeout_s: float) -> None:
        with self.lock:
            self.flushes += 1
        time.sleep(min(self.delay, 10 * timeout_s))


def timed(call: Any) -> float:
    start = time.monotonic()
    call(None)
    return time.monotonic() - start


def wait_idle(flush: _otlp_fork.RunEndFlush) -> None:
    deadline = time.monotonic() + 5
    while flush._busy.is_set():
        assert time.monotonic() < deadline, "the flush never ended"
        time.sleep(0.01)


def test_run_ends_stop_waiting_while_flushes_miss_their_bound_and_resume_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung flush makes one run end wait its bound, not every one; a flush in time brings the wait back."""
    monkeypatch.setattr(_otlp_fork, "RUN_END_FLUSH_TIMEOUT_S", 0.2)
    telemetry = SlowTelemetry()
    flush = _otlp_fork.RunEndFlush(telemetry)
    telemetry.delay = 1.0  # the collector does not answer
    assert 0.15 <= timed(flush) < 0.9  # the first run end waits the bound
    assert timed(flush) < 0.1  # a flush is still at work: the next run end neither waits nor stacks another
    assert telemetry.flushes == 1
    wait_idle(flush)  # the hung flush ends, late
    telemetry.delay = 0.0  # the collector is back
    assert timed(flush) < 0.1  # the last flush missed its bound: this run end starts one without waiting
    wait_idle(flush)
    assert telemetry.flushes == 2
    telemetry.delay = 0.1
    assert timed(flush) >= 0.09  # that flush was in time: run ends wait for their export again
    assert telemetry.flushes == 3
