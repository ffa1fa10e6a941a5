"""RQ integration against a real Redis, real ``rq worker`` processes and the real collector, Jaeger and Prometheus.

Jobs are enqueued under a producer span through ``joblogger.integrations.rq.Queue``;
a ``rq worker --burst`` subprocess (the forking ``Worker``, then ``SimpleWorker``)
runs them with ``--worker-class joblogger.integrations.rq.Worker``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from _framework_live import check_runs, check_totals, producer_span, run_spans, wait_for
from live import jaeger_traces, job_env, tags_of
from opentelemetry import trace
from redis import Redis
from rq import Retry
from rq.command import send_stop_job_command
from rq.job import Job, JobStatus

from joblogger.integrations.rq import Queue

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RQ = Path(sys.executable).with_name("rq")
pytestmark = pytest.mark.integration


def start_worker(
    stack: Any, redis_url: str, service: str, queue: str, worker_class: str, *, prefix: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """``rq worker --burst`` with the integration's worker class, exporting to the stack as ``service``."""
    env = job_env(stack, service, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT / "src")]))
    return subprocess.Popen(
        [*prefix, str(RQ), "worker", "--burst", "--url", redis_url, "--worker-class", worker_class, queue],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_forking_worker_reports_every_job_with_progress_retries_timeouts_and_stops(stack: Any, redis_url: str) -> None:
    """The forking Worker: N jobs -> N runs under the producer span, meta progress, retry attempts, timeout, stop."""
    service = f"rq-fork-{uuid.uuid4().hex[:6]}"
    queue_name = f"q-{uuid.uuid4().hex[:6]}"
    conn = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=conn)
    span = producer_span()
    parent = span.get_span_context()
    with trace.use_span(span, end_on_exit=True):
        progress = queue.enqueue("_rq_tasks.count", 8, 0.25)
        counts = [queue.enqueue("_rq_tasks.count", 5) for _ in range(4)]
        boom = queue.enqueue("_rq_tasks.boom")
        flaky = queue.enqueue("_rq_tasks.flaky", f"flaky-{service}", retry=Retry(max=1))
        timeout = queue.enqueue("_rq_tasks.slow", 10, job_timeout=1)
        untracked = queue.enqueue("_rq_tasks.untracked")
        renamed = queue.enqueue("_rq_tasks.renamed")
        sleeper = queue.enqueue("_rq_tasks.slow", 60)
    assert progress.meta["traceparent"].split("-")[2] == format(parent.span_id, "016x")

    worker = start_worker(stack, redis_url, service, queue_name, "joblogger.integrations.rq.Worker")
    try:
        # Progress is in job.meta while the job runs (written by the horse, at most once a second).
        def running_progress() -> dict[str, Any] | None:
            job = Job.fetch(progress.id, connection=conn)
            meta = job.meta.get("progress")
            if job.get_status() == JobStatus.STARTED and meta and 0 < meta["current"] < 8:
                return meta
            return None

        seen = wait_for(running_progress, "progress in job.meta while running")
        assert seen["total"] == 8 and seen["stage"] == "Counting" and seen["run_id"] == progress.id
        assert seen["outcomes"]["updates"] == seen["current"]
        wait_for(lambda: sleeper.get_status() == JobStatus.STARTED, "the sleeper to start", timeout=60)
        time.sleep(0.3)
        send_stop_job_command(conn, sleeper.id)
        out, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert Job.fetch(progress.id, connection=conn).meta["progress"]["current"] == 8  # the final write
    assert sleeper.get_status() == JobStatus.STOPPED, out
    assert flaky.get_status() == JobStatus.FINISHED, out
    assert untracked.latest_result().return_value is True  # type: ignore[union-attr]
    assert renamed.latest_result().return_value == "renamed-task"  # type: ignore[union-attr]

    expected = {
        progress.id: ["success"],
        **{job.id: ["success"] for job in counts},
        boom.id: ["failure"],
        flaky.id: ["failure", "success"],
        timeout.id: ["timeout"],
        renamed.id: ["success"],
        sleeper.id: ["cancellation"],
    }
    spans = check_runs(stack, service, "rq", expected, parent)
    assert {s["operationName"] for s in spans} == {
        "_rq_tasks.count",
        "_rq_tasks.boom",
        "_rq_tasks.flaky",
        "_rq_tasks.slow",
        "renamed-task",
    }
    assert run_spans(stack, service, untracked.id) == []
    check_totals(stack, service, spans)


