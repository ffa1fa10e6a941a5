"""Offline checks of the Grafana dashboard and its provisioning against joblogger.semconv."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_queries import (
    DASHBOARD_PATH,
    LOGS_DATASOURCE_TYPE,
    REPO_ROOT,
    dashboard_queries,
    iter_panels,
    load_dashboard,
)
from promql_names import promql_names
from semconv_names import ATTRIBUTE_KEYS, LABELS, METRICS

from joblogger import semconv

#: Prometheus' own series of the rules' alerts, and their labels (`severity` is the rules' own label).
ALERT_SERIES = {"ALERTS", "ALERTS_FOR_STATE"}
ALERT_LABELS = {"alertname", "alertstate", "severity"}

#: Recording rules of backends/prometheus/alerts.yml, which dashboard queries may use too.
RECORDED = {
    str(rule["record"])
    for group in yaml.safe_load((Path(__file__).resolve().parents[2] / "backends/prometheus/alerts.yml").read_text())[
        "groups"
    ]
    for rule in group["rules"]
    if "record" in rule
}

PROVISIONING = REPO_ROOT / "dashboards" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "datasources.yaml"
PROVIDERS = PROVISIONING / "dashboards" / "dashboards.yaml"

#: Variable choices the queries must stay valid for: All, one plain value, and values
#: with regex and quoting characters (Grafana escapes them for Prometheus).
VARIABLE_CHOICES: list[dict[str, Any]] = [
    {"service": "joblogger", "job": None, "run": None, "trace_id": ""},
    {
        "service": "billing",
        "job": ["import"],
        "run": ["7f3c2a"],
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "parent_run": "9e107d9d372bb6826bd81d3542a419d6",
    },
    {"service": "svc.a\\b", "job": ["db.sync", "a|b (x)", "it's"], "run": ["r+1", "r[2]"], "trace_id": "abc"},
]


def _datasources() -> list[dict[str, Any]]:
    doc = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    return list(doc["datasources"])


def _provisioned_uids() -> dict[str, str]:
    return {ds["uid"]: ds["type"] for ds in _datasources()}


def _unescape_provisioning(value: str) -> str:
    """Undo Grafana's `$$` escape of provisioning files."""
    return value.replace("$$", "$")


def _all_queries() -> list[Any]:
    return [q for choice in VARIABLE_CHOICES for q in dashboard_queries(**choice)]


def test_dashboard_identity() -> None:
    """uid, title, schema version, refresh and default time range are as documented."""
    board = load_dashboard()
    assert board["uid"] == "joblogger-jobs"
    assert board["title"] == "joblogger: jobs"
    assert 39 <= board["schemaVersion"] <= 41
    assert board["refresh"] == "5s"
    assert board["time"] == {"from": "now-1h", "to": "now"}
    assert board.get("id") is None


def test_dashboard_variables() -> None:
    """service, job, run, level, trace_id and parent_run exist; job and run allow several values and All."""
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert set(variables) == {"service", "job", "run", "level", "trace_id", "parent_run"}
    assert variables["trace_id"]["type"] == "textbox"
    assert variables["parent_run"]["type"] == "textbox"
    for name in ("job", "run"):
        assert variables[name]["multi"] and variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    for name in ("service", "job"):
        query = variables[name]["query"]["query"]
        label = re.fullmatch(r"label_values\((.+),\s*(\w+)\s*\)", query)
        assert label is not None, query
        assert label.group(2) in LABELS
    # run lists the runs that reported lately, not every run id of the time range (10,000 over a day).
    (run,) = [q for q in dashboard_queries(service="billing") if q.ref_id == "run"]
    assert (run.variable_kind, run.variable_label) == ("query_result", "job_run_id")


