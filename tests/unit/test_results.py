"""Run results: OpenTelemetry's CI/CD vocabulary, SystemExit, handled vs propagating exceptions, end()."""

from __future__ import annotations

import logging
import sys

import pytest
from opentelemetry import trace

from joblogger import SignalExit, semconv
from joblogger.testing import Capture

from ._helpers import FakeClock, assert_telemetry_valid, attrs, joblogger_warnings


class JobError(Exception):
    """A job's own failure."""


def test_system_exit_zero_is_success(cap: Capture) -> None:
    """`raise SystemExit(0)` / `sys.exit()` inside a run: success, no error, no warning, exit code 0."""
    for code in (0, None):
        with pytest.raises(SystemExit), cap.job_logger("r", f"exit-{code}") as job:
            job.increment_progress()
            sys.exit(code)
        assert job.result == "success"
        assert job.summary is not None and job.summary.line.startswith("Completed in")
        run = cap.span(f"exit-{code}")
        assert attrs(run)[semconv.JOB_RESULT] == "success"
        assert semconv.ERROR_TYPE not in attrs(run)
        assert attrs(run)[semconv.PROCESS_EXIT_CODE] == 0
        assert run.status.status_code == trace.StatusCode.UNSET
        assert not [e for e in run.events if e.name == "exception"]
        assert job.log_counts.get("warning", 0) == 0 and job.log_counts.get("error", 0) == 0
    assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: "success"}) == 2


def test_system_exit_nonzero_is_failure_with_exit_code(cap: Capture) -> None:
    """SystemExit(3) is a failure with process.exit.code=3; sys.exit("message") is exit code 1."""
    for name, code, expected in (("exit-3", 3, 3), ("exit-msg", "bad config", 1)):
        with pytest.raises(SystemExit), cap.job_logger("r", name):
            raise SystemExit(code)
        run = cap.span(name)
        assert attrs(run)[semconv.JOB_RESULT] == "failure"
        assert attrs(run)[semconv.ERROR_TYPE] == "SystemExit"
        assert attrs(run)[semconv.PROCESS_EXIT_CODE] == expected
        assert run.status.status_code == trace.StatusCode.ERROR
    assert_telemetry_valid(cap)


def test_signal_exit_is_cancellation(cap: Capture) -> None:
    """SignalExit (what joblogger.otlp raises on SIGTERM) ends the run as a cancellation with exit code 143."""
    with pytest.raises(SystemExit), cap.job_logger("r", "terminated") as job:
        raise SignalExit(143)
    assert job.result == "cancellation"
    run = cap.span("terminated")
    assert attrs(run)[semconv.PROCESS_EXIT_CODE] == 143
    assert run.status.status_code == trace.StatusCode.ERROR


def test_timeout_error_is_timeout(cap: Capture) -> None:
    """A TimeoutError escaping the run gives result `timeout`, counted in job.runs."""
    with pytest.raises(TimeoutError), cap.job_logger("r", "slow") as job:
        raise TimeoutError("upstream took too long")
    assert job.result == "timeout"
    assert job.summary is not None and job.summary.line.startswith("Timed out after")
    assert attrs(cap.span("slow"))[semconv.ERROR_TYPE] == "TimeoutError"
    assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: "timeout"}) == 1


def test_log_summary_in_handling_except_is_success(cap: Capture) -> None:
    """log_summary() inside an except block that handled the error does not fail the run."""
    job = cap.job_logger("r", "recovered")
    try:
        job.increment_progress()
        raise JobError("retryable")
    except JobError:
        summary = job.log_summary()
    assert summary.result == "success"
    assert summary.line == "Completed in 0ms | Processed: 1 entities"
    run = cap.span("recovered")
    assert semconv.ERROR_TYPE not in attrs(run)
    assert run.status.status_code == trace.StatusCode.UNSET


def _end_in_helper(job: object) -> str:
    return job.log_summary().result  # type: ignore[attr-defined, no-any-return]


def test_log_summary_in_helper_called_from_except_is_success(cap: Capture) -> None:
    """The rule looks at the frame that caught the exception, so a helper called from the except clause counts."""
    job = cap.job_logger("r", "helper")
    try:
        raise JobError("x")
    except JobError:
        assert _end_in_helper(job) == "success"


