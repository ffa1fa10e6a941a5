"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

from joblogger import semconv

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_capture_fixture_as_in_readme(joblogger_capture):
    """The pytest fixture shown in the README captures a job's metrics."""
    with joblogger_capture.job_logger("run-1", "match-scores") as job:
        job.set_stage("Scoring users")
        job.add_outcome("updates", 3)
    assert joblogger_capture.metric_value("job.outcomes", **{"job.outcome": "skipped"}) == 0
    assert joblogger_capture.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "updates"}) == 3


def test_quick_start_runs(joblogger_capture, monkeypatch):
    """The README's quick-start function runs and produces the summary it promises."""
    block = re.search(
        r"```python\n(from joblogger import create_job_logger\n\ndef run_match_scores.*?)```", README, re.S
    )
    assert block, "quick start not found in README"
    namespace: dict[str, object] = {"compute_scores": lambda user: [] if user["id"] % 10 == 0 else [1, 2]}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    monkeypatch.setattr("joblogger._logger.trace.get_tracer_provider", lambda: joblogger_capture.tracer_provider)
    monkeypatch.setattr("joblogger._logger.metrics.get_meter_provider", lambda: joblogger_capture.meter_provider)
    namespace["run_match_scores"]("run-9", [{"id": i} for i in range(200)])
    run = joblogger_capture.span("match-scores")
    assert run.attributes["job.outcome.skipped"] == 20
    assert run.attributes["job.outcome.updates"] == 360
    assert run.attributes["job.outcome.warnings"] == 20


def test_readme_commands_exist():
    """Every command the README tells users to run exists in the repository."""
    for path in ("scripts/check", "scripts/stack.py", "docker-compose.yml", ".ci/run"):
        assert (Path(__file__).resolve().parents[2] / path).exists(), path
    assert "./scripts/check" in (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()


def test_decorator_example_runs(joblogger_capture, monkeypatch):
    """The README's @job example runs as written: an async job whose run id comes from its argument."""
    import asyncio

    block = re.search(r"```python\n(from joblogger import current_job, job\n.*?)```", README, re.S)
    assert block, "decorator example not found in README"

    async def fetch_users():
        for i in range(7):
            yield {"id": i}

    namespace: dict[str, object] = {"fetch_users": fetch_users}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    monkeypatch.setattr("joblogger._logger.trace.get_tracer_provider", lambda: joblogger_capture.tracer_provider)
    monkeypatch.setattr("joblogger._logger.metrics.get_meter_provider", lambda: joblogger_capture.meter_provider)
    asyncio.run(namespace["run_match_scores"]([], job_run_id="run-5"))
    run = joblogger_capture.span("match-scores")
    assert run.attributes[semconv.JOB_RUN_ID] == "run-5"
    assert run.attributes[semconv.JOB_RESULT] == "success"
    assert run.attributes[semconv.JOB_PROGRESS_CURRENT] == 7
