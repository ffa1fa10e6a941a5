"""arq: a real worker process (``arq _arq_worker.WorkerSettings``) on a real Redis, exporting to the real stack.

The test process enqueues jobs as a producer would, waits for arq's own
results, then reads the runs back from Jaeger and Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobStatus
from live import eventually, get_json, jaeger_traces, job_env, scalar, tags_of
from opentelemetry.sdk.trace import TracerProvider

from joblogger.integrations.arq import CARRIER_KEY, enqueue_job

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
N_WORK = 6
N_CONCURRENT = 5


@pytest.fixture(scope="module")
def worker(stack: Any, redis_url: str) -> Iterator[dict[str, str]]:
    """A real arq worker process exporting to the stack; stopped with SIGTERM (arq's graceful shutdown) after."""
    service = f"arq-live-{uuid.uuid4().hex[:6]}"
    queue = f"arq:test:{uuid.uuid4().hex[:6]}"
    env = job_env(
        stack,
        service,
        JOBLOGGER_ARQ_REDIS=redis_url,
        JOBLOGGER_ARQ_QUEUE=queue,
        PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT / "src")]),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "arq", "_arq_worker.WorkerSettings"],
        env=env,
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield {"service": service, "queue": queue, "redis": redis_url}
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        print(out[-5000:])


async def _pool(worker: dict[str, str]) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(worker["redis"]), default_queue_name=worker["queue"])


async def _result(job: Job | None) -> Any:
    assert job is not None
    return await job.result(timeout=30, poll_delay=0.05)


def run_spans(stack: Any, service: str, run_id: str) -> list[dict[str, Any]]:
    """The ended run spans (not snapshot spans) of ``run_id`` in Jaeger (its trace may hold other jobs' runs)."""
    spans = [s for t in jaeger_traces(stack, service, {"job.run.id": run_id}) for s in t["spans"]]
    return [s for s in spans if tags_of(s).get("job.run.id") == run_id and "job.result" in tags_of(s)]


@pytest.fixture(scope="module")
def jobs(worker: dict[str, str]) -> dict[str, Any]:
    """Every job of the module, enqueued by a producer inside a span, with arq's own results."""
    producer = TracerProvider().get_tracer("producer")

    async def main() -> dict[str, Any]:
        redis = await _pool(worker)
        out: dict[str, Any] = {}
        with producer.start_as_current_span("enqueue") as span:
            out["trace_id"] = f"{span.get_span_context().trace_id:032x}"
            out["span_id"] = f"{span.get_span_context().span_id:016x}"
            work = [await enqueue_job(redis, "work", n) for n in range(1, N_WORK + 1)]
            flaky = await enqueue_job(redis, "flaky")
            slow = await enqueue_job(redis, "slow")
            broken = await enqueue_job(redis, "broken")
            probe = await enqueue_job(redis, "probe", extra=1)
            sleeper = await enqueue_job(redis, "sleeper")
        concurrent = [await redis.enqueue_job("concurrent", 25) for _ in range(N_CONCURRENT)]
        out["work"] = [await _result(j) for j in work]
        out["flaky"] = (flaky.job_id, await _result(flaky))  # type: ignore[union-attr]
        out["concurrent"] = [await _result(j) for j in concurrent]
        out["probe"] = await _result(probe)
        with pytest.raises(ValueError, match="boom 42") as failed:
            await _result(broken)
        out["broken"] = (broken.job_id, failed.value)  # type: ignore[union-attr]
        with pytest.raises(asyncio.TimeoutError):
            await _result(slow)
        out["slow"] = slow.job_id  # type: ignore[union-attr]
        assert sleeper is not None
        deadline = time.monotonic() + 20
        while await sleeper.status() != JobStatus.in_progress:
            assert time.monotonic() < deadline, "the sleeper job never started"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        out["aborted"] = await sleeper.abort(timeout=20, poll_delay=0.05)
        out["sleeper"] = sleeper.job_id
        await redis.aclose()
        return out

    return asyncio.run(main())


