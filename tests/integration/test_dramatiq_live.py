"""Dramatiq integration against a real Redis, the real ``dramatiq`` CLI (-p 2 -t 2) and the real stack.

Messages are enqueued under a producer span by a broker with ``JobLoggerMiddleware``;
the worker processes load tests/integration/_dramatiq_app.py, whose broker adds the
same middleware (one line).
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
from _framework_live import check_runs, check_totals, producer_span, run_spans, started, wait_for
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from live import job_env
from opentelemetry import trace

from joblogger.integrations.dramatiq import TRACE_OPTION, JobLoggerMiddleware

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DRAMATIQ = Path(sys.executable).with_name("dramatiq")
pytestmark = pytest.mark.integration


def message(actor: str, *args: Any, **options: Any) -> Message[Any]:
    """A message for an actor of the app (declared in the worker processes only)."""
    return Message(queue_name="default", actor_name=actor, args=args, kwargs={}, options=options)


def test_dramatiq_cli_reports_every_message_with_retries_timeouts_skips_and_shutdown(
    stack: Any, redis_url: str
) -> None:
    """dramatiq -p 2 -t 2: N messages -> N runs under the producer span; retry attempts, timeout, skips, shutdown."""
    service = f"dramatiq-{uuid.uuid4().hex[:6]}"
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    producer = RedisBroker(url=redis_url, namespace=namespace)
    producer.add_middleware(JobLoggerMiddleware(configure_otlp=False))
    producer.declare_queue("default")
    span = producer_span()
    parent = span.get_span_context()
    with trace.use_span(span, end_on_exit=True):
        counts = [producer.enqueue(message("count", 5)) for _ in range(6)]
        boom = producer.enqueue(message("boom"))
        flaky = producer.enqueue(message("flaky", f"flaky-{service}"))
        slow = producer.enqueue(message("slow", 10))
        skipped = producer.enqueue(message("skipped"))
        # Too old: AgeLimit (a middleware before ours) skips it before our before_process_message.
        expired = producer.enqueue(
            message("count", 1, max_age=1000).copy(message_timestamp=int(time.time() * 1000) - 60_000)
        )
        untracked = producer.enqueue(message("untracked"))
        sleeper = producer.enqueue(message("sleeper", 60))
    assert counts[0].options[TRACE_OPTION]["traceparent"].split("-")[2] == format(parent.span_id, "016x")

    env = job_env(
        stack,
        service,
        PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT / "src")]),
        REDIS_URL=redis_url,
        DRAMATIQ_NAMESPACE=namespace,
    )
    worker = subprocess.Popen(
        [str(DRAMATIQ), "_dramatiq_app", "-p", "2", "-t", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        expected = {
            **{m.message_id: ["success"] for m in counts},
            boom.message_id: ["failure"],
            flaky.message_id: ["failure", "success"],
            slow.message_id: ["timeout"],
            skipped.message_id: ["skip"],
            expired.message_id: ["skip"],
        }
        spans = check_runs(stack, service, "dramatiq", expected, parent)
        # The sleeper is running (its start marker is exported); stop the workers: Shutdown interrupts it.
        wait_for(lambda: started(stack, service, sleeper.message_id), "the sleeper to start", 60)
        worker.send_signal(signal.SIGTERM)  # the CLI passes it on to its worker processes
        out, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    spans += check_runs(stack, service, "dramatiq", {sleeper.message_id: ["cancellation"]}, parent)
    assert {s["operationName"] for s in spans} == {"count", "boom", "flaky", "slow", "skipped", "sleeper"}
    assert run_spans(stack, service, untracked.message_id) == [], out
    check_totals(stack, service, spans)
