"""Celery tasks run by real workers (prefork, threads, solo) on a real Redis are runs in the live stack.

Each worker is a ``celery worker`` subprocess using tests/integration/_celery_tasks.py,
exporting to the live collector; this test process is the producer. Jaeger shows
every run under its Celery span, Prometheus adds up to what the tasks returned,
and ``AsyncResult(id).info`` shows the progress while a task runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import eventually, jaeger_traces, job_env, scalar, tags_of

pytest.importorskip("celery")  # the [celery] extra is part of dev; absent only in the lowest-bounds venv

HERE = Path(__file__).resolve().parent
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("celery_producer_gc")]


class Worker:
    """A ``celery worker`` subprocess consuming its own queue, exporting as ``service``."""

    def __init__(
        self,
        stack: Any,
        redis_url: str,
        pool: str,
        tmp: Path,
        *,
        instrumentor: bool,
        module: str = "_celery_tasks",
        cwd: Path = HERE,
        queue: str | None = None,
    ) -> None:
        self.service = f"celery-{pool}-{uuid.uuid4().hex[:6]}"
        self.queue = queue or f"q-{self.service}"
        self.hostname = f"{self.service}@localhost"
        self.log = tmp / f"{self.service}.log"
        self.env = job_env(
            stack,
            self.service,
            CELERY_TEST_REDIS=redis_url,
            CELERY_BROKER_URL=redis_url,
            CELERY_TEST_OTEL_INSTRUMENTOR="1" if instrumentor else "0",
            PYTHONPATH=os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]),
        )
        concurrency = {"prefork": "2", "threads": "4", "solo": "1"}[pool]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", module, "worker", "--pool", pool,
                 "-c", concurrency, "-Q", self.queue, "-n", self.hostname, "--loglevel", "INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        eventually(lambda: "ready." in self.text() or self.proc.poll() is not None, f"{pool} worker ready", 60)
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        """What the worker logged so far."""
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), as a service manager stops a worker."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def prefork(stack: Any, redis_url: str, tasks: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A prefork worker (-c 2) with opentelemetry-instrumentation-celery in worker_process_init."""
    worker = Worker(stack, redis_url, "prefork", tmp_path_factory.mktemp("celery"), instrumentor=True)
    yield worker
    worker.stop()


