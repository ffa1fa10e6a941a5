"""A job application in each process model, for tests/integration/test_process_models.py.

Run as ``python _process_models.py MODEL TAG``; it exports to the collector named
by the OTEL_* variables and prints one JSON line: the run ids it started and the
totals Prometheus must show. Models:

- ``prefork``: Celery-style. The parent configures, runs a job, starts a run that
  is still active at the fork, and forks 3 workers that live on (2 runs each,
  then they keep exporting for a while) and end with ``os._exit`` as billiard's
  workers do. Worker 0 also touches the parent's active run (its copy is
  detached); the parent ends that run itself.
- ``pool-fork`` / ``pool-forkserver`` / ``pool-spawn`` / ``pool-billiard``: a ``multiprocessing``
  (or billiard, Celery's fork of it) pool
  of 4 workers runs 8 tasks, one run each, and is left with ``with Pool()``
  (which SIGTERMs the workers). With fork the workers inherit the parent's
  set-up; with forkserver and spawn an initializer configures each worker.
- ``gunicorn``: the master configures (as with ``preload_app``), runs a job and
  forks 3 workers that each do 2 runs and leave with ``sys.exit(0)``.
- ``gunicorn-dropin``: the same with the application's own SDK providers; the
  ``post_fork`` hook calls ``joblogger.otlp.after_fork()``.
- ``threads``: one process, 8 threads doing 3 runs each while all of them also
  count into one shared run (1,000 items each, lock-free counting).
- ``asyncio``: one process, 40 concurrent tasks, one ``async with`` run each,
  awaiting between items.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
from typing import Any

from joblogger import create_job_logger, otlp

JOB = "models-job"
UPDATES = 10
PARENT_UPDATES = 1000
WORKERS = 3
RUNS_PER_WORKER = 2
POOL_TASKS = 8
LIVE_ON_S = 4.0  # prefork workers keep running (and exporting every second) this long


def one_run(run_id: str, updates: int = UPDATES) -> str:
    """One run of the job: ``updates`` items, one outcome each."""
    with create_job_logger(run_id, JOB) as job:
        job.set_total(updates, "items")
        job.set_stage("Working")
        for _ in range(updates):
            job.increment_progress()
            job.add_outcome("updates")
    return run_id


def pool_init() -> None:
    """Initializer of forkserver and spawn workers: they start without the parent's set-up."""
    otlp.configure()


def pool_task(args: tuple[str, int]) -> str:
    """One task of the pool: one run."""
    tag, index = args
    return one_run(f"{tag}-task{index}-{os.getpid()}")