def test_panel_ids_unique_and_grid_not_overlapping() -> None:
    """Panel ids are unique and no two panels share grid cells."""
    dashboard = load_dashboard()
    panels = list(iter_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    # Panels of a collapsed row keep where they go when it opens (Grafana moves what follows down).
    collapsed = [p for row in dashboard["panels"] if row.get("collapsed") for p in row.get("panels", [])]
    cells: dict[tuple[int, int], str] = {}
    for p in [p for p in panels if p not in collapsed]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_expected_panels() -> None:
    """The dashboard has the documented panels with the right visualisations."""
    by_title = {p["title"]: p for p in iter_panels(load_dashboard())}
    expected = {
        "Active runs": "table",
        "Throughput per job": "timeseries",
        "Outcomes per job and key": "timeseries",
        "Warning and error logs": "timeseries",
        "Finished runs by result": "timeseries",
        "Run duration (p50, p95, p99)": "timeseries",
        "Last result per job (24 h)": "table",
        "Run detail: trace $trace_id": "traces",
        "Recent runs: $job": "table",
        "Failed runs: $job": "table",
        "Live log": "logs",
        "Interrupted runs (process stopped reporting)": "table",
        "Schedule health": "table",
        "Rolled-up progress of the parent run": "timeseries",
        "Traces with child runs of $parent_run": "table",
        "Failed child runs of $parent_run": "table",
    }
    assert {t: by_title[t]["type"] for t in expected if t in by_title} == expected


def test_active_runs_table() -> None:
    """Active runs merges its per-gauge queries and shows progress as a percent bar gauge."""
    panel = next(p for p in iter_panels(load_dashboard()) if p["title"] == "Active runs")
    assert panel["transformations"][0]["id"] == "merge"
    for target in panel["targets"]:
        assert target["instant"] and target["format"] == "table"
        assert "time() - timestamp(" in target["expr"], "gauges need the freshness filter"
    progress = next(o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Progress")
    props = {p["id"]: p["value"] for p in progress["properties"]}
    assert props["unit"] == "percentunit" and props["min"] == 0 and props["max"] == 1
    assert props["custom.cellOptions"]["type"] == "gauge"


def test_exemplars_enabled_on_counters_and_histograms() -> None:
    """Outcome and run panels ask Prometheus for exemplars (through a raw-series term that adds nothing)."""
    by_title = {p["title"]: p for p in iter_panels(load_dashboard())}
    for title in ("Outcomes per job and key", "Finished runs by result"):
        assert any(t.get("exemplar") for t in by_title[title]["targets"]), title
    # the duration quantiles read recorded series only (no exemplars; the raw buckets cost seconds)
    assert not any(t.get("exemplar") for t in by_title["Run duration (p50, p95, p99)"]["targets"])


def test_datasources_provisioned() -> None:
    """Provisioning defines Prometheus and Jaeger with fixed uids, exemplar and metrics links."""
    sources = {ds["uid"]: ds for ds in _datasources()}
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "jaeger"}
    ]
    assert sources["jaeger"]["type"] == "jaeger"
    assert sources["jaeger"]["url"] == "http://jaeger:16686"
    t2m = sources["jaeger"]["jsonData"]["tracesToMetrics"]
    assert t2m["datasourceUid"] == "prometheus"
    assert {"key": "job.name", "value": "job_name"} in t2m["tags"]
    assert sources["jaeger"]["jsonData"]["nodeGraph"]["enabled"] is True
    assert "loki" not in DATASOURCES.read_text(encoding="utf-8").lower(), "Loki is not part of this stack"


def test_level_variable_excludes_debug_by_default() -> None:
    """The Log levels variable offers joblogger's levels, several at once, with debug off by default."""
    level = next(v for v in load_dashboard()["templating"]["list"] if v["name"] == "level")
    assert level["type"] == "custom" and level["multi"] and not level.get("includeAll")
    assert level["query"].split(",") == list(semconv.LEVELS)
    assert [o["value"] for o in level["options"]] == list(semconv.LEVELS)
    assert level["current"]["value"] == [lv for lv in semconv.LEVELS if lv != semconv.LEVEL_DEBUG]
    assert [o["value"] for o in level["options"] if o["selected"]] == level["current"]["value"]


def test_live_log_panel() -> None:
    """Live log reads raw lines from VictoriaLogs in the plugin's query model, newest first, for $job and $run."""
    panel = next(p for p in iter_panels(load_dashboard()) if p["title"] == "Live log")
    assert panel["datasource"] == {"type": LOGS_DATASOURCE_TYPE, "uid": "victorialogs"}
    assert panel["options"]["sortOrder"] == "Descending"
    assert panel["options"]["showTime"] and panel["options"]["enableLogDetails"]
    (target,) = panel["targets"]
    assert target["queryType"] == "instant" and target["editorMode"] == "code" and target["direction"] == "desc"
    assert target["maxLines"] >= 100
    expr = target["expr"]
    for variable in ("${service:regex}", "${job:regex}", "${run:regex}", "${level:doublequote}"):
        assert variable in expr
    assert expr.endswith("| sort by (_time) desc")