def run_spans(stack: Any, service: str, run_id: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The ended run spans of ``run_id`` (not snapshot spans), each with its trace's spans by id."""
    found = []
    for trace_ in jaeger_traces(stack, service, {"job.run.id": run_id}):
        by_id = {s["spanID"]: s for s in trace_["spans"]}
        for span in trace_["spans"]:
            tags = tags_of(span)
            if tags.get("job.run.id") == run_id and "job.result" in tags and "job.snapshot.kind" not in tags:
                found.append((span, by_id))
    return found


def parent_of(span: dict[str, Any], by_id: dict[str, Any]) -> dict[str, Any] | None:
    """The span's parent in the same trace, if Jaeger has it."""
    for ref in span.get("references", []):
        if ref["refType"] == "CHILD_OF":
            return by_id.get(ref["spanID"])
    return None


def wait_runs(stack: Any, service: str, run_id: str, n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Wait until Jaeger has ``n`` ended run spans of ``run_id``."""

    def probe() -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
        spans = run_spans(stack, service, run_id)
        return spans if len(spans) >= n else None

    return eventually(probe, f"{n} run span(s) of {run_id}")


def wait_run_and_parent(stack: Any, service: str, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one ended run span of ``run_id`` and its parent span, once Jaeger has both (they are exported apart)."""

    def probe() -> tuple[dict[str, Any], dict[str, Any]] | None:
        spans = run_spans(stack, service, run_id)
        if len(spans) != 1:
            return None
        span, by_id = spans[0]
        parent = parent_of(span, by_id)
        return (span, parent) if parent is not None else None

    return eventually(probe, f"the run span of {run_id} and its parent")


def test_prefork_tasks_are_runs_under_their_celery_spans_and_prometheus_adds_up(
    stack: Any, prefork: Worker, tasks: Any
) -> None:
    """N tasks on a prefork pool: N run traces, each a child of the instrumentation's run/<task> span; totals add up."""
    results = [tasks.count.apply_async((12 + i,), queue=prefork.queue) for i in range(6)]
    returned = [r.get(timeout=60) for r in results]
    out_opted = tasks.opted_out.apply_async(queue=prefork.queue)
    assert out_opted.get(timeout=30) is True  # joblogger=False: no run inside the task
    expected: dict[str, int] = {}
    for r, value in zip(results, returned, strict=True):
        assert value["run_id"] == r.id
        for key, n in value["outcomes"].items():
            expected[key] = expected.get(key, 0) + n
    for r, value in zip(results, returned, strict=True):
        span, parent = wait_run_and_parent(stack, prefork.service, r.id)
        tags = tags_of(span)
        assert span["operationName"] == "jl.count"
        assert tags["job.result"] == "success"
        assert tags["job.framework"] == "celery"
        assert tags["job.queue"] == prefork.queue
        assert tags["job.worker"] == prefork.hostname
        assert tags["job.attempt"] == 1
        assert tags["job.progress.current"] == value["current"]
        assert parent["operationName"] == "run/jl.count", parent
    sel = f'job="{prefork.service}"'
    for key, n in expected.items():
        query = f'sum(job_outcomes_total{{{sel}, job_name="jl.count", job_outcome="{key}"}})'
        eventually(lambda q=query, n=n: scalar(stack, q) == n, f"{n} {key} in Prometheus")
    runs = f'sum(job_runs_total{{{sel}, job_name="jl.count", job_result="success"}})'
    eventually(lambda: scalar(stack, runs) == len(results), f"{len(results)} successful runs in Prometheus")
    assert scalar(stack, f'sum(job_runs_total{{{sel}, job_name="jl.opted_out"}})') is None
    assert "Traceback" not in prefork.text()


def test_prefork_retries_failures_limits_and_ignore_map_to_results(stack: Any, prefork: Worker, tasks: Any) -> None:
    """Retry: attempts 1..3 (failure, failure, success, no child runs); raise: failure; soft: timeout; Ignore: skip."""
    retried = tasks.flaky.apply_async((3,), queue=prefork.queue)
    assert retried.get(timeout=60) == 3
    failed = tasks.fails.apply_async(queue=prefork.queue)
    soft = tasks.soft_limited.apply_async(queue=prefork.queue)
    ignored = tasks.ignored.apply_async(queue=prefork.queue)
    with pytest.raises(KeyError):
        failed.get(timeout=30)
    with pytest.raises(Exception, match="SoftTimeLimitExceeded"):
        soft.get(timeout=30)
    attempts = wait_runs(stack, prefork.service, retried.id, 3)
    by_attempt = {tags_of(s)["job.attempt"]: tags_of(s) for s, _ in attempts}
    assert sorted(by_attempt) == [1, 2, 3]
    assert [by_attempt[a]["job.result"] for a in (1, 2, 3)] == ["failure", "failure", "success"]
    assert "attempt 1 failed" in by_attempt[1]["celery.end.reason"]
    assert by_attempt[1]["error.type"] == "ConnectionError"
    assert all("job.parent.run.id" not in by_attempt[a] for a in (1, 2, 3))  # a retry is no child of itself
    assert retried.state == "SUCCESS"
    [(span, _)] = wait_runs(stack, prefork.service, failed.id, 1)
    assert tags_of(span)["job.result"] == "failure"
    assert failed.state == "FAILURE"
    [(span, _)] = wait_runs(stack, prefork.service, soft.id, 1)
    assert tags_of(span)["job.result"] == "timeout"
    [(span, _)] = wait_runs(stack, prefork.service, ignored.id, 1)
    assert tags_of(span)["job.result"] == "skip"
    sel = f'job="{prefork.service}", job_name="jl.flaky"'
    eventually(lambda: scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="tries"}})') == 3, "3 tries")


