"""JobLoggerMiddleware in one process: Dramatiq's StubBroker and a real Worker, in-memory providers.

The live test (tests/integration/test_dramatiq_live.py) covers the CLI, Redis and the
real backends; these cover the result mapping of paths it does not reach, opt-in,
and what the middleware must never do (raise into Dramatiq, lose the producer's trace).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage
from dramatiq.rate_limits import RateLimitExceeded
from opentelemetry.trace import use_span

from joblogger import current_job
from joblogger.integrations.dramatiq import TRACE_OPTION, JobLoggerMiddleware
from joblogger.testing import Capture, capture


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c


def make_broker(cap: Capture, **options: Any) -> StubBroker:
    broker = StubBroker()
    broker.add_middleware(
        JobLoggerMiddleware(
            configure_otlp=False, tracer_provider=cap.tracer_provider, meter_provider=cap.meter_provider, **options
        )
    )
    return broker


def process(broker: StubBroker) -> None:
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        broker.join("default", fail_fast=False)
        worker.join()
    finally:
        worker.stop()


def runs(cap: Capture) -> dict[str, list[dict[str, Any]]]:
    """Ended run spans by run id, attributes only, in attempt order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for span in cap.spans():
        attrs = dict(span.attributes or {})
        if "job.result" in attrs and "job.run.id" in attrs:
            found.setdefault(str(attrs["job.run.id"]), []).append({**attrs, "name": span.name, "span": span})
    for attempts in found.values():
        attempts.sort(key=lambda a: a["job.attempt"])
    return found


def test_results_of_every_path(cap: Capture) -> None:
    """Success, failure, retried attempts, SkipMessage, a rate limit and a message failed early map as documented."""
    broker = make_broker(cap)
    seen: dict[str, Any] = {}

    @dramatiq.actor(broker=broker, max_retries=0)
    def ok() -> None:
        seen["ok"] = current_job()

    @dramatiq.actor(broker=broker, max_retries=0)
    def fails() -> None:
        raise ValueError("boom")

    calls = {"n": 0}

    @dramatiq.actor(broker=broker, max_retries=2, min_backoff=1, max_backoff=2)
    def retried() -> None:
        calls["n"] += 1
        if calls["n"] < 3:
            raise RuntimeError("again")

    @dramatiq.actor(broker=broker, max_retries=0)
    def skips() -> None:
        raise SkipMessage("not today")

    @dramatiq.actor(broker=broker, max_retries=0)
    def limited() -> None:
        raise RateLimitExceeded("too many")

    class FailFirst(dramatiq.Middleware):
        def before_process_message(self, broker: Any, message: Any) -> None:
            if message.actor_name == "failed_early":
                message.fail()

    broker.add_middleware(FailFirst())

    @dramatiq.actor(broker=broker, max_retries=0)
    def failed_early() -> None:
        raise AssertionError("never called")

    ids = {
        name: actor.send().message_id
        for name, actor in [
            ("ok", ok),
            ("fails", fails),
            ("retried", retried),
            ("skips", skips),
            ("limited", limited),
            ("failed_early", failed_early),
        ]
    }
    process(broker)
    found = runs(cap)
    results = {name: [a["job.result"] for a in found[i]] for name, i in ids.items()}
    assert results == {
        "ok": ["success"],
        "fails": ["failure"],
        "retried": ["failure", "failure", "success"],
        "skips": ["skip"],
        "limited": ["skip"],
        "failed_early": ["skip"],
    }
    assert [a["job.attempt"] for a in found[ids["retried"]]] == [1, 2, 3]
    assert seen["ok"] is not None and seen["ok"].job_run_id == ids["ok"]
    assert found[ids["ok"]][0]["job.framework"] == "dramatiq" and found[ids["ok"]][0]["job.queue"] == "default"
    assert cap.metric_value("job.runs", **{"job.name": "retried", "job.result": "failure"}) == 2


def test_opt_in_and_opt_out(cap: Capture) -> None:
    """joblogger=False opts an actor out; with all_actors=False only joblogger=True actors get runs."""
    broker = make_broker(cap, all_actors=False)
    inside: dict[str, Any] = {}

    @dramatiq.actor(broker=broker, joblogger=True)
    def chosen() -> None:
        inside["chosen"] = current_job()

    @dramatiq.actor(broker=broker)
    def default() -> None:
        inside["default"] = current_job()

    chosen.send()
    default.send()
    process(broker)
    assert inside["chosen"] is not None and inside["default"] is None
    assert {a["name"] for attempts in runs(cap).values() for a in attempts} == {"chosen"}

    cap2_broker = make_broker(cap)

    @dramatiq.actor(broker=cap2_broker, joblogger=False)
    def opted_out() -> None:
        inside["opted_out"] = current_job()

    opted_out.send()
    process(cap2_broker)
    assert inside["opted_out"] is None


def test_run_continues_the_producers_trace(cap: Capture) -> None:
    """The message carries the producer's trace context; the run span is its child, also after a retry."""
    broker = make_broker(cap)
    calls = {"n": 0}

    @dramatiq.actor(broker=broker, max_retries=1, min_backoff=1, max_backoff=2)
    def task() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("once")

    producer = cap.tracer_provider.get_tracer("producer").start_span("enqueue")
    with use_span(producer, end_on_exit=True):
        message = task.send()
    assert TRACE_OPTION in message.options
    process(broker)
    attempts = runs(cap)[message.message_id]
    assert len(attempts) == 2
    for a in attempts:
        span = a["span"]
        assert span.parent is not None
        assert span.parent.span_id == producer.get_span_context().span_id
        assert span.context.trace_id == producer.get_span_context().trace_id


def test_no_trace_context_without_a_span(cap: Capture) -> None:
    """Enqueued outside any span, the message gets no trace option and the run is a root span."""
    broker = make_broker(cap)

    @dramatiq.actor(broker=broker, max_retries=0)
    def task() -> None:
        pass

    message = task.send()
    assert TRACE_OPTION not in message.options
    process(broker)
    assert runs(cap)[message.message_id][0]["span"].parent is None