def test_logsql_fields_come_from_semconv() -> None:
    """Every field a LogsQL query filters on is a joblogger attribute or service.name."""
    logsql = [q.query for q in _all_queries() if q.datasource_type == LOGS_DATASOURCE_TYPE]
    assert logsql
    for query in logsql:
        fields = set(re.findall(r"([A-Za-z_][\w.]*):(?:~|=|in\()", re.split(r" \| ", query)[0]))
        assert fields, query
        assert fields <= ATTRIBUTE_KEYS | {"service.name"}, fields - ATTRIBUTE_KEYS
        assert semconv.JOB_RUN_ID in fields and semconv.JOB_NAME in fields and semconv.JOB_LOG_LEVEL in fields


def test_logsql_variables_substituted_as_grafana_does() -> None:
    """Regex and quoting characters in job and run values reach LogsQL escaped; All and several values work."""
    queries = dashboard_queries(service="svc.a\\b", job=["db.sync", "a|b (x)", "it's"], run=["r+1", "r[2]"])
    (expr,) = [q.query for q in queries if q.datasource_type == LOGS_DATASOURCE_TYPE]
    assert "service.name:~`^svc\\.a\\\\b$`" in expr
    assert "job.name:~`^(db\\.sync|a\\|b \\(x\\)|it's)$`" in expr
    assert "job.run.id:~`^(r\\+1|r\\[2\\])$`" in expr
    assert 'job.log.level:in("info","milestone","warning","error")' in expr
    (every,) = [q.query for q in dashboard_queries(job=None, run=None) if q.datasource_type == LOGS_DATASOURCE_TYPE]
    assert "job.name:~`^.*$` AND job.run.id:~`^.*$`" in every


