"""Concurrency at scale: multiprocessing workers (fork and spawn), 1,000 asyncio jobs and 8 threads of jobs."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading

import pytest

from joblogger import semconv
from joblogger.testing import capture

from . import _mp_worker


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_workers_report_their_own_runs(method):
    """Pool workers report only their own runs once the app's post-fork hook calls otlp.after_fork()."""
    with capture() as cap:
        parent = cap.job_logger("parent-run", "prefork-job")
        parent.increment_progress(1000)
        parent.add_outcome("updates", 1000)
        parent.save_outcome()  # the parent's outcomes are in its SDK storage when the workers fork
        _mp_worker.CAPTURE = cap if method == "fork" else None
        try:
            ctx = multiprocessing.get_context(method)
            with ctx.Pool(processes=2, maxtasksperchild=1, initializer=_mp_worker.forget_parent) as pool:
                results = pool.map_async(_mp_worker.run_job, range(4)).get(timeout=120)
        finally:
            _mp_worker.CAPTURE = None
        for index, result in enumerate(results):
            assert result["summary"]["entitiesProcessed"] == 10 + index
            # one task per child: the child's metrics hold exactly its own run
            assert result["processed"] == 10 + index
            assert result["updates"] == 10 + index
            assert "Working" in result["spans"]
        assert cap.metric_value(semconv.METRIC_OUTCOMES) == 1000
        assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 1000
        parent.log_summary()


def test_thousand_asyncio_jobs_and_eight_threads_of_jobs_at_once():
    """1,000 asyncio tasks and 8 threads run jobs concurrently: every count exact, every span under its own run."""
    with capture() as cap:

        async def one_job(i: int) -> None:
            with cap.job_logger(f"async-{i}", "async-job") as job:
                job.set_total(20, "items")
                job.set_stage("Fetching")
                for step in range(20):
                    job.increment_progress()
                    job.add_outcome("updates", 2)
                    if step % 7 == 0:
                        await asyncio.sleep(0)
                job.set_stage("Saving")
                job.info("saved", i=i)

        def thread_jobs(t: int) -> None:
            for k in range(25):
                with cap.job_logger(f"thread-{t}-{k}", "thread-job") as job:
                    job.set_stage("Crunching")
                    for _ in range(200):
                        job.increment_progress()
                        job.add_outcome("inserts")

        async def main() -> None:
            await asyncio.gather(*(one_job(i) for i in range(1000)))

        threads = [threading.Thread(target=thread_jobs, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        asyncio.run(main())
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)

        assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_NAME: "async-job"}) == 1000 * 40
        assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_NAME: "thread-job"}) == 8 * 25 * 200
        assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED, **{semconv.JOB_NAME: "async-job"}) == 20_000
        assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: "success"}) == 1000 + 200
        spans = cap.spans()
        runs = {s.attributes[semconv.JOB_RUN_ID]: s for s in spans if s.parent is None}
        assert len(runs) == 1200
        by_span_id = {run.context.span_id: run for run in runs.values()}
        for span in spans:
            if span.parent is not None:  # stage spans: children of their own run's span, in its trace
                run = by_span_id[span.parent.span_id]
                assert span.context.trace_id == run.context.trace_id
                if span.name == "Saving":  # its "saved" event is its own run's
                    (event,) = span.events
                    assert f"async-{event.attributes['i']}" == run.attributes[semconv.JOB_RUN_ID]
        assert len([s for s in spans if s.name == "Saving"]) == 1000
