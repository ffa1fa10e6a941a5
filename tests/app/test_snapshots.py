"""Snapshot spans: start markers and checkpoints that show a run before it ends."""

from __future__ import annotations

import time

import pytest

from joblogger import semconv
from joblogger._snapshots import DEFAULT_INTERVAL_S, configure_snapshots
from joblogger.testing import capture


@pytest.fixture
def fast_checkpoints():
    """Checkpoints every 50 ms for the test, then the process default again."""
    configure_snapshots(True, 0.05)
    yield
    configure_snapshots(False, DEFAULT_INTERVAL_S)


def _snapshots(cap, kind=None):
    spans = [s for s in cap.spans() if (s.attributes or {}).get(semconv.JOB_SNAPSHOT_KIND)]
    return [s for s in spans if kind is None or s.attributes[semconv.JOB_SNAPSHOT_KIND] == kind]


def test_off_by_default():
    """A bare create_job_logger emits only the run and stage spans."""
    with capture() as cap:
        with cap.job_logger("r", "plain") as job:
            job.set_stage("Only")
        assert [s.name for s in cap.spans()] == ["Only", "plain"]


def test_start_markers_are_exported_before_the_run_ends():
    """snapshots=True exports run.start and stage.start markers while the run is still open."""
    with capture() as cap:
        job = cap.job_logger("r1", "match-scores", snapshots=True)
        job.set_total(5000, "users")
        job.set_stage("Scoring users")
        markers = _snapshots(cap)
        assert [m.attributes[semconv.JOB_SNAPSHOT_KIND] for m in markers] == ["run.start", "stage.start"]
        run_marker, stage_marker = markers
        assert run_marker.name == "match-scores (snapshot)"
        assert stage_marker.name == "Scoring users (snapshot)"
        assert stage_marker.attributes[semconv.JOB_STAGE] == "Scoring users"
        assert stage_marker.attributes[semconv.JOB_PROGRESS_TOTAL] == 5000
        assert all(s.name.endswith("(snapshot)") for s in cap.spans())  # the real spans are still open
        job.log_summary()
        run = cap.span("match-scores")
        stage = cap.span("Scoring users")
        assert run_marker.parent.span_id == run.context.span_id
        assert stage_marker.parent.span_id == stage.context.span_id
        assert semconv.JOB_SNAPSHOT_KIND not in run.attributes


def test_checkpoints_carry_progress_outcomes_and_log_counts(fast_checkpoints):
    """Checkpoints of a running stage report its progress, outcomes and log counts, and stop at the end."""
    with capture() as cap:
        job = cap.job_logger("r2", "match-scores")  # on through the process default
        job.set_total(100, "users")
        job.set_stage("Scoring users")
        job.increment_progress(40)
        job.add_outcome("updates", 7)
        job.warning("No valid candidates for user 1", userId="1")
        deadline = time.monotonic() + 5
        while not _snapshots(cap, "checkpoint") and time.monotonic() < deadline:
            time.sleep(0.02)
        checkpoint = _snapshots(cap, "checkpoint")[-1]
        attrs = checkpoint.attributes
        assert attrs[semconv.JOB_PROGRESS_CURRENT] == 40
        assert attrs[semconv.JOB_PROGRESS_TOTAL] == 100
        assert attrs["job.outcomes.updates"] == 7
        assert "job.outcomes.warnings" not in attrs  # logged, never add_outcome'd: job.logs.warning
        assert attrs["job.logs.warning"] == 1
        job.log_summary()
        time.sleep(0.2)
        count = len(_snapshots(cap, "checkpoint"))
        time.sleep(0.2)
        assert len(_snapshots(cap, "checkpoint")) == count  # none after the run ended
