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
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import stack as stack_script  # noqa: E402

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
BLOCK_S = 7200


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


class BlockFiles:
    """OpenMetrics files, one per 2-hour TSDB block range: promtool re-reads its whole input for every
    block range it covers, so one file per range keeps the import linear in the data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[int, TextIO] = {}

    def write(self, name: str, labels: str, points: Iterator[tuple[float, float]]) -> int:
        labels = labels.replace(", ", ",")  # OpenMetrics: no spaces between labels
        count = 0
        for stamp, value in points:
            block = int(stamp // BLOCK_S)
            out = self.files.get(block)
            if out is None:
                out = self.files[block] = (self.folder / f"{block}.om").open("w", encoding="utf-8")
            out.write(f"{name}{{{labels}}} {value} {stamp:.3f}\n")
            count += 1
        return count

    def close(self) -> list[Path]:
        for out in self.files.values():
            out.write("# EOF\n")
            out.close()
        return [self.folder / f"{block}.om" for block in sorted(self.files)]


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


def _steps(start: float, end: float, step: float) -> Iterator[float]:
    t = start - (start % step) + step
    while t <= end:
        yield t
        t += step


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(base: str, expr: str, at: float) -> dict[str, Any]:
    params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}", "stats": "all"})
    with urllib.request.urlopen(f"{base}/api/v1/query?{params}", timeout=300) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=15, help="export interval of the long-lived workers, seconds")
    args = parser.parse_args()
    binaries = stack_script.ensure_built()  # the stack's own Prometheus and promtool (built on first use)
    prometheus, promtool = str(binaries.prometheus), str(binaries.promtool)
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
        for source in sources:
            subprocess.run(
                [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(work / "data")],
                check=True,
            )
            source.unlink()
        print(f"promtool created the blocks in {time.monotonic() - t0:.0f} s", flush=True)
        (work / "prometheus.yml").write_text("global: {}\n")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/-/ready", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.5)
            _wait_for_compaction(work / "data")
            print(f"\nPrometheus {_version(prometheus)}, {args.jobs:,} scheduled jobs, median of {args.repeats}")
            print(f"{'rule':52} {'series':>7} {'samples':>12} {'exec ms':>9}")
            total = 0.0
            for name, expr in rules:
                runs = [_query(base, expr, now) for _ in range(args.repeats)]
                exec_s = statistics.median(float(r["stats"]["timings"]["execTotalTime"]) for r in runs)
                touched = int(runs[0]["stats"]["samples"]["totalQueryableSamples"])
                total += exec_s
                print(f"{name:52} {len(runs[0]['result']):>7,} {touched:>12,} {exec_s * 1000:>9.1f}")
            print(f"{'all schedule rules, one evaluation':52} {'':>7} {'':>12} {total * 1000:>9.1f}")
        finally:
            server.terminate()
            server.wait(timeout=60)
    return 0


def _blocks(data: Path) -> int:
    return sum(1 for d in data.iterdir() if d.is_dir() and len(d.name) == 26 and (d / "meta.json").exists())


def _wait_for_compaction(data: Path, timeout: float = 600.0) -> None:
    """Let Prometheus merge promtool's 2-hour blocks, as it does with its own data over time."""
    t0 = time.monotonic()
    before, last, stable_since = _blocks(data), -1, time.monotonic()
    while time.monotonic() - t0 < timeout:
        count = _blocks(data)
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since > 150:  # compaction runs every minute: two idle rounds
            break
        time.sleep(5)
    print(f"Prometheus compacted {before} blocks into {last} in {time.monotonic() - t0:.0f} s", flush=True)


def _version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if out.startswith("prometheus, version") else "?"


if __name__ == "__main__":
    sys.exit(main())
