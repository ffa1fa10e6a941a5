"""APScheduler: real schedulers (thread pool and asyncio) in a subprocess, exporting to the real stack.

tests/integration/_apscheduler_app.py runs an interval job, a failing job, a
job missed through ``misfire_grace_time``, an overlapping job skipped by
``max_instances=1``, an untracked job, and coroutine and plain jobs under an
AsyncIOScheduler. APScheduler's own events in that process are the ground truth
the runs in Prometheus and Jaeger are checked against.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from live import eventually, jaeger_traces, job_env, scalar, tags_of

APP = Path(__file__).with_name("_apscheduler_app.py")
RESULTS = {"executed": "success", "error": "failure", "missed": "skip", "max_instances": "skip"}


@pytest.fixture(scope="module")
def fired(stack: Any) -> dict[str, Any]:
    """Run the schedulers for 2.5 s; their events, what current_job() returned, the service name."""
    service = f"aps-live-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, str(APP), "2.5"],
        env=job_env(stack, service),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["service"] = service
    return report


def spans_of(stack: Any, service: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    """Ended run spans (not snapshots) of ``service`` whose own tags include ``tags``."""
    spans = [s for t in jaeger_traces(stack, service, tags) for s in t["spans"]]
    return [s for s in spans if "job.result" in tags_of(s) and tags.items() <= tags_of(s).items()]


def test_prometheus_job_runs_equal_apschedulers_own_events(stack: Any, fired: dict[str, Any]):
    """job_runs_total per job and result equals APScheduler's events: executed, error, missed, max_instances."""
    expected: Counter[tuple[str, str]] = Counter()
    for job_id, codes in fired["events"].items():
        if job_id == "quiet":
            continue
        for code, n in codes.items():
            expected[(job_id, RESULTS[code])] += n
    assert expected[("tick", "success")] >= 3
    assert expected[("async_tick", "success")] >= 3
    assert expected[("sync_in_loop", "success")] >= 3
    assert expected[("boom", "failure")] == 1
    assert expected[("late", "skip")] == 1
    assert expected[("overlap", "skip")] >= 2
    assert expected[("overlap", "success")] >= 1
    sel = f'job="{fired["service"]}"'

    def runs() -> dict[tuple[str, str], float] | None:
        found = {
            key: scalar(stack, f'sum(job_runs_total{{{sel}, job_name="{key[0]}", job_result="{key[1]}"}})')
            for key in expected
        }
        return found if found == expected else None

    eventually(runs, f"job_runs_total equal to {dict(expected)}")
    assert scalar(stack, f'sum(job_runs_total{{{sel}, job_name="quiet"}})') is None
    ticks = sum(fired["events"][j].get("executed", 0) for j in ("tick", "overlap", "async_tick", "sync_in_loop"))

    def outcomes() -> float | None:
        value = scalar(stack, f'sum(job_outcomes_total{{{sel}, job_outcome="ticks"}})')
        return value if value == ticks else None

    eventually(outcomes, f"{ticks} ticks in job_outcomes_total")


def test_each_fire_is_its_own_run_and_current_job_inside_is_it(stack: Any, fired: dict[str, Any]):
    """Every fire got a fresh run id, current_job() inside was that run, in thread-pool and asyncio executors alike."""
    seen = [s for s in fired["seen"] if s["job"] != "quiet"]
    assert {s["job"] for s in seen} == {"tick", "boom", "overlap", "async_tick", "sync_in_loop"}
    assert all(s["name"] == s["job"] for s in seen)
    assert len({s["run_id"] for s in seen}) == len(seen)
    for s in seen:
        (span,) = eventually(lambda s=s: spans_of(stack, fired["service"], {"job.run.id": s["run_id"]}), s["run_id"])
        tags = tags_of(span)
        assert span["operationName"] == s["job"]
        assert tags["job.framework"] == "apscheduler"
        assert tags["apscheduler.job.id"] == s["job"]
        assert tags["job.queue"] == "default"
        datetime.fromisoformat(tags["apscheduler.scheduled_run_time"])
        assert tags["job.result"] == ("failure" if s["job"] == "boom" else "success")
        if s["job"] == "boom":
            assert tags["error.type"] == "RuntimeError"


def test_missed_and_max_instances_fires_are_skip_runs_with_a_reason(stack: Any, fired: dict[str, Any]):
    """A fire missed past misfire_grace_time and fires skipped by max_instances are skip runs saying why."""
    service = fired["service"]
    (late,) = eventually(lambda: spans_of(stack, service, {"job.skip.reason": "missed"}), "the missed fire")
    tags = tags_of(late)
    assert late["operationName"] == "late"
    assert tags["job.result"] == "skip"
    assert tags["apscheduler.job.id"] == "late"
    datetime.fromisoformat(tags["apscheduler.scheduled_run_time"])
    messages = [f["value"] for log in late["logs"] for f in log["fields"] if f["key"] == "event"]
    assert any(m.startswith("Skipped: missed its run time by") for m in messages), messages
    n = fired["events"]["overlap"]["max_instances"]

    def skipped() -> list[dict[str, Any]] | None:
        spans = spans_of(stack, service, {"job.skip.reason": "max_instances"})
        return spans if len(spans) == n else None

    spans = eventually(skipped, f"{n} max_instances skip runs")
    assert {s["operationName"] for s in spans} == {"overlap"}
    assert len({tags_of(s)["apscheduler.scheduled_run_time"] for s in spans}) == n  # one per skipped fire


def test_quiet_untracked_job_ran_without_a_run(fired: dict[str, Any]):
    """An @untracked job runs as usual, with no current run."""
    quiet = [s for s in fired["seen"] if s["job"] == "quiet"]
    assert quiet and all(s["current"] is False for s in quiet)


def test_the_apscheduler_example_runs_and_prometheus_counts_its_fires(stack: Any):
    """examples/apscheduler_app.py runs; its ran and skipped fires are success and skip runs in Prometheus."""
    service = f"aps-example-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, str(APP.parents[2] / "examples" / "apscheduler_app.py"), "2"],
        env=job_env(stack, service),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["report ran"] >= 2 and counts["sync ran"] >= 1 and counts["sync skipped"] >= 1
    expected = {
        ("report", "success"): counts["report ran"],
        ("sync", "success"): counts["sync ran"],
        ("sync", "skip"): counts["sync skipped"],
    }
    sel = f'job="{service}"'

    def runs() -> dict[tuple[str, str], float] | None:
        found = {
            key: scalar(stack, f'sum(job_runs_total{{{sel}, job_name="{key[0]}", job_result="{key[1]}"}})')
            for key in expected
        }
        return found if found == expected else None

    eventually(runs, f"job_runs_total equal to {expected}")
