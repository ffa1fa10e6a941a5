"""Throughput of joblogger's scale tier on this machine: spans, log records and metric points per second per tier.

Run:   .venv/bin/python benchmarks/scale_tier.py                 (about 2-3 minutes)
       .venv/bin/python benchmarks/scale_tier.py --processes 2 --threads 5 --runs 10   (smaller)

Starts the tier of docs/scale.md as local processes (scripts/tier.py: 4 agents,
2 gateways, Thanos Receive x3 with replication 2, Thanos Query, Jaeger,
VictoriaLogs), then ``--processes`` job processes per host, each running
``--threads`` runs at a time (``--runs`` in all), as fast as they can.

Reported per tier, from the collectors' own counters (``otelcol_receiver_accepted_*``,
``otelcol_exporter_sent_*``) and the backends' answers:

* items each tier accepted, and the rate = items / seconds from the start of the
  load until that tier had passed everything on (the drain included);
* for the backends: seconds until Jaeger, VictoriaLogs and Thanos Query held all of it;
* series: active series of the benchmark's jobs in Thanos (deduplicated) and in the
  receivers' heads (replicas counted), and that per 1,000 concurrent runs.

The machine is shared and small (2 cores run jobs, collectors and backends
together), so the figures are a floor for a real deployment where each tier has
its own machines, not a capacity plan.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TIER_PY = REPO_ROOT / "scripts" / "tier.py"
WORKER_PY = REPO_ROOT / "scripts" / "tier_worker.py"


def _load_tier() -> ModuleType:
    spec = importlib.util.spec_from_file_location("joblogger_tier", TIER_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["joblogger_tier"] = module
    spec.loader.exec_module(module)
    return module


SIGNALS = {"spans": "spans", "logs": "log_records", "points": "metric_points"}


def _totals(tier_module: ModuleType, collectors: list[Any]) -> dict[str, float]:
    """Accepted and sent items summed over ``collectors``."""
    out: dict[str, float] = {}
    for c in collectors:
        counters = tier_module.collector_counters(c.metrics_url)
        for short, name in SIGNALS.items():
            for kind, metric in (("accepted", f"otelcol_receiver_accepted_{name}_total"),
                                 ("sent", f"otelcol_exporter_sent_{name}_total")):  # fmt: skip
                out[f"{kind}_{short}"] = out.get(f"{kind}_{short}", 0.0) + counters.get(metric, 0.0)
    return out


def _start_jobs(tier: Any, prefix: str, processes: int, cfg: dict[str, Any]) -> list[subprocess.Popen[str]]:
    """``processes`` job processes per host, each exporting to its host's agent."""
    procs = []
    for h, agent in enumerate(tier.agents):
        for p in range(processes):
            worker = {**cfg, "service": f"{prefix}-h{h + 1}-p{p + 1}", "endpoint": agent.otlp_grpc, "job": "bench"}
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER_PY), json.dumps(worker)],
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**_clean_env(), "OTEL_METRIC_EXPORT_INTERVAL": "1000"},
                )
            )
    return procs


def _finish(procs: list[subprocess.Popen[str]]) -> tuple[dict[str, int], int]:
    """Wait for the job processes; return what their SDKs delivered and the number of runs."""
    delivered = {"spans": 0, "logs": 0, "points": 0}
    runs = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        for line in (json.loads(x) for x in out.splitlines() if x.startswith("{")):
            if line["kind"] == "summary":
                runs += 1
            elif line["kind"] == "exit":
                for k in delivered:
                    delivered[k] += int(line.get(f"{k}_delivered", 0))
    return delivered, runs


def measure_series(tier: Any, processes: int, threads: int) -> None:
    """Series live in Thanos while ``processes x 4 x threads`` runs are in progress at once."""
    prefix = f"series-{uuid.uuid4().hex[:6]}"
    # Every run lasts about 8 s (80 items, 0.1 s each, 4 stages): all are live together for several exports.
    procs = _start_jobs(tier, prefix, processes, {"runs": threads, "threads": threads, "items": 80, "sleep": 0.1,
                                                  "stages": 4})  # fmt: skip
    concurrent = len(procs) * threads
    sel = f'job=~"{prefix}-.*"'
    live = 0
    # Series with a sample in the last 5 s (exports every 1 s; pushed series have no staleness markers,
    # so Thanos Query's lookback_delta, not the default 5 minutes, tells live series from ended ones).
    while any(p.poll() is None for p in procs):
        with _suppress():
            got = tier.promql(f"count({{{sel}}})", lookback="5s")
            live = max(live, round(float(got[0]["value"][1])) if got else 0)
        time.sleep(1.0)
    _finish(procs)
    time.sleep(3.0)
    total = _count(tier, f"{{{sel}}}")
    per_run = _count(tier, f'{{{sel}, job_run_id!=""}}')
    print(f"\nseries: {concurrent} concurrent runs ({len(procs)} processes x {threads} runs at a time, 4 stages each)")
    print(f"  most series with a sample in the last 5 s (Thanos Query, deduplicated): {live:,}")
    print(
        f"  distinct series the phase created: {total:,}, of which {per_run:,} carry job_run_id (progress gauges, "
        f"per run and stage) and {total - per_run:,} do not ({(total - per_run) / len(procs):,.0f} per process)"
    )
    per_1000_live, per_1000_total = live * 1000 / concurrent, total * 1000 / concurrent
    print(
        f"  series per 1,000 concurrent runs: {per_1000_live:,.0f} live at once; {per_1000_total:,.0f} distinct"
        " over the runs' lives (what a 2-hour TSDB head holds); the receivers store each twice (RF 2)"
    )