@pytest.mark.parametrize("worker_class", ["SimpleWorker", "Worker"])
def test_jobs_timeouts_and_a_cold_shutdown(stack: Any, redis_url: str, worker_class: str) -> None:
    """A timeout is `timeout`; a cold shutdown mid-job is `cancellation` (SimpleWorker: SystemExit; Worker: horse)."""
    service = f"rq-{worker_class.lower()}-{uuid.uuid4().hex[:6]}"
    queue_name = f"q-{uuid.uuid4().hex[:6]}"
    conn = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=conn)
    span = producer_span()
    parent = span.get_span_context()
    with trace.use_span(span, end_on_exit=True):
        counts = [queue.enqueue("_rq_tasks.count", 3) for _ in range(3)]
        timeout = queue.enqueue("_rq_tasks.slow", 10, job_timeout=1)
        sleeper = queue.enqueue("_rq_tasks.slow", 60)
    worker = start_worker(stack, redis_url, service, queue_name, f"joblogger.integrations.rq.{worker_class}")
    try:
        wait_for(lambda: sleeper.get_status() == JobStatus.STARTED, "the sleeper to start", timeout=60)
        worker.send_signal(signal.SIGTERM)  # warm shutdown: waits for the job
        # Cold shutdown: a second signal, which RQ ignores within 1 s of the first one's handler (late
        # on a busy machine), so repeat it until the worker goes.
        for _ in range(20):
            time.sleep(1.5)
            if worker.poll() is not None:
                break
            worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    expected = {
        **{job.id: ["success"] for job in counts},
        timeout.id: ["timeout"],
        sleeper.id: ["cancellation"],
    }
    spans = check_runs(stack, service, "rq", expected, parent)
    check_totals(stack, service, spans)
    assert out is not None


def test_forking_worker_with_the_applications_own_providers(stack: Any, redis_url: str) -> None:
    """Under ``opentelemetry-instrument`` (the SDK's providers, reused): every horse's run and counts arrive."""
    service = f"rq-dropin-{uuid.uuid4().hex[:6]}"
    queue_name = f"q-{uuid.uuid4().hex[:6]}"
    queue = Queue(queue_name, connection=Redis.from_url(redis_url))
    span = producer_span()
    with trace.use_span(span, end_on_exit=True):
        jobs = [queue.enqueue("_rq_tasks.count", 4) for _ in range(3)]
        boom = queue.enqueue("_rq_tasks.boom")
    instrument = (str(Path(sys.executable).with_name("opentelemetry-instrument")),)
    worker = start_worker(stack, redis_url, service, queue_name, "joblogger.integrations.rq.Worker", prefix=instrument)
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out
    expected = {**{job.id: ["success"] for job in jobs}, boom.id: ["failure"]}
    spans = check_runs(stack, service, "rq", expected, span.get_span_context())
    check_totals(stack, service, spans)
    # The spans came from the SDK's providers that opentelemetry-instrument set up, not from configure()'s.
    processes = jaeger_traces(stack, service, {"job.run.id": boom.id})[0]["processes"]
    assert all("telemetry.auto.version" in tags_of(p) for p in processes.values()), processes


def test_opt_in_worker_runs_only_marked_tasks(stack: Any, redis_url: str) -> None:
    """A worker class with joblogger_all_tasks = False gives runs to @task functions only."""
    service = f"rq-optin-{uuid.uuid4().hex[:6]}"
    queue_name = f"q-{uuid.uuid4().hex[:6]}"
    queue = Queue(queue_name, connection=Redis.from_url(redis_url))
    span = producer_span()
    with trace.use_span(span, end_on_exit=True):
        marked = queue.enqueue("_rq_tasks.renamed")
        unmarked = queue.enqueue("_rq_tasks.no_run_expected")
    worker = start_worker(stack, redis_url, service, queue_name, "_rq_tasks.OptInWorker")
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out
    assert unmarked.latest_result().return_value is True  # type: ignore[union-attr]
    check_runs(stack, service, "rq", {marked.id: ["success"]}, span.get_span_context())
    assert run_spans(stack, service, unmarked.id) == []
