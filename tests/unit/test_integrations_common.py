"""joblogger.integrations._common: task runs and the throttled native-progress publisher."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pytest
from opentelemetry.trace import set_span_in_context

from joblogger import create_job_logger, semconv
from joblogger.integrations._common import progress_meta, publish_progress, start_task_run
from joblogger.testing import capture


def test_a_task_run_carries_framework_queue_worker_and_attempt_under_the_given_parent() -> None:
    with capture() as cap:
        with cap.tracer_provider.get_tracer("test").start_as_current_span("producer") as producer:
            parent = set_span_in_context(producer)
        job = start_task_run(
            "mail", "t-9", framework="rq", queue="q1", worker="w1", attempt=3, parent=parent,
            tracer_provider=cap.tracer_provider, meter_provider=cap.meter_provider,
        )  # fmt: skip
        job.end()
        run = cap.span("mail")
        assert run.attributes is not None
        assert run.attributes[semconv.JOB_FRAMEWORK] == "rq"
        assert run.attributes[semconv.JOB_QUEUE] == "q1"
        assert run.attributes[semconv.JOB_WORKER] == "w1"
        assert run.attributes[semconv.JOB_ATTEMPT] == 3
        assert run.parent is not None and run.parent.span_id == producer.get_span_context().span_id


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_sink_is_called_at_most_once_per_interval_and_only_when_progress_moved() -> None:
    calls: list[dict[str, Any]] = []
    job = create_job_logger("r", "j")
    job.set_total(1000)
    stop = publish_progress(job, calls.append, interval_s=0.3)
    _wait_for(lambda: len(calls) == 1)
    started = time.monotonic()
    for _ in range(1000):  # a tight loop: many changes, few writes
        job.increment_progress()
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    time.sleep(0.7)
    quiet = len(calls)
    time.sleep(0.7)  # nothing changes: nothing is written (elapsed/rate/ETA alone do not count)
    assert len(calls) == quiet
    assert quiet <= 2 + elapsed / 0.3 + 1
    assert calls[-1]["current"] == 1000 and calls[-1]["percent"] == 100.0
    stop()
    job.end()


def test_stop_delivers_the_final_progress_and_unsubscribes() -> None:
    calls: list[dict[str, Any]] = []
    job = create_job_logger("r", "j")
    stop = publish_progress(job, calls.append, interval_s=60)
    _wait_for(lambda: len(calls) == 1)
    job.set_stage("Loading")
    job.add_outcome("inserts", 2)
    stop()
    assert calls[-1]["stage"] == "Loading" and calls[-1]["outcomes"] == {"inserts": 2}
    n = len(calls)
    job.increment_progress()
    time.sleep(0.3)
    assert len(calls) == n
    job.end()


def test_the_first_call_waits_first_after_s_and_a_run_ending_sooner_costs_the_sink_nothing() -> None:
    """With first_after_s the sink is first called after that delay; stop(final=False) before it: never."""
    short, long_ = create_job_logger("r-short", "j"), create_job_logger("r-long", "j")
    short_seen: list[dict[str, Any]] = []
    long_seen: list[dict[str, Any]] = []
    started = time.monotonic()
    stop_short = publish_progress(short, short_seen.append, interval_s=0.05, first_after_s=0.4)
    stop_long = publish_progress(long_, long_seen.append, interval_s=0.05, first_after_s=0.4)
    short.set_progress(1)
    long_.set_progress(1)
    time.sleep(0.2)
    stop_short(final=False)
    assert short_seen == [] and long_seen == []
    _wait_for(lambda: long_seen)
    assert time.monotonic() - started >= 0.4
    stop_long(final=False)
    assert short_seen == []
    short.end()
    long_.end()


def test_a_failing_sink_is_reported_once_and_never_reaches_the_job(caplog: pytest.LogCaptureFixture) -> None:
    def broken(meta: dict[str, Any]) -> None:
        raise ConnectionError("backend down")

    job = create_job_logger("r-broken", "j")
    with caplog.at_level(logging.WARNING, logger="joblogger"):
        stop = publish_progress(job, broken, interval_s=0.05)
        for i in range(5):
            job.set_progress(i + 1)
            time.sleep(0.1)
        stop()
    job.end()
    warnings = [r for r in caplog.records if "backend down" in r.getMessage()]
    assert len(warnings) == 1 and "r-broken" in warnings[0].getMessage()


def test_progress_meta_is_json_ready() -> None:
    import json

    job = create_job_logger("r", "j", clock=lambda: 0.0)
    job.set_total(2, "rows")
    job.increment_progress(message="row 1")
    meta = progress_meta(job)
    assert json.loads(json.dumps(meta)) == meta
    assert (meta["entity_type"], meta["message"], meta["text"]) == ("rows", "row 1", job.progress_text)
    job.end()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_publishes_its_own_runs_with_its_own_thread() -> None:
    parent_calls: list[dict[str, Any]] = []
    parent_job = create_job_logger("parent", "j")
    stop = publish_progress(parent_job, parent_calls.append, interval_s=0.05)
    _wait_for(lambda: len(parent_calls) >= 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's subscription is gone, a new one works
        code = 1
        try:
            child_calls: list[dict[str, Any]] = []
            job = create_job_logger("child", "j")
            child_stop = publish_progress(job, child_calls.append, interval_s=0.05)
            job.set_progress(7)
            deadline = time.monotonic() + 5
            while not any(c["current"] == 7 for c in child_calls) and time.monotonic() < deadline:
                time.sleep(0.01)
            child_stop(final=False)
            ok = any(c["current"] == 7 for c in child_calls) and all(c["run_id"] == "child" for c in child_calls)
            names = [t.name for t in threading.enumerate()]
            os.write(write, f"{ok} {names.count('joblogger-native-progress')}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 100).decode()
    os.close(read)
    stop()
    parent_job.end()
    assert os.waitstatus_to_exitcode(status) == 0
    assert answer == "True 1"
