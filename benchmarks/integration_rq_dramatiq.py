"""Per-task overhead of the RQ and Dramatiq integrations: a no-op task with and without them, side by side.

Run:   .venv/bin/python benchmarks/integration_rq_dramatiq.py            (about a minute)
       .venv/bin/python benchmarks/integration_rq_dramatiq.py --quick    (smoke run used by the tests)
       ... --redis-url redis://127.0.0.1:6379                            (else a redis-server is started)

Everything runs in this one process, alternating "with" and "without" batches,
and reports medians in µs per task. The global SDK providers are built as
``joblogger.otlp.configure()`` builds them (batch span processor, periodic
metric reader, exporters that accept everything), so the runs are real.

Rows:
- RQ ``SimpleWorker.perform_job`` of a no-op job against a real Redis: RQ's own
  bookkeeping (a few Redis round trips) with ``rq.SimpleWorker`` vs
  ``joblogger.integrations.rq.SimpleWorker`` (a run per job, progress and the
  attempt counter saved to ``job.meta``).
- the same with ``joblogger_progress_interval_s = None`` (no progress publisher).
- RQ ``job.perform()`` alone vs the integration's wrapper around it (no RQ bookkeeping).
- Dramatiq ``StubBroker`` + ``Worker`` (1 thread): enqueue and process a no-op
  message, broker without vs with ``JobLoggerMiddleware``.
- Dramatiq, the middleware's hooks alone (before_enqueue, before/after_process_message) vs nothing.
- For scale, timed in the same rotation: a bare joblogger run (create + end) with
  the same providers - the part of the overhead that any run costs.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402 - the providers every benchmark uses
from opentelemetry import metrics, trace  # noqa: E402

TRACER, METER = bench.app_providers()
trace.set_tracer_provider(TRACER)
metrics.set_meter_provider(METER)

import dramatiq  # noqa: E402
from dramatiq.brokers.stub import StubBroker  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.worker import SimpleWorker as PlainSimpleWorker  # noqa: E402

from joblogger import create_job_logger  # noqa: E402
from joblogger.integrations.dramatiq import JobLoggerMiddleware  # noqa: E402
from joblogger.integrations.rq import SimpleWorker as LoggedSimpleWorker  # noqa: E402


def noop() -> None:
    """The task: does nothing."""


noop.__module__ = "integration_rq_dramatiq"  # RQ refuses functions from __main__
sys.modules.setdefault("integration_rq_dramatiq", sys.modules[__name__])


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) / 1000.0


def alternate(with_: Callable[[], float], without: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Run the two batch functions alternately; each returns ns per task; return both medians in µs.

    A bare joblogger run (create + end) is timed in the same rotation, for scale (``BARE``).
    """
    a, b, c = [], [], []
    for _ in range(repeats):
        gc.collect()
        b.append(without())
        gc.collect()
        a.append(with_())
        gc.collect()
        c.append(bare_run_batch(BARE_N))
    BARE.append(median_us(c))
    return median_us(a), median_us(b)


BARE: list[float] = []
BARE_N = 200


def bare_run_batch(n: int) -> float:
    """ns per bare joblogger run (create + end) with the same providers: what any run costs."""
    start = time.perf_counter_ns()
    for i in range(n):
        create_job_logger(f"r-{i}", "noop").end()
    return (time.perf_counter_ns() - start) / n


# --- RQ ----------------------------------------------------------------------------------


@contextmanager
def redis_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    spec = importlib.util.spec_from_file_location("joblogger_stack", ROOT / "scripts" / "stack.py")
    assert spec is not None and spec.loader is not None
    stack = importlib.util.module_from_spec(spec)
    sys.modules["joblogger_stack"] = stack
    spec.loader.exec_module(stack)
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from redis_server import redis_server

    with tempfile.TemporaryDirectory() as tmp, redis_server(stack.ensure_redis(), Path(tmp)) as url:
        yield url


class QuietSimpleWorker(LoggedSimpleWorker):
    """The integration without the native progress channel."""

    joblogger_progress_interval_s = None


def rq_perform_job_batch(worker: Any, queue: Queue, n: int) -> float:
    """ns per job of ``worker.perform_job`` over ``n`` freshly enqueued no-op jobs (enqueueing not timed)."""
    jobs = [queue.enqueue(noop) for _ in range(n)]
    total = 0
    for job in jobs:
        queue.remove(job)
        execution = worker.prepare_execution(job)
        start = time.perf_counter_ns()
        worker.perform_job(job, queue, execution)
        total += time.perf_counter_ns() - start
    return total / n


def rq_perform_batch(wrapper: Any, queue: Queue, n: int) -> float:
    """ns per job of ``job.perform()`` (``wrapper`` None) or of the integration's wrapper around it."""
    jobs = [queue.enqueue(noop) for _ in range(n)]
    start = time.perf_counter_ns()
    for job in jobs:
        if wrapper is None:
            job.perform()
        else:
            wrapper._joblogger_perform(job, job.perform, None)
    return (time.perf_counter_ns() - start) / n


