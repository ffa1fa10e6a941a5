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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="job processes per host (4 hosts)")
    parser.add_argument("--threads", type=int, default=25, help="concurrent runs per job process")
    parser.add_argument("--runs", type=int, default=50, help="runs per job process")
    parser.add_argument("--items", type=int, default=40, help="items per run (one outcome each, a log every 5)")
    parser.add_argument("--keep", action="store_true", help="keep the tier's directory (logs, data)")
    args = parser.parse_args()
    tier_module = _load_tier()
    root = Path(tempfile.mkdtemp(prefix="joblogger-tier-bench-"))
    tier = tier_module.Tier.create(root, hosts=4, gateways=2)
    t_start = time.monotonic()
    tier.start()
    print(f"tier of {len(tier.processes())} processes ready in {time.monotonic() - t_start:.1f} s ({root})")
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        base_agents = _totals(tier_module, tier.agents)
        base_gateways = _totals(tier_module, tier.gateways)
        t0 = time.monotonic()
        procs = []
        for h, agent in enumerate(tier.agents):
            for p in range(args.processes):
                cfg = {
                    "service": f"{prefix}-h{h + 1}-p{p + 1}",
                    "endpoint": agent.otlp_grpc,
                    "job": "bench",
                    "runs": args.runs,
                    "threads": args.threads,
                    "items": args.items,
                    "sleep": 0.0,
                }
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(TIER_PY), "worker", json.dumps(cfg)],
                        stdout=subprocess.PIPE,
                        text=True,
                        env={"OTEL_METRIC_EXPORT_INTERVAL": "1000", **_clean_env()},
                    )
                )
        concurrent = len(procs) * args.threads
        reports = []
        # Series while the runs are live: sampled once all processes have started their runs.
        series_live = 0
        time.sleep(3.0)
        with _suppress():
            series_live = _series(tier, prefix)
        for proc in procs:
            out, _ = proc.communicate(timeout=900)
            reports.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
        t_jobs = time.monotonic() - t0
        delivered = {
            k: sum(int(line.get(f"{k}_delivered", 0)) for rep in reports for line in rep if line["kind"] == "exit")
            for k in ("spans", "logs", "points")
        }
        runs = sum(1 for rep in reports for line in rep if line["kind"] == "summary")

        def drained(collectors: list[Any], base: dict[str, float]) -> dict[str, float] | None:
            now = _totals(tier_module, collectors)
            diff = {k: now[k] - base.get(k, 0.0) for k in now}
            ok = all(diff[f"sent_{s}"] >= diff[f"accepted_{s}"] and diff[f"accepted_{s}"] > 0 for s in SIGNALS)
            return diff if ok else None

        t_agents = t_gateways = None
        agents_diff = gateways_diff = None
        t_jaeger = t_logs = t_thanos = None
        services = [f"{prefix}-h{h + 1}-p{p + 1}" for h in range(4) for p in range(args.processes)]
        while time.monotonic() - t0 < 900 and None in (t_agents, t_gateways, t_jaeger, t_logs, t_thanos):
            now = time.monotonic() - t0
            if t_agents is None and (agents_diff := drained(tier.agents, base_agents)):
                t_agents = now
            if t_gateways is None and (gateways_diff := drained(tier.gateways, base_gateways)):
                t_gateways = now
            if t_jaeger is None and sum(len(tier.jaeger_spans(s)) for s in services) >= delivered["spans"]:
                t_jaeger = now
            if t_logs is None and sum(tier.log_count(s) for s in services) >= delivered["logs"]:
                t_logs = now
            if t_thanos is None:
                got = tier.promql(f'sum(job_runs_total{{job=~"{prefix}-.*"}})')
                if got and round(float(got[0]["value"][1])) == runs:
                    t_thanos = now
            time.sleep(0.5)
        series_after = _series(tier, prefix)
        head = sum(_head_series(r) for r in tier.receivers)
        assert agents_diff is not None and gateways_diff is not None, "the tier did not drain within 15 minutes"
        assert t_agents is not None and t_gateways is not None
        print(f"\nload: {len(procs)} job processes on 4 hosts, {args.threads} concurrent runs each "
              f"({concurrent} concurrent runs), {runs} runs of {args.items} items; jobs: {t_jobs:.1f} s")  # fmt: skip
        print(f"delivered by the SDKs: {delivered['spans']:,} spans, {delivered['logs']:,} log records, "
              f"{delivered['points']:,} metric points")  # fmt: skip
        print("\n| tier | spans/s | log records/s | metric points/s | drained after |")
        print("|---|---:|---:|---:|---:|")
        for name, diff, t in (("4 agents", agents_diff, t_agents), ("2 gateways", gateways_diff, t_gateways)):
            print(f"| {name} | {diff['accepted_spans'] / t:,.0f} | {diff['accepted_logs'] / t:,.0f} | "
                  f"{diff['accepted_points'] / t:,.0f} | {t:.1f} s |")  # fmt: skip
        for name, t, n, unit in (
            ("Jaeger", t_jaeger, delivered["spans"], "spans/s"),
            ("VictoriaLogs", t_logs, delivered["logs"], "log records/s"),
            ("Thanos (Receive x3, RF 2)", t_thanos, delivered["points"], "metric points/s"),
        ):
            rate = f"{n / t:,.0f} {unit}" if t else "not complete"
            print(f"| {name} | {rate} | | | {t or float('nan'):.1f} s |")
        print(f"\nseries of the benchmark's jobs in Thanos Query (deduplicated): {series_live:,} while "
              f"{concurrent} runs were live, {series_after:,} after")  # fmt: skip
        print(f"receivers' head series (all jobs, replicas counted): {head:,}")
        if series_live:
            print(f"series per 1,000 concurrent runs at {args.threads} runs per process: "
                  f"{series_live * 1000 / concurrent:,.0f}")  # fmt: skip
    finally:
        tier.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    return 0


def _series(tier: Any, prefix: str) -> int:
    got = tier.promql(f'count({{job=~"{prefix}-.*"}})')
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