def test_victorialogs_datasource_links_and_levels() -> None:
    """VictoriaLogs links trace_id to Jaeger, Jaeger links spans back, and job.log.level sets the level colours."""
    sources = {ds["uid"]: ds for ds in _datasources()}
    logs = sources["victorialogs"]
    assert logs["type"] == LOGS_DATASOURCE_TYPE
    assert logs["url"] == "http://victorialogs:9428"
    (derived,) = logs["jsonData"]["derivedFields"]
    assert derived["matcherType"] == "label" and derived["matcherRegex"] == "trace_id"
    assert derived["datasourceUid"] == "jaeger"
    assert _unescape_provisioning(derived["url"]) == "${__value.raw}"
    rules = {r["value"]: r["level"] for r in logs["jsonData"]["logLevelRules"]}
    for rule in logs["jsonData"]["logLevelRules"]:
        assert rule["field"] == semconv.JOB_LOG_LEVEL and rule["operator"] == "equals" and rule["enabled"]
    assert rules == {"debug": "debug", "info": "info", "milestone": "info", "warning": "warning", "error": "error"}
    assert set(rules) == set(semconv.LEVELS)
    t2l = sources["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert t2l["datasourceUid"] == "victorialogs"
    assert t2l["customQuery"] is True
    assert _unescape_provisioning(t2l["query"]) == 'trace_id:="${__span.traceId}"'


def test_dashboard_provider() -> None:
    """The file provider loads dashboards from /var/lib/grafana/dashboards."""
    doc = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_datasource_reference_is_provisioned() -> None:
    """Every panel, target and variable data source is a provisioned uid of the same type."""
    uids = _provisioned_uids()
    board = load_dashboard()
    refs = [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
    for panel in iter_panels(board):
        if panel.get("type") == "row":
            continue
        refs.append(panel["datasource"])
        refs += [t["datasource"] for t in panel.get("targets", [])]
    for ref in refs:
        assert uids.get(ref["uid"]) == ref["type"], ref


def test_promql_names_come_from_semconv() -> None:
    """Every metric and label in every PromQL query (and link query) is a semconv name."""
    exprs = [q.query for q in _all_queries() if q.datasource_type == "prometheus"]
    for ds in _datasources():
        for query in ds.get("jsonData", {}).get("tracesToMetrics", {}).get("queries", []):
            exprs.append(_unescape_provisioning(query["query"]).replace("$__tags", 'job_name="import"'))
    problems = []
    for expr in exprs:
        names = promql_names(expr)
        problems += [f"metric {m} in {expr}" for m in names.metrics - METRICS - RECORDED - ALERT_SERIES]
        problems += [f"label {lbl} in {expr}" for lbl in names.labels - LABELS - ALERT_LABELS]
        problems += [f"function {f} in {expr}" for f in names.unknown_functions]
    assert problems == []


def test_promql_is_valid_after_substitution(promtool: str, tmp_path: Path) -> None:
    """promtool parses every PromQL query for every variable choice (via a generated rule file)."""
    rules = [
        {"record": f"dashboard:query:{i}", "expr": q.query}
        for i, q in enumerate(_all_queries())
        if q.datasource_type == "prometheus"
    ]
    for ds in _datasources():
        for query in ds.get("jsonData", {}).get("tracesToMetrics", {}).get("queries", []):
            expr = _unescape_provisioning(query["query"]).replace("$__tags", 'job_name="import"')
            rules.append({"record": f"dashboard:link:{len(rules)}", "expr": expr})
    path = tmp_path / "dashboard_queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_regex_variables_escaped() -> None:
    """Values with regex and quote characters reach PromQL escaped the way Grafana escapes them."""
    queries = dashboard_queries(service="billing", job=["db.sync", "a|b"], run=None)
    expr = next(q.query for q in queries if q.title == "Throughput per job")
    assert 'job_name=~"(db\\\\.sync|a\\\\|b)"' in expr
    assert 'job="billing"' in expr


def test_jaeger_queries_use_semconv_tags() -> None:
    """Jaeger searches filter on the job's service and run span name, and on semconv tag keys."""
    board = load_dashboard()
    searches = [
        t for p in iter_panels(board) for t in p.get("targets", []) if t.get("datasource", {}).get("type") == "jaeger"
    ]
    assert searches
    for target in searches:
        if target.get("queryType") != "search":
            assert target["query"] == "$trace_id"
            continue
        assert target["service"] == "$service"
        if "job.parent.run.id=$parent_run" in target.get("tags", ""):
            assert "operation" not in target  # children of a run, whatever their job
        else:
            assert target["operation"] == "$job"  # the run span is named after the job
        for pair in target.get("tags", "").split():
            key, _, _value = pair.partition("=")
            assert key in ATTRIBUTE_KEYS, key


def test_repeated_trace_panels_queried_per_job() -> None:
    """The per-job trace tables yield one Jaeger search per selected job."""
    queries = dashboard_queries(service="billing", job=["import", "export"], trace_id="abc")
    searches = [q.query for q in queries if q.query.startswith("/api/traces?") and "operation=" in q.query]
    assert len(searches) == 4
    assert any("operation=export" in s and "job.result" in s for s in searches)
    assert "/api/traces/abc" in [q.query for q in queries]


@pytest.mark.parametrize("path", [DASHBOARD_PATH])
def test_dashboard_json_is_canonical(path: Path) -> None:
    """The dashboard file is plain UTF-8 JSON ending with a newline (diff-friendly)."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    json.loads(text)


def test_queries_evaluate_as_intended(promtool: str, tmp_path: Path) -> None:
    """On synthetic series, promtool computes the intended active-run rows, last result and run counts."""
    queries = {(q.title, q.ref_id): q.query for q in dashboard_queries(service="billing", job=["import"])}
    p1 = 'job="billing", instance="p1", job_name="import"'
    p3 = 'job="billing", instance="p3", job_name="import"'
    p4 = 'job="billing", instance="p4", job_name="import"'
    run = 'job_run_id="r1", job_stage="load", job_entity_type="row"'
    p5 = 'job="billing", instance="p5", job_name="import"'
    row = '{instance="p1", job_name="import", job_run_id="r1", job_stage="load"}'
    row3 = '{instance="p3", job_name="import", job_run_id="r3", job_stage="load"}'
    # Runs whose gauges carry no run id (drop-in mode): one row per process and slot, never merged.
    slot0 = '{instance="p5", job_name="import", job_run_slot="0", job_stage="load"}'
    slot1 = '{instance="p5", job_name="import", job_run_slot="1", job_stage="load"}'
    case = {
        "interval": "10s",
        "input_series": [
            # r1 starts at 60s and advances 1 entity/s; r0 stopped reporting at 30s (finished)
            {"series": f"job_progress_current{{{p1}, {run}}}", "values": "_x6 0+10x20"},
            {"series": f"job_progress_ratio{{{p1}, {run}}}", "values": "_x6 0+0.0625x15"},
            {"series": f'job_progress_current{{{p1}, job_run_id="r0", job_stage="load"}}', "values": "0+1x3"},
            {"series": f"job_runs_active{{{p1}}}", "values": "1x30"},
            # r3 moved from stage extract to load at 170s: the finished stage's gauge lingers
            # (remote write sends no staleness) but only the current stage is a row
            {"series": f'job_progress_current{{{p3}, job_run_id="r3", job_stage="extract"}}', "values": "_x10 5+5x6"},
            {"series": f'job_progress_current{{{p3}, job_run_id="r3", job_stage="load"}}', "values": "_x17 0+2x10"},
            {"series": f"job_runs_active{{{p3}}}", "values": "_x10 1x20"},
            # r4's process ended its run at 170s (job_runs_active 0): gone at once, not 30 s later
            {"series": f'job_progress_current{{{p4}, job_run_id="r4", job_stage="load"}}', "values": "_x10 0+1x7"},
            {"series": f"job_runs_active{{{p4}}}", "values": "_x10 1x6 0"},
            # p5: two runs of the same job at once, without run ids, in slots 0 and 1
            {"series": f'job_progress_current{{{p5}, job_run_slot="0", job_stage="load"}}', "values": "0+1x30"},
            {"series": f'job_progress_ratio{{{p5}, job_run_slot="0", job_stage="load"}}', "values": "0.5x30"},
            {"series": f'job_progress_current{{{p5}, job_run_slot="1", job_stage="load"}}', "values": "0+2x30"},
            {"series": f'job_progress_ratio{{{p5}, job_run_slot="1", job_stage="load"}}', "values": "0.25x30"},
            {"series": f"job_runs_active{{{p5}}}", "values": "2x30"},
            # four earlier runs of 30-300 s: typical (p50) duration 165 s (the day's per-job sums, as the
            # joblogger.jobs rules record them every minute)
            *(
                {"series": f"job_name_le:job_run_duration_seconds_bucket:added_1d_sliding{{{job}, {le}}}", "values": v}
                for job, le, v in (
                    ('job="billing", job_name="import", job_result="success"', 'le="30"', "0x20"),
                    ('job="billing", job_name="import", job_result="success"', 'le="300"', "4x20"),
                    ('job="billing", job_name="import", job_result="success"', 'le="+Inf"', "4x20"),
                )
            ),
        ],
        "promql_expr_test": [
            {
                "expr": queries[("Active runs", "A")],
                "eval_time": "3m",
                "exp_samples": [
                    {"labels": row, "value": 0.75},
                    {"labels": slot0, "value": 0.5},
                    {"labels": slot1, "value": 0.25},
                ],
            },
            {
                "expr": queries[("Active runs", "B")],
                "eval_time": "3m",
                "exp_samples": [
                    {"labels": row, "value": 120},
                    {"labels": row3, "value": 2},
                    {"labels": slot0, "value": 18},
                    {"labels": slot1, "value": 36},
                ],
            },
            {
                "expr": queries[("Active runs", "D")],
                "eval_time": "3m",
                "exp_samples": [
                    {"labels": row, "value": 1},
                    {"labels": row3, "value": 0.2},
                    {"labels": slot0, "value": 0.1},
                    {"labels": slot1, "value": 0.2},
                ],
            },
            {
                "expr": queries[("Active runs", "F")],
                "eval_time": "3m",
                # r3 began at 100s (stage extract): its start is the run's, kept by the recording rule
                # (evaluated every 10 s here) across its move to stage load
                "exp_samples": [
                    {"labels": row, "value": 120},
                    {"labels": row3, "value": 80},
                    {"labels": slot0, "value": 180},
                    {"labels": slot1, "value": 180},
                ],
            },
            {
                "expr": queries[("Active runs", "G")],
                "eval_time": "3m",
                "exp_samples": [{"labels": lbl, "value": 165} for lbl in (row, row3, slot0, slot1)],
            },
            {
                # typical left = p50 - running time, never below 0
                "expr": queries[("Active runs", "H")],
                "eval_time": "3m",
                "exp_samples": [
                    {"labels": row, "value": 45},
                    {"labels": row3, "value": 85},
                    {"labels": slot0, "value": 0},
                    {"labels": slot1, "value": 0},
                ],
            },
            {
                # the run variable: runs that reported in the last 2 minutes (r4 just ended), not r0 (ended
                # at 30s) nor the drop-in slots (no run id to pick)
                "expr": queries[("variable run (label job_run_id)", "run")],
                "eval_time": "3m",
                "exp_samples": [
                    {"labels": '{job_run_id="r1"}', "value": 120},
                    {"labels": '{job_run_id="r3"}', "value": 35},
                    {"labels": '{job_run_id="r4"}', "value": 7},
                ],
            },
        ],
    }
    # The run-start recording rule the running-time columns read, evaluated like Prometheus does.
    _promtool_case(promtool, tmp_path, "joblogger.runs.start", "10s", case)
    # The per-job minute sums, from a worker and a one-sample process exporting every 60 s (the SDK's default),
    # evaluated at the rules' own 1m interval (promtool evaluates every group at the file's interval).
    sums = {
        "interval": "1m",
        "input_series": [
            # a success from a worker at 60s (then exported unchanged), a failure from a one-sample process at 180s
            {"series": f'job_runs_total{{{p1}, job_result="success"}}', "values": "_ 1x10"},
            {
                "series": 'job_runs_total{job="billing", instance="p2", job_name="import", job_result="failure"}',
                "values": "_x3 1",
            },
            # the worker processes 60 entities and logs 2 warnings a minute, exported once a minute
            {"series": f'job_entities_processed_total{{{p1}, job_entity_type="row"}}', "values": "0+60x10"},
            {"series": f'job_logs_total{{{p1}, job_log_level="warning"}}', "values": "0+2x10"},
        ],
        "promql_expr_test": [
            {
                # 1 entity/s, although a 1 m rate window never holds two 60 s-spaced samples
                "expr": queries[("Throughput per job", "A")],
                "eval_time": "5m",
                "exp_samples": [{"labels": '{job_name="import"}', "value": 1}],
            },
            {
                # one bar per minute of what the worker logged in it
                "expr": queries[("Warning and error logs", "A")],
                "eval_time": "5m",
                "exp_samples": [{"labels": '{job_name="import", job_log_level="warning"}', "value": 2}],
            },
            {
                # the failure (at 180s) is in the minute the per-job rule records at 210s (every minute,
                # 30 s behind); the success (60s) in the one recorded at 90s
                "expr": queries[("Last result per job (24 h)", "A")],
                "eval_time": "4m",
                "exp_samples": [{"labels": '{job_name="import", job_result="failure"}', "value": 210000}],
            },
            {
                "expr": queries[("Finished runs by result", "A")],
                "eval_time": "4m",
                "exp_samples": [
                    {"labels": '{job_name="import", job_result="failure"}', "value": 1},
                    {"labels": '{job_name="import", job_result="success"}', "value": 0},
                ],
            },
            {
                "expr": queries[("Finished runs by result", "A")].replace("[1m]", "[5m]"),
                "eval_time": "5m",
                "exp_samples": [
                    {"labels": '{job_name="import", job_result="failure"}', "value": 1},
                    {"labels": '{job_name="import", job_result="success"}', "value": 1},
                ],
            },
        ],
    }
    _promtool_case(promtool, tmp_path, "joblogger.jobs", "1m", sums)


def _promtool_case(promtool: str, tmp_path: Path, group: str, interval: str, case: dict[str, Any]) -> None:
    """Run one promtool unit test ``case`` with the rule ``group`` of alerts.yml evaluated every ``interval``."""
    rules = yaml.safe_load((REPO_ROOT / "backends/prometheus/alerts.yml").read_text(encoding="utf-8"))
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump({"groups": [g for g in rules["groups"] if g["name"] == group]}), encoding="utf-8"
    )
    path = tmp_path / "dashboard_queries.test.yml"
    test_file = {"rule_files": ["rules.yml"], "evaluation_interval": interval, "tests": [case]}
    path.write_text(yaml.safe_dump(test_file, width=10_000), encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_last_result_colours_every_result() -> None:
    """The "Last result per job" table maps a colour for each job.result value of semconv.RESULTS."""
    board = load_dashboard()
    panel = next(p for p in iter_panels(board) if p.get("title") == "Last result per job (24 h)")
    override = next(o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Result")
    [mappings] = [prop["value"] for prop in override["properties"] if prop["id"] == "mappings"]
    mapped = {value for mapping in mappings for value in mapping["options"]}
    assert mapped == set(semconv.RESULTS)


def test_schedule_health_evaluates_as_intended(promtool: str, tmp_path: Path) -> None:
    """On synthetic recorded schedule series, Schedule health gives each job its times, state and typical duration."""
    queries = {(q.title, q.ref_id): q.query for q in dashboard_queries(service="billing", job=None)}
    series = []
    # At minute 12 (720 s): "ok" ran at minute 10 and is next due at minute 20; "late" was due at minute 10
    # (grace 60 s); "failing" (every 60 s, grace 10 s) last succeeded at 60 s, more than 3 x 60 + 10 s ago;
    # "busy" has a run active.
    for job, success, nxt, interval, grace in (
        ("ok", 660, 1200, 600, 60),
        ("late", 60, 600, 600, 60),
        ("failing", 60, 780, 60, 10),
        ("busy", 600, 1200, 600, 60),
    ):
        for name, value in (
            ("last_start_seconds:max", 600),
            ("first_start_seconds:min", 60),
            ("last_success_seconds:max", success),
            ("next_expected_seconds:latest", nxt),
            ("interval_seconds:latest", interval),
            ("grace_seconds:latest", grace),
        ):
            series.append(
                {"series": f'job_name:job_schedule_{name}{{job="billing", job_name="{job}"}}', "values": f"{value}x20"}
            )
    w1 = 'job="billing", instance="w1"'
    series.append({"series": f'job_schedule_active_since_seconds{{{w1}, job_name="busy"}}', "values": "600x20"})
    # "ok": 10 earlier runs of 10-30 s: p50 20 s, p90 28 s
    for le, count in (("10", 0), ("30", 10), ("+Inf", 10)):
        bucket = f'job_run_duration_seconds_bucket{{{w1}, job_name="ok", job_result="success", le="{le}"}}'
        series.append({"series": bucket, "values": f"{count}x20"})
    ok = '{job="billing", job_name="ok"}'
    case = {
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {
                "expr": queries[("Schedule health", "D")],
                "eval_time": "12m",
                "exp_samples": [
                    {"labels": '{job_name="ok"}', "value": 0},
                    {"labels": '{job_name="busy"}', "value": 1},
                    {"labels": '{job_name="failing"}', "value": 2},
                    {"labels": '{job_name="late"}', "value": 3},
                ],
            },
            {
                "expr": queries[("Schedule health", "C")],
                "eval_time": "12m",
                "exp_samples": [
                    {"labels": f'{{job="billing", job_name="{job}"}}', "value": 1000 * nxt}
                    for job, nxt in (("ok", 1200), ("late", 600), ("failing", 780), ("busy", 1200))
                ],
            },
            {
                "expr": queries[("Schedule health", "F")],
                "eval_time": "12m",
                "exp_samples": [{"labels": ok, "value": 20}],
            },
            {
                "expr": queries[("Schedule health", "G")],
                "eval_time": "12m",
                "exp_samples": [{"labels": ok, "value": 28}],
            },
        ],
    }
    # F and G read the per-job minute sums of the duration buckets, recorded by the joblogger.jobs rules
    _promtool_case(promtool, tmp_path, "joblogger.jobs", "1m", case)


def test_no_panel_queries_an_empty_trace_id_on_first_load() -> None:
    """A panel that shows the trace `$trace_id` sits in a collapsed row: nothing asks Jaeger for `/api/traces/`.

    Grafana queries the panels of a collapsed row only when it is opened; the variable is empty on load.
    """
    dashboard = load_dashboard()
    in_collapsed = {p["id"] for row in dashboard["panels"] if row.get("collapsed") for p in row.get("panels", [])}
    trace_panels = [
        p for p in iter_panels(dashboard) if any("$trace_id" in str(t.get("query", "")) for t in p.get("targets", []))
    ]
    assert trace_panels
    assert {p["id"] for p in trace_panels} <= in_collapsed


def test_only_per_job_panels_sit_in_the_repeated_row() -> None:
    """A row repeated per job holds only panels about that job (their titles name it): nothing repeats needlessly."""
    rows = sorted((p for p in load_dashboard()["panels"]), key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    repeat = None
    for panel in rows:
        if panel["type"] == "row":
            repeat = panel.get("repeat")
            continue
        if repeat:
            assert f"${repeat}" in panel["title"], f"{panel['title']!r} repeats once per {repeat}"


def test_interval_bars_end_at_their_point() -> None:
    """Bars of `increase(...[$__interval])` cover the interval before their timestamp (barAlignment -1)."""
    checked = 0
    for panel in iter_panels(load_dashboard()):
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
        uses_interval = any("[$__interval]" in str(t.get("expr", "")) for t in panel.get("targets", []))
        if custom.get("drawStyle") == "bars" and uses_interval:
            assert custom.get("barAlignment") == -1, panel["title"]
            checked += 1
    assert checked >= 3


def test_descriptions_are_distinct() -> None:
    """Every panel says what it shows in its own words (no copied descriptions)."""
    descriptions = [p["description"] for p in iter_panels(load_dashboard()) if p["type"] != "row"]
    assert all(descriptions)
    assert len(descriptions) == len(set(descriptions))


def test_run_duration_quantiles_cover_an_hour_per_point() -> None:
    """Quantiles over 1-minute windows of a job with a few hundred runs a day are interpolation noise."""
    (panel,) = [p for p in iter_panels(load_dashboard()) if p["title"].startswith("Run duration")]
    rules = yaml.safe_load((REPO_ROOT / "backends/prometheus/alerts.yml").read_text(encoding="utf-8"))
    recorded = {r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    sliding = "job_name_le:job_run_duration_seconds_bucket:added_1h_sliding"
    assert "[1h]" in recorded[sliding]  # a sliding hour, recorded every minute: the latest point has the last runs
    for target in panel["targets"]:
        assert sliding in target["expr"] and "$__interval" not in target["expr"]


def test_firing_alerts_are_on_the_dashboard() -> None:
    """A table and an annotation show the rules' firing alerts; Grafana also gets Alertmanager as a data source."""
    dashboard = load_dashboard()
    (table,) = [p for p in iter_panels(dashboard) if p["title"] == "Firing alerts"]
    assert 'ALERTS{alertstate="firing"' in table["targets"][0]["expr"]
    annotations = [a for a in dashboard["annotations"]["list"] if "ALERTS" in str(a.get("expr", ""))]
    assert annotations and annotations[0]["enable"] is True
    assert any(ds["type"] == "alertmanager" and ds["url"] == "http://alertmanager:9093" for ds in _datasources())


def _lost_in_round_trip(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Keys and values of ``ours`` that ``theirs`` lacks or changed (additions, e.g. defaults, are fine)."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return [f"{path}: {type(theirs).__name__}"]
        lost: list[str] = []
        for key, value in ours.items():
            where = f"{path}/{key}"
            lost += [f"{where} lost"] if key not in theirs else _lost_in_round_trip(value, theirs[key], where)
        return lost
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [f"{path}: list changed"]
        pairs = enumerate(zip(ours, theirs, strict=True))
        return [lost for i, (a, b) in pairs for lost in _lost_in_round_trip(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [f"{path}: {ours!r} -> {theirs!r}"]


def test_dashboard_round_trips_through_the_grafana_foundation_sdk_models() -> None:
    """Grafana's own dashboard schema (grafana-foundation-sdk models) reads the whole dashboard: nothing is lost."""
    from grafana_foundation_sdk.models.dashboard import Dashboard

    ours = load_dashboard()
    model = Dashboard.from_json(ours)
    theirs = json.loads(json.dumps(model.to_json(), default=lambda o: o.to_json()))
    assert _lost_in_round_trip(ours, theirs) == []
    assert [p["id"] for p in theirs["panels"]] == [p["id"] for p in ours["panels"]]
