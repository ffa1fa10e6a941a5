"""Per-task overhead of the arq and APScheduler integrations: a no-op task with and without, side by side.

Run:   .venv/bin/python benchmarks/integration_arq_apscheduler.py                 (in-process rows, about 1 minute)
       .venv/bin/python benchmarks/integration_arq_apscheduler.py --redis redis://127.0.0.1:6379
                                                         (plus a real arq worker on that Redis, end to end)
       .venv/bin/python benchmarks/integration_arq_apscheduler.py --quick         (smoke run: tiny sizes)

Each row alternates the plain and the instrumented task in one process (warm-up,
several repeats, medians). The SDK providers are benchmarks/bench.py's: batch span
processor and periodic metric reader with exporters that accept everything, as
``joblogger.otlp.configure()`` builds them.

- arq, in process: ``await job_function(ctx)`` as arq's worker calls it, plain vs
  wrapped by ``instrument()`` (the run, the current-job context, the result).
- arq, end to end (``--redis``): a burst ``arq`` worker works off N enqueued no-op
  jobs on a real Redis, with plain vs instrumented settings: the overhead as a
  share of what an arq job costs anyway.
- APScheduler: APScheduler's own ``run_job()`` (what its executors call per fire)
  on the plain job vs the job ``instrument()`` hands it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from apscheduler.executors.base import run_job
from apscheduler.schedulers.background import BackgroundScheduler
from bench import METER, TRACER  # the application-like SDK providers

from joblogger import create_job_logger
from joblogger.integrations import apscheduler as jl_aps
from joblogger.integrations import arq as jl_arq

OPTIONS: dict[str, Any] = {"tracer_provider": TRACER, "meter_provider": METER}


def side_by_side(plain: Callable[[int], float], instrumented: Callable[[int], float], n: int, repeats: int) -> tuple:
    """Alternate both; each callable runs n tasks and returns the seconds they took. Medians of µs per task."""
    plain(max(1, n // 10))
    instrumented(max(1, n // 10))
    a, b = [], []
    for _ in range(repeats):
        gc.collect()
        a.append(plain(n) / n * 1e6)
        gc.collect()
        b.append(instrumented(n) / n * 1e6)
    return statistics.median(a), statistics.median(b)


async def noop(ctx: dict[str, Any]) -> None:
    """The no-op arq job."""


def arq_in_process(n: int, repeats: int, snapshots: bool | None) -> tuple[float, float]:
    """``snapshots=None``: the instrumented side is a bare ``async with create_job_logger()`` (the reference run)."""
    if snapshots is None:

        async def wrapped(ctx: dict[str, Any]) -> None:
            async with create_job_logger(ctx["job_id"], "noop", **OPTIONS):
                await noop(ctx)

    else:
        wrapped = jl_arq.wrap(noop, "noop", snapshots=snapshots, **OPTIONS)
    loop = asyncio.new_event_loop()

    def runner(fn: Callable[..., Any]) -> Callable[[int], float]:
        async def many(k: int) -> float:
            start = time.perf_counter()
            for i in range(k):
                await fn({"job_id": f"j{i}", "job_try": 1})
            return time.perf_counter() - start

        return lambda k: loop.run_until_complete(many(k))

    try:
        return side_by_side(runner(noop), runner(wrapped), n, repeats)
    finally:
        loop.close()


def arq_end_to_end(redis_url: str, n: int, repeats: int) -> tuple[float, float]:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    settings = RedisSettings.from_dsn(redis_url)
    logging.getLogger("arq").setLevel(logging.WARNING)

    def runner(instrumented: bool) -> Callable[[int], float]:
        async def burst(k: int) -> float:
            queue = f"arq:bench:{instrumented}"
            redis = await create_pool(settings, default_queue_name=queue)
            await redis.delete(queue)
            for _ in range(k):
                await redis.enqueue_job("noop")
            kwargs: dict[str, Any] = {"functions": [noop], "queue_name": queue, "poll_delay": 0.01}
            if instrumented:
                kwargs = jl_arq.instrument(kwargs, **OPTIONS)
            worker = Worker(**kwargs, redis_pool=redis, burst=True, handle_signals=False, max_jobs=10, keep_result=0)
            start = time.perf_counter()
            await worker.async_run()
            took = time.perf_counter() - start
            assert worker.jobs_complete == k, worker
            await worker.close()
            return took

        return lambda k: asyncio.run(burst(k))

    return side_by_side(runner(False), runner(True), n, repeats)


def apscheduler_run_job(n: int, repeats: int) -> tuple[float, float]:
    scheduler = BackgroundScheduler()
    scheduler.start(paused=True)
    try:
        # No misfire check: a batch that outlasts misfire_grace_time would time missed fires instead of runs.
        job = scheduler.add_job(lambda: None, "interval", hours=1, id="noop", name="noop", misfire_grace_time=None)
        logger_name = "apscheduler.executors.default"

        def plain(k: int) -> float:
            now = datetime.now(timezone.utc)
            start = time.perf_counter()
            for _ in range(k):
                run_job(job, "default", [now], logger_name)
            return time.perf_counter() - start

        def instrumented(k: int) -> float:
            now = datetime.now(timezone.utc)
            start = time.perf_counter()
            for _ in range(k):  # what the patched executor does per submission
                run_job(jl_aps._Firing(job, [now], "default", OPTIONS), "default", [now], logger_name)
            return time.perf_counter() - start

        return side_by_side(plain, instrumented, n, repeats)
    finally:
        scheduler.shutdown(wait=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--redis", help="also run a real arq worker on this Redis (redis://host:port)")
    args = parser.parse_args()
    n, repeats = (50, 3) if args.quick else (2000, 9)
    rows = [
        ("arq, in process: `await job(ctx)`, no-op job", *arq_in_process(n, repeats, snapshots=False)),
        ("same, with snapshot spans (`configure()`'s default)", *arq_in_process(n, repeats, snapshots=True)),
        ("reference: the no-op in a bare `async with create_job_logger()`", *arq_in_process(n, repeats, None)),
        ("APScheduler: `run_job()` per fire, no-op job", *apscheduler_run_job(n, repeats)),
    ]
    if args.redis:
        e2e_n, e2e_repeats = (20, 2) if args.quick else (500, 5)
        rows.append(
            (
                "arq, end to end: burst worker on a real Redis, no-op job",
                *arq_end_to_end(args.redis, e2e_n, e2e_repeats),
            )
        )
    print("| measure | without | with | overhead per task | ratio |")
    print("|---|---|---|---|---|")
    for name, plain, instrumented in rows:
        extra = instrumented - plain
        print(f"| {name} | {plain:,.1f} µs | {instrumented:,.1f} µs | {extra:,.1f} µs | {instrumented / plain:,.1f}x |")
    if args.quick:
        print("(quick smoke run: sizes too small for real figures)")


if __name__ == "__main__":
    main()