def measure_throughput(tier: Any, tier_module: ModuleType, args: argparse.Namespace) -> None:
    """Jobs -> agents with the gateways stopped (agents queue on disk), then the drain through gateways to backends."""
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    for gateway in tier.gateways:
        gateway.stop()
    base_agents = _totals(tier_module, tier.agents)
    t0 = time.monotonic()
    cfg = {"runs": args.runs, "threads": args.threads, "items": args.items, "sleep": 0.0, "stages": args.stages,
           "logs_every": 2}  # fmt: skip
    procs = _start_jobs(tier, prefix, args.processes, cfg)
    delivered, runs = _finish(procs)
    t_jobs = time.monotonic() - t0
    agents = {k: v - base_agents.get(k, 0.0) for k, v in _totals(tier_module, tier.agents).items()}
    print(f"\nthroughput: {len(procs)} job processes on 4 hosts, {args.threads} runs at a time each, {runs} runs of "
          f"{args.items} items ({args.stages} stages, a log record every 2 items)")  # fmt: skip
    print(f"  delivered by the SDKs: {delivered['spans']:,} spans, {delivered['logs']:,} log records, "
          f"{delivered['points']:,} metric points in {t_jobs:.1f} s")  # fmt: skip
    # Gateways back: everything queued on the agents' disks drains through them to the backends.
    t1 = time.monotonic()
    for gateway in tier.gateways:
        gateway.start()
    services = [f"{prefix}-h{h + 1}-p{p + 1}" for h in range(4) for p in range(args.processes)]
    done: dict[str, float] = {}
    gateways: dict[str, float] = {}
    while time.monotonic() - t1 < 900 and len(done) < 4:
        now = time.monotonic() - t1
        if "gateways" not in done:
            gateways = _totals(tier_module, tier.gateways)
            if all(gateways[f"sent_{s}"] >= delivered[s] for s in ("spans", "logs")):
                done["gateways"] = now
        if "jaeger" not in done and sum(len(tier.jaeger_spans(s)) for s in services) >= delivered["spans"]:
            done["jaeger"] = now
        if "logs" not in done and sum(tier.log_count(s) for s in services) >= delivered["logs"]:
            done["logs"] = now
        if "thanos" not in done:
            got = tier.promql(f'sum(job_runs_total{{job=~"{prefix}-.*"}})')
            if got and round(float(got[0]["value"][1])) == runs:
                done["thanos"] = now
        time.sleep(0.5)
    print("\n| tier (this machine, 2 cores shared by all) | spans/s | log records/s | metric points/s |")
    print("|---|---:|---:|---:|")
    print(f"| 4 agents, accepting from the jobs (bound by the jobs) | {agents['accepted_spans'] / t_jobs:,.0f} | "
          f"{agents['accepted_logs'] / t_jobs:,.0f} | {agents['accepted_points'] / t_jobs:,.0f} |")  # fmt: skip
    if "gateways" in done:
        t = done["gateways"]
        print(f"| 2 gateways, draining the agents' queues | {gateways['accepted_spans'] / t:,.0f} | "
              f"{gateways['accepted_logs'] / t:,.0f} | {gateways['accepted_points'] / t:,.0f} |")  # fmt: skip
    for key, name, col in (("jaeger", "Jaeger", 0), ("logs", "VictoriaLogs", 1), ("thanos", "Thanos Receive x3", 2)):
        n = (delivered["spans"], delivered["logs"], delivered["points"])[col]
        cells = ["", "", ""]
        cells[col] = f"{n / done[key]:,.0f}" if key in done else "not complete in 15 min"
        print(f"| {name}, end to end after the gateways' start | " + " | ".join(cells) + " |")
    print("  (seconds from the gateways' start until complete: "
          + ", ".join(f"{k} {v:.1f}" for k, v in done.items()) + ")")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="job processes per host (4 hosts)")
    parser.add_argument("--threads", type=int, default=25, help="runs at a time per job process")
    parser.add_argument("--runs", type=int, default=50, help="runs per job process (throughput phase)")
    parser.add_argument("--items", type=int, default=100, help="items per run (throughput phase)")
    parser.add_argument("--stages", type=int, default=10, help="stages per run (throughput phase)")
    parser.add_argument("--keep", action="store_true", help="keep the tier's directory (logs, data)")
    args = parser.parse_args()
    tier_module = _load_tier()
    root = Path(tempfile.mkdtemp(prefix="joblogger-tier-bench-"))
    tier = tier_module.Tier.create(root, hosts=4, gateways=2)
    t_start = time.monotonic()
    tier.start()
    print(f"tier of {len(tier.processes())} processes ready in {time.monotonic() - t_start:.1f} s ({root})")
    try:
        measure_series(tier, args.processes, args.threads)
        measure_throughput(tier, tier_module, args)
    finally:
        tier.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    return 0


def _count(tier: Any, selector: str) -> int:
    got = tier.promql(f"count({selector})")
    return round(float(got[0]["value"][1])) if got else 0


def _head_series(proc: Any) -> int:
    import urllib.request

    url = proc.ready_url.replace("/-/ready", "/metrics")
    with urllib.request.urlopen(url, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("prometheus_tsdb_head_series{") or line.startswith("prometheus_tsdb_head_series "):
                return int(float(line.rsplit(" ", 1)[1]))
    return 0


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], (OSError, AssertionError))  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
