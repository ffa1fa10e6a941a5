"""The scale tier of docs/scale.md, run as local processes: exact counts and no loss across restarts.

Topology (scripts/tier.py, the configs users deploy: collector/tier/*.yaml,
backends/thanos/hashring.json, docker-compose.yml's Thanos flags): 4 "hosts",
each a real job process exporting OTLP/gRPC to its own agent collector; agents
1 and 3 forward to gateway 1, agents 2 and 4 to gateway 2; gateways send traces
to Jaeger, log records to VictoriaLogs and metrics to Thanos Receive (3
receivers, hashring, replication factor 2), read back through Thanos Query.

What is compared. Each job process counts what its own OTLP exporters delivered
(the agent answered with success: spans, log records, metric data points) and
prints every run's summary. The backends must then hold exactly that: Thanos
Query's outcome and run totals equal the sums over the summaries, the number of
``job_outcomes_total`` samples equals the number of ``job.outcomes`` points
delivered (none lost, none doubled), Jaeger holds each delivered span once and
VictoriaLogs each delivered record. The processes run on free loopback ports
and own data directories: the shared stack is never touched.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from repo_scripts import load_script  # tests/stack, on the path from conftest

REPO_ROOT = Path(__file__).resolve().parents[2]
TIER_PY = REPO_ROOT / "scripts" / "tier.py"
WORKER_PY = REPO_ROOT / "scripts" / "tier_worker.py"
#: Backends are eventually consistent (queues drain with 1-5 s retry back-off).
SETTLE_S = 120.0


tier_module = load_script("joblogger_tier", TIER_PY)


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The whole tier started on free loopback ports; stopped (and its logs kept in tmp) after the module."""
    t = tier_module.Tier.create(tmp_path_factory.mktemp("tier"), hosts=4, gateways=2)
    try:
        t.start()
        yield t
    finally:
        t.stop()


