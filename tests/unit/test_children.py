"""Child runs: spans under the parent's run span, roll-up into the parent (threads, asyncio, pools), carriers."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import pytest
from opentelemetry import trace

from joblogger import ChildReport, semconv
from joblogger.testing import Capture

from . import _children_work as work
from ._helpers import joblogger_warnings


def _run_span(cap: Capture, run_id: str) -> trace.Span:
    [span] = [s for s in cap.spans() if s.attributes.get(semconv.JOB_RUN_ID) == run_id]
    return span  # type: ignore[return-value]


def test_child_span_is_a_child_of_the_run_span_and_each_entity_is_counted_once_on_metrics(cap: Capture) -> None:
    with cap.job_logger("p-1", "fan-out") as job:
        job.increment_progress(2)
        with job.child("shard", run_id="c-1", total=5, entity_type="rows") as child:
            child.increment_progress(5)
            child.add_outcome("updates", 5)
            assert job.current == 7  # live, before the child ended
        assert dict(job.outcomes) == {"updates": 5}
    parent, kid = _run_span(cap, "p-1"), _run_span(cap, "c-1")
    assert kid.parent is not None and kid.parent.span_id == parent.context.span_id
    assert kid.context.trace_id == parent.context.trace_id
    assert kid.attributes[semconv.JOB_PARENT_RUN_ID] == "p-1"
    assert kid.attributes[semconv.JOB_PARENT_NAME] == "fan-out"
    assert parent.attributes[semconv.JOB_PROGRESS_CURRENT] == 7
    assert parent.attributes["job.outcomes.updates"] == 5
    assert parent.attributes["job.children.ok"] == 1
    assert job.summary is not None and job.summary.line.endswith("| Updates: 5 | Children: 1 ok")
    assert job.summary.children["ok"] == 1
    # Prometheus counts each entity once, in the run that processed it: 2 + 5, not 2 + 7 + 5.
    assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 7
    assert cap.metric_value(semconv.METRIC_OUTCOMES) == 5
    for point in cap.metrics():
        assert semconv.JOB_PARENT_RUN_ID not in point.attributes  # never a metric label


def test_thread_children_roll_up_live_and_failures_are_counted(cap: Capture) -> None:
    started = threading.Barrier(9)
    release = threading.Event()
    raised: list[BaseException] = []

    def shard(job: object, i: int) -> None:
        try:
            with job.child("shard") as child:  # type: ignore[attr-defined]
                child.increment_progress(10)
                child.add_outcome("rows", 10)
                started.wait(5)
                release.wait(5)
                if i == 3:
                    raise ValueError("shard 3")
        except ValueError as exc:
            raised.append(exc)

    with cap.job_logger("p-2", "fan-out") as job:
        job.set_total(80)
        job.set_stage("Sharding")
        threads = [threading.Thread(target=shard, args=(job, i)) for i in range(8)]
        for t in threads:
            t.start()
        started.wait(5)
        assert job.current == 80 and job.percent == 100.0  # live: all eight still running
        assert job.children["running"] == 8
        assert job.progress_text == "Sharding (80 / 80)"
        release.set()
        for t in threads:
            t.join(5)
    assert [str(e) for e in raised] == ["shard 3"]  # re-raised untouched
    assert job.summary is not None
    assert job.summary.children == {"ok": 7, "failed": 1, "cancelled": 0, "running": 0}
    assert "Children: 7 ok, 1 failed" in job.summary.line
    assert job.summary.outcomes["rows"] == 80


def test_asyncio_children_count_cancelled_ones(cap: Capture) -> None:
    async def main() -> None:
        async with cap.job_logger("p-3", "crawl") as job:

            async def page(i: int) -> None:
                async with job.child("page") as child:
                    child.increment_progress()
                    await asyncio.sleep(0 if i < 4 else 10)

            tasks = [asyncio.create_task(page(i)) for i in range(5)]
            await asyncio.sleep(0.05)
            tasks[4].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert job.summary is not None
        assert job.summary.children == {"ok": 4, "failed": 0, "cancelled": 1, "running": 0}
        assert job.summary.entities_processed == 5

    asyncio.run(main())


def test_a_child_still_running_when_the_parent_ended_changes_nothing_in_the_parent_later(cap: Capture) -> None:
    with cap.job_logger("p-16", "fan-out") as job:
        child = job.child("shard")
        child.increment_progress(2)
        child.add_outcome("inserts", 2)
    before = (job.current, dict(job.children), dict(job.outcomes))
    assert before == (2, {"ok": 0, "failed": 0, "cancelled": 0, "running": 1}, {"inserts": 2})
    child.increment_progress(5)
    child.add_outcome("inserts", 5)
    child.end()
    late = job.child("late")
    late.increment_progress(1)
    assert (job.current, dict(job.children), dict(job.outcomes)) == before
    late.end()
    assert dict(job.children) == before[1]


def test_carrier_makes_a_child_in_the_same_trace_or_a_linked_one(cap: Capture) -> None:
    parent = cap.job_logger("p-4", "producer")
    carrier = parent.child_carrier()
    body = json.loads(carrier)
    assert body["run_id"] == "p-4" and body["job"] == "producer" and body["traceparent"].startswith("00-")
    cap.job_logger("c-4", "consumer", parent=carrier).end()
    cap.job_logger("c-5", "late", parent=parent.child_carrier(link=True)).end()
    parent.end()
    ps, child, late = _run_span(cap, "p-4"), _run_span(cap, "c-4"), _run_span(cap, "c-5")
    assert child.parent is not None and child.parent.span_id == ps.context.span_id
    assert child.attributes[semconv.JOB_PARENT_RUN_ID] == "p-4"
    assert late.parent is None and late.context.trace_id != ps.context.trace_id
    assert [link.context.span_id for link in late.links] == [ps.context.span_id]
    # A child of another process does not roll up by itself: the parent knows it only from a report.
    assert parent.summary is not None and parent.summary.children == {}


def test_a_carrier_in_another_trace_becomes_a_link(cap: Capture) -> None:
    parent = cap.job_logger("p-6", "producer")
    carrier = parent.child_carrier()
    tracer = trace.get_tracer("test", tracer_provider=cap.tracer_provider)
    with tracer.start_as_current_span("consumer-span") as outer:
        cap.job_logger("c-6", "consumer", parent=carrier).end()
    parent.end()
    child = _run_span(cap, "c-6")
    assert child.parent is not None and child.parent.span_id == outer.get_span_context().span_id
    assert [link.context.span_id for link in child.links] == [_run_span(cap, "p-6").context.span_id]


def test_environment_carrier_is_read_only_without_a_current_span(cap: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = cap.job_logger("p-7", "launcher")
    monkeypatch.setenv(semconv.ENV_PARENT, parent.child_env()[semconv.ENV_PARENT])
    with cap.job_logger("c-7", "subprocess-job") as top:
        cap.job_logger("c-8", "nested").end()  # a current span: a plain child of it
    del top
    parent.end()
    assert _run_span(cap, "c-7").attributes[semconv.JOB_PARENT_RUN_ID] == "p-7"
    nested = _run_span(cap, "c-8")
    assert semconv.JOB_PARENT_RUN_ID not in nested.attributes
    assert nested.parent is not None and nested.parent.span_id == _run_span(cap, "c-7").context.span_id


@pytest.mark.parametrize("carrier", ["{not json", '{"run_id": 3}', 42, "x" * 5000, {"job": "j"}])
def test_a_bad_carrier_warns_once_and_the_run_starts_without_a_parent(
    cap: Capture, caplog: pytest.LogCaptureFixture, carrier: object
) -> None:
    job = cap.job_logger("c-9", "consumer", parent=carrier)
    job.end()
    assert "parent-carrier" in joblogger_warnings(caplog.records)
    assert semconv.JOB_PARENT_RUN_ID not in _run_span(cap, "c-9").attributes


@pytest.mark.parametrize("carrier", ["x" * 100_000, {"run_id": "r" * 100_000, "job": "j"}])
def test_a_huge_carrier_is_refused_and_its_warning_stays_short(
    cap: Capture, caplog: pytest.LogCaptureFixture, carrier: object
) -> None:
    cap.job_logger("c-10", "consumer", parent=carrier).end()
    [record] = [r for r in caplog.records if getattr(r, "joblogger.warning", None) == "parent-carrier"]
    assert len(record.getMessage()) < 1000
    assert semconv.JOB_PARENT_RUN_ID not in _run_span(cap, "c-10").attributes


def test_child_reports_from_elsewhere_add_up_and_bad_ones_are_ignored(
    cap: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    job = cap.job_logger("p-10", "fleet")
    job.add_child_report(ChildReport("c", "w", "success", 40, {"inserts": 40}))
    job.add_child_report({"run_id": "d", "job": "w", "result": "failure", "processed": 2, "outcomes": {"inserts": 2}})
    job.add_child_report({"nonsense": 1})
    job.add_child_report(7)  # type: ignore[arg-type]
    summary = job.end()
    assert summary.entities_processed == 42
    assert summary.outcomes["inserts"] == 42
    assert summary.children == {"ok": 1, "failed": 1, "cancelled": 0, "running": 0}
    assert joblogger_warnings(caplog.records).count("child-report") == 1


def test_a_child_report_with_odd_counts_or_outcome_keys_is_coerced_like_add_outcome_never_half_counted(
    cap: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    job = cap.job_logger("p-15", "fleet")
    job.add_child_report(
        {"run_id": "a", "job": "w", "result": "success", "processed": 3, "outcomes": {"Rows Merged": "x"}}
    )
    job.add_child_report({"run_id": "b", "job": "w", "result": "success", "processed": 4, "outcomes": [1]})
    job.add_child_report({"run_id": "c", "job": "w", "result": "success", "processed": float("nan")})
    job.add_child_report({"run_id": "d", "job": "w", "result": "success", "processed": 1, "outcomes": {"k" * 5000: 2}})
    summary = job.end()
    assert summary.children == {"ok": 4, "failed": 0, "cancelled": 0, "running": 0}
    assert summary.entities_processed == 3 + 4 + 0 + 1
    [key] = summary.outcomes
    assert len(key) <= 100 and summary.outcomes[key] == 2
    assert "internal" not in " ".join(joblogger_warnings(caplog.records))


def test_map_on_threads_returns_results_in_order_and_raises_the_first_failure_after_all_ran(cap: Capture) -> None:
    with cap.job_logger("p-11", "map") as job:
        assert job.map(work.double, range(6), workers=3) == [0, 2, 4, 6, 8, 10]
        with pytest.raises(KeyError) as raised:
            job.map(work.fail_on_seven, range(10), workers=3)
    assert raised.value.args == (7,)
    assert job.summary is not None
    assert job.summary.children == {"ok": 15, "failed": 1, "cancelled": 0, "running": 0}
    assert job.summary.outcomes["doubled"] == 6 + 9
    kids = [s for s in cap.spans() if s.attributes.get(semconv.JOB_PARENT_RUN_ID) == "p-11"]
    assert len(kids) == 16 and {s.name for s in kids} == {"double", "fail_on_seven"}


def test_a_map_over_no_items_leaves_the_parents_total_unset(cap: Capture) -> None:
    """An empty map sets no total of 0 (which made the next map's work show as 100 % done from the start)."""
    with cap.job_logger("p-12", "map") as job:
        assert job.map(work.double, [], workers=2) == []
        assert job.total is None
        assert job.map(work.double, range(4), workers=2) == [0, 2, 4, 6]
        assert job.total == 4


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_map_on_processes_brings_counts_back_with_the_results(cap: Capture, method: str) -> None:
    with cap.job_logger("p-12", "map") as job:
        assert job.map(work.double, range(8), workers=2, kind="process", mp_context=method, chunksize=3) == [
            2 * i for i in range(8)
        ]
        assert job.map(work.rows, [1, 2, 3], workers=2, kind="process", mp_context=method) == [1, 2, 3]
        with pytest.raises(KeyError) as raised:
            job.map(work.fail_on_seven, range(9), workers=2, kind="process", mp_context=method)
    assert raised.value.args == (7,)
    assert not hasattr(raised.value, "__joblogger_child_report__")  # the exception as fn raised it
    assert job.summary is not None
    # 3 chunks of double, 3 items of rows, 9 items of fail_on_seven (one failed).
    assert job.summary.children == {"ok": 3 + 3 + 8, "failed": 1, "cancelled": 0, "running": 0}
    assert job.summary.entities_processed == 8 + 6 + 8
    assert job.summary.outcomes["doubled"] == 8 + 8


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_map_worker_that_dies_is_a_failed_child_not_a_hang(cap: Capture, method: str) -> None:
    with cap.job_logger("p-13", "map") as job, pytest.raises(BrokenProcessPool):
        job.map(work.die_on_three, range(8), workers=2, kind="process", mp_context=method)
    assert job.summary is not None
    counts = job.summary.children
    assert counts["failed"] >= 1 and counts["ok"] + counts["failed"] == 8
    assert job.summary.entities_processed == counts["ok"]
    assert "never reported back" in " ".join(e.name for e in cap.events("warning"))


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_ctrl_c_during_a_map_stops_it_at_once_and_the_unfinished_items_are_cancelled_children(
    cap: Capture, kind: str
) -> None:
    # A real Ctrl-C once two items are done (a fixed delay from the test's start raced the map's start
    # on a loaded machine: the signal came before any item had run). Thread children show in the
    # parent's progress as they end; process children report back with their results, so there the
    # signal comes two item lengths (2 x 0.5 s, + margin) after the pool's workers exist.
    signalled: list[float] = []
    job = cap.job_logger("p-14", "map")

    def two_items_done() -> bool:
        if kind == "thread":
            return job.current >= 2
        if len(multiprocessing.active_children()) < 2:
            return False
        time.sleep(1.2)
        return True

    def ctrl_c_after_two_items() -> None:
        deadline = time.monotonic() + 60
        while not two_items_done() and time.monotonic() < deadline:
            time.sleep(0.01)
        signalled.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=ctrl_c_after_two_items)
    timer.start()
    with pytest.raises(KeyboardInterrupt), job:
        job.map(work.nap, range(20), workers=2, kind=kind, mp_context="fork")
    ended = time.monotonic()
    timer.join()
    assert ended - signalled[0] < 2.5  # not the 4 s or more the remaining 16+ items would take
    assert job.result == semconv.RESULT_CANCELLATION
    counts = job.summary.children
    assert counts["ok"] >= 2 and counts["cancelled"] >= 10
    assert counts["ok"] + counts["failed"] + counts["cancelled"] + counts["running"] == 20