def test_each_job_is_one_run_trace_under_the_producer_span(stack: Any, worker: dict[str, str], jobs: dict[str, Any]):
    """N jobs give N run spans, each with the arq job id as run id, attempt 1, the queue, a child of the producer."""
    service = worker["service"]
    for done in jobs["work"]:
        assert done["run_id"] == done["job_id"]  # current_job() inside the job is the job's run
        spans = eventually(lambda d=done: run_spans(stack, service, d["job_id"]), f"run {done['job_id']}")
        assert len(spans) == 1, spans
        span = spans[0]
        tags = tags_of(span)
        assert span["operationName"] == "work"
        assert tags["job.result"] == "success"
        assert tags["job.framework"] == "arq"
        assert tags["job.queue"] == worker["queue"]
        assert tags["job.attempt"] == 1
        assert re.fullmatch(r".+:[0-9]+", tags["job.worker"]), tags["job.worker"]  # host:pid
        assert tags["job.progress.current"] == done["items"]
        assert span["traceID"] == jobs["trace_id"]
        assert [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"] == [jobs["span_id"]]


def test_prometheus_totals_equal_the_sum_of_the_jobs(stack: Any, worker: dict[str, str], jobs: dict[str, Any]):
    """job_outcomes_total and job_runs_total in Prometheus equal what the jobs did, result by result."""
    sel = f'job="{worker["service"]}"'
    expected = {
        ("work", "success"): N_WORK,
        ("flaky", "failure"): 1,
        ("flaky", "success"): 1,
        ("slow", "timeout"): 1,
        ("broken", "failure"): 1,
        ("sleeper", "cancellation"): 1,
        ("concurrent", "success"): N_CONCURRENT,
    }

    def runs() -> dict[tuple[str, str], float] | None:
        found = {
            key: scalar(stack, f'sum(job_runs_total{{{sel}, job_name="{key[0]}", job_result="{key[1]}"}})')
            for key in expected
        }
        return found if found == expected else None

    eventually(runs, "job_runs_total of every job and result")
    items = sum(d["items"] for d in jobs["work"])
    assert items == N_WORK * (N_WORK + 1) // 2

    def outcomes() -> float | None:
        value = scalar(stack, f'sum(job_outcomes_total{{{sel}, job_name="work", job_outcome="items"}})')
        return value if value == items else None

    eventually(outcomes, "job_outcomes_total of the work jobs")
    assert scalar(stack, f'sum(job_runs_total{{{sel}, job_name="probe"}})') is None  # untracked


def test_a_retry_is_a_failed_attempt_then_the_final_attempts_result(stack: Any, worker: dict[str, str], jobs: Any):
    """arq.Retry ends attempt 1 as failure (error.type arq.worker.Retry); attempt 2 under the same run id succeeds."""
    job_id, result = jobs["flaky"]
    assert result == 2

    def both() -> list[dict[str, Any]] | None:
        spans = run_spans(stack, worker["service"], job_id)
        return spans if len(spans) == 2 else None

    spans = eventually(both, "two attempts of the flaky job")
    by_attempt = {tags_of(s)["job.attempt"]: tags_of(s) for s in spans}
    assert by_attempt[1]["job.result"] == "failure"
    assert by_attempt[1]["error.type"] == "arq.worker.Retry"
    assert by_attempt[2]["job.result"] == "success"


def test_timeout_abort_and_failure_results(stack: Any, worker: dict[str, str], jobs: dict[str, Any]):
    """The job's timeout -> timeout, Job.abort() -> cancellation, an exception -> failure, re-raised untouched."""
    service = worker["service"]
    (slow,) = eventually(lambda: run_spans(stack, service, jobs["slow"]), "the slow job's run")
    assert tags_of(slow)["job.result"] == "timeout"
    assert tags_of(slow)["error.type"] == "TimeoutError"
    assert 0.9e6 <= slow["duration"] < 5e6  # microseconds: about the 1 s timeout
    assert jobs["aborted"] is True
    (aborted,) = eventually(lambda: run_spans(stack, service, jobs["sleeper"]), "the aborted job's run")
    assert tags_of(aborted)["job.result"] == "cancellation"
    job_id, error = jobs["broken"]
    assert type(error) is ValueError and error.args == ("boom 42",)  # arq stored the job's own exception
    (broken,) = eventually(lambda: run_spans(stack, service, job_id), "the broken job's run")
    assert tags_of(broken)["job.result"] == "failure"
    assert tags_of(broken)["error.type"] == "ValueError"


def test_concurrent_jobs_each_see_their_own_run(stack: Any, worker: dict[str, str], jobs: dict[str, Any]):
    """Jobs running at once in one worker each see only their own run in current_job(), and overlap in time."""
    spans = []
    for done in jobs["concurrent"]:
        assert done["seen"] == [done["job_id"]]
        assert done["current"] == 25
        (span,) = eventually(lambda d=done: run_spans(stack, worker["service"], d["job_id"]), "a concurrent run")
        assert tags_of(span)["job.progress.current"] == 25
        spans.append(span)
    assert max(s["startTime"] for s in spans) < min(s["startTime"] + s["duration"] for s in spans)


def test_untracked_functions_get_no_run_and_no_trace_carrier(jobs: dict[str, Any]):
    """An @untracked function runs without a current run, and the producer's carrier never reaches it."""
    assert jobs["probe"] == {"current": False, "kwargs": ["extra"]}
    assert CARRIER_KEY not in jobs["probe"]["kwargs"]


def test_the_arq_example_runs_and_its_jobs_hang_under_the_producer_run(stack: Any, redis_url: str):
    """examples/arq_app.py works off its jobs; Jaeger shows each job's run as a child of the producer's run."""
    service = f"arq-example-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "arq_app.py")],
        env=job_env(stack, service, REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(report["results"].values()) == [50, 80, 120]

    def trace() -> list[dict[str, Any]] | None:
        found = get_json(f"{stack.jaeger}/api/traces/{report['trace_id']}").get("data") or []
        spans = [s for t in found for s in t["spans"] if "job.result" in tags_of(s)]
        return spans if len(spans) == 4 else None

    spans = eventually(trace, "the producer run and its three job runs in one trace")
    (producer,) = [s for s in spans if s["operationName"] == "nightly-import"]
    runs = [s for s in spans if s["operationName"] == "import_rows"]
    assert {tags_of(s)["job.run.id"] for s in runs} == set(report["results"])
    for run in runs:
        assert [r["spanID"] for r in run["references"]] == [producer["spanID"]]
        assert tags_of(run)["job.progress.current"] == report["results"][tags_of(run)["job.run.id"]]
