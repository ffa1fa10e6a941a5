"""Forked children: the SDK storage reset joblogger relies on, detached runs, and the after-fork hooks.

These run under every supported SDK version (``scripts/check-lowest`` runs the
unit tests with the lowest), so they pin the SDK-private layout that
``joblogger._otlp_fork.reset_metric_storage`` uses.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from joblogger import _fork, _otlp_fork, _registry, otlp, semconv
from joblogger.testing import Capture

from ._helpers import in_child

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")


def _sums(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    totals: dict[str, float] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count  # histograms: how many recorded
                    totals[metric.name] = totals.get(metric.name, 0) + value
    return totals


def test_reset_metric_storage_forgets_counters_and_histograms():
    """After a reset the provider reports only what was recorded since: the SDK layout is as joblogger expects."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("t")
    counter = meter.create_counter("c")
    histogram = meter.create_histogram("h")
    counter.add(1000, {"k": "v"})
    histogram.record(2.0)
    assert _sums(reader) == {"c": 1000, "h": 1}
    assert _otlp_fork.reset_metric_storage(provider) is True
    assert _sums(reader) == {}
    counter.add(7, {"k": "v"})
    histogram.record(1.0)
    assert _sums(reader) == {"c": 7, "h": 1}
    provider.shutdown()


def test_reset_metric_storage_warns_and_changes_nothing_for_an_unknown_layout(caplog):
    """A provider whose storage does not look like the SDK's is left alone, with one warning."""

    class Odd:
        _measurement_consumer = object()

    with caplog.at_level(logging.WARNING, logger="joblogger"):
        assert _otlp_fork.reset_metric_storage(Odd()) is False
    assert "could not reset the metric storage" in caplog.text


def test_after_fork_ignores_a_provider_that_is_not_the_sdks():
    """after_fork() on the API's no-op provider does nothing and says so."""
    from opentelemetry.metrics import NoOpMeterProvider

    assert otlp.after_fork(NoOpMeterProvider()) is False


def test_one_after_fork_hook_per_concern_and_no_direct_registration():
    """Every module reacts to fork through joblogger._fork: hub, registry, snapshots, console and SDK storage."""
    import joblogger.console  # noqa: F401 - registers its hook

    names = {f"{hook.__module__}.{hook.__qualname__}" for hook in _fork._hooks}
    assert {
        "joblogger._metrics._forget_parent_runs",
        "joblogger._registry._forget_parent_runs",
        "joblogger._snapshots._after_fork_in_child",
        "joblogger.console._forget_views_in_child",
        "joblogger._otlp_fork._reset_owned_in_child",
    } <= names
    package = Path(_fork.__file__).parent
    direct = [p.name for p in package.glob("*.py") if p.name != "_fork.py" and "os.register_at_fork(" in p.read_text()]
    assert direct == []


@needs_fork
def test_a_run_active_at_the_fork_is_detached_in_the_child(cap: Capture):
    """The child's copy of the parent's run never ends, counts or exports it; the parent's run is intact."""
    job = cap.job_logger("straddle", "fork")
    job.set_stage("Working")
    job.increment_progress(100)
    job.add_outcome("updates", 100)

    def child() -> dict[str, object]:
        job.increment_progress(5)
        job.add_outcome("updates", 5)
        job.info("from the child")
        summary = job.log_summary()
        return {
            "result": summary.result,
            "ended_spans": [s.name for s in cap.spans()],
            "runs": cap.metric_value(semconv.METRIC_RUNS),
            "active": [r.job_run_id for r in _registry.active_runs()],  # type: ignore[attr-defined]
        }

    assert in_child(child) == {"result": "detached", "ended_spans": [], "runs": 0, "active": []}
    job.increment_progress(50)
    summary = job.log_summary()
    assert summary.result == "success"
    assert summary.entities_processed == 150
    assert [s.name for s in cap.spans() if s.name == "fork"] == ["fork"]
    assert cap.metric_value(semconv.METRIC_RUNS) == 1


@needs_fork
def test_fork_from_a_thread_while_others_hold_the_runs_lock_never_hangs_the_child(cap: Capture):
    """Forking while other threads keep taking the run's lock: the child's log_summary() always returns."""
    job = cap.job_logger("busy", "fork")
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            job.set_progress(job.current + 1)
            job.set_total(10_000_000)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    hung = 0
    try:
        for _ in range(30):
            pid = os.fork()
            if pid == 0:
                job.log_summary()
                cap.job_logger("child", "fork").log_summary()
                os._exit(0)
            for _ in range(200):  # 2 s
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    assert os.waitstatus_to_exitcode(status) == 0
                    break
                threading.Event().wait(0.01)
            else:
                hung += 1
                os.kill(pid, 9)
                os.waitpid(pid, 0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    job.log_summary()
    assert hung == 0