def test_map_bad_input_warns_and_never_raises_into_the_job(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    with cap.job_logger("p-14", "map") as job:
        assert job.map(42, [1, 2]) == []  # type: ignore[arg-type]
        assert job.map(work.double, 7) == []  # type: ignore[arg-type]
        assert job.map(work.double, [1, 2], workers="many") == [2, 4]  # type: ignore[arg-type]
        assert job.map(work.double, [3], workers=0, kind="fiber", chunksize=-2) == [6]
        assert job.map(work.double, [4], kind="process", mp_context="teleport", workers=1) == [8]
        assert job.map(work.double, [5], kind="process", mp_context=3.5, initializer="x", workers=1) == [10]  # type: ignore[arg-type]
    kinds = set(joblogger_warnings(caplog.records))
    assert {"map-fn", "map-items", "map-kind", "map-context", "map-initializer"} <= kinds
    assert job.summary is not None and job.summary.children["ok"] == 5


def test_celery_tasks_sent_inside_a_run_carry_its_carrier_and_their_runs_are_its_children(cap: Capture) -> None:
    pytest.importorskip("celery")
    from types import SimpleNamespace

    from joblogger.integrations import _celery_context, _common

    outside: dict[str, object] = {}
    _celery_context._inject_trace_context(outside)
    assert semconv.HEADER_PARENT not in outside
    with cap.job_logger("p-15", "producer"):
        headers: dict[str, object] = {}
        _celery_context._inject_trace_context(headers)
        preset = {semconv.HEADER_PARENT: "kept"}
        _celery_context._inject_trace_context(preset)
    assert preset[semconv.HEADER_PARENT] == "kept"
    assert json.loads(str(headers[semconv.HEADER_PARENT]))["run_id"] == "p-15"
    request = SimpleNamespace(**headers)  # Celery's request: message headers are its attributes
    carrier = _celery_context.parent_carrier(request)
    task = _common.start_task_run(
        "jl.count", "t-1", framework="celery", parent=_celery_context._parent(request), parent_run=carrier,
        tracer_provider=cap.tracer_provider, meter_provider=cap.meter_provider,
    )  # fmt: skip
    task.end()
    span, parent = _run_span(cap, "t-1"), _run_span(cap, "p-15")
    assert span.attributes[semconv.JOB_PARENT_RUN_ID] == "p-15"
    assert span.parent is not None and span.parent.span_id == parent.context.span_id


def test_no_parent_and_no_environment_carrier_skips_the_current_span_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case of a run's start (no ``parent=``, no JOBLOGGER_PARENT) does no parent work (fixed cost)."""
    from joblogger import _children

    monkeypatch.delenv(semconv.ENV_PARENT, raising=False)
    lookups: list[object] = []
    real = trace.get_current_span

    def counting(context: object = None) -> trace.Span:
        lookups.append(context)
        return real()

    monkeypatch.setattr(trace, "get_current_span", counting)
    assert _children.resolve_parent(None, lambda *a: None) == (None, [], {}, None)
    assert lookups == []
    # With a carrier in the environment the current span still decides (see the test above).
    monkeypatch.setenv(semconv.ENV_PARENT, '{"run_id": "p", "job": "j"}')
    _children.resolve_parent(None, lambda *a: None)
    assert len(lookups) == 1
