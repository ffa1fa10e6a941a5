"""How much `joblogger run` slows a command that prints a lot (docs/commands.md, "Output volume").

For each size, a shell command writes N lines as fast as it can and reports how
long that took *for itself*; it runs once straight to /dev/null and once under
the supervisor (its output passed through to /dev/null, logged as records of a
run with in-memory providers). Also reported: how long the supervisor took to
the end of the run, how many lines were counted, and how many were not logged.
The "slow" rows make every exported record cost 1 ms (a stalled log pipeline):
the command must still finish at full speed.

Run:   .venv/bin/python benchmarks/command_output.py [--lines 100000 1000000]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import time

from joblogger._command import run_command, start_command_run
from joblogger.testing import capture

SCRIPT = 's=$(date +%s%N); seq 1 {n}; e=$(date +%s%N); echo "elapsed_ms=$(( (e - s) / 1000000 ))" >&2'


def child_ms(stderr: bytes) -> int:
    return int(stderr.decode().rsplit("elapsed_ms=", 1)[1].split()[0])


def direct(n: int) -> int:
    proc = subprocess.run(
        ["sh", "-c", SCRIPT.format(n=n)],
        stdout=subprocess.DEVNULL,
        capture_output=False,
        stderr=subprocess.PIPE,
        check=True,
    )
    return child_ms(proc.stderr)


def supervised(n: int, *, slow: bool) -> dict[str, float]:
    sink = logging.Handler()
    sink.emit = lambda record: time.sleep(0.001)  # type: ignore[method-assign]
    pylog = logging.getLogger("joblogger")
    if slow:
        pylog.addHandler(sink)
        pylog.setLevel(logging.INFO)
    null = os.open(os.devnull, os.O_WRONLY)
    err_r, err_w = os.pipe()
    try:
        with capture() as cap:
            argv = ["sh", "-c", SCRIPT.format(n=n)]
            options = {"log_rate_limits": {}} if slow else {}
            job = start_command_run(argv, job_name="bench", make_job=cap.job_logger, **options)
            started = time.monotonic()
            run_command(argv, job, stdout_fd=null, stderr_fd=err_w, line_rate_limit=None if slow else (20.0, 200.0))
            total = time.monotonic() - started
            os.close(err_w)
            err = os.read(err_r, 1 << 20)
            attrs = dict(cap.span("bench").attributes or {})
            note = [e for e in cap.events("warning") if e.name.startswith("Output lines not logged")]
            not_logged = note[0].attributes["fellBehind"] if note else 0
    finally:
        os.close(null)
        os.close(err_r)
        if slow:
            pylog.removeHandler(sink)
            pylog.setLevel(logging.NOTSET)
    return {
        "child_ms": child_ms(err),
        "total_s": total,
        "counted": attrs.get("job.logs.info", 0),
        "not_logged": not_logged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print(f"{'lines':>10} {'mode':>10} {'command ms':>11} {'run ends s':>11} {'counted':>10} {'not logged':>11}")
    for n in args.lines:
        print(f"{n:>10,} {'direct':>10} {direct(n):>11,} {'-':>11} {'-':>10} {'-':>11}")
        for slow in (False, True):
            row = supervised(n, slow=slow)
            mode = "slow log" if slow else "joblogger"
            print(
                f"{n:>10,} {mode:>10} {row['child_ms']:>11,} {row['total_s']:>11.1f} "
                f"{int(row['counted']):>10,} {int(row['not_logged']):>11,}"
            )


if __name__ == "__main__":
    main()
