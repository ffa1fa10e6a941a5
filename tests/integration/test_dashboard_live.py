"""Live: every query of the Grafana dashboard returns a real job's data from Prometheus and Jaeger.

A real ``joblogger demo`` process (errors and skips included) and a failed demo
run of the same service export to the stack; every dashboard query, with its
variables substituted as Grafana substitutes them, is sent to the API Grafana's
data source calls (Prometheus ``/api/v1/query``, ``/api/v1/query_range`` with
Grafana's step and range alignment, label values for variables; Jaeger
``/api/traces``) and must return that job's data. Queries that only have data
while a run is in progress (Active runs) are sampled while the job runs.
Exemplars must lead from Prometheus to the run's trace in Jaeger.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from live import eventually, get_json, jaeger_traces, job_env, tags_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stack"))
from dashboard_queries import (
    LOGS_DATASOURCE_TYPE,
    REPO_ROOT,
    DashboardQuery,
    dashboard_queries,
    iter_panels,
    load_dashboard,
)

JOB = "match-scores"
USERS = 1200  # 36 skipped users (3%), 2 errors
SPEED = 0.25  # about 25 s: long enough to sample the live panels
POST_RUN_TIMEOUT_S = 180.0
#: The demo runs declare a schedule, so the Schedule health panel has the job's row.
SCHEDULE = (
    "--schedule",
    "every 1h",
    "--max-runtime",
    "1h",
)  # 1-minute range steps and the 2-minute windows of Last result
DATASOURCES = REPO_ROOT / "dashboards" / "provisioning" / "datasources" / "datasources.yaml"


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    """Data sources of dashboards/provisioning by uid."""
    doc = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    return {ds["uid"]: ds for ds in doc["datasources"]}


def demo(stack: Any, service: str, run_id: str, *args: str) -> subprocess.Popen[str]:
    """Start `joblogger demo` as a real process exporting to the stack."""
    return subprocess.Popen(
        [sys.executable, "-m", "joblogger", "demo", "--run-id", run_id, "--no-console", "--json", *SCHEDULE, *args],
        env=job_env(stack, service),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def prom_instant(stack: Any, query: str) -> list[dict[str, Any]]:
    """Instant query, as a Grafana table panel sends it."""
    body = get_json(f"{stack.prometheus}/api/v1/query", {"query": query})
    assert body["status"] == "success", body
    return body["data"]["result"]


def step_seconds(query: DashboardQuery) -> int:
    """Grafana's range step over the default hour: the panel's minimum interval, else the data source's timeInterval."""
    intervals = {p["title"]: p.get("interval") for p in iter_panels(load_dashboard())}
    interval = intervals[query.title] or provisioned_datasources()[query.datasource_uid]["jsonData"]["timeInterval"]
    units = {"s": 1, "m": 60, "h": 3600}
    return int(interval[:-1]) * units[interval[-1]]


def prom_range(stack: Any, query: DashboardQuery) -> list[dict[str, Any]]:
    """Range query over the dashboard's default last hour, start and end rounded down to the step as Grafana does."""
    step = step_seconds(query)
    now = time.time()
    start, end = math.floor((now - 3600) / step) * step, math.floor(now / step) * step
    body = get_json(
        f"{stack.prometheus}/api/v1/query_range",
        {"query": query.query, "start": str(start), "end": str(end), "step": str(step)},
    )
    assert body["status"] == "success", body
    return body["data"]["result"]


def label_values(stack: Any, query: DashboardQuery) -> list[str]:
    """Values of a variable, from the API Grafana calls for it (series labels, or an instant query's result)."""
    label = query.variable_label
    if query.variable_kind == "query_result":
        return [s["metric"][label] for s in prom_instant(stack, query.query) if label in s["metric"]]
    now = time.time()
    body = get_json(
        f"{stack.prometheus}/api/v1/label/{label}/values",
        {"match[]": query.query, "start": str(now - 3600), "end": str(now)},
    )
    assert body["status"] == "success", body
    return body["data"]


def jaeger_query(stack: Any, query: DashboardQuery) -> list[dict[str, Any]]:
    """A dashboard Jaeger query with the time range parameters Grafana's Jaeger data source adds to searches."""
    url = f"{stack.jaeger}{query.query}"
    if query.query.startswith("/api/traces?"):
        now_us = int(time.time() * 1e6)
        extra = {"start": str(now_us - 3600 * 10**6), "end": str(now_us), "lookback": "custom"}
        url += "&" + urllib.parse.urlencode(extra)
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read()).get("data") or []


