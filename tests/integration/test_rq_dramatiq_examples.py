"""examples/rq_app.py and examples/dramatiq_app.py run against a real Redis and the real stack."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from live import eventually, get_json, job_env, tags_of

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_example(stack: Any, redis_url: str, name: str, **extra: str) -> tuple[str, str]:
    """Run ``examples/<name>``; return its service name and its output."""
    service = f"example-{name.split('_', maxsplit=1)[0]}-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        env=job_env(stack, service, REDIS_URL=redis_url, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return service, proc.stdout


def run_spans_of_trace(stack: Any, trace_id: str, n: int) -> list[dict[str, Any]]:
    """The ended run spans of trace ``trace_id`` once there are ``n`` of them, checked to be the producer's children."""

    def probe() -> list[dict[str, Any]] | None:
        spans = get_json(f"{stack.jaeger}/api/traces/{trace_id}")["data"][0]["spans"]
        runs = [s for s in spans if "job.result" in tags_of(s)]
        producers = [s for s in spans if s["operationName"] == "nightly-import"]
        # The producer's span comes from another process and batch than the workers' runs: wait for both.
        return (producers[0], runs) if len(runs) >= n and producers else None  # type: ignore[return-value]

    producer, runs = eventually(probe, f"{n} run spans and the producer span in trace {trace_id}")  # type: ignore[misc]
    for run in runs:
        assert run["references"][0]["spanID"] == producer["spanID"]
    return runs


def test_rq_example(stack: Any, redis_url: str) -> None:
    """The RQ example's three jobs finish, show their progress in job.meta and are runs under the producer span."""
    _, out = run_example(stack, redis_url, "rq_app.py", RQ_QUEUE=f"imports-{uuid.uuid4().hex[:6]}")
    trace_id = re.search(r"^trace ([0-9a-f]{32})$", out, re.M).group(1)  # type: ignore[union-attr]
    done = r" finished result=(\d+) attempt=1 progress: Reading \1/\1 rows 100.0% \{'updates': \d+, 'inserts': \d+\}"
    assert len(re.findall(done, out)) == 3, out
    runs = run_spans_of_trace(stack, trace_id, 3)
    assert {tags_of(r)["job.result"] for r in runs} == {"success"}
    assert {r["operationName"] for r in runs} == {"import-rows"}
    assert sorted(int(tags_of(r)["job.progress.current"]) for r in runs) == [10, 25, 40]


def test_dramatiq_example(stack: Any, redis_url: str) -> None:
    """The Dramatiq example's three messages are runs under the producer span; the opted-out actor is not."""
    _, out = run_example(stack, redis_url, "dramatiq_app.py")
    trace_id = re.search(r"^trace ([0-9a-f]{32})$", out, re.M).group(1)  # type: ignore[union-attr]
    assert out.count(" processed") == 3, out
    runs = run_spans_of_trace(stack, trace_id, 3)
    assert {r["operationName"] for r in runs} == {"import_rows"}
    assert sorted(int(tags_of(r)["job.progress.current"]) for r in runs) == [10, 25, 40]


def test_integration_benchmark_quick_run(redis_url: str) -> None:
    """`benchmarks/integration_rq_dramatiq.py --quick` runs every row against the real Redis and prints the table."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "integration_rq_dramatiq.py"), "--quick", "--redis-url", redis_url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "measure" not in line]
    assert len(rows) == 5, proc.stdout
    assert "quick smoke run" in proc.stdout
