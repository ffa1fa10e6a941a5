"""joblogger.integrations.arq and .apscheduler in-process, with in-memory providers (live tests: tests/integration)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from apscheduler.executors.pool import ProcessPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from arq.worker import Retry

from joblogger import current_job, semconv
from joblogger.integrations import apscheduler as jl_aps
from joblogger.integrations import arq as jl_arq
from joblogger.testing import Capture, capture


def _options(cap: Capture) -> dict[str, Any]:
    return {"tracer_provider": cap.tracer_provider, "meter_provider": cap.meter_provider}


# --- arq -----------------------------------------------------------------------


def test_arq_instrument_wraps_each_function_once_and_keeps_arqs_settings() -> None:
    """Names, timeouts, retries stay; a second instrument() wraps nothing; untracked ones lose only the carrier."""

    async def resize(ctx: Any) -> None: ...

    @jl_arq.untracked
    async def ping(ctx: Any) -> None: ...

    from arq import cron, func

    settings = {"functions": [func(resize, timeout=7, max_tries=2), ping], "cron_jobs": [cron(resize, minute=1)]}
    once = jl_arq.instrument(settings)
    twice = jl_arq.instrument(once)
    (wrapped, pinged) = twice["functions"]
    assert (wrapped.name, wrapped.timeout_s, wrapped.max_tries) == (resize.__qualname__, 7, 2)
    assert wrapped.coroutine is once["functions"][0].coroutine
    assert wrapped.coroutine.__joblogger_arq__ == "wrapped"
    assert pinged.coroutine.__joblogger_arq__ == "stripped"
    assert twice["cron_jobs"][0].coroutine.__joblogger_arq__ == "wrapped"
    assert twice["on_job_start"] is once["on_job_start"]
    assert settings["functions"][1] is ping  # a dict is copied, not changed
    with pytest.raises(TypeError):
        jl_arq.instrument(42)  # type: ignore[type-var]


def test_arq_cancellation_at_the_timeout_is_timeout_before_it_cancellation() -> None:
    """A job cancelled once its timeout elapsed ends as timeout; one cancelled earlier (an abort) as cancellation."""

    async def nap(ctx: Any) -> None:
        await asyncio.sleep(10)

    async def main(cap: Capture) -> None:
        run = jl_arq.wrap(nap, "nap", timeout_s=0.2, **_options(cap))
        ctx: dict[str, Any] = {"job_id": "late", "job_try": 1}
        await jl_arq._stamp_hook(None)(ctx)
        with pytest.raises(asyncio.TimeoutError):  # what arq does: wait_for cancels the job at its timeout
            await asyncio.wait_for(run(ctx), 0.2)
        task = asyncio.ensure_future(run({"job_id": "aborted", "job_try": 3}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with capture() as cap:
        asyncio.run(main(cap))
        late, aborted = cap.spans("nap")
        assert late.attributes is not None and aborted.attributes is not None
        assert late.attributes[semconv.JOB_RESULT] == "timeout"
        assert late.attributes[semconv.ERROR_TYPE] == "TimeoutError"
        assert aborted.attributes[semconv.JOB_RESULT] == "cancellation"
        assert aborted.attributes[semconv.JOB_ATTEMPT] == 3


def test_arq_retry_is_failure_and_the_exception_is_reraised_untouched() -> None:
    """arq.Retry and user exceptions end the run as failure and reach arq as the very same object."""
    retry = Retry(defer=1)
    error = KeyError("k")

    async def asks(ctx: Any) -> None:
        raise retry

    async def fails(ctx: Any) -> None:
        raise error

    with capture() as cap:
        for fn, exc in ((asks, retry), (fails, error)):
            with pytest.raises(type(exc)) as raised:
                asyncio.run(jl_arq.wrap(fn, fn.__name__, **_options(cap))({"job_id": fn.__name__, "job_try": 1}))
            assert raised.value is exc
        assert cap.span("asks").attributes[semconv.JOB_RESULT] == "failure"  # type: ignore[index]
        assert cap.span("asks").attributes[semconv.ERROR_TYPE] == "arq.worker.Retry"  # type: ignore[index]
        assert cap.span("fails").attributes[semconv.ERROR_TYPE] == "KeyError"  # type: ignore[index]


def test_arq_a_bad_trace_carrier_is_one_warning_and_the_job_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    """A carrier that is not a dict is reported once on the joblogger logger; the job runs with its arguments."""

    async def echo(ctx: Any, value: int) -> int:
        assert current_job() is not None
        return value

    with capture() as cap, caplog.at_level(logging.WARNING, logger="joblogger"):
        run = jl_arq.wrap(echo, "echo", **_options(cap))
        assert asyncio.run(run({"job_id": "e", "job_try": 1}, 5, **{jl_arq.CARRIER_KEY: "junk"})) == 5
        assert cap.span("echo").attributes[semconv.JOB_RESULT] == "success"  # type: ignore[index]
    assert [r.message for r in caplog.records if "joblogger.trace is not a dict" in r.message]


# --- APScheduler ----------------------------------------------------------------


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_apscheduler_fires_missed_in_a_backlog_are_skips_and_the_run_gets_its_own_fire_time() -> None:
    """coalesce=False with a backlog: fires past misfire_grace_time are skip runs; the run has the last fire time."""
    with capture() as cap:
        scheduler = jl_aps.instrument(BackgroundScheduler(timezone="UTC"), **_options(cap))
        done = threading.Event()
        now = datetime.now().astimezone()
        first = now - timedelta(seconds=2.5)
        scheduler.add_job(
            done.set, "interval", seconds=1, id="backlog", name="backlog", next_run_time=first,
            coalesce=False, misfire_grace_time=1,
        )  # fmt: skip
        scheduler.start()
        assert done.wait(10)
        _wait(lambda: len(cap.spans("backlog")) == 3)
        scheduler.shutdown(wait=True)
        spans = cap.spans("backlog")
        times = {
            str(s.attributes[jl_aps.ATTR_SCHEDULED_RUN_TIME]): s.attributes  # type: ignore[index]
            for s in spans
        }
        expected = [(first + timedelta(seconds=k)).isoformat() for k in range(3)]
        assert sorted(times) == sorted(expected)
        results = [(times[t][semconv.JOB_RESULT], times[t].get(jl_aps.ATTR_SKIP_REASON)) for t in expected]
        assert results == [("skip", "missed"), ("skip", "missed"), ("success", None)]


def test_apscheduler_instrument_twice_is_once_and_process_pools_are_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second instrument() changes nothing; a process-pool executor gets one warning and no patch."""
    scheduler = BackgroundScheduler()
    scheduler.add_executor(ProcessPoolExecutor(max_workers=1), "procs")
    with caplog.at_level(logging.WARNING, logger="joblogger"):
        assert jl_aps.instrument(scheduler) is jl_aps.instrument(scheduler)
    assert len(scheduler._listeners) == 1
    assert "_do_submit_job" not in vars(scheduler._executors["procs"])
    assert [r for r in caplog.records if "other processes" in r.message]
    with pytest.raises(TypeError):
        jl_aps.instrument(object())  # type: ignore[type-var]