def logsql(stack: Any, query: str, limit: int) -> list[dict[str, Any]]:
    """Rows of a LogsQL query over the last hour, from the VictoriaLogs endpoint the Live log panel's plugin calls."""
    now = time.time()
    form = {"query": query, "limit": str(limit), "start": f"{now - 3600:.3f}", "end": f"{now:.3f}"}
    request = urllib.request.Request(f"{stack.logs}/select/logsql/query", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]


def run_span(trace: dict[str, Any]) -> dict[str, Any] | None:
    """The finished run span of a Jaeger trace (not a snapshot), if it is there."""
    return next(
        (s for s in trace["spans"] if s["operationName"] == JOB and not tags_of(s).get("job.snapshot.kind")),
        None,
    )


def run_trace_id(stack: Any, service: str, run_id: str) -> str:
    """Trace id of the run, once its finished run span is in Jaeger."""

    def probe() -> str | None:
        for trace in jaeger_traces(stack, service, {"job.run.id": run_id}):
            if run_span(trace) is not None:
                return str(trace["traceID"])
        return None

    return eventually(probe, f"the trace of run {run_id}")


def rows_for(result: list[dict[str, Any]], run_ids: set[str]) -> list[dict[str, Any]]:
    """Rows of a Prometheus result that belong to the test's job (and, where the row has a run id, its runs)."""
    return [
        r
        for r in result
        if r["metric"].get("job_name", JOB) == JOB and r["metric"].get("job_run_id", next(iter(run_ids))) in run_ids
    ]


@pytest.fixture(scope="module")
def live(stack: Any) -> dict[str, Any]:
    """A failed demo run, then a demo run sampled while it runs; both of one service, then their trace ids."""
    service = f"dash-live-{uuid.uuid4().hex[:8]}"
    run_id, failed_id = f"run-{uuid.uuid4().hex[:8]}", f"failed-{uuid.uuid4().hex[:8]}"
    started = time.time()
    failed = demo(stack, service, failed_id, "--users", "300", "--speed", "0", "--fail")
    _, stderr = failed.communicate(timeout=120)
    assert failed.returncode == 1, stderr
    # Typical duration (Active runs G, H) comes from the per-job minute sums (joblogger.jobs rules: every
    # minute, 30 s behind): the failed run is the job's history once they have recorded it.
    eventually(
        lambda: prom_instant(stack, f'job_name:job_runs_total:added_1m{{job="{service}", job_result="failure"}} > 0'),
        "the failed run in the per-job minute sums",
        timeout=150,
    )

    queries = dashboard_queries(service=service, job=JOB, run=run_id)
    table = [
        q for q in queries if q.datasource_type == "prometheus" and q.instant and not q.title.startswith("variable")
    ]
    samples: dict[tuple[str, str], list[list[dict[str, Any]]]] = {(q.title, q.ref_id): [] for q in table}
    proc = demo(stack, service, run_id, "--users", str(USERS), "--speed", str(SPEED))
    while proc.poll() is None:
        for q in table:
            samples[(q.title, q.ref_id)].append(rows_for(prom_instant(stack, q.query), {run_id}))
        time.sleep(1.0)
    stdout, stderr = proc.communicate()
    ended = time.time()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])

    active = [q for q in table if q.title == "Active runs"]

    def gone() -> float | None:
        return None if any(rows_for(prom_instant(stack, q.query), {run_id}) for q in active) else time.time() - ended

    left_after = eventually(gone, "the finished run leaving Active runs", timeout=60)
    return {
        "service": service,
        "run_id": run_id,
        "failed_id": failed_id,
        "started": started,
        "ended": ended,
        "summary": summary,
        "samples": samples,
        "left_active_after_s": left_after,
        "trace_id": run_trace_id(stack, service, run_id),
        "failed_trace_id": run_trace_id(stack, service, failed_id),
    }


def test_datasource_uids_match_provisioning() -> None:
    """Every data source the dashboard names (panels, targets, variables, links) is provisioned, same uid and type."""
    provisioned = provisioned_datasources()
    board = load_dashboard()
    refs: list[dict[str, Any]] = []
    for panel in iter_panels(board):
        refs += [panel["datasource"]] if panel.get("datasource") else []
        refs += [t["datasource"] for t in panel.get("targets", []) if t.get("datasource")]
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                for link in prop["value"] if prop["id"] == "links" else []:
                    if "internal" in link:
                        refs.append({"uid": link["internal"]["datasourceUid"], "type": None})
    refs += [v["datasource"] for v in board["templating"]["list"] if v.get("datasource")]
    refs += [a["datasource"] for a in board["annotations"]["list"] if a["datasource"]["uid"] != "-- Grafana --"]
    assert refs
    for ref in refs:
        assert ref["uid"] in provisioned, ref
        assert ref["type"] in (None, provisioned[ref["uid"]]["type"]), ref
    # the links between data sources (exemplars, traces to metrics and logs, derived fields) too
    links = [uid for ds in provisioned.values() for uid in nested_values(ds.get("jsonData", {}), "datasourceUid")]
    assert {"prometheus", "jaeger"} <= set(links) <= set(provisioned)