def test_log_summary_in_reraising_except_is_failure(cap: Capture) -> None:
    """An except clause that re-raises is not handling the error: the run fails."""
    job = cap.job_logger("r", "reraised")
    with pytest.raises(JobError):
        try:
            raise JobError("fatal")
        except JobError:
            job.log_summary()
            raise
    assert job.result == "failure"
    assert attrs(cap.span("reraised"))[semconv.ERROR_TYPE] == f"{__name__}.JobError"


def test_log_summary_in_finally_while_propagating_is_failure(cap: Capture) -> None:
    """log_summary() in a finally: block through which the error propagates fails the run (the guide's pattern)."""
    job = cap.job_logger("r", "propagating")

    def work() -> None:
        raise JobError("deep")

    with pytest.raises(JobError):
        try:
            work()
        finally:
            job.log_summary()
    assert job.result == "failure"


def test_log_summary_in_finally_inside_handling_except_is_success(cap: Capture) -> None:
    """A finally: that runs normally inside an except clause that handled the error: success."""
    job = cap.job_logger("r", "nested")
    try:
        raise JobError("handled")
    except JobError:
        try:
            job.increment_progress()
        finally:
            job.log_summary()
    assert job.result == "success"


def test_log_summary_without_source_keeps_the_old_rule(cap: Capture) -> None:
    """Where the code cannot be read (exec), an exception being handled still fails the run."""
    job = cap.job_logger("r", "no-source")
    exec("try:\n    raise ValueError('x')\nexcept ValueError:\n    job.log_summary()\n", {"job": job})
    assert job.result == "failure"


@pytest.mark.parametrize("result", semconv.RESULTS)
def test_end_with_explicit_result(cap: Capture, result: str) -> None:
    """job.end(result=...) ends the run with exactly that result, on the span and in job.runs."""
    job = cap.job_logger("r", f"end-{result}")
    job.increment_progress(2)
    summary = job.end(result=result)
    assert summary.result == result == job.result
    run = cap.span(f"end-{result}")
    assert attrs(run)[semconv.JOB_RESULT] == result
    failed = result not in ("success", "skip")
    assert (run.status.status_code == trace.StatusCode.ERROR) is failed
    assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: result}) == 1
    assert_telemetry_valid(cap)


def test_end_ignores_the_exception_in_flight(cap: Capture) -> None:
    """end() infers nothing from sys.exc_info(): inside any except block, no result means success."""
    job = cap.job_logger("r", "explicit")
    with pytest.raises(JobError):
        try:
            raise JobError("x")
        finally:
            job.end()
    assert job.result == "success"


def test_end_with_error_records_it(cap: Capture) -> None:
    """end(error=exc) records the exception and takes its result; end(result=..., error=...) keeps the result."""
    job = cap.job_logger("r", "with-error")
    job.end(error=JobError("lost worker"))
    assert job.result == "failure"
    assert attrs(cap.span("with-error"))[semconv.ERROR_TYPE] == f"{__name__}.JobError"
    job2 = cap.job_logger("r", "system-error")
    job2.end(result="error", error=ConnectionError("worker lost"))
    run = cap.span("system-error")
    assert attrs(run)[semconv.JOB_RESULT] == "error"
    assert attrs(run)[semconv.ERROR_TYPE] == "ConnectionError"
    assert job2.summary is not None and job2.summary.line.startswith("Errored after")


def test_end_bad_result_warns_once_and_infers(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """An unknown result or a non-exception error is reported once and ignored; nothing raises."""
    caplog.set_level(logging.WARNING, "joblogger")
    job = cap.job_logger("r", "bad-end")
    summary = job.end(result="failed", error="boom")  # type: ignore[arg-type]
    assert summary.result == "success"
    assert set(joblogger_warnings(caplog.records)) == {"end-result", "end-error"}
    assert job.end(result="failure").result == "success"  # idempotent: the first end wins


def test_cancellation_still_warns(cap: Capture, clock: FakeClock) -> None:
    """KeyboardInterrupt remains a cancellation reported with a warning line."""
    with pytest.raises(KeyboardInterrupt), cap.job_logger("r", "ctrl-c") as job:
        raise KeyboardInterrupt
    assert job.result == "cancellation"
    assert job.log_counts["warning"] == 1