def test_apscheduler_the_default_executor_added_at_start_is_instrumented_and_exclude_works() -> None:
    """instrument() before start(): the default executor made by start() is patched; excluded jobs are no runs."""
    with capture() as cap:
        scheduler = jl_aps.instrument(BackgroundScheduler(), exclude=["skipme"], **_options(cap))
        seen: dict[str, Any] = {}
        both = threading.Barrier(3)

        def probe(key: str) -> None:
            job = current_job()
            seen[key] = None if job is None else job.job_name
            both.wait(5)

        now = datetime.now().astimezone()
        scheduler.add_job(probe, "date", run_date=now, args=["tracked"], name="tracked")
        scheduler.add_job(probe, "date", run_date=now, args=["skipme"], name="skipme")
        scheduler.start()
        both.wait(5)
        _wait(lambda: bool(cap.spans("tracked")))
        scheduler.shutdown(wait=True)
        assert seen == {"tracked": "tracked", "skipme": None}
        assert not cap.spans("skipme")


def test_the_integration_benchmark_runs() -> None:
    """benchmarks/integration_arq_apscheduler.py --quick prints its rows (so the script cannot rot)."""
    from ._bench import run_quick

    proc = run_quick("integration_arq_apscheduler.py", timeout=300)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "measure" not in line]
    assert len(rows) == 4, proc.stdout