def nested_values(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a JSON-like structure."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in nested_values(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in nested_values(v, key)]
    return []


def test_every_dashboard_query_returns_the_runs_data(stack: Any, live: dict[str, Any]) -> None:
    """Each dashboard query, variables substituted with the run's values, returns data of that job from its backend."""
    service, run_id = live["service"], live["run_id"]
    queries = dashboard_queries(service=service, job=JOB, run=run_id, trace_id=live["trace_id"])
    own_traces = {live["trace_id"], live["failed_trace_id"]}
    expected_variable = {"service": service, "job": JOB, "run": run_id}

    def has_data(q: DashboardQuery) -> bool:
        if q.datasource_type == "jaeger":
            return bool({t["traceID"] for t in jaeger_query(stack, q)} & own_traces)
        if q.datasource_type == LOGS_DATASOURCE_TYPE:
            return any(r.get("job.run.id") == run_id for r in logsql(stack, q.query, q.max_lines or 1000))
        assert q.datasource_type == "prometheus", f"{q.title}: no live check for data source type {q.datasource_type}"
        if q.title.startswith("variable"):
            return expected_variable[q.ref_id] in label_values(stack, q)
        if q.instant:
            if any(live["samples"].get((q.title, q.ref_id), [])):
                return True  # had the run's rows while it ran
            return bool(rows_for(prom_instant(stack, q.query), {run_id, live["failed_id"]}))
        series = rows_for(prom_range(stack, q), {run_id})
        return any(not math.isnan(float(v)) and float(v) > 0 for s in series for _, v in s["values"])

    # The interrupted-runs panel lists only runs whose process died; these runs ended normally, so it
    # must not list them (test_alerts_live.py checks that it lists a SIGKILLed run).
    interrupted = [q for q in queries if q.title.startswith("Interrupted runs")]
    assert len(interrupted) == 1
    assert not rows_for(prom_instant(stack, interrupted[0].query), {run_id, live["failed_id"]})
    pending = [q for q in queries if q not in interrupted]
    deadline = time.monotonic() + POST_RUN_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        pending = [q for q in pending if not has_data(q)]
        if pending:
            time.sleep(2)
    assert not pending, [(q.title, q.ref_id, q.query) for q in pending]
    assert {"prometheus", "jaeger", LOGS_DATASOURCE_TYPE} <= {q.datasource_type for q in queries}
    assert len(queries) >= 20


def test_active_runs_table_follows_the_live_run(live: dict[str, Any]) -> None:
    """While the job runs, Active runs has one row (the current stage) with sane values; it leaves when the run ends."""
    samples = live["samples"]
    cols = {ref: samples[("Active runs", ref)] for ref in "ABCDEF"}
    count = len(cols["A"])
    assert count >= 10, "too few samples while the job ran"
    full = 0
    for i in range(count):
        stages = {r["metric"]["job_stage"] for ref in cols for r in cols[ref][i]}
        assert len(stages) <= 1, f"sample {i}: more than one stage row for one run: {stages}"
        if stages == {"Scoring users"} and all(cols[ref][i] for ref in cols):
            full += 1
            val = {ref: float(cols[ref][i][0]["value"][1]) for ref in cols}
            assert 0 <= val["A"] <= 1 and val["B"] <= val["C"] == USERS
            assert val["D"] > 0 and val["E"] >= 0 and 0 < val["F"] < 120
    assert full >= count // 2, f"only {full} of {count} samples had every column"
    progress = [float(c[0]["value"][1]) for c in cols["B"] if c and c[0]["metric"]["job_stage"] == "Scoring users"]
    assert progress == sorted(progress) and len(set(progress)) >= 5
    assert live["left_active_after_s"] < 10  # the final export says job_runs_active 0


def test_time_series_panels_count_the_runs(stack: Any, live: dict[str, Any]) -> None:
    """Outcome, log, result and duration panels show the job's keys, levels and both runs (1 success, 1 failure)."""
    queries = dashboard_queries(service=live["service"], job=JOB, run=live["run_id"])
    ranged = {(q.title, q.ref_id): q for q in queries if q.datasource_type == "prometheus" and not q.instant}

    def totals(title: str, label: str) -> dict[str, float]:
        series = rows_for(prom_range(stack, ranged[(title, "A")]), {live["run_id"]})
        return {s["metric"][label]: sum(float(v) for _, v in s["values"]) for s in series}

    def complete() -> dict[str, dict[str, float]] | None:
        found = {
            "outcomes": totals("Outcomes per job and key", "job_outcome"),
            "logs": totals("Warning and error logs", "job_log_level"),
            "results": totals("Finished runs by result", "job_result"),
        }
        return found if found["results"].get("success") else None

    found = eventually(complete, "the finished run in the time-series panels", timeout=POST_RUN_TIMEOUT_S)
    outcomes = live["summary"]["outcomeSummary"]
    assert found["results"] == {"success": 1, "failure": 1}
    assert set(found["outcomes"]) == {"updates", "skipped", "errors"}
    assert found["outcomes"]["errors"] >= outcomes["errors"] and found["outcomes"]["skipped"] >= outcomes["skipped"]
    assert set(found["logs"]) == {"warning", "error"}
    for ref in "ABC":
        series = prom_range(stack, ranged[("Run duration (p50, p95, p99)", ref)])
        values = [float(v) for s in series for _, v in s["values"] if not math.isnan(float(v))]
        assert values and all(v > 0 for v in values), ref


def test_jaeger_panels_return_the_runs(stack: Any, live: dict[str, Any]) -> None:
    """Recent runs lists both runs, Failed runs only the failed one, and Run detail the whole run trace."""
    queries = {
        q.title: q
        for q in dashboard_queries(service=live["service"], job=JOB, trace_id=live["trace_id"])
        if q.datasource_type == "jaeger"
    }
    recent = jaeger_query(stack, queries[f"Recent runs: {JOB}"])
    assert {t["traceID"] for t in recent} == {live["trace_id"], live["failed_trace_id"]}
    failed = jaeger_query(stack, queries[f"Failed runs: {JOB}"])
    assert [t["traceID"] for t in failed] == [live["failed_trace_id"]]
    span = run_span(failed[0])
    assert span is not None and tags_of(span)["job.result"] == "failure"
    (detail,) = jaeger_query(stack, queries[f"Run detail: trace {live['trace_id']}"])
    run = run_span(detail)
    assert run is not None and tags_of(run)["job.run.id"] == live["run_id"]
    assert tags_of(run)["job.outcomes.errors"] == live["summary"]["outcomeSummary"]["errors"]
    stages = {s["operationName"] for s in detail["spans"] if not tags_of(s).get("job.snapshot.kind")} - {JOB}
    assert stages == {"Initializing", "Fetching users", "Scoring users", "Finalizing"}


def exemplars(stack: Any, query: str, since: float) -> list[dict[str, Any]]:
    """Exemplars Prometheus returns for ``query`` since ``since`` (flattened over series)."""
    body = get_json(
        f"{stack.prometheus}/api/v1/query_exemplars",
        {"query": query, "start": str(since - 60), "end": str(time.time() + 60)},
    )
    assert body["status"] == "success", body
    return [{**e, "series": s["seriesLabels"]} for s in body["data"] for e in s["exemplars"]]


def test_exemplars_open_the_runs_trace(stack: Any, live: dict[str, Any]) -> None:
    """Exemplars of run counts and durations carry the run's trace id, which Jaeger returns with that run span."""
    sel = f'job="{live["service"]}", job_name="{JOB}"'
    label = provisioned_datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"][0]["name"]
    expected = {"success": live["trace_id"], "failure": live["failed_trace_id"]}
    runs = {"success": live["run_id"], "failure": live["failed_id"]}
    for metric in ("job_runs_total", "job_run_duration_seconds_bucket"):
        found = eventually(lambda m=metric: exemplars(stack, f"{m}{{{sel}}}", live["started"]), f"{metric} exemplars")
        by_result = {e["series"]["job_result"]: e["labels"][label] for e in found}
        assert by_result == expected, metric
    for result, trace_id in expected.items():
        (trace,) = get_json(f"{stack.jaeger}/api/traces/{trace_id}")["data"]
        span = run_span(trace)
        assert span is not None and tags_of(span)["job.run.id"] == runs[result]
        assert tags_of(span)["job.result"] == result

    # The panels that ask for exemplars get them through their own expressions (as Grafana asks).
    board_targets = {
        (p["title"], t["refId"])
        for p in iter_panels(load_dashboard())
        for t in p.get("targets", [])
        if t.get("exemplar")
    }
    queries = dashboard_queries(service=live["service"], job=JOB, run=live["run_id"])
    for q in queries:
        if (q.title, q.ref_id) in board_targets:
            assert {e["labels"][label] for e in exemplars(stack, q.query, live["started"])} == set(expected.values())

    # Error outcomes: each run's errors carry that run's trace (the main run has 2, the failed run 1).
    errors = exemplars(stack, f'job_outcomes_total{{{sel}, job_outcome="errors"}}', live["started"])
    assert {e["labels"][label] for e in errors} == set(expected.values())
    assert all(len(e["labels"]["span_id"]) == 16 for e in errors)
