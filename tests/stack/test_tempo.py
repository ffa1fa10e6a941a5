"""Offline checks of the Tempo flavour: compose profile, Tempo config, collector overlay, dashboard, TraceQL.

What these do not do: start Tempo or run a TraceQL query (Tempo's modules are not served
by the Go module proxy, so CI cannot build it; it was run once by hand, docs/stack.md,
"Tempo users"). The TraceQL check is structural (tests/stack/traceql_check.py).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from collector_configs import merge_configs
from dashboard_queries import iter_panels
from repo_scripts import tempo_dashboard_script
from semconv_names import ATTRIBUTE_KEYS
from traceql_check import attributes, problems

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yml"
TEMPO_CONFIG = REPO_ROOT / "backends/tempo/tempo.yaml"
COLLECTOR = REPO_ROOT / "collector/config.yaml"
OVERLAYS = REPO_ROOT / "collector/traces"
DATASOURCES = REPO_ROOT / "dashboards/provisioning/datasources/datasources.yaml"
JAEGER_BOARD = REPO_ROOT / "dashboards/joblogger.json"
TEMPO_BOARD = REPO_ROOT / "dashboards/joblogger-tempo.json"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"

#: The services of the default profile, as before the tempo profile existed.
DEFAULT_SERVICES = {
    "otel-collector", "jaeger", "jaeger-data-owner", "prometheus", "victorialogs", "grafana", "alertmanager",
}  # fmt: skip


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _services() -> dict[str, dict[str, Any]]:
    return dict(_yaml(COMPOSE)["services"])


def _board(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _datasources() -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in _yaml(DATASOURCES)["datasources"]}


def _traceql_queries() -> list[str]:
    doc = tempo_dashboard_script().load_traceql()
    entries = [e["tempo"] for e in doc["panels"].values()] + [doc["explore_link"]["tempo"]]
    return [e["query"] for e in entries]


def _substitute(query: str) -> str:
    """Grafana's substitution of the dashboard variables, for one plain choice of each."""
    values = {
        "$service": "billing",
        "$job": "import",
        "$trace_id": TRACE_ID,
        "${__value.raw}": TRACE_ID,
        "$parent_run": "7f3c2a",
    }
    for var, value in values.items():
        query = query.replace(var, value)
    return query


def test_tempo_only_in_its_profile() -> None:
    """The tempo service is in the tempo profile; the default profile has exactly the services it had."""
    services = _services()
    assert services["tempo"]["profiles"] == ["tempo"]
    default = {name for name, svc in services.items() if "profiles" not in svc}
    assert default == DEFAULT_SERVICES
    for name in default:
        assert "tempo" not in services[name].get("depends_on", {}), name


def test_tempo_image_pinned_to_a_2x_release() -> None:
    """grafana/tempo is pinned to an exact 2.x release (major.minor.patch), never latest."""
    image = _services()["tempo"]["image"]
    assert re.fullmatch(r"grafana/tempo:2\.\d+\.\d+", image), image


def test_tempo_config_mounted_read_only_with_data_on_a_volume() -> None:
    """Tempo reads backends/tempo/tempo.yaml read-only and keeps its blocks on a named volume."""
    tempo = _services()["tempo"]
    assert "./backends/tempo/tempo.yaml:/etc/tempo/tempo.yaml:ro" in tempo["volumes"]
    assert tempo["command"] == ["-config.file=/etc/tempo/tempo.yaml"]
    config = _yaml(TEMPO_CONFIG)
    storage = config["storage"]["trace"]
    assert storage["backend"] == "local"
    data_dir = storage["local"]["path"].rsplit("/", 1)[0]
    assert storage["wal"]["path"].startswith(data_dir + "/")
    assert f"tempo-data:{data_dir}" in tempo["volumes"]
    assert "tempo-data" in _yaml(COMPOSE)["volumes"]


def test_tempo_config_receivers_ports_and_retention() -> None:
    """OTLP gRPC and HTTP receivers, the HTTP API / query frontend on 3200 (published on loopback), a retention."""
    config = _yaml(TEMPO_CONFIG)
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert config["server"]["http_listen_port"] == 3200
    assert "search" in config["query_frontend"]
    assert _services()["tempo"]["ports"] == ["127.0.0.1:3200:3200"]
    retention = config["compactor"]["compaction"]["block_retention"]
    jaeger_retention = {k: str(v) for k, v in _services()["jaeger"]["environment"].items()}["JAEGER_RETENTION"]
    assert retention == jaeger_retention  # the same run history in both flavours
    assert _datasources()["tempo"]["url"] == "http://tempo:3200"


def test_collector_overlay_selected_by_env_with_jaeger_default() -> None:
    """The collector merges collector/traces/${JOBLOGGER_TRACES:-jaeger}.yaml after config.yaml; both files exist."""
    collector = _services()["otel-collector"]
    assert collector["command"] == [
        "--config=/etc/otelcol-contrib/config.yaml",
        "--config=/etc/otelcol-contrib/traces/${JOBLOGGER_TRACES:-jaeger}.yaml",
        "--config=/etc/otelcol-contrib/metrics/${JOBLOGGER_METRICS:-remote-write}.yaml",
    ]
    assert "./collector/traces:/etc/otelcol-contrib/traces:ro" in collector["volumes"]
    assert {p.stem for p in OVERLAYS.glob("*.yaml")} == {"jaeger", "tempo"}


