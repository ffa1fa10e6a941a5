"""Checks shared by the RQ and Dramatiq live tests: run spans in Jaeger, totals in Prometheus."""

from __future__ import annotations

import time
from typing import Any

import pytest
from live import eventually, jaeger_traces, scalar, tags_of
from opentelemetry.sdk.trace import TracerProvider


def wait_for(probe: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll ``probe`` every 50 ms (short-lived job states need a fast poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"{what}: not seen within {timeout:.0f} s")


def producer_span() -> Any:
    """A producer span from a local SDK tracer (it need not be exported: only its context travels)."""
    return TracerProvider().get_tracer("test-producer").start_span("enqueue")


def run_spans(stack: Any, service: str, run_id: str) -> list[dict[str, Any]]:
    """The ended run spans of ``run_id`` (not snapshot spans, not other runs of the same trace)."""
    found = []
    for t in jaeger_traces(stack, service, {"job.run.id": run_id}):
        for s in t["spans"]:
            tags = tags_of(s)
            if tags.get("job.run.id") == run_id and "job.result" in tags:
                found.append(s)
    return found


def _at_least(stack: Any, service: str, run_id: str, n: int) -> list[dict[str, Any]] | None:
    spans = run_spans(stack, service, run_id)
    return spans if len(spans) >= n else None


def check_runs(
    stack: Any, service: str, framework: str, expected: dict[str, list[str]], parent: Any
) -> list[dict[str, Any]]:
    """Each run id has exactly its expected results (one span per attempt, in order), each a child of ``parent``."""
    spans: list[dict[str, Any]] = []
    for run_id, results in expected.items():
        found = eventually(
            lambda run_id=run_id, n=len(results): _at_least(stack, service, run_id, n),
            f"{len(results)} run span(s) of {run_id}",
        )
        found.sort(key=lambda s: int(tags_of(s)["job.attempt"]))
        seen = [(tags_of(s)["job.result"], tags_of(s)["job.attempt"], s["operationName"]) for s in found]
        assert [tags_of(s)["job.result"] for s in found] == results, f"{run_id}: {seen}"
        assert [int(tags_of(s)["job.attempt"]) for s in found] == list(range(1, len(results) + 1)), run_id
        for s in found:
            tags = tags_of(s)
            assert tags["job.framework"] == framework
            assert tags["job.queue"] and tags["job.worker"]
            refs = s.get("references") or []
            assert refs and refs[0]["refType"] == "CHILD_OF", s
            assert refs[0]["traceID"] == format(parent.trace_id, "032x")
            assert refs[0]["spanID"] == format(parent.span_id, "016x")
        spans.extend(found)
    return spans


def check_totals(stack: Any, service: str, spans: list[dict[str, Any]]) -> None:
    """Prometheus job_outcomes and job_runs totals equal the sums over the runs' own summaries (span attributes)."""
    updates = sum(int(tags_of(s).get("job.outcomes.updates", 0)) for s in spans)
    assert updates > 0
    sel = f'job="{service}"'
    eventually(
        lambda: scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="updates"}})') == updates,
        f"{updates} updates in Prometheus",
    )
    by_result: dict[str, int] = {}
    for s in spans:
        result = tags_of(s)["job.result"]
        by_result[result] = by_result.get(result, 0) + 1
    for result, n in by_result.items():
        query = f'sum(job_runs_total{{{sel}, job_result="{result}"}})'
        eventually(lambda query=query, n=n: scalar(stack, query) == n, f"{n} {result} runs in Prometheus")


def started(stack: Any, service: str, run_id: str) -> bool:
    """Whether any span of ``run_id`` is in Jaeger (its start marker is exported when the run starts)."""
    return any(
        tags_of(s).get("job.run.id") == run_id
        for t in jaeger_traces(stack, service, {"job.run.id": run_id})
        for s in t["spans"]
    )
