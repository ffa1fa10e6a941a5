"""The tqdm bridge against the real stack: a tqdm loop's stage and progress reach Prometheus and Jaeger.

examples/tqdm_bridge.py runs as a real process exporting through the stack's
collector (``joblogger.otlp.configure()`` from ``OTEL_*`` variables); its bars
are a patched ``tqdm.auto`` bar, an outer drop-in bar with an inner one, and a
manual ``update(10)`` bar.
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
from live import eventually, jaeger_traces, job_env, promql, scalar, tags_of

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tqdm_bridge.py"
STAGES = {"Downloading originals": 120, "Resizing batches": 3, "Uploading": 1_000}


@pytest.fixture(scope="module")
def tqdm_run(stack: Any) -> dict[str, Any]:
    """Run the example against the stack, sampling its progress gauge by stage while it runs."""
    service = f"tqdm-{uuid.uuid4().hex[:8]}"
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), run_id],
        env=job_env(stack, service, EXAMPLE_DELAY="0.02"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[str, list[float]] = {}
    query = f'job_progress_current{{job="{service}", job_run_id="{run_id}"}}'
    while proc.poll() is None:
        for series in promql(stack, query):
            values = seen.setdefault(series["metric"].get("job_stage", ""), [])
            value = float(series["value"][1])
            if not values or values[-1] != value:
                values.append(value)
        time.sleep(0.3)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {"service": service, "run_id": run_id, "summary": summary, "seen": seen}


def test_progress_gauge_shows_the_bars_stage_and_count_while_running(tqdm_run: dict[str, Any]):
    """While the job runs, Prometheus has its progress under the bars' desc as job_stage, counting up."""
    seen = tqdm_run["seen"]
    assert set(seen) & set(STAGES), seen
    for stage, values in seen.items():
        if stage in STAGES:
            assert values == sorted(values) and 0 <= values[-1] <= STAGES[stage], (stage, values)
    assert any(len(seen.get(stage, [])) >= 2 for stage in STAGES), seen  # it moved while running


def test_prometheus_processed_total_equals_what_the_bars_counted(stack: Any, tqdm_run: dict[str, Any]):
    """After the run, job_entities_processed_total is the sum of the top bars' counts, the example's own total."""
    sel = f'job="{tqdm_run["service"]}", job_name="thumbnails"'

    def final() -> float | None:
        done = scalar(stack, f'sum(job_runs_total{{{sel}, job_result="success"}})')
        return scalar(stack, f"sum(job_entities_processed_total{{{sel}}})") if done == 1 else None

    assert eventually(final, "the run's processed total") == tqdm_run["summary"]["processedTotal"] == 1_123
    warnings = promql(stack, f'job_logs_total{{{sel}, job_log_level="warning"}}')
    assert sum(float(s["value"][1]) for s in warnings) == 1  # the routed logging.warning, counted once


def test_jaeger_has_one_stage_span_per_top_bar_with_its_count(stack: Any, tqdm_run: dict[str, Any]):
    """The run's trace has a stage span per top bar (not the inner bar) with its count, and the routed log events."""
    service, run_id = tqdm_run["service"], tqdm_run["run_id"]

    def complete() -> list[dict[str, Any]] | None:
        spans = [s for t in jaeger_traces(stack, service, {"job.run.id": run_id}) for s in t["spans"]]
        real = [s for s in spans if not tags_of(s).get("job.snapshot.kind")]
        names = {s["operationName"] for s in real}
        return real if {"thumbnails", *STAGES} <= names else None

    spans = eventually(complete, "the run's trace with its stage spans")
    stages = {s["operationName"]: s for s in spans if tags_of(s).get("job.stage")}
    assert set(stages) == set(STAGES)  # "images" (the inner bar) is no stage
    for name, count in STAGES.items():
        assert tags_of(stages[name])["job.progress.current"] == count, name
    events = {log["fields"][0]["value"] for log in stages["Resizing batches"].get("logs", []) if log.get("fields")}
    assert {"batch 0 resized", "batch 1 resized", "batch 2 resized"} <= events, events
    run = next(s for s in spans if s["operationName"] == "thumbnails")
    assert tags_of(run)["job.logs.warning"] == 1