def bench_rq(url: str, n: int, repeats: int) -> list[tuple[str, float, float]]:
    conn = Redis.from_url(url)
    queue = Queue("bench", connection=conn)
    plain = PlainSimpleWorker([queue], connection=conn)
    logged = LoggedSimpleWorker([queue], connection=conn)
    quiet = QuietSimpleWorker([queue], connection=conn)
    for worker in (plain, logged, quiet):
        worker.register_birth()
    rows = []
    rq_perform_job_batch(plain, queue, n // 5)  # warm-up
    rq_perform_job_batch(logged, queue, n // 5)
    ours, peer = alternate(
        lambda: rq_perform_job_batch(logged, queue, n), lambda: rq_perform_job_batch(plain, queue, n), repeats
    )
    rows.append(("RQ `SimpleWorker.perform_job`, no-op job, real Redis", ours, peer))
    ours, peer = alternate(
        lambda: rq_perform_job_batch(quiet, queue, n), lambda: rq_perform_job_batch(plain, queue, n), repeats
    )
    rows.append(("same, `joblogger_progress_interval_s = None` (no job.meta progress)", ours, peer))
    ours, peer = alternate(
        lambda: rq_perform_batch(logged, queue, n), lambda: rq_perform_batch(None, queue, n), repeats
    )
    rows.append(("RQ `job.perform()` alone vs the integration's wrapper", ours, peer))
    conn.flushdb()
    return rows


# --- Dramatiq ----------------------------------------------------------------------------


def dramatiq_app(with_middleware: bool) -> tuple[StubBroker, Any, dramatiq.Worker]:
    broker = StubBroker()
    if with_middleware:
        broker.add_middleware(JobLoggerMiddleware(configure_otlp=False))
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, max_retries=0, actor_name="noop")
    def noop_actor() -> None:
        pass

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=10)
    worker.start()
    return broker, noop_actor, worker


def dramatiq_batch(broker: StubBroker, actor: Any, n: int) -> float:
    """ns per message to enqueue ``n`` no-op messages and have them processed."""
    start = time.perf_counter_ns()
    for _ in range(n):
        actor.send()
    broker.join(actor.queue_name, fail_fast=True)
    return (time.perf_counter_ns() - start) / n


def hooks_batch(middleware: JobLoggerMiddleware | None, broker: StubBroker, actor: Any, n: int) -> float:
    """ns per message of the middleware's own hooks, called directly (``middleware`` None: nothing)."""
    from dramatiq.broker import MessageProxy

    messages = [MessageProxy(actor.message()) for _ in range(n)]
    start = time.perf_counter_ns()
    if middleware is not None:
        for message in messages:
            middleware.before_enqueue(broker, message, 0)
            middleware.before_process_message(broker, message)
            middleware.after_process_message(broker, message, result=None)
    return (time.perf_counter_ns() - start) / n


def bench_dramatiq(n: int, repeats: int) -> list[tuple[str, float, float]]:
    plain_broker, plain_actor, plain_worker = dramatiq_app(False)
    logged_broker, logged_actor, logged_worker = dramatiq_app(True)
    try:
        dramatiq_batch(plain_broker, plain_actor, n // 5)  # warm-up
        dramatiq_batch(logged_broker, logged_actor, n // 5)
        ours, peer = alternate(
            lambda: dramatiq_batch(logged_broker, logged_actor, n),
            lambda: dramatiq_batch(plain_broker, plain_actor, n),
            repeats,
        )
        rows = [("Dramatiq `StubBroker` + `Worker` (1 thread), enqueue + process a no-op message", ours, peer)]
        middleware = next(m for m in logged_broker.middleware if isinstance(m, JobLoggerMiddleware))
        ours, peer = alternate(
            lambda: hooks_batch(middleware, logged_broker, logged_actor, n),
            lambda: hooks_batch(None, logged_broker, logged_actor, n),
            repeats,
        )
        rows.append(("Dramatiq middleware hooks alone (enqueue, before/after process)", ours, peer))
    finally:
        plain_worker.stop()
        logged_worker.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--redis-url", help="a Redis to use (default: start redis-server in a temp dir)")
    args = parser.parse_args()
    n, repeats = (20, 2) if args.quick else (400, 7)
    global BARE_N
    BARE_N = n // 2
    with redis_url(args.redis_url) as url:
        rows = bench_rq(url, n, repeats)
    rows += bench_dramatiq(n, repeats)
    print(
        f"{n} tasks per batch, {repeats} alternating batches each, medians"
        + (" (quick smoke run)" if args.quick else "")
    )
    print()
    print("| measure | with joblogger | without | overhead per task | a bare run (create + end), same rotation |")
    print("|---|---|---|---|---|")
    for (name, ours, peer), bare in zip(rows, BARE, strict=True):
        print(f"| {name} | {ours:,.1f} µs | {peer:,.1f} µs | {ours - peer:+,.1f} µs | {bare:,.1f} µs |")


if __name__ == "__main__":
    main()
