"""Live: schedule alerts in the real Prometheus, decided after the job processes are gone.

Each run is its own ``joblogger run --schedule ... -- python`` process (a cron job), exporting
through the collector to the stack's Prometheus, which evaluates backends/prometheus/alerts.yml
every 5 s. A job on a 10-second schedule that stops starting must fire ``JobRunMissed`` within
interval + grace + the rules' delay; a run past its max runtime must fire ``JobRunOverdue``
while it is still running.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from live import eventually, get_json, job_env, scalar

INTERVAL_S = 10.0
#: Above the path's own delay between a run's start and the alert seeing it (startup, export, the collector's
#: batching, three chained rule groups at 5 s each: up to about 20 s). With 5 s, a CI run saw JobRunMissed fire
#: between two on-time runs: the third run's start had not reached the alert rule 10 s after it began.
GRACE_S = 25.0
#: Rule evaluation (5 s) + the collector's remote-write batching + our 0.5 s polling, bounded generously.
RULE_DELAY_BOUND_S = 20.0

JOB = textwrap.dedent("""
    import sys, time
    from joblogger import create_job_logger

    # joblogger run configured export and the schedule (--schedule ...) from its options
    with create_job_logger(name=sys.argv[1]) as job:
        job.set_total(1000, "rows")
        for _ in range(10):
            job.increment_progress(100)
            time.sleep(float(sys.argv[2]) / 10)
""")


def _alerts(stack: Any, service: str, name: str) -> list[dict[str, Any]]:
    body = get_json(f"{stack.prometheus}/api/v1/alerts")
    return [a for a in body["data"]["alerts"] if a["labels"].get("job") == service and a["labels"]["alertname"] == name]


def _firing(stack: Any, service: str, name: str) -> dict[str, Any] | None:
    return next((a for a in _alerts(stack, service, name) if a["state"] == "firing"), None)


def _start(stack: Any, script: Path, service: str, job: str, seconds: float, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "joblogger", "run", "--no-console", *options, "--", sys.executable, str(script), job,
         str(seconds)],
        env=job_env(stack, service),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_stopped_schedule_fires_missed_and_a_long_run_fires_overdue_while_running(stack: Any, tmp_path: Path) -> None:
    """Cron-style runs every 10 s then none: JobRunMissed fires within interval + grace + rule delay, not before.

    Meanwhile a run with a 3 s max runtime that takes 40 s fires JobRunOverdue while it is still running.
    """
    script = tmp_path / "job.py"
    script.write_text(JOB)
    tag = uuid.uuid4().hex[:6]
    missed, overdue = f"sched-missed-{tag}", f"sched-overdue-{tag}"
    slow_started = time.time()
    slow = _start(stack, script, overdue, "slow-import", 40, "--schedule", "every 1h", "--max-runtime", "3s")
    starts, ends = [], []
    try:
        for _ in range(3):
            starts.append(time.time())
            options = ("--schedule", "every 10s", "--grace", f"{GRACE_S:.0f}s")
            proc = _start(stack, script, missed, "heartbeat", 0.5, *options)
            _, stderr = proc.communicate(timeout=30)
            ends.append(time.time())
            assert proc.returncode == 0, stderr
            assert _alerts(stack, missed, "JobRunMissed") == []  # on schedule: nothing pending or firing
            time.sleep(max(0.0, starts[-1] + INTERVAL_S - time.time()))

        # The overdue run is still going: the alert names the limit it passed.
        alert = eventually(lambda: _firing(stack, overdue, "JobRunOverdue"), "JobRunOverdue while running", 40)
        assert slow.poll() is None, "the overdue alert must fire while the run is still running"
        assert alert["labels"]["limit"] == "max_runtime" and alert["labels"]["job_name"] == "slow-import"
        assert float(alert["value"]) > 3
        active_at = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", alert["activeAt"]).replace("Z", "+00:00"))
        print(
            f"JobRunOverdue active {active_at.timestamp() - slow_started:.1f} s after its run (max runtime 3 s) started"
        )

        # The job stops: the run expected INTERVAL_S after the last start never comes.
        alert = eventually(
            lambda: _firing(stack, missed, "JobRunMissed"),
            "JobRunMissed after the schedule stopped",
            timeout=INTERVAL_S + GRACE_S + RULE_DELAY_BOUND_S + 10,
        )
        fired = time.time()
    finally:
        slow.kill()
        slow.communicate(timeout=30)
    # The state was decided by Prometheus alone: every heartbeat process had exited long before. The last start
    # it knows is the third run's (its process started after starts[-1] and ended by ends[-1]), not an earlier one.
    last = scalar(stack, f'job_name:job_schedule_last_start_seconds:max{{job="{missed}"}}')
    assert last is not None and starts[-1] <= last <= ends[-1], (starts, ends, last)
    # The missed run was due INTERVAL_S after that start (the run's own clock, not this test's: a process that
    # took seconds to start on a loaded machine does not count against the rule's delay).
    delay = fired - (last + INTERVAL_S)
    print(
        f"JobRunMissed firing {delay:.1f} s after the missed run was due "
        f"({fired - last:.1f} s after the last start; interval {INTERVAL_S:.0f} s + grace {GRACE_S:.0f} s; "
        f"that process started {last - starts[-1]:.1f} s after it was launched)"
    )
    assert GRACE_S <= delay <= GRACE_S + RULE_DELAY_BOUND_S
    assert alert["labels"]["job_name"] == "heartbeat" and alert["labels"]["severity"] == "critical"
    assert float(alert["value"]) > GRACE_S
