"""Every process model adds up exactly in Prometheus and delivers every run span to Jaeger.

Each case runs tests/integration/_process_models.py as a real process tree
(forked prefork workers, multiprocessing pools, a gunicorn-style master) against
the live collector, then reads the live Prometheus and Jaeger.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from live import eventually, jaeger_traces, job_env, promql, scalar, tags_of

APP = Path(__file__).with_name("_process_models.py")
JOB = "models-job"

MODELS = [
    "prefork",
    "pool-fork",
    "pool-forkserver",
    "pool-spawn",
    "pool-billiard",
    "gunicorn",
    "gunicorn-dropin",
    "threads",
    "asyncio",
]


def run_model(stack: Any, model: str) -> tuple[str, dict[str, Any]]:
    """Run the application in ``model``; return its service name and what it reported."""
    service = f"models-{model}-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, str(APP), model, service],
        env=job_env(stack, service),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == [], proc.stderr
    return service, report


def finished_run_spans(stack: Any, service: str, run_id: str) -> list[dict[str, Any]]:
    """The ended run spans of ``run_id`` in Jaeger (not its snapshot spans), counting duplicates."""
    spans = [s for t in jaeger_traces(stack, service, {"job.run.id": run_id}) for s in t["spans"]]
    return [s for s in spans if s["operationName"] == JOB and "job.result" in tags_of(s)]


@pytest.mark.parametrize("model", MODELS)
def test_process_model_adds_up_and_delivers_every_run(stack: Any, model: str) -> None:
    """Counters equal what the processes did (no parent count re-exported, no series shared); one span per run."""
    service, report = run_model(stack, model)
    sel = f'job="{service}"'
    runs = report["runs"]
    updates = f'sum(job_outcomes_total{{{sel}, job_outcome="updates"}})'
    try:
        eventually(lambda: scalar(stack, updates) == report["updates"], f"{report['updates']} updates")
    except pytest.fail.Exception:
        per_process = promql(stack, f'sum by (instance) (job_outcomes_total{{{sel}, job_outcome="updates"}})')
        pytest.fail(f"updates per process: {[s['value'][1] for s in per_process]}; runs: {runs}")
    eventually(lambda: scalar(stack, f"sum(job_runs_total{{{sel}}})") == len(runs), f"{len(runs)} runs")
    assert scalar(stack, f"sum(job_entities_processed_total{{{sel}}})") == report["processed"]
    assert scalar(stack, f'sum(job_runs_total{{{sel}, job_result="success"}})') == len(runs)
    # Never more than the truth at any point (a child re-exporting the parent's counts shows up here).
    # (A process that lives under a second leaves no 1 s subquery step yet: wait for one.)
    peak = eventually(lambda: scalar(stack, f"max_over_time({updates}[5m:1s])"), "the updates peak")
    assert peak <= report["updates"]
    if report["processes"] is not None:  # one series per process: none shared, none flipping
        instances = promql(stack, f'job_runs_total{{{sel}, job_result="success"}}')
        assert len({s["metric"]["instance"] for s in instances}) == report["processes"]

    for run_id in runs:
        spans = eventually(lambda run_id=run_id: finished_run_spans(stack, service, run_id), f"run span of {run_id}")
        assert len(spans) == 1, f"{run_id}: {len(spans)} run spans"
        assert tags_of(spans[0])["job.result"] == "success"
    if model == "prefork":  # the run active at the fork ended in the parent, with the parent's progress only
        (straddle,) = finished_run_spans(stack, service, f"{service}-straddle")
        assert tags_of(straddle)["job.progress.current"] == 150
