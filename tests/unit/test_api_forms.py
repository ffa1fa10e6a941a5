"""What tqdm, rich and structlog users expect: async with, async track, eager track, @job, current_job, keywords."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator

import pytest

from joblogger import JobLogger, create_job_logger, current_job, job, semconv
from joblogger.testing import Capture

from ._helpers import attrs, joblogger_warnings


def _options(cap: Capture) -> dict[str, object]:
    return {"tracer_provider": cap.tracer_provider, "meter_provider": cap.meter_provider, "clock": cap.clock}


async def _rows(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def test_async_with_ends_the_run_and_sets_current_job(cap: Capture) -> None:
    """`async with create_job_logger(...)` works like `with`, and current_job() is the run inside it."""

    async def main() -> JobLogger:
        async with cap.job_logger("r", "async-job") as run:
            assert current_job() is run
            run.increment_progress(3)
        assert current_job() is None
        return run

    run = asyncio.run(main())
    assert run.result == "success"
    assert attrs(cap.span("async-job"))[semconv.JOB_PROGRESS_CURRENT] == 3


def test_async_with_cancelled_task_is_cancellation(cap: Capture) -> None:
    """A task cancelled inside `async with` ends its run as a cancellation, and CancelledError propagates."""
    started = asyncio.Event()

    async def worker() -> None:
        async with cap.job_logger("r", "cancelled-task"):
            started.set()
            await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(worker())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert attrs(cap.span("cancelled-task"))[semconv.JOB_RESULT] == "cancellation"


def test_track_async_iterable(cap: Capture) -> None:
    """track() over an async iterable is an async iterator that counts each item."""

    async def main() -> list[int]:
        run = cap.job_logger("r", "async-track")
        seen = [row async for row in run.track(_rows(5), total=5, stage="Reading")]
        assert run.progress_text == "Reading (5 / 5)"
        run.log_summary()
        return seen

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_track_sets_stage_and_total_when_called(cap: Capture) -> None:
    """track() sets its stage and total at the call, before the first next()."""
    run = cap.job_logger("r", "eager")
    items = run.track(["a", "b"], stage="Loading")
    assert run.stage == "Loading"
    assert run.total == 2
    assert run.progress_text == "Loading (0 / 2)"
    assert list(items) == ["a", "b"]
    assert run.current == 2


def test_track_async_sets_stage_when_called(cap: Capture) -> None:
    """The async form also sets its stage and total at the call."""
    run = cap.job_logger("r", "eager-async")
    items = run.track(_rows(3), total=3, stage="Streaming")
    assert (run.stage, run.total) == ("Streaming", 3)

    async def drain() -> int:
        return len([x async for x in items])

    assert asyncio.run(drain()) == 3


def test_current_job_outside_any_run_is_none() -> None:
    """current_job() is None outside a run, and another thread does not see this thread's run."""
    assert current_job() is None
    seen: list[object] = []
    with create_job_logger("r", "thread-local") as run:
        thread = threading.Thread(target=lambda: seen.append(current_job()))
        thread.start()
        thread.join()
        assert current_job() is run
    assert seen == [None]


def test_job_decorator_sync(cap: Capture) -> None:
    """@job runs each call as a run (uuid4 hex run id by default) reachable with current_job()."""

    @job("decorated", **_options(cap))
    def work(n: int) -> str:
        run = current_job()
        assert run is not None
        for _ in run.track(range(n), stage="Working"):
            run.add_outcome("updates")
        return run.job_run_id

    first, second = work(3), work(2)
    assert first != second and re.fullmatch(r"[0-9a-f]{32}", first)
    assert work.__name__ == "work"
    runs = cap.spans("decorated")
    assert [attrs(s)[semconv.JOB_RUN_ID] for s in runs] == [first, second]
    assert [attrs(s)[semconv.JOB_PROGRESS_CURRENT] for s in runs] == [3, 2]


def test_job_decorator_failure_propagates(cap: Capture) -> None:
    """An exception escaping a decorated function fails its run and reaches the caller untouched."""
    boom = ValueError("bad row")

    @job("decorated-fail", **_options(cap))
    def work() -> None:
        raise boom

    with pytest.raises(ValueError) as info:
        work()
    assert info.value is boom
    assert attrs(cap.span("decorated-fail"))[semconv.JOB_RESULT] == "failure"


def test_job_decorator_async_with_run_id_from_argument(cap: Capture) -> None:
    """@job on an async function takes the run id from a named argument (or a callable)."""

    @job("decorated-async", run_id_arg="job_run_id", **_options(cap))
    async def work(job_run_id: str) -> str | None:
        await asyncio.sleep(0)
        run = current_job()
        return None if run is None else run.job_run_id

    @job("decorated-callable", run_id=lambda tenant: f"nightly-{tenant}", **_options(cap))
    def per_tenant(tenant: str) -> None:
        pass

    assert asyncio.run(work("run-42")) == "run-42"
    assert asyncio.run(work(job_run_id="run-43")) == "run-43"
    per_tenant("acme")
    assert attrs(cap.span("decorated-callable"))[semconv.JOB_RUN_ID] == "nightly-acme"


def test_job_decorator_unknown_run_id_arg_is_a_setup_error() -> None:
    """Naming a parameter the function does not have fails at decoration time, not in the job."""
    with pytest.raises(TypeError, match="no parameter 'run'"):

        @job("x", run_id_arg="run")
        def work(job_run_id: str) -> None:
            pass


def test_job_decorator_without_name_is_a_setup_error() -> None:
    """`@job` without parentheses is reported when decorating, not when the job runs."""
    with pytest.raises(TypeError, match="needs the job name"):

        @job  # type: ignore[arg-type]
        def work() -> None:
            pass


def test_keyword_forms(cap: Capture) -> None:
    """create_job_logger accepts name=/run_id= (and job_name=/job_run_id=) in any order."""
    run = create_job_logger(name="match-scores", run_id="run-1", tracer_provider=cap.tracer_provider)
    assert (run.job_name, run.job_run_id) == ("match-scores", "run-1")
    run.log_summary()
    run2 = create_job_logger(job_name="match-scores", job_run_id="run-2")
    assert (run2.job_name, run2.job_run_id) == ("match-scores", "run-2")
    run3 = create_job_logger(name="match-scores")
    assert re.fullmatch(r"[0-9a-f]{32}", run3.job_run_id)


def test_swapped_arguments_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    """create_job_logger("match-scores", uuid) warns once that the name looks like a run id."""
    caplog.set_level(logging.WARNING, "joblogger")
    create_job_logger("match-scores", "3f2a9c1e-5b7d-4e0f-9a1b-2c3d4e5f6a7b")
    assert joblogger_warnings(caplog.records) == ["job_name-id"]
    assert "pass them as keywords" in caplog.records[0].getMessage()
    caplog.clear()
    create_job_logger("3f2a9c1e5b7d4e0f9a1b2c3d4e5f6a7b", "match-scores")
    assert joblogger_warnings(caplog.records) == []
