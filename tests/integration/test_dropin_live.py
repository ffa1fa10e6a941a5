"""Drop-in and signals against the real stack: `opentelemetry-instrument`, `joblogger run` and Ctrl-C.

Every job is a real process exporting through the stack's collector; results
are read back from VictoriaLogs, Jaeger and Prometheus.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from live import eventually, jaeger_traces, job_env, promql, scalar, tags_of

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "stack"))

from dashboard_queries import dashboard_queries  # noqa: E402

pytestmark = pytest.mark.integration

PYTHON = sys.executable
INSTRUMENT = shutil.which("opentelemetry-instrument", path=str(Path(PYTHON).parent)) or "opentelemetry-instrument"

SHORT_JOB = textwrap.dedent("""
    import sys
    from joblogger import create_job_logger

    with create_job_logger(sys.argv[1], "dropin-short") as job:
        job.set_total(40, "rows")
        job.set_stage("Copying rows")
        for i in range(40):
            job.increment_progress()
            job.add_outcome("copied")
        job.info("Batch done", rows=40)
        job.milestone("All rows copied")
        job.warning("One row was odd", row=7)
""")


def logsql(stack: Any, query: str) -> list[dict[str, Any]]:
    """Rows of a LogsQL query over the last hour."""
    now = time.time()
    form = {"query": query, "limit": "1000", "start": f"{now - 3600:.3f}", "end": f"{now + 60:.3f}"}
    request = urllib.request.Request(f"{stack.logs}/select/logsql/query", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]


def run_spans(stack: Any, service: str, run_id: str, job: str) -> list[dict[str, Any]]:
    """The finished run spans (not snapshots) of one run in Jaeger."""
    return [
        span
        for trace in jaeger_traces(stack, service, {"job.run.id": run_id})
        for span in trace["spans"]
        if span["operationName"] == job and not tags_of(span).get("job.snapshot.kind")
    ]


def _dropin_env(stack: Any, service: str, **extra: str) -> dict[str, str]:
    env = job_env(stack, service, **extra)
    env.pop("OTEL_METRIC_EXPORT_INTERVAL")  # the SDK's default (60 s), as an application would have it
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.parametrize("logging_auto", ["false", "true"])
def test_opentelemetry_instrument_short_job_sends_complete_telemetry(stack: Any, tmp_path: Path, logging_auto: str):
    """A short job under opentelemetry-instrument alone: every log record, the run span and the counts arrive.

    Before: VictoriaLogs had no joblogger record (logging auto-instrumentation off) or only the
    warning (on). Metrics arrive at exit only (the job is much shorter than the 60 s interval).
    """
    service = f"dropin-{uuid.uuid4().hex[:8]}"
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    job = tmp_path / "job.py"
    job.write_text(SHORT_JOB)
    env = _dropin_env(stack, service, OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=logging_auto)
    proc = subprocess.run(
        [INSTRUMENT, PYTHON, str(job), run_id], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    query = f'service.name:="{service}" AND job.run.id:="{run_id}"'

    def all_records() -> Counter[str] | None:
        rows = logsql(stack, query)
        found = Counter(row["_msg"] for row in rows)
        return found if any(m.startswith("Completed in") for m in found) else None

    records = eventually(all_records, "the run's summary record in VictoriaLogs")
    time.sleep(2)  # anything duplicated would have arrived with it
    records = Counter(row["_msg"] for row in logsql(stack, query))
    summary = next(m for m in records if m.startswith("Completed in"))
    assert "Processed: 40 rows | Copied: 40 | Warnings: 1" in summary
    assert records == Counter(
        {"Starting: Copying rows": 1, "Batch done": 1, "All rows copied": 1, "One row was odd": 1, summary: 1}
    )
    spans = eventually(lambda: run_spans(stack, service, run_id, "dropin-short"), "the run span in Jaeger")
    assert len(spans) == 1 and tags_of(spans[0])["job.result"] == "success"
    sel = f'job="{service}", job_name="dropin-short"'
    assert eventually(lambda: scalar(stack, f"sum(job_runs_total{{{sel}}})"), "job_runs_total") == 1
    assert eventually(lambda: scalar(stack, f"sum(job_outcomes_total{{{sel}}})"), "job_outcomes_total") == 40


def test_progress_shows_live_at_the_sdks_default_60s_interval(stack: Any, tmp_path: Path):
    """Under opentelemetry-instrument (metrics every 60 s), a run stays in Active runs from its first export to its end.

    Before, the panel kept only gauges newer than 30 s: the run vanished for half of every minute.
    """
    service = f"dropin-60s-{uuid.uuid4().hex[:8]}"
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    stop = tmp_path / "stop"
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent(f"""
        import os, sys, time
        from joblogger import create_job_logger

        with create_job_logger({run_id!r}, "dropin-slow") as job:
            job.set_total(100_000, "rows")
            job.set_stage("Copying rows")
            while not os.path.exists({str(stop)!r}):
                job.increment_progress(10)
                time.sleep(0.1)
    """)
    )
    proc = subprocess.Popen(
        [INSTRUMENT, PYTHON, str(job)],
        env=_dropin_env(stack, service),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Drop-in gauges carry the bounded job.run.slot, not the run id (docs/telemetry.md): the run is
    # the one job's slot 0 of this service's only process; "$run" stays "All".
    board = dashboard_queries(service=service, job=["dropin-slow"])
    queries = [q for q in board if q.title == "Active runs"]
    assert {q.ref_id for q in queries} >= {"A", "B"}

    def rows(ref: str) -> list[dict[str, Any]]:
        q = next(q for q in queries if q.ref_id == ref)
        found = promql(stack, q.query)
        assert all("job_run_id" not in r["metric"] for r in found), found
        return [r for r in found if r["metric"].get("job_run_slot") == "0"]

    try:
        first = eventually(lambda: rows("B"), "the run in Active runs (first export at ~60 s)", timeout=100)
        assert float(first[0]["value"][1]) > 0
        seen_from = time.monotonic()
        samples: list[float] = []
        while time.monotonic() - seen_from < 75:  # across the next export
            current = rows("B")
            assert current, f"the run left Active runs {time.monotonic() - seen_from:.0f} s after it appeared"
            assert rows("A"), "progress ratio missing"
            samples.append(float(current[0]["value"][1]))
            time.sleep(5)
        assert samples[-1] > samples[0], samples  # the next export moved it on
    finally:
        stop.write_text("")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # The final export at exit reports no active run: the run leaves the table at once.
    eventually(lambda: not rows("B") or None, "the finished run leaving Active runs", timeout=30)


def start_in_own_group(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``argv`` in a process group of its own, as a terminal's foreground job is (killpg reaches all)."""
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


