"""joblogger.integrations.celery in-process: Celery's own tracer (``task.apply``), in-memory providers.

What needs a broker and real workers (prefork, revoke, time limits, Jaeger and
Prometheus) is in tests/integration/test_celery_live.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("celery")

from celery import Celery
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from joblogger import current_job
from joblogger.integrations import celery as joblogger_celery
from joblogger.testing import Capture, capture


@pytest.fixture
def cap() -> Iterator[Capture]:
    """In-memory span and metric capture."""
    with capture() as c:
        yield c


def make_app(cap: Capture, **options: Any) -> Celery:
    """An instrumented app with an in-memory result backend (eager results stored)."""
    app = Celery(f"t{time.monotonic_ns()}", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.task_store_eager_result = True
    options.setdefault("configure", False)
    joblogger_celery.instrument(app, tracer_provider=cap.tracer_provider, meter_provider=cap.meter_provider, **options)
    return app


def run_spans(cap: Capture, name: str) -> list[Any]:
    """Ended run spans of job ``name`` (snapshot spans excluded)."""
    return [s for s in cap.spans(name) if "job.result" in (s.attributes or {})]


def test_a_task_execution_is_a_run_with_the_task_id_name_and_attempt(cap: Capture) -> None:
    """Run id = task id, job name = task name, attempt 1, framework celery; current_job() is the run."""
    app = make_app(cap)

    @app.task(name="shop.add")
    def add(x: int, y: int) -> tuple[int, str | None]:
        job = current_job()
        return x + y, None if job is None else job.job_run_id

    assert add.apply((1, 2), task_id="task-1").get() == (3, "task-1")
    [span] = run_spans(cap, "shop.add")
    attrs = dict(span.attributes or {})
    assert attrs["job.run.id"] == "task-1"
    assert attrs["job.result"] == "success"
    assert attrs["job.attempt"] == 1
    assert attrs["job.framework"] == "celery"
    assert add(2, 3) == (5, None)  # a plain call is no run
    assert len(run_spans(cap, "shop.add")) == 1


def test_exceptions_are_reraised_untouched_and_map_to_results(cap: Capture) -> None:
    """failure, skip (Ignore, Reject), timeout (soft limit); Celery's states unchanged; the same exception object."""
    app = make_app(cap)
    boom = KeyError("no such order")

    @app.task(name="t.fails")
    def fails() -> None:
        raise boom

    @app.task(name="t.ignored")
    def ignored() -> None:
        raise Ignore()

    @app.task(name="t.rejected")
    def rejected() -> None:
        raise Reject("bad message", requeue=False)

    @app.task(name="t.soft")
    def soft() -> None:
        raise SoftTimeLimitExceeded()

    with pytest.raises(KeyError) as raised:
        fails.apply(throw=True)
    assert raised.value is boom
    assert fails.apply().state == "FAILURE"
    assert ignored.apply().state == "IGNORED"
    assert rejected.apply().state == "REJECTED"
    assert soft.apply().state == "FAILURE"
    results = {name: [s.attributes["job.result"] for s in run_spans(cap, name)] for name in
               ("t.fails", "t.ignored", "t.rejected", "t.soft")}  # fmt: skip
    assert results == {
        "t.fails": ["failure", "failure"],
        "t.ignored": ["skip"],
        "t.rejected": ["skip"],
        "t.soft": ["timeout"],
    }


def test_retries_are_attempts_of_one_run_id(cap: Capture) -> None:
    """Each attempt a run span with job.attempt 1..3; the retried ones failure with the reason; the last success."""
    app = make_app(cap)

    @app.task(name="t.flaky", bind=True, max_retries=5)
    def flaky(self: Any) -> int:
        if self.request.retries < 2:
            raise self.retry(exc=ConnectionError(f"try {self.request.retries + 1}"), countdown=0)
        return self.request.retries + 1

    assert flaky.apply(task_id="flaky-1").get() == 3
    spans = sorted(run_spans(cap, "t.flaky"), key=lambda s: s.attributes["job.attempt"])
    got = [(s.attributes["job.run.id"], s.attributes["job.attempt"], s.attributes["job.result"]) for s in spans]
    assert got == [("flaky-1", 1, "failure"), ("flaky-1", 2, "failure"), ("flaky-1", 3, "success")]
    assert "try 1" in spans[0].attributes["celery.end.reason"]
    assert spans[0].attributes["error.type"] == "ConnectionError"