class Host:
    """One job process of a "host": runs ``runs`` joblogger runs against its agent; read its report."""

    def __init__(self, service: str, endpoint: str, *, runs: int, items: int, sleep: float) -> None:
        cfg = {
            "service": service,
            "endpoint": endpoint,
            "job": "scale-tier",
            "runs": runs,
            "items": items,
            "sleep": sleep,
        }
        env = {
            # Metrics every second: many points per series go through the tier while it is disturbed.
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
        }
        self.service = service
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER_PY), json.dumps(cfg)],
            env={**_clean_env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def report(self, timeout: float = 180.0) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err[-3000:]
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        summaries = [x for x in lines if x["kind"] == "summary"]
        (exit_line,) = [x for x in lines if x["kind"] == "exit"]
        return {"summaries": summaries, "counts": exit_line, "stderr": err}


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def _expected(reports: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    results: dict[str, int] = {}
    for rep in reports:
        for s in rep["summaries"]:
            for key, n in s["outcomeSummary"].items():
                outcomes[key] = outcomes.get(key, 0) + int(n)
            results[s["result"]] = results.get(s["result"], 0) + 1
    counts = {k: sum(int(r["counts"].get(k, 0)) for r in reports) for k in ("spans_delivered", "logs_delivered")}
    counts["outcome_points"] = sum(int(r["counts"].get("outcome_points_delivered", 0)) for r in reports)
    return {"outcomes": outcomes, "results": results, **counts}


def _by_label(result: list[dict[str, Any]], label: str) -> dict[str, int]:
    return {r["metric"].get(label, ""): round(float(r["value"][1])) for r in result}


def _until_equal(get: Callable[[], Any], want: Any, what: str) -> None:
    """Poll ``get()`` until it equals ``want``; fail showing the last value seen."""
    deadline = time.monotonic() + SETTLE_S
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = get()
        except OSError as exc:
            last = exc
        if last == want:
            return
        time.sleep(1.0)
    pytest.fail(f"{what}: want {want!r}, last seen {last!r} after {SETTLE_S:.0f} s")


def _assert_backends_hold_exactly(tier: Any, services: list[str], expected: dict[str, Any]) -> None:
    """Thanos Query, Jaeger and VictoriaLogs hold exactly what the job processes delivered."""
    sel = 'job=~"' + "|".join(services) + '"'
    _until_equal(
        lambda: _by_label(tier.promql(f"sum by (job_outcome) (job_outcomes_total{{{sel}}})"), "job_outcome"),
        expected["outcomes"],
        "outcome totals in Thanos Query",
    )
    _until_equal(
        lambda: _by_label(tier.promql(f"sum by (job_result) (job_runs_total{{{sel}}})"), "job_result"),
        expected["results"],
        "run totals in Thanos Query",
    )
    # One sample per delivered point: none lost, none doubled (replicas deduplicated by Query).
    _until_equal(
        lambda: _by_label(tier.promql(f"sum(count_over_time(job_outcomes_total{{{sel}}}[2h]))"), "").get(""),
        expected["outcome_points"],
        "job_outcomes_total samples in Thanos Query",
    )
    # Each delivered span once in Jaeger, each delivered record once in VictoriaLogs.
    _until_equal(
        lambda: sorted(s for service in services for s in tier.jaeger_spans(service)).__len__(),
        expected["spans_delivered"],
        "spans in Jaeger",
    )
    found = [s for service in services for s in tier.jaeger_spans(service)]
    assert len(set(found)) == len(found), "a span is stored twice"
    _until_equal(
        lambda: sum(tier.log_count(service) for service in services),
        expected["logs_delivered"],
        "log records in VictoriaLogs",
    )


def test_exact_totals_through_the_tier_across_gateway_receiver_and_jaeger_restarts(tier: Any) -> None:
    """4 hosts x 6 runs; mid-run, Jaeger stops, gateway 1 restarts meanwhile, Jaeger starts, receiver 2 restarts."""
    prefix = f"tier-{uuid.uuid4().hex[:8]}"
    hosts = [
        Host(f"{prefix}-h{h + 1}", agent.otlp_grpc, runs=6, items=40, sleep=0.05) for h, agent in enumerate(tier.agents)
    ]
    time.sleep(3.0)
    # Each down for a moment while the hosts keep sending. Gateway 1 restarts while Jaeger is
    # down, with spans waiting in its queue: only a queue on disk carries them over its restart.
    tier.jaeger.stop()
    time.sleep(2.0)
    tier.gateways[0].restart(down_s=1.0)
    tier.jaeger.start()
    tier.receivers[1].restart(down_s=2.0)
    reports = [h.report() for h in hosts]
    assert all(h.proc.returncode == 0 for h in hosts)
    expected = _expected(reports)
    assert sum(expected["results"].values()) == 24 and expected["results"].get("failure", 0) > 0, expected
    assert all(rep["counts"].get(k, 0) == 0 for rep in reports for k in ("spans_failed", "logs_failed")), reports
    _assert_backends_hold_exactly(tier, [h.service for h in hosts], expected)


def test_agent_sigkill_loses_only_what_it_had_not_acknowledged(tier: Any) -> None:
    """The bound: a SIGKILLed agent keeps what it acknowledged (on disk); what jobs send while it is dead is lost.

    Gateway 2 is stopped first, so host 2's agent holds everything its job sends in
    its persistent queue. The agent is then killed with SIGKILL (no shutdown, no
    flush) and a second job runs while it is dead: that job's exports fail and its
    telemetry is lost (the SDK gives up after its retries). Gateway 2 and the agent
    come back (same queue directory): every acknowledged item arrives, exactly once.
    """
    agent, gateway = tier.agents[1], tier.gateways[1]
    prefix = f"kill-{uuid.uuid4().hex[:8]}"
    gateway.stop()
    acked = Host(f"{prefix}-acked", agent.otlp_grpc, runs=3, items=20, sleep=0.02).report()
    assert all(acked["counts"].get(k, 0) == 0 for k in ("spans_failed", "logs_failed")), acked["counts"]
    agent.stop(signal.SIGKILL)
    lost = Host(f"{prefix}-lost", agent.otlp_grpc, runs=1, items=10, sleep=0.0).report(timeout=240)
    assert lost["counts"].get("spans_delivered", 0) == 0 and lost["counts"].get("spans_failed", 0) > 0
    gateway.start()
    agent.start()
    _assert_backends_hold_exactly(tier, [f"{prefix}-acked"], _expected([acked]))
    # Nothing of the job that ran while the agent was dead exists anywhere.
    assert tier.jaeger_spans(f"{prefix}-lost") == []
    assert tier.log_count(f"{prefix}-lost") == 0
    assert tier.promql(f'job_outcomes_total{{job="{prefix}-lost"}}') == []


def test_benchmark_runs_end_to_end_on_tiny_sizes() -> None:
    """benchmarks/scale_tier.py runs on its own tier and prints every row (no figures asserted), so it cannot rot."""
    argv = [sys.executable, str(REPO_ROOT / "benchmarks" / "scale_tier.py")]
    argv += ["--processes", "1", "--threads", "2", "--runs", "2", "--items", "10", "--stages", "2"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=400, env=_clean_env(), check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "series per 1,000 concurrent runs:" in out
    for row in ("| 4 agents", "| 2 gateways", "| Jaeger", "| VictoriaLogs", "| Thanos Receive x3"):
        assert row in out, out
    assert "not complete" not in out, out
