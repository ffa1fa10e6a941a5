"""A Celery fleet as child runs: a chord sent inside a parent run, run by a real prefork worker on Redis.

The producer (this test process) sends a chord of ``jl.count`` tasks inside ``with job:``; the
Celery integration adds the run's carrier as the ``joblogger_parent`` task header, so each task's
run is a child run: in Jaeger a child of the parent's run span with ``job.parent.run.id``. The
tasks' results come back through the chord's callback and the parent adds them as child reports;
Prometheus' totals equal the sum, and the parent's summary says so too.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from live import eventually, jaeger_traces, scalar, tags_of

pytest.importorskip("celery")  # the [celery] extra is part of dev; absent only in the lowest-bounds venv

from test_celery_live import Worker  # the celery worker subprocess of the Celery live tests

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("celery_producer_gc")]
TASKS = 8


@pytest.fixture(scope="module")
def fleet(stack: Any, redis_url: str, tasks: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A prefork worker (-c 2) without Celery's own instrumentation: the runs are the only task spans."""
    worker = Worker(stack, redis_url, "prefork", tmp_path_factory.mktemp("fleet"), instrumentor=False)
    yield worker
    worker.stop()


def test_chord_tasks_are_child_runs_of_the_producer_run_and_prometheus_adds_up(
    stack: Any, fleet: Worker, tasks: Any
) -> None:
    from celery import chord

    from joblogger.testing import capture

    with capture() as cap, cap.job_logger(None, "nightly-fleet") as job:  # the producer's own providers
        job.set_total(sum(10 + i for i in range(TASKS)), "rows")
        header = [tasks.count.s(10 + i).set(queue=fleet.queue) for i in range(TASKS)]
        result = chord(header)(tasks.total.s().set(queue=fleet.queue))
        header_ids = [r.id for r in result.parent.results]
        callback = result.get(timeout=90)
        for child in result.parent.get(timeout=10):
            job.add_child_report(
                {"run_id": child["run_id"], "job": "jl.count", "result": "success",
                 "processed": child["current"], "outcomes": child["outcomes"]}
            )  # fmt: skip
        del result, header
        gc.collect()  # the results unsubscribe from Redis now, not at exit once the harness stopped it
    summary = job.summary
    assert summary is not None
    assert summary.children == {"ok": TASKS, "failed": 0, "cancelled": 0, "running": 0}
    assert summary.entities_processed == callback["current"] == summary.entities_total
    assert dict(summary.outcomes) == callback["outcomes"]
    assert f"Children: {TASKS} ok" in summary.line
    # Jaeger: every task's run is a child of the producer's run span, carrying its run id.
    parent_span = job.span.get_span_context()

    def kids() -> list[dict[str, Any]] | None:
        found = [
            span
            for trace_ in jaeger_traces(stack, fleet.service, {"job.parent.run.id": job.job_run_id})
            for span in trace_["spans"]
            if tags_of(span).get("job.parent.run.id") == job.job_run_id and "job.result" in tags_of(span)
        ]
        return found if len(found) == TASKS else None

    spans = eventually(kids, f"{TASKS} child runs of {job.job_run_id} in Jaeger", 60)
    assert sorted(tags_of(s)["job.run.id"] for s in spans) == sorted(header_ids)
    for span in spans:
        assert span["traceID"] == format(parent_span.trace_id, "032x")
        refs = [(r["refType"], r["spanID"]) for r in span.get("references", [])]
        assert ("CHILD_OF", format(parent_span.span_id, "016x")) in refs
        assert tags_of(span)["job.parent.name"] == "nightly-fleet"
    # Prometheus: the workers' totals equal what the parent rolled up.
    sel = f'job="{fleet.service}", job_name="jl.count"'
    for key, n in callback["outcomes"].items():
        query = f'sum(job_outcomes_total{{{sel}, job_outcome="{key}"}})'
        eventually(lambda q=query, n=n: scalar(stack, q) == n, f"{n} {key} in Prometheus")
    processed = f"sum(job_entities_processed_total{{{sel}}})"
    eventually(lambda: scalar(stack, processed) == summary.entities_processed, "the rolled-up entities")