def test_default_overlay_changes_nothing() -> None:
    """config.yaml merged with the default (jaeger) overlay is config.yaml."""
    base = _yaml(COLLECTOR)
    assert merge_configs(base, _yaml(OVERLAYS / "jaeger.yaml")) == base


def test_tempo_overlay_sends_traces_to_jaeger_and_tempo() -> None:
    """With JOBLOGGER_TRACES=tempo the traces pipeline exports to Jaeger and to Tempo's OTLP gRPC receiver."""
    merged = merge_configs(_yaml(COLLECTOR), _yaml(OVERLAYS / "tempo.yaml"))
    assert merged["service"]["pipelines"]["traces"]["exporters"] == ["otlp/traces", "otlp/tempo"]
    assert merged["service"]["pipelines"]["metrics"] == _yaml(COLLECTOR)["service"]["pipelines"]["metrics"]
    endpoint = merged["exporters"]["otlp/tempo"]["endpoint"]
    match = re.fullmatch(r"\$\{env:TEMPO_OTLP_ENDPOINT:-([\w-]+):(\d+)\}", endpoint)
    assert match is not None, endpoint
    assert match.group(1) in _services()
    grpc = _yaml(TEMPO_CONFIG)["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc.endswith(":" + match.group(2))
    manifest = _yaml(REPO_ROOT / "collector/builder-config.yaml")
    built = {entry["gomod"].split()[0].rsplit("/", 1)[1] for entry in manifest["exporters"]}
    assert {f"{n.split('/')[0]}exporter" for n in merged["exporters"]} <= built


def test_generated_dashboard_has_not_drifted() -> None:
    """dashboards/joblogger-tempo.json is exactly what scripts/tempo_dashboard.py makes of joblogger.json."""
    assert TEMPO_BOARD.read_text(encoding="utf-8") == tempo_dashboard_script().expected_text(), (
        "run scripts/tempo_dashboard.py"
    )
    assert tempo_dashboard_script().main(["--check"]) == 0


def test_tempo_dashboard_identity() -> None:
    """Its own uid and title; everything else but data sources, trace queries, links and descriptions is the same."""
    board = _board(TEMPO_BOARD)
    assert board["uid"] == "joblogger-jobs-tempo"
    assert board["title"] == "joblogger: jobs (Tempo)"
    source = _board(JAEGER_BOARD)
    assert [p["id"] for p in iter_panels(board)] == [p["id"] for p in iter_panels(source)]
    assert [p["gridPos"] for p in iter_panels(board)] == [p["gridPos"] for p in iter_panels(source)]
    assert [v["name"] for v in board["templating"]["list"]] == [v["name"] for v in source["templating"]["list"]]


def test_every_jaeger_panel_uses_tempo() -> None:
    """Each panel that queries Jaeger in joblogger.json queries Tempo with TraceQL here; nothing refers to Jaeger."""
    source = {p["id"]: p for p in iter_panels(_board(JAEGER_BOARD))}
    board = {p["id"]: p for p in iter_panels(_board(TEMPO_BOARD))}
    jaeger_ids = [i for i, p in source.items() if p.get("datasource", {}).get("type") == "jaeger"]
    assert jaeger_ids
    for panel_id in jaeger_ids:
        panel = board[panel_id]
        assert panel["datasource"] == {"type": "tempo", "uid": "tempo"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "tempo", "uid": "tempo"}
            assert target["queryType"] == "traceql" and target["query"]
    text = TEMPO_BOARD.read_text(encoding="utf-8")
    assert '"jaeger"' not in text
    assert "/d/joblogger-jobs/" not in text  # trace links open this dashboard's Run detail


def test_tempo_dashboard_datasources_provisioned_and_exemplars_go_to_tempo() -> None:
    """Every reference is a provisioned uid of its type; exemplar panels use the Prometheus source linked to Tempo."""
    sources = _datasources()
    assert sources["tempo"]["type"] == "tempo"
    assert sources["tempo"]["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus-tempo"
    assert sources["prometheus-tempo"]["url"] == sources["prometheus"]["url"]
    assert sources["prometheus-tempo"]["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "tempo"}
    ]
    board = _board(TEMPO_BOARD)
    refs = [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
    exemplar_refs = []
    for panel in iter_panels(board):
        if panel.get("type") == "row":
            continue
        refs.append(panel["datasource"])
        refs += [t["datasource"] for t in panel.get("targets", [])]
        exemplar_refs += [t["datasource"] for t in panel.get("targets", []) if t.get("exemplar")]
    for ref in refs:
        assert sources[ref["uid"]]["type"] == ref["type"], ref
    assert exemplar_refs
    assert all(ref["uid"] == "prometheus-tempo" for ref in exemplar_refs)


def test_traceql_file_states_the_jaeger_queries_it_replaces() -> None:
    """traceql.yaml's `jaeger` entries are the queries of joblogger.json, so a changed Jaeger panel shows up here."""
    doc = tempo_dashboard_script().load_traceql()
    source = {p["id"]: p for p in iter_panels(_board(JAEGER_BOARD))}
    for panel_id, entry in doc["panels"].items():
        (target,) = source[panel_id]["targets"]
        stated = {k: v for k, v in target.items() if k not in {"datasource", "refId"}}
        assert stated == entry["jaeger"], panel_id
    links = [
        link["internal"]["query"]
        for p in source.values()
        for override in p.get("fieldConfig", {}).get("overrides", [])
        for prop in override["properties"]
        for link in (prop["value"] if prop["id"] == "links" else [])
        if "internal" in link
    ]
    assert links and all(q == doc["explore_link"]["jaeger"] for q in links)


@pytest.mark.parametrize("query", _traceql_queries())
def test_traceql_is_structurally_valid(query: str) -> None:
    """Each query is a trace id (as the variable or Grafana's link value) or a well-formed TraceQL pipeline."""
    if query in {"$trace_id", "${__value.raw}"}:
        assert re.fullmatch(r"[0-9a-f]{32}", _substitute(query))
        return
    assert problems(_substitute(query)) == []


def test_traceql_uses_semconv_attributes_and_the_run_span() -> None:
    """Span attributes are joblogger.semconv keys; the searches select run spans by service and job name (or parent)."""
    searches = [q for q in _traceql_queries() if q.startswith("{")]
    assert len(searches) == 4
    for query in searches:
        assert 'resource.service.name = "$service"' in query
        # the run span is named after the job; a child run span names its parent run
        assert 'name =~ "$job"' in query or 'span.job.parent.run.id = "$parent_run"' in query
        # result and run id as columns (and the child's job name where the run is not the filter's)
        assert re.search(r"\| select\((name, )?span\.job\.result, span\.job\.run\.id", query), query
        for ref in attributes(query):
            if ref.startswith("span."):
                assert ref.removeprefix("span.") in ATTRIBUTE_KEYS, ref


def test_multi_value_variables_are_matched_as_regexes() -> None:
    """A multi-value or All variable reaches Tempo as "a|b" or its All value ".*" (Grafana's pipe format).

    Run against a real Tempo 2.10.8: `name = ".*"` (the dashboard's default, All) and
    `name = "a|b"` listed no run; `name =~` lists them (TraceQL regexes are anchored).
    """
    variables = {v["name"]: v for v in _board(TEMPO_BOARD)["templating"]["list"]}
    multi = {name for name, v in variables.items() if v.get("multi") or v.get("includeAll")}
    assert "job" in multi
    checked = 0
    for query in _traceql_queries():
        for operator, name in re.findall(r'(=~|!~|!=|=)\s*"\$\{?(\w+)', query):
            if name in multi:
                checked += 1
                assert operator == "=~", (name, query)
    assert checked >= 2


def test_span_tables_list_every_matching_span_of_a_trace() -> None:
    """Tempo returns at most spss matching spans per trace (Grafana's default 3).

    The children of a parent mostly share one trace: run against a real Tempo, a parent with
    12 children listed 3 of them with the default and 12 with spss = limit.
    """
    entries = [e["tempo"] for e in tempo_dashboard_script().load_traceql()["panels"].values()]
    spans = [e for e in entries if e.get("tableType") == "spans"]
    assert spans
    for entry in spans:
        assert entry.get("spss", 3) >= entry["limit"], entry["query"]


def test_failed_runs_match_every_failing_result() -> None:
    """Failed runs lists failure, error and timeout, the results JobRunFailed counts."""
    failed = tempo_dashboard_script().load_traceql()["panels"][12]["tempo"]["query"]
    assert 'span.job.result =~ "failure|error|timeout"' in failed


def test_traceql_check_rejects_malformed_queries() -> None:
    """The structural check is not vacuous: it finds each kind of mistake."""
    assert problems('{span.job.result = "failure"') == ["unbalanced braces/parentheses"]
    assert problems('{span.job.result = "failure}') != []
    assert problems("{job.result = 1}") == ["unknown attribute or intrinsic 'job.result'"]
    assert problems('{name = "a"} | select()') == ["select(...) takes attributes"]
    assert problems('name = "a"') == ["a query starts with a spanset filter {...}"]


def test_a_new_jaeger_panel_without_traceql_fails_generation() -> None:
    """A Jaeger panel that traceql.yaml does not cover stops the generator instead of staying on Jaeger."""
    source = _board(JAEGER_BOARD)
    extra = copy.deepcopy(next(p for p in iter_panels(source) if p["id"] == 11))
    extra["id"] = 999
    source["panels"].append(extra)
    with pytest.raises(SystemExit, match="panel 999"):
        tempo_dashboard_script().generate(source, tempo_dashboard_script().load_traceql())


def test_run_detail_stays_collapsed() -> None:
    """The Tempo Run detail sits in a collapsed row too, so no empty trace id is requested on first load."""
    (row,) = [p for p in _board(TEMPO_BOARD)["panels"] if any(c["id"] == 9 for c in p.get("panels", []))]
    assert row["collapsed"] is True