def test_opt_out_and_opt_in(cap: Capture) -> None:
    """joblogger=False opts a task out; with default=False only joblogger=True tasks are runs."""
    app = make_app(cap)

    @app.task(name="t.out", joblogger=False)
    def out() -> bool:
        return current_job() is None

    assert out.apply().get() is True
    other = make_app(cap, default=False)

    @other.task(name="t.plain")
    def plain() -> bool:
        return current_job() is None

    @other.task(name="t.chosen", joblogger=True)
    def chosen() -> bool:
        return current_job() is not None

    assert plain.apply().get() is True
    assert chosen.apply().get() is True
    assert run_spans(cap, "t.out") == [] and run_spans(cap, "t.plain") == []
    assert len(run_spans(cap, "t.chosen")) == 1


def test_progress_is_stored_as_the_progress_state_and_success_replaces_it(cap: Capture) -> None:
    """While the task runs AsyncResult.info is the progress (stage, current, total, percent, outcomes); then SUCCESS."""
    app = make_app(cap, progress_interval_s=0.05)

    @app.task(name="t.progress", bind=True)
    def progress(self: Any) -> dict[str, Any]:
        job = current_job()
        assert job is not None
        job.set_total(10, "rows")
        job.set_stage("Loading")
        job.increment_progress(4)
        job.add_outcome("inserts", 4)
        deadline = time.monotonic() + 5
        seen = app.AsyncResult(self.request.id)
        while time.monotonic() < deadline and not (seen.state == "PROGRESS" and seen.info["current"] == 4):
            time.sleep(0.02)
        return {"state": seen.state, "info": seen.info}

    result = progress.apply(task_id="p-1")
    value = result.get()
    assert value["state"] == "PROGRESS"
    info = value["info"]
    assert (info["stage"], info["current"], info["total"], info["percent"]) == ("Loading", 4, 10, 40.0)
    assert info["outcomes"] == {"inserts": 4}
    assert info["run_id"] == "p-1"
    time.sleep(0.2)  # several publisher intervals: nothing may overwrite the final state
    assert app.AsyncResult("p-1").state == "SUCCESS"


