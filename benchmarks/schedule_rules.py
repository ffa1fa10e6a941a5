"""Query cost of the schedule rules (backends/prometheus/alerts.yml) with many scheduled jobs.

Run:   .venv/bin/python benchmarks/schedule_rules.py [--jobs 1000] [--repeats 5]

Writes synthetic series for ``--jobs`` scheduled jobs as OpenMetrics text, turns them
into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics``, starts the real
Prometheus and promtool that scripts/stack.py builds on those blocks in a temporary
directory, and times every expression of the ``joblogger.schedule.*`` rule groups
with ``/api/v1/query?stats=all`` at the end of the data: Prometheus's own execution
time and the samples it touched, median of ``--repeats``.

The population (defaults): 80% of the jobs run in long-lived workers (one process per
job, exporting every ``--every`` = 15 s; joblogger.otlp's default is 2 s, which makes
the raw-series rules touch about 7 times as many samples), 20% are cron jobs whose every
run is a new process (every 10 min, 2 samples each: the series churn of short-lived
processes). The recording rules' own output is part of the data as the rules would have
written it: every 60 s for the carried state (the last day for the one a 1-day window
reads, 2 hours for the others), hourly for a week for the duration buckets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from promdata import ROOT, BlockFiles, binaries, create_blocks, query, serve, version
from promdata import steps as _steps

RULES = ROOT / "backends" / "prometheus" / "alerts.yml"
BUCKETS = ("0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "600", "1800", "3600", "7200",
           "14400", "43200", "86400", "+Inf")  # fmt: skip
GAUGES = (
    "job_schedule_next_expected_seconds", "job_schedule_interval_seconds", "job_schedule_grace_seconds",
    "job_schedule_max_runtime_seconds", "job_schedule_min_runtime_seconds", "job_schedule_overlap_policy",
    "job_schedule_last_start_seconds", "job_schedule_last_end_seconds", "job_schedule_last_success_seconds",
    "job_schedule_last_duration_seconds", "job_schedule_last_processed", "job_schedule_active_since_seconds",
    "job_runs_active",
)  # fmt: skip
RECORDED_2H = (
    "job_name:job_schedule_last_start_seconds:max", "job_name:job_schedule_first_start_seconds:min",
    "job_name:job_schedule_last_success_seconds:max", "job_name:job_schedule_last_end_seconds:max",
    "job_name:job_schedule_next_expected_seconds:latest", "job_name:job_schedule_grace_seconds:latest",
    "job_name:job_schedule_interval_seconds:latest", "job_name:job_schedule_last_processed:median_1d",
)  # fmt: skip
RECORDED_1D = "job_name:job_schedule_last_processed:latest"
INTERVAL_S = 600


def gauge_values(run_start: float, now: float) -> dict[str, float]:
    """The schedule gauges of a process whose run started at ``run_start`` (every 10 min, 30 s runs)."""
    return {
        "job_schedule_next_expected_seconds": run_start + INTERVAL_S,
        "job_schedule_interval_seconds": INTERVAL_S,
        "job_schedule_grace_seconds": 60,
        "job_schedule_max_runtime_seconds": 1800,
        "job_schedule_min_runtime_seconds": 5,
        "job_schedule_overlap_policy": 1,
        "job_schedule_last_start_seconds": run_start,
        "job_schedule_last_end_seconds": run_start + 30,
        "job_schedule_last_success_seconds": run_start + 30,
        "job_schedule_last_duration_seconds": 30,
        "job_schedule_last_processed": 5000,
        "job_schedule_active_since_seconds": 0,
        "job_runs_active": 0,
    }


def generate(out: BlockFiles, jobs: int, now: float, every: int) -> int:
    """Write the OpenMetrics files; returns the number of samples."""
    samples = 0
    workers = int(jobs * 0.8)
    histogram = "job_run_duration_seconds_bucket"
    for name in (*GAUGES, *(f"{histogram}:{le}" for le in BUCKETS)):  # each family's samples together
        family, _, le = name.partition(":")
        since = now - (4200 if le else 1800)
        for j in range(jobs):
            labels = f'job="bench", job_name="job-{j:04d}"' + (f', job_result="success", le="{le}"' if le else "")
            if j < workers:  # one long-lived process exporting every `every` seconds
                pts = ((t, _value(family, le, t)) for t in _steps(since, now, every))
                samples += out.write(family, f'{labels}, instance="w-{j}"', pts)
                continue
            for start in _steps(now - (4200 if le else 7200), now, INTERVAL_S):  # a process per run
                pts = iter(((start + 15, _value(family, le, start, 1)), (start + 30, _value(family, le, start, 1))))
                samples += out.write(family, f'{labels}, instance="c-{j}-{int(start)}"', pts)
    for name in (*RECORDED_2H, RECORDED_1D):
        since = now - (86400 if name == RECORDED_1D else 7200)
        for j in range(jobs):
            pts = ((t, _value(_raw(name), "", t)) for t in _steps(since, now, 60))
            samples += out.write(name, f'job="bench", job_name="job-{j:04d}"', pts)
    added = "job_name_le:job_run_duration_seconds_bucket:added_1h"
    for le in BUCKETS:
        for j in range(jobs):
            pts = ((t, 6 * _share(le)) for t in _steps(now - 7 * 86400, now, 3600))
            samples += out.write(added, f'job="bench", job_name="job-{j:04d}", le="{le}"', pts)
    return samples


def _share(le: str) -> float:
    """Fraction of the runs (30 s each) in bucket ``le``."""
    return 1.0 if le == "+Inf" or float(le) >= 30 else 0.0


def _value(name: str, le: str, t: float, runs: int | None = None) -> float:
    """A sample of ``name`` at ``t`` for a job running every 10 min (a histogram bucket when ``le``)."""
    if le:
        return _share(le) * (runs if runs is not None else t // INTERVAL_S % 100_000)
    return gauge_values(t - (t % INTERVAL_S), t)[name]


def _raw(recorded: str) -> str:
    base = recorded.split(":")[1]
    return "job_schedule_last_start_seconds" if base.endswith("first_start_seconds") else base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=15, help="export interval of the long-lived workers, seconds")
    args = parser.parse_args()
    prometheus, promtool = binaries()  # the stack's own Prometheus and promtool (built on first use)
    rules = [
        (r.get("alert") or r.get("record"), r["expr"])
        for g in yaml.safe_load(RULES.read_text())["groups"]
        if g["name"].startswith("joblogger.schedule")
        for r in g["rules"]
    ]
    now = float(int(time.time() // 60 * 60 - 300))
    with tempfile.TemporaryDirectory(prefix="joblogger-schedule-bench-") as tmp:
        work = Path(tmp)
        (work / "om").mkdir()
        files = BlockFiles(work / "om")
        t0 = time.monotonic()
        samples = generate(files, args.jobs, now, args.every)
        sources = files.close()
        print(f"generated {samples:,} samples for {args.jobs:,} jobs in {time.monotonic() - t0:.0f} s", flush=True)
        t0 = time.monotonic()
        create_blocks(promtool, sources, work / "data")
        print(f"promtool created the blocks in {time.monotonic() - t0:.0f} s", flush=True)
        with serve(prometheus, work) as base:
            print(f"\nPrometheus {version(prometheus)}, {args.jobs:,} scheduled jobs, median of {args.repeats}")
            print(f"{'rule':52} {'series':>7} {'samples':>12} {'exec ms':>9}")
            total = 0.0
            for name, expr in rules:
                runs = [query(base, expr, now) for _ in range(args.repeats)]
                exec_s = statistics.median(float(r["stats"]["timings"]["execTotalTime"]) for r in runs)
                touched = int(runs[0]["stats"]["samples"]["totalQueryableSamples"])
                total += exec_s
                print(f"{name:52} {len(runs[0]['result']):>7,} {touched:>12,} {exec_s * 1000:>9.1f}")
            print(f"{'all schedule rules, one evaluation':52} {'':>7} {'':>12} {total * 1000:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