CTRL_C_JOB = textwrap.dedent("""
    import sys, time
    from joblogger import create_job_logger

    with create_job_logger(sys.argv[1], "ctrl-c") as job:
        job.set_stage("Waiting")
        for i in range(400):
            job.info("tick", i=i)
        print("ready", flush=True)
        while True:
            job.increment_progress()
            time.sleep(0.001)
""")


def test_ctrl_c_twice_under_joblogger_run_keeps_every_run(stack: Any, tmp_path: Path):
    """Ctrl-C twice (to the whole process group, as a terminal does) under `joblogger run`: 8 of 8 runs end and export.

    Before, 3 to 5 of 8 runs printed no summary and some run spans never reached the collector.
    """
    service = f"ctrl-c-{uuid.uuid4().hex[:8]}"
    job = tmp_path / "job.py"
    job.write_text(CTRL_C_JOB)
    env = job_env(stack, service)
    env.pop("PYTHONPATH", None)
    results = []
    for i in range(8):
        run_id = f"run-{i}-{uuid.uuid4().hex[:6]}"
        proc = start_in_own_group([PYTHON, "-m", "joblogger", "run", "--plain", "--", PYTHON, str(job), run_id], env)
        assert proc.stdout is not None
        while "ready" not in (line := proc.stdout.readline()):
            assert line, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(random.uniform(0.0, 0.3))  # the second Ctrl-C: while the run ends or telemetry is flushed
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass  # already gone
        out, err = proc.communicate(timeout=60)
        results.append((run_id, proc.returncode, out, err))
    no_summary = [r[0] for r in results if "[MILESTONE] Cancelled after" not in r[3]]  # the view writes to stderr
    assert not no_summary, f"{len(no_summary)} of 8 runs printed no summary: {results[0][3][-2000:]}"
    assert all(code == -signal.SIGINT for _, code, _, _ in results), [r[1] for r in results]

    def all_spans() -> dict[str, str] | None:
        found = {}
        for run_id, *_ in results:
            spans = run_spans(stack, service, run_id, "ctrl-c")
            if spans:
                found[run_id] = tags_of(spans[0])["job.result"]
        return found if len(found) == len(results) else None

    found = eventually(all_spans, "the 8 run spans in Jaeger")
    assert set(found.values()) == {"cancellation"}


FLUSH_JOB = textwrap.dedent("""
    import atexit, sys, time
    from joblogger import create_job_logger

    STAGES = int(sys.argv[2])
    # Registered after joblogger run's configure(): runs just before its shutdown flushes.
    atexit.register(lambda: print("flushing", flush=True))
    with create_job_logger(sys.argv[1], "final-flush") as job:
        for i in range(STAGES):
            job.set_stage(f"stage {i}")
            job.increment_progress()
        print("ready", flush=True)
        while True:
            time.sleep(0.01)
""")


def test_second_ctrl_c_during_the_final_flush_loses_nothing(stack: Any, tmp_path: Path):
    """Ctrl-C, then Ctrl-C again as soon as the final flush starts: every stage span still reaches Jaeger.

    Before, the second KeyboardInterrupt aborted the shutdown and what was queued was lost.
    """
    service = f"flush-{uuid.uuid4().hex[:8]}"
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    stages = 600
    job = tmp_path / "job.py"
    job.write_text(FLUSH_JOB)
    env = job_env(stack, service)
    env.pop("PYTHONPATH", None)
    proc = start_in_own_group(
        [PYTHON, "-m", "joblogger", "run", "--no-console", "--", PYTHON, str(job), run_id, str(stages)], env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.stdout.readline().strip() == "flushing"
    os.killpg(proc.pid, signal.SIGINT)  # the second Ctrl-C, while the queued spans are exported
    _, err = proc.communicate(timeout=60)

    def stage_spans() -> set[str] | None:
        names = {
            span["operationName"]
            for trace in jaeger_traces(stack, service, {"job.run.id": run_id})
            for span in trace["spans"]
            if not tags_of(span).get("job.snapshot.kind")
        }
        return names if len(names) >= stages + 1 else None

    names = eventually(stage_spans, f"the {stages} stage spans and the run span in Jaeger", timeout=20)
    assert names == {f"stage {i}" for i in range(stages)} | {"final-flush"}
    assert proc.returncode == -signal.SIGINT, err  # killed by SIGINT, as a shell expects after Ctrl-C