def test_a_task_that_writes_its_own_states_keeps_them(cap: Capture) -> None:
    """A task's own update_state() is never replaced by joblogger's PROGRESS; nor is a run with no progress written."""
    app = make_app(cap, progress_interval_s=0.05)
    writes: list[tuple[str, Any]] = []
    original = app.backend.store_result

    def recording_store(task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        writes.append((state, result))
        return original(task_id, result, state, *args, **kwargs)

    app.backend.store_result = recording_store

    @app.task(name="t.own", bind=True)
    def own(self: Any) -> None:
        for i in range(5):
            self.update_state(state="UPLOADING", meta={"file": i})
            time.sleep(0.06)  # longer than the progress interval

    @app.task(name="t.mixed", bind=True)
    def mixed(self: Any) -> None:
        job = current_job()
        assert job is not None
        job.set_total(4, "files")
        for i in range(4):
            job.increment_progress()
            time.sleep(0.06)
            if i == 1:
                self.update_state(state="PROGRESS", meta={"done": i + 1})
                time.sleep(0.15)  # the run's progress changes no more writes after this

    assert own.apply(task_id="own-1").state == "SUCCESS"
    assert [w for w in writes if w[0] not in ("UPLOADING", "SUCCESS")] == []
    writes.clear()
    assert mixed.apply(task_id="mixed-1").state == "SUCCESS"
    mine = writes.index(("PROGRESS", {"done": 2}))
    assert [w for w in writes[mine + 1 :] if w[0] != "SUCCESS"] == []
    assert any(state == "PROGRESS" and "run_id" in meta for state, meta in writes[:mine])


def test_a_task_writing_its_own_state_from_a_thread_it_started_keeps_it(
    cap: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``self.update_state(task_id=..., ...)`` from a worker thread of the task stops joblogger's writes too.

    Celery's request is per thread, so such a call names the task id; before, only a call from the
    task's own thread was seen, and joblogger kept writing PROGRESS over the task's state.
    """
    import threading

    app = make_app(cap, progress_interval_s=0.05)
    writes: list[tuple[str, Any]] = []
    backend_class = type(app.backend)  # app.backend is one instance per thread: record them all
    original = backend_class.store_result

    def recording_store(backend: Any, task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        writes.append((state, result))
        return original(backend, task_id, result, state, *args, **kwargs)

    monkeypatch.setattr(backend_class, "store_result", recording_store)

    @app.task(name="t.threaded", bind=True)
    def threaded(self: Any) -> None:
        job = current_job()
        assert job is not None
        job.set_total(6, "files")
        task_id = self.request.id
        worker = threading.Thread(target=self.update_state, kwargs={"task_id": task_id, "state": "UPLOADING"})
        for i in range(6):
            job.increment_progress()
            time.sleep(0.06)  # longer than the progress interval: the progress changes at every write
            if i == 1:
                worker.start()
                worker.join()

    assert threaded.apply(task_id="threaded-1").state == "SUCCESS"
    mine = writes.index(("UPLOADING", None))
    assert any(state == "PROGRESS" for state, _ in writes[:mine])  # joblogger wrote before the task's own state
    assert [w for w in writes[mine + 1 :] if w[0] != "SUCCESS"] == []  # and nothing after it


def test_a_progress_write_in_flight_never_lands_after_the_final_state(cap: Capture) -> None:
    """A PROGRESS write still going when the task ends finishes before Celery stores FAILURE, not after it.

    (Celery's key-value backends already refuse to replace SUCCESS; FAILURE they would replace.)
    """
    import threading

    app = make_app(cap, progress_interval_s=0.05)
    backend = app.backend
    writing = threading.Event()
    original = backend.store_result

    def slow_store(task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        if state == "PROGRESS":
            writing.set()
            time.sleep(0.3)  # a slow result backend
        return original(task_id, result, state, *args, **kwargs)

    backend.store_result = slow_store

    @app.task(name="t.race")
    def race() -> str:
        job = current_job()
        assert job is not None
        job.increment_progress()
        assert writing.wait(5)  # end while the progress write is in flight
        raise LookupError("gone")

    assert race.apply(task_id="race-1").state == "FAILURE"
    time.sleep(0.5)
    assert app.AsyncResult("race-1").state == "FAILURE"


def test_the_run_is_a_child_of_the_current_span_or_of_the_producers_traceparent(cap: Capture) -> None:
    """Inside a span the run is its child; with only a traceparent header, the producer's span is the parent."""
    app = make_app(cap)

    @app.task(name="t.child")
    def child() -> None:
        return None

    outer = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1)))
    with trace.use_span(outer):
        child.apply()
    child.apply(headers={"traceparent": f"00-{0x123:032x}-{0x456:016x}-01"})
    first, second = run_spans(cap, "t.child")
    assert (first.context.trace_id, first.parent.span_id) == (0xABC, 0xDEF)
    assert (second.context.trace_id, second.parent.span_id) == (0x123, 0x456)


def test_the_producer_carries_its_trace_context_in_the_task_headers(cap: Capture) -> None:
    """apply_async inside a span puts a traceparent into the message (no CeleryInstrumentor needed)."""
    app = make_app(cap)

    @app.task(name="t.sent")
    def sent() -> None:
        return None

    outer = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1)))
    with trace.use_span(outer):
        sent.apply_async()
    with app.connection() as conn:
        message = conn.SimpleQueue("celery").get(timeout=5)
        message.ack()
    assert message.headers["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-01"


def test_a_retry_sent_by_the_task_is_not_a_child_run_of_its_own_attempt(cap: Capture) -> None:
    """What ``self.retry()`` sends from a worker (the task, same id) gets no joblogger_parent; other tasks do."""
    app = make_app(cap)

    @app.task(name="t.resend", bind=True)
    def resend(self: Any) -> None:
        # Task.retry() in a worker: signature_from_request(...).apply_async(), the same task id
        self.signature_from_request(countdown=0, retries=self.request.retries + 1).apply_async()
        app.send_task("t.other", task_id="other-1")

    resend.apply(task_id="resend-1")
    with app.connection() as conn:
        queue = conn.SimpleQueue("celery")
        messages = [queue.get(timeout=5), queue.get(timeout=5)]
        for message in messages:
            message.ack()
    headers = {m.headers["id"]: m.headers for m in messages}
    assert headers["resend-1"]["retries"] == 1
    assert "joblogger_parent" not in headers["resend-1"]
    assert json.loads(headers["other-1"]["joblogger_parent"])["run_id"] == "resend-1"


def test_the_benchmark_runs() -> None:
    """benchmarks/integration_celery.py --quick prints its three rows (no timing asserted)."""
    from ._bench import run_quick

    proc = run_quick("integration_celery.py", timeout=300)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "µs" in line]
    assert len(rows) == 3, proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr
