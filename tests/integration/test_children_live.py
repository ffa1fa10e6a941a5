"""Child runs against the real stack: ``job.map()`` pools (fork, forkserver, spawn, threads) and a Celery fleet.

Each parent is a real process exporting to the live collector; its children run in real
worker processes (a ``ProcessPoolExecutor``'s, a ``celery worker``'s). Jaeger shows every
child run span under the parent's run span, with ``job.parent.run.id``; Prometheus adds up to
what the parent's summary rolled up; a worker that dies is a failed child, not a hang.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from live import eventually, get_json, jaeger_traces, job_env, scalar, tags_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stack"))
from dashboard_queries import dashboard_queries

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.integration
ITEMS = 24
#: Rows the children of _children_app.work count: i % 4 + 1 for every item but 7 (which raises).
ROWS = sum(i % 4 + 1 for i in range(ITEMS) if i != 7)


def run_parent(stack: Any, method: str, scenario: str) -> tuple[str, dict[str, Any]]:
    """Run _children_app.py as its own service; returns the service and what the parent printed."""
    service = f"children-{method}-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [sys.executable, str(HERE / "_children_app.py"), method, scenario],
        env=job_env(stack, service), capture_output=True, text=True, timeout=120, cwd=HERE, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return service, json.loads(done.stdout.strip().splitlines()[-1])


def family(
    stack: Any, service: str, run_id: str, children: int, *, at_least: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The parent's ended run span and its ``children`` (or more) ended child run spans, once Jaeger has them."""

    def probe() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        for trace_ in jaeger_traces(stack, service, {"job.run.id": run_id}):
            ended = [s for s in trace_["spans"] if "job.result" in tags_of(s)]
            parents = [s for s in ended if tags_of(s)["job.run.id"] == run_id]
            kids = [s for s in ended if tags_of(s).get("job.parent.run.id") == run_id]
            if len(parents) == 1 and (len(kids) == children or (at_least and len(kids) > children)):
                return parents[0], kids
        return None

    return eventually(probe, f"the run span of {run_id} and its {children} children", 60)


def child_of(span: dict[str, Any], parent: dict[str, Any]) -> bool:
    return any(
        ref["refType"] == "CHILD_OF" and ref["spanID"] == parent["spanID"] and ref["traceID"] == parent["traceID"]
        for ref in span.get("references", [])
    )


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn", "thread"])
def test_map_children_are_children_of_the_parent_run_and_prometheus_adds_up(stack: Any, method: str) -> None:
    """24 items, one raising: 23 ok + 1 failed child under the parent span; totals equal the roll-up."""
    service, out = run_parent(stack, method, "work")
    summary = out["summary"]
    assert out["error"] == "LookupError: item 7"
    assert summary["children"] == {"ok": ITEMS - 1, "failed": 1, "cancelled": 0, "running": 0}
    assert summary["entitiesProcessed"] == ROWS
    assert summary["outcomeSummary"]["inserts"] == ROWS
    assert "Children: 23 ok, 1 failed" in summary["line"]
    parent, kids = family(stack, service, out["run_id"], ITEMS)
    assert all(child_of(kid, parent) for kid in kids)
    assert sorted(tags_of(k)["job.result"] for k in kids) == ["failure"] + ["success"] * (ITEMS - 1)
    assert {k["operationName"] for k in kids} == {"work"}
    assert tags_of(parent)["job.children.failed"] == 1
    assert tags_of(parent)["job.progress.current"] == ROWS
    # Prometheus counts each entity once, in the child that processed it: the same totals as the roll-up.
    sel = f'job="{service}", job_name="work"'
    eventually(lambda: scalar(stack, f"sum(job_entities_processed_total{{{sel}}})") == ROWS, f"{ROWS} entities")
    eventually(lambda: scalar(stack, f"sum(job_outcomes_total{{{sel}}})") == ROWS, f"{ROWS} outcomes")
    eventually(
        lambda: scalar(stack, f'sum(job_runs_total{{{sel}, job_result="success"}})') == ITEMS - 1, "23 ok child runs"
    )
    assert scalar(stack, f'sum(job_runs_total{{{sel}, job_result="failure"}})') == 1
    parent_sel = f'job="{service}", job_name="fan-out"'
    assert scalar(stack, f"sum(job_entities_processed_total{{{parent_sel}}})") in (None, 0)
    # The dashboard's Children row finds the parent's trace, for its children and for its failed child.
    searches = {
        q.title: q.query
        for q in dashboard_queries(service=service, parent_run=out["run_id"])
        if q.datasource_type == "jaeger"
    }
    for title in (f"Traces with child runs of {out['run_id']}", f"Failed child runs of {out['run_id']}"):
        found = get_json(f"{stack.jaeger}{searches[title]}&lookback=1h").get("data") or []
        assert [t["traceID"] for t in found] == [parent["traceID"]], title


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_that_dies_is_a_failed_child_and_the_parent_ends(stack: Any, method: str) -> None:
    """Item 3 kills its worker: BrokenProcessPool after every item settled; the lost ones are failed children."""
    service, out = run_parent(stack, method, "die")
    assert out["error"].startswith("BrokenProcessPool")
    children = out["summary"]["children"]
    assert children["failed"] >= 1 and children["ok"] + children["failed"] == ITEMS
    assert children["running"] == 0
    assert tags_of_parent_failed(stack, service, out, children)
    # Children that ended in a worker whose results were lost with the pool are failed for the
    # parent, but their runs ended and exported: Jaeger and Prometheus know them (docs/children.md).
    time.sleep(3)  # let every worker's export land before counting
    parent, kids = family(stack, service, out["run_id"], children["ok"], at_least=True)
    assert all(child_of(kid, parent) for kid in kids)
    assert len(kids) < ITEMS  # the killed item's run never ended
    sel = f'job="{service}", job_name="die"'
    rows = sum(tags_of(k)["job.progress.current"] for k in kids)
    reported = out["summary"]["entitiesProcessed"]
    assert rows >= reported
    # A child's run exports at its end, before its result goes back: Prometheus has at least what
    # the parent rolled up (a worker terminated mid-export may lose its last points: the SIGKILL bound).
    eventually(
        lambda: (scalar(stack, f"sum(job_entities_processed_total{{{sel}}})") or 0) >= reported,
        f"at least the {reported} entities the parent rolled up (Jaeger's children: {rows})",
    )


def tags_of_parent_failed(stack: Any, service: str, out: dict[str, Any], children: dict[str, int]) -> bool:
    """The parent's run span counts the failed children its summary counts."""
    parent, _ = family(stack, service, out["run_id"], 0, at_least=True)
    return bool(tags_of(parent)["job.children.failed"] == children["failed"])
