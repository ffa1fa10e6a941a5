"""Per-task overhead of joblogger.integrations.celery: a no-op task with and without it, side by side.

Run:   .venv/bin/python benchmarks/integration_celery.py            (about 30 s on an idle machine)
       .venv/bin/python benchmarks/integration_celery.py --quick    (smoke run; tiny sizes)

Both apps' tasks run through Celery's own tracer as a worker runs them
(``celery.app.trace.build_tracer``, built once, called with a worker-style request:
prerun/postrun signals, result storing, process cleanup), alternating, with
warm-up and several repeats; medians of the process's CPU microseconds per task. The instrumented
app's runs go to SDK providers configured as an application configures them
(batch span processor, periodic metric reader, exporters that accept everything),
so nothing is measured against a no-op API. Rows: no result backend (nothing to
mirror progress into), and an in-memory result backend (each run also subscribes
to, and unsubscribes from, the native-progress publisher).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from typing import Any

from bench import app_providers
from celery import Celery
from celery.app.trace import build_tracer

from joblogger.integrations import celery as joblogger_celery
from joblogger.integrations._common import start_task_run


def make_tracer(backend: str | None, instrumented: bool, providers: tuple[Any, Any]) -> Callable[[str], Any]:
    """A worker-style tracer for a no-op task of a new app; returns ``trace(task_id)``."""
    app = Celery(f"bench-{uuid.uuid4().hex[:6]}", backend=backend, set_as_current=False)
    if instrumented:
        tracer_provider, meter_provider = providers
        joblogger_celery.instrument(
            app, configure=False, tracer_provider=tracer_provider, meter_provider=meter_provider
        )

    @app.task(name="bench.noop", shared=False)
    def noop() -> None:
        return None

    app.finalize()
    task = app.tasks["bench.noop"]
    tracer = build_tracer(task.name, task, app=app, hostname="bench@localhost")
    base = {"delivery_info": {"exchange": "", "routing_key": "celery"}, "hostname": "bench@localhost", "retries": 0}

    def trace(task_id: str) -> Any:
        request = dict(base, id=task_id)
        result = tracer(task_id, (), {}, request)
        assert result[1] is None or result[1].state == "SUCCESS", result
        return result

    return trace


def bare_run(providers: tuple[Any, Any]) -> Callable[[str], Any]:
    """The same run without Celery: ``start_task_run`` + ``end()`` (the core's fixed cost of a run)."""
    tracer_provider, meter_provider = providers

    def run(task_id: str) -> Any:
        job = start_task_run(
            "bench.noop", task_id, framework="celery", queue="celery", worker="bench@localhost", attempt=1,
            tracer_provider=tracer_provider, meter_provider=meter_provider,
        )  # fmt: skip
        return job.end(result="success")

    return run


def per_task_us(trace: Callable[[str], Any], ids: list[str]) -> float:
    """Mean CPU microseconds of this process per task over ``ids`` (all threads: the exporters' too).

    CPU time, not wall time: on a shared machine the wall clock also counts the
    time other processes had the cores.
    """
    gc.collect()
    start = time.process_time_ns()
    for task_id in ids:
        trace(task_id)
    return (time.process_time_ns() - start) / len(ids) / 1000.0


def side_by_side(plain: Callable[[str], Any], ours: Callable[[str], Any], n: int, repeats: int) -> tuple[float, float]:
    """Alternate the two so drift affects both; medians of ``repeats`` batches of ``n`` tasks."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    per_task_us(plain, ids[: max(1, n // 5)])  # warm-up
    per_task_us(ours, ids[: max(1, n // 5)])
    a, b = [], []
    for _ in range(repeats):
        a.append(per_task_us(plain, ids))
        b.append(per_task_us(ours, ids))
    return statistics.median(a), statistics.median(b)


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = parser.parse_args(argv)
    n, repeats = (50, 2) if args.quick else (1000, 7)
    providers = app_providers()
    print(
        f"CPython {sys.version.split()[0]}; celery {metadata.version('celery')}, "
        f"opentelemetry-sdk {metadata.version('opentelemetry-sdk')}; {repeats} x {n:,} tasks per row"
    )
    print("| no-op task through Celery's tracer | without | with joblogger | overhead per task |")
    print("|---|---|---|---|")
    for label, backend in (("no result backend", None), ("in-memory result backend", "cache+memory://")):
        plain = make_tracer(backend, False, providers)
        ours = make_tracer(backend, True, providers)
        without, with_ = side_by_side(plain, ours, n, repeats)
        print(f"| {label} | {without:,.1f} µs | {with_:,.1f} µs | {with_ - without:,.1f} µs |")
    idle, run = side_by_side(lambda _id: None, bare_run(providers), n, repeats)
    print(f"| reference: the run alone (start_task_run + end, no Celery) | - | {run - idle:,.1f} µs | - |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
