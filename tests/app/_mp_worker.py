"""Worker functions for the multiprocessing tests (importable by spawned children)."""

from __future__ import annotations

from typing import Any

from joblogger import otlp, semconv
from joblogger.testing import Capture

#: Set by the parent before forking; spawned children create their own.
CAPTURE: Capture | None = None


def forget_parent() -> None:
    """Pool initializer of a forked worker: the drop-in post-fork step (the parent's providers are the app's)."""
    if CAPTURE is not None:
        assert otlp.after_fork(CAPTURE.meter_provider)


def run_job(index: int) -> dict[str, Any]:
    """Run one small job in this worker and report what this process's metrics say."""
    cap = CAPTURE if CAPTURE is not None else Capture()
    with cap.job_logger(f"worker-run-{index}", "prefork-job") as job:
        job.set_total(10 + index, "items")
        job.set_stage("Working")
        for _ in range(10 + index):
            job.increment_progress()
            job.add_outcome("updates")
    points = cap.metrics()
    return {
        "summary": job.summary.to_dict() if job.summary else None,
        "processed": sum(p.value for p in points if p.name == semconv.METRIC_ENTITIES_PROCESSED),
        "updates": sum(p.value for p in points if p.name == semconv.METRIC_OUTCOMES),
        "spans": sorted(s.name for s in cap.spans()),
    }
