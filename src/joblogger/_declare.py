"""``declare_schedule``: export a job's schedule before its first run (e.g. at deploy or worker start)."""

from __future__ import annotations

import time

from opentelemetry import metrics

from . import _sanitize
from ._metrics import hub_for
from ._schedule import Schedule
from ._state import pylog

__all__ = ["declare_schedule"]


def declare_schedule(job_name: str, schedule: Schedule, *, meter_provider: metrics.MeterProvider | None = None) -> None:
    """Export ``schedule`` for ``job_name`` from this process, before (or without) any run.

    The job's schedule gauges then say when its first run is expected (the next slot
    after now), so the missed-run alert also covers a job that has never run, e.g. right
    after a deploy. Call it in a long-lived process (a scheduler, a worker) whose metrics
    keep being exported. Runs of ``job_name`` in this process that have no schedule of their
    own (those a framework integration starts) take this one. Bad input is reported once on
    the ``joblogger`` logger and ignored.

    Example:
        >>> from joblogger import Schedule, declare_schedule
        >>> declare_schedule("nightly-import", Schedule(cron="0 3 * * *", tz="Europe/Berlin"))
    """
    try:
        if not isinstance(schedule, Schedule):
            pylog.warning("joblogger: declare_schedule expects a joblogger.Schedule, got %s; ignored",
                          type(schedule).__name__)  # fmt: skip
            return
        name = _sanitize.as_label(str(job_name)) or "job"
        hub = hub_for(meter_provider or metrics.get_meter_provider())
        label = hub.job_label(name)
        if label is None:
            pylog.warning("joblogger: declare_schedule(%r): too many distinct job names; ignored", name)
            return
        hub.schedules.declare(label, schedule, time.time())
    except Exception as exc:  # noqa: BLE001 - never raise into the caller's job code
        pylog.warning("joblogger: declare_schedule failed: %r", exc)