def test_prefork_revoke_terminate_is_cancellation_and_hard_time_limit_timeout(
    stack: Any, prefork: Worker, tasks: Any
) -> None:
    """revoke(terminate=True), SIGTERM or SIGKILL: cancellation; the hard time limit: timeout; the pool goes on."""
    terminated = tasks.sleepy.apply_async((30,), queue=prefork.queue)
    killed = tasks.sleepy.apply_async((30,), queue=prefork.queue)
    eventually(lambda: terminated.state == "PROGRESS" and killed.state == "PROGRESS", "both tasks running", 30)
    terminated.revoke(terminate=True)
    killed.revoke(terminate=True, signal="SIGKILL")
    hard = tasks.hard_limited.apply_async(queue=prefork.queue)
    for result, reason in ((terminated, "terminated"), (killed, "killed")):
        [(span, _)] = wait_runs(stack, prefork.service, result.id, 1)
        tags = tags_of(span)
        assert (tags["job.result"], tags["celery.end.reason"], tags["job.attempt"]) == ("cancellation", reason, 1)
        assert tags["job.queue"] == prefork.queue
        assert result.state == "REVOKED"
    [(span, _)] = wait_runs(stack, prefork.service, hard.id, 1)
    assert (tags_of(span)["job.result"], tags_of(span)["celery.end.reason"]) == ("timeout", "hard time limit")
    assert hard.state == "FAILURE"
    early = str(uuid.uuid4())
    prefork_app = tasks.app
    prefork_app.control.revoke(early)  # revoked before it is even sent: the worker skips it on receipt
    skipped = tasks.count.apply_async((3,), queue=prefork.queue, task_id=early)
    expired = tasks.count.apply_async((3,), queue=prefork.queue, expires=0.001)
    for result, outcome in (
        (skipped, ("cancellation", "revoked before it ran")),
        (expired, ("skip", "expired before it ran")),
    ):
        [(span, _)] = wait_runs(stack, prefork.service, result.id, 1)
        assert (tags_of(span)["job.result"], tags_of(span)["celery.end.reason"]) == outcome
        assert result.state == "REVOKED"
    # The replacement children still deliver runs.
    after = tasks.count.apply_async((3,), queue=prefork.queue)
    assert after.get(timeout=60)["current"] == 3
    wait_runs(stack, prefork.service, after.id, 1)
    time.sleep(2)  # a second span for any of these would have arrived by now
    for result in (terminated, killed, hard):
        assert len(run_spans(stack, prefork.service, result.id)) == 1


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_progress_is_the_task_state_while_it_runs_and_the_producer_is_the_parent(
    stack: Any, redis_url: str, tasks: Any, pool: str, tmp_path: Path
) -> None:
    """threads/solo: AsyncResult.info shows stage/current/total/percent/outcomes; SUCCESS stays; producer parent."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    worker = Worker(stack, redis_url, pool, tmp_path, instrumentor=False)
    try:
        trace_id, span_id = uuid.uuid4().int >> 1, uuid.uuid4().int >> 65
        producer = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1)))
        with trace.use_span(producer):
            result = tasks.count.apply_async((30, 0.1), queue=worker.queue)
        seen: list[dict[str, Any]] = []

        def progress() -> bool:
            # One read of the stored meta: `state` then `info` are two, and a task ending between them
            # gives its result (no "stage") as the progress.
            meta = result.backend.get_task_meta(result.id)
            if meta["status"] == "PROGRESS" and meta["result"]["current"] >= 5:
                seen.append(meta["result"])
                return True
            return False

        eventually(progress, "PROGRESS with 5 rows done", 30)
        info = seen[-1]
        assert info["stage"] == "Counting"
        assert info["total"] == 30
        assert info["entity_type"] == "rows"
        assert 0 < info["percent"] < 100
        assert sum(info["outcomes"].values()) >= 5
        assert info["run_id"] == result.id
        value = result.get(timeout=30)
        time.sleep(1.0)  # a late PROGRESS write would land now
        assert result.state == "SUCCESS"
        assert result.info == value
        [(span, _)] = wait_runs(stack, worker.service, result.id, 1)
        assert span["traceID"] == f"{trace_id:032x}"
        assert any(ref["spanID"] == f"{span_id:016x}" for ref in span["references"])
        assert tags_of(span)["job.worker"] == worker.hostname
        # Headers a scheduler may set itself (django-celery-beat sends periodic_task_name): kept as given.
        beat_headers = {"celery_beat_task": True, "periodic_task_name": "nightly-count"}
        beat = tasks.count.apply_async((2,), queue=worker.queue, headers=beat_headers)
        beat.get(timeout=30)
        [(span, _)] = wait_runs(stack, worker.service, beat.id, 1)
        assert (tags_of(span)["celery.beat"], tags_of(span)["celery.beat.entry"]) == (True, "nightly-count")
        assert "celery.beat" not in tags_of(run_spans(stack, worker.service, result.id)[0][0])
    finally:
        worker.stop()


def test_tasks_sent_by_celery_beat_are_runs_that_name_their_schedule_entry(
    stack: Any, redis_url: str, tasks: Any, tmp_path: Path
) -> None:
    """A real `celery beat` (Celery's own scheduler, instrumented by the same app) and a worker.

    Celery's scheduler marks nothing in the messages it sends; instrument() in the beat process
    adds the entry's name, so each scheduled execution's run says which entry sent it.
    """
    worker = Worker(stack, redis_url, "solo", tmp_path, instrumentor=False)
    beat_log = tmp_path / "beat.log"
    env = dict(worker.env, CELERY_TEST_BEAT_QUEUE=worker.queue)
    try:
        with beat_log.open("w") as out:
            beat = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "_celery_tasks", "beat", "--loglevel", "INFO",
                 "-s", str(tmp_path / "beat-schedule")],
                cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            spans = eventually(
                lambda: (
                    [
                        s
                        for t in jaeger_traces(stack, worker.service, {"celery.beat.entry": "every-second-count"})
                        for s in t["spans"]
                        if "job.result" in tags_of(s) and "job.snapshot.kind" not in tags_of(s)
                    ]
                    or None
                ),
                "a run sent by celery beat",
                60,
            )
        finally:
            beat.terminate()
            beat.wait(30)
        tags = tags_of(spans[0])
        assert tags["celery.beat"] is True and tags["job.name"] == "jl.count" and tags["job.result"] == "success"
        assert "Scheduler: Sending due task every-second-count" in beat_log.read_text(errors="replace")
    finally:
        worker.stop()


def test_the_example_runs_as_documented(stack: Any, redis_url: str, tmp_path: Path) -> None:
    """examples/celery_app.py: a prefork worker and the producer script; progress printed, runs under Celery spans."""
    examples = HERE.parents[1] / "examples"
    worker = Worker(stack, redis_url, "prefork", tmp_path, instrumentor=True, module="celery_app", cwd=examples,
                    queue="celery")  # fmt: skip
    try:
        producer = subprocess.run(
            [sys.executable, "celery_app.py", "2"], cwd=examples, env=worker.env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert producer.returncode == 0, producer.stderr
        lines = producer.stdout.splitlines()
        assert any(line.startswith("progress ") and "Importing batch" in line for line in lines), lines
        done = [line.split() for line in lines if line.startswith("done ")]
        assert [d[2] for d in done] == ["SUCCESS", "SUCCESS"], lines
        for d in done:
            span, parent = wait_run_and_parent(stack, worker.service, d[1])
            tags = tags_of(span)
            assert (tags["job.result"], tags["job.outcomes.inserted"], tags["job.outcomes.duplicates"]) == (
                "success", 36, 4)  # fmt: skip
            assert parent["operationName"] == "run/shop.import_orders"
    finally:
        worker.stop()