def prefork(tag: str) -> dict[str, object]:
    """Celery-style prefork: workers forked from a configured parent live on and end with os._exit."""
    otlp.configure()
    runs = [one_run(f"{tag}-parent", PARENT_UPDATES)]
    straddle = create_job_logger(f"{tag}-straddle", JOB)  # still active when the workers fork
    straddle.set_stage("Straddling")
    straddle.increment_progress(100)
    straddle.add_outcome("updates", 100)
    time.sleep(2.5)  # the parent's counts are in its SDK storage (and exported) before the fork
    pids = []
    for worker in range(WORKERS):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if worker == 0:
                    straddle.increment_progress(5)
                    straddle.add_outcome("updates", 5)
                    summary = straddle.log_summary()
                    assert summary.result == "detached", summary
                for run in range(RUNS_PER_WORKER):
                    one_run(f"{tag}-w{worker}-r{run}")
                time.sleep(LIVE_ON_S)
            except BaseException:  # report and fail the worker
                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
    straddle.increment_progress(50)
    straddle.add_outcome("updates", 50)
    straddle.log_summary()
    failed = [pid for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    runs += [f"{tag}-straddle"] + [f"{tag}-w{w}-r{r}" for w in range(WORKERS) for r in range(RUNS_PER_WORKER)]
    total = PARENT_UPDATES + 150 + WORKERS * RUNS_PER_WORKER * UPDATES
    return {"runs": runs, "failed": failed, "updates": total, "processed": total, "processes": 1 + WORKERS}


def pool(tag: str, method: str) -> dict[str, object]:
    """A multiprocessing (or billiard, Celery's) pool with the given start method, left through ``with``."""
    otlp.configure()
    runs = [one_run(f"{tag}-parent", PARENT_UPDATES)]
    time.sleep(1.5)  # the parent's counts are in its SDK storage before the workers fork
    if method == "billiard":
        import billiard

        ctx: Any = billiard.get_context("fork")
    else:
        ctx = multiprocessing.get_context(method)
    initializer = None if method in ("fork", "billiard") else pool_init
    with ctx.Pool(4, initializer=initializer) as workers:
        runs += workers.map(pool_task, [(tag, i) for i in range(POOL_TASKS)])
    total = PARENT_UPDATES + POOL_TASKS * UPDATES
    return {"runs": runs, "failed": [], "updates": total, "processed": total, "processes": None}


def _dropin_providers() -> None:
    """The application's own SDK set-up, as an app that configures OpenTelemetry itself has."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=1000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def gunicorn(tag: str, dropin: bool) -> dict[str, object]:
    """gunicorn-style: a master with the app loaded forks workers that leave with sys.exit(0)."""
    if dropin:
        _dropin_providers()
    else:
        otlp.configure()
    runs = [one_run(f"{tag}-master", PARENT_UPDATES)]
    time.sleep(1.5)  # the master's counts are in its SDK storage before the fork
    pids = []
    for worker in range(WORKERS):
        pid = os.fork()
        if pid == 0:
            try:
                if dropin:  # gunicorn's post_fork(server, worker) hook
                    assert otlp.after_fork()
                for run in range(RUNS_PER_WORKER):
                    one_run(f"{tag}-w{worker}-r{run}")
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            sys.exit(0)  # how a gunicorn worker ends: atexit handlers run
        pids.append(pid)
    failed = [pid for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    runs += [f"{tag}-w{w}-r{r}" for w in range(WORKERS) for r in range(RUNS_PER_WORKER)]
    total = PARENT_UPDATES + WORKERS * RUNS_PER_WORKER * UPDATES
    return {"runs": runs, "failed": failed, "updates": total, "processed": total, "processes": 1 + WORKERS}


THREADS = 8
SHARED_PER_THREAD = 1000


def threads(tag: str) -> dict[str, object]:
    """Threads: runs of their own plus one run all threads count into at once."""
    import threading

    otlp.configure()
    shared = create_job_logger(f"{tag}-shared", JOB)
    shared.set_stage("Shared")

    def worker(index: int) -> None:
        for run in range(3):
            one_run(f"{tag}-t{index}-r{run}")
        for _ in range(SHARED_PER_THREAD):
            shared.increment_progress()
            shared.add_outcome("updates")

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    shared.log_summary()
    runs = [f"{tag}-shared"] + [f"{tag}-t{i}-r{r}" for i in range(THREADS) for r in range(3)]
    total = THREADS * SHARED_PER_THREAD + THREADS * 3 * UPDATES
    return {"runs": runs, "failed": [], "updates": total, "processed": total, "processes": 1}


def asyncio_model(tag: str) -> dict[str, object]:
    """asyncio: concurrent tasks, one ``async with`` run each, awaiting between items."""
    import asyncio

    otlp.configure()

    async def task(index: int) -> str:
        async with create_job_logger(f"{tag}-a{index}", JOB) as job:
            job.set_total(UPDATES, "items")
            job.set_stage("Working")
            for _ in range(UPDATES):
                await asyncio.sleep(0.001)
                job.increment_progress()
                job.add_outcome("updates")
        return job.job_run_id

    async def all_tasks() -> list[str]:
        return list(await asyncio.gather(*(task(i) for i in range(40))))

    runs = asyncio.run(all_tasks())
    total = 40 * UPDATES
    return {"runs": runs, "failed": [], "updates": total, "processed": total, "processes": 1}


def main(model: str, tag: str) -> dict[str, object]:
    """Run ``model``; return what Prometheus and Jaeger must show."""
    if model == "prefork":
        return prefork(tag)
    if model.startswith("pool-"):
        return pool(tag, model.removeprefix("pool-"))
    if model in ("gunicorn", "gunicorn-dropin"):
        return gunicorn(tag, dropin=model == "gunicorn-dropin")
    if model == "threads":
        return threads(tag)
    if model == "asyncio":
        return asyncio_model(tag)
    raise SystemExit(f"unknown model {model!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
