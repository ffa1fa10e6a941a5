"""The joblogger command: demo and run, in plain mode and under a pseudo-terminal, with exit codes."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pyte
import pytest

JOBLOGGER = [sys.executable, "-m", "joblogger"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


ROWS, COLUMNS = 40, 120


def screen_lines(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: its scrollback, then the screen (trailing blank lines dropped)."""
    screen = pyte.HistoryScreen(COLUMNS, ROWS, history=10_000)
    stream = pyte.Stream(screen)
    stream.feed(raw.replace("\n", "\r\n") if "\r\n" not in raw else raw)
    history = ["".join(char.data for char in line.values()).rstrip() for line in screen.history.top]
    lines = history + [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def run_in_pty_raw(argv: list[str], timeout: float = 60.0, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run argv with a pseudo-terminal (ROWS x COLUMNS) as stdin/stdout/stderr; return (exit code, raw output)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env or _env(), close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=10)
    os.close(leader)
    raw = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[" in raw  # it really drew on a terminal
    return code, raw


def run_in_pty(argv: list[str], timeout: float = 60.0, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run argv with a pseudo-terminal as stdout/stderr; return (exit code, output without escape codes)."""
    code, raw = run_in_pty_raw(argv, timeout, env)
    return code, ANSI.sub("", raw)


def test_demo_plain_output():
    """`joblogger demo` piped: stages, warnings, errors and one summary on stderr, compactly; stdout stays empty."""
    proc = subprocess.run(
        [*JOBLOGGER, "demo", "--users", "500", "--speed", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    out = proc.stderr
    for stage in ("Initializing", "Fetching users", "Scoring users", "Finalizing"):
        assert f"[MILESTONE] Starting: {stage}" in out
    assert "[INFO] Batch" not in out  # info lines only with --verbose
    assert out.count("[WARNING] No valid candidates for user") == 15
    assert out.count("[ERROR] Failed to process user") == 2
    assert out.count("Completed in") == 1
    assert "Processed: 500 users | Updates:" in out
    assert "| Skipped: 15 | Errors: 2 | Warnings: 15" in out
    assert "\x1b[" not in out
    # 7 milestones (4 stage starts, 2 of the job's, the summary), 15 warnings, 2 errors, a few progress lines
    assert len(out.splitlines()) <= 30, out


def test_demo_plain_verbose_keeps_info_lines():
    """--verbose also keeps the job's info lines."""
    proc = subprocess.run(
        [*JOBLOGGER, "demo", "--users", "300", "--speed", "0", "--verbose"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[INFO] Batch 300/300 complete" in proc.stderr


def test_demo_under_a_terminal_draws_live_view():
    """Under a pseudo-terminal the demo draws the live panel with a progress bar and ends with the summary."""
    code, raw = run_in_pty_raw([*JOBLOGGER, "demo", "--users", "1500", "--speed", "3"])
    out = ANSI.sub("", raw)
    assert code == 0, out
    assert "match-scores · run demo-" in out
    assert 'Progress: "Scoring users (' in out
    assert "━" in out
    # What stays on the terminal at the end (scrollback + screen): errors, warnings and one summary, no panel.
    lines = screen_lines(raw)
    assert len([line for line in lines if "[ERROR] Failed to process user" in line]) == 2, lines
    assert len([line for line in lines if "[WARNING] No valid candidates" in line]) == 45, lines
    summaries = [line for line in lines if "Completed in" in line]
    assert len(summaries) == 1, lines
    assert "Skipped: 45 | Errors: 2 | Warnings: 45" in summaries[0]
    assert not any("│" in line for line in lines), lines  # the live panel is gone
    assert lines[-1] == summaries[0]


def test_demo_failure_exit_code():
    """A failed job makes the command fail: exit code 1 and the failure in the summary."""
    proc = subprocess.run(
        [*JOBLOGGER, "demo", "--users", "200", "--speed", "0", "--fail"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("Failed after") == 1
    assert "the job failed: RuntimeError" in proc.stderr


def test_help_is_readable():
    """--help explains the commands, export and exit codes."""
    proc = subprocess.run([*JOBLOGGER, "--help"], capture_output=True, text=True, check=True, env=_env())
    for words in ("demo", "run", "OTEL_EXPORTER_OTLP_ENDPOINT", "exit codes"):
        assert words in proc.stdout


def test_usage_error_exit_code():
    """An unknown command is a usage error (exit code 2)."""
    proc = subprocess.run([*JOBLOGGER, "frobnicate"], capture_output=True, text=True, env=_env(), check=False)
    assert proc.returncode == 2


@pytest.fixture
def user_job(tmp_path: Path) -> Path:
    """A user's job script that uses joblogger without configuring anything itself."""
    script = tmp_path / "my_job.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        import time
        from joblogger import create_job_logger
        from opentelemetry import trace

        with create_job_logger("run-7", "nightly-cleanup") as job:
            job.set_stage("Scanning for stale records")
            for _ in range(250):
                job.increment_progress()
                job.add_outcome("deletes")
                time.sleep(0.002)  # long enough for the live view to draw a few frames
            job.warning("Failed to delete record 42", recordId=42)
        print("provider:", type(trace.get_tracer_provider()).__name__)
        sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """)
    )
    return script


def test_run_configures_the_child_and_passes_exit_code(user_job: Path):
    """`joblogger run -- python script` shows the job in the view and returns the script's exit code."""
    proc = subprocess.run(
        [*JOBLOGGER, "run", "--", sys.executable, str(user_job), "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "[MILESTONE] Starting: Scanning for stale records" in proc.stderr
    assert "[WARNING] Failed to delete record 42 { recordId: 42 }" in proc.stderr
    assert "Processed: 250 entities | Deletes: 250 | Warnings: 1" in proc.stderr
    assert proc.stdout == "provider: TracerProvider\n"  # the script's own output only (SDK set up by the bootstrap)


def test_run_under_a_terminal(user_job: Path):
    """`joblogger run` under a pseudo-terminal draws the live view and exits 0."""
    code, raw = run_in_pty_raw([*JOBLOGGER, "run", "--", sys.executable, str(user_job)])
    assert code == 0, raw
    assert "nightly-cleanup · run run-7" in ANSI.sub("", raw)
    lines = screen_lines(raw)
    [summary] = [i for i, line in enumerate(lines) if "Completed in" in line]
    [warning] = [i for i, line in enumerate(lines) if "[WARNING] Failed to delete record 42" in line]
    [printed] = [i for i, line in enumerate(lines) if "provider: TracerProvider" in line]
    assert warning < summary < printed, lines  # the view's last line comes before the script's own output


def test_run_without_command_is_usage_error():
    """`joblogger run` with no command explains itself and exits 2."""
    proc = subprocess.run([*JOBLOGGER, "run"], capture_output=True, text=True, env=_env(), check=False)
    assert proc.returncode == 2
    assert "give a command after --" in proc.stderr


SCHEDULED_JOB = """
import os
from joblogger import create_job_logger, semconv
from joblogger.testing import capture

with capture() as cap:
    with cap.job_logger("r1", "nightly"):
        pass
    gauges = {p.name: p.value for p in cap.metrics() if p.name.startswith("job.schedule.")}
print(gauges[semconv.METRIC_SCHEDULE_NEXT_EXPECTED] - gauges[semconv.METRIC_SCHEDULE_LAST_START],
      gauges[semconv.METRIC_SCHEDULE_MAX_RUNTIME], gauges[semconv.METRIC_SCHEDULE_OVERLAP_POLICY],
      os.environ.get("JOBLOGGER_SCHEDULE"))
"""


def test_run_schedule_options_reach_the_runs_of_the_command(tmp_path: Path):
    """`joblogger run --schedule 'every 90s' --max-runtime 5m --overlap warn` schedules the command's runs."""
    script = tmp_path / "scheduled.py"
    script.write_text(SCHEDULED_JOB)
    proc = subprocess.run(
        [*JOBLOGGER, "run", "--no-console", "--schedule", "every 90s", "--max-runtime", "5m", "--overlap", "warn",
         "--", sys.executable, str(script)],
        capture_output=True, text=True, timeout=120, env=_env(), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["90.0", "300.0", "1", "None"]  # the variable is gone once applied


def test_run_rejects_a_bad_schedule_as_a_usage_error():
    """A bad cron expression or a limit without --schedule exits 2 with the reason, before running anything."""
    for options, text in ((["--schedule", "61 * * * *"], "bad cron expression"), (["--grace", "5m"], "--schedule")):
        proc = subprocess.run(
            [*JOBLOGGER, "run", *options, "--", "true"], capture_output=True, text=True, env=_env(), check=False
        )
        assert proc.returncode == 2 and text in proc.stderr, proc.stderr


def test_run_schedule_options_reach_a_command_run():
    """For a non-Python command, --schedule ... becomes the run's schedule= (the supervisor's own run)."""
    from joblogger import Schedule, cli

    args = cli._parser().parse_args(["run", "--schedule", "every 5m", "--grace", "30s", "--", "/bin/true"])
    assert cli._job_options(args) == {"schedule": Schedule(every="5m", grace=30)}
    assert cli._job_options(cli._parser().parse_args(["run", "--", "/bin/true"])) == {}
