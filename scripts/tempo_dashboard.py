#!/usr/bin/env python3
"""Generate dashboards/joblogger-tempo.json: the jobs dashboard with Tempo in place of Jaeger.

    python scripts/tempo_dashboard.py           # write the file
    python scripts/tempo_dashboard.py --check   # exit 1 if the file differs from what it would write

Input: dashboards/joblogger.json (the Jaeger dashboard, the only one edited by hand) and
dashboards/traceql.yaml (every TraceQL query, next to the Jaeger query it replaces).
Output differences, and nothing else:

* uid ``joblogger-jobs-tempo``, title "joblogger: jobs (Tempo)";
* every Jaeger target and panel data source becomes the Tempo data source (uid ``tempo``)
  with the TraceQL query of traceql.yaml for that panel id; a Jaeger panel without an
  entry there is an error, so a new trace panel cannot be left behind;
* trace-id links open Tempo in Explore and this dashboard's Run detail;
* Prometheus references use the ``prometheus-tempo`` data source (same server, its
  exemplars link to Tempo instead of Jaeger: exemplarTraceIdDestinations is a data source
  setting, not a panel one);
* "Jaeger" in panel descriptions reads "Tempo" (the Jaeger search wording is replaced), except
  the log panel's: its trace links belong to the VictoriaLogs data source and open Jaeger.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE = REPO_ROOT / "dashboards" / "joblogger.json"
TRACEQL = REPO_ROOT / "dashboards" / "traceql.yaml"
TARGET = REPO_ROOT / "dashboards" / "joblogger-tempo.json"

UID = "joblogger-jobs-tempo"
TITLE = "joblogger: jobs (Tempo)"
TEMPO = {"type": "tempo", "uid": "tempo"}
PROMETHEUS = {"type": "prometheus", "uid": "prometheus-tempo"}
SOURCE_PATH = "/d/joblogger-jobs/joblogger-jobs?"

#: Panel descriptions that name Jaeger's search, by panel name in traceql.yaml.
DESCRIPTIONS = {
    "recent_runs": "Most recent run spans of the job (TraceQL, Tempo): result, run id and duration per run.",
    "failed_runs": (
        "Most recent run spans of the job that ended with job.result failure, error or timeout "
        "(TraceQL, Tempo), with the error.type that ended them."
    ),
    "child_runs": (
        "Child runs of $parent_run (TraceQL on job.parent.run.id, Tempo): one row per child run span, "
        "with its job name, result, run id and progress, whether it sits in the parent's trace "
        "(job.child(), job.map(), Celery children) or in a linked trace (child_carrier(link=True))."
    ),
    "failed_child_runs": (
        "Child runs of $parent_run that ended with job.result failure, error or timeout (TraceQL, Tempo), "
        "with the error.type that ended them (the parent's job.children.failed also counts lost children)."
    ),
}


def load_traceql(path: Path = TRACEQL) -> dict[str, Any]:
    """traceql.yaml as a dict (panel ids as ints)."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def _is_jaeger(datasource: Any) -> bool:
    return isinstance(datasource, dict) and datasource.get("type") == "jaeger"


def _retarget_prometheus(node: Any) -> None:
    """Point every Prometheus data source reference at the Tempo-exemplar Prometheus data source."""
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "prometheus":
            node["datasource"] = dict(PROMETHEUS)
        for value in node.values():
            _retarget_prometheus(value)
    elif isinstance(node, list):
        for value in node:
            _retarget_prometheus(value)


def _retarget_links(node: Any, explore: dict[str, Any]) -> None:
    """Trace-id links: this dashboard's Run detail, and Tempo in Explore."""
    if isinstance(node, dict):
        url = node.get("url")
        if isinstance(url, str) and url.startswith(SOURCE_PATH):
            node["url"] = f"/d/{UID}/{UID}?" + url[len(SOURCE_PATH) :]
        internal = node.get("internal")
        if isinstance(internal, dict) and internal.get("datasourceUid") == "jaeger":
            internal.update(datasourceUid="tempo", datasourceName="Tempo", query=dict(explore))
        for value in node.values():
            _retarget_links(value, explore)
    elif isinstance(node, list):
        for value in node:
            _retarget_links(value, explore)


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def generate(source: dict[str, Any], traceql: dict[str, Any]) -> dict[str, Any]:
    """The Tempo dashboard for ``source`` (not modified)."""
    dashboard = copy.deepcopy(source)
    dashboard["uid"] = UID
    dashboard["title"] = TITLE
    _retarget_prometheus(dashboard)
    by_id = traceql["panels"]
    for panel in _panels(dashboard):
        if not _is_jaeger(panel.get("datasource")) and not any(
            _is_jaeger(t.get("datasource")) for t in panel.get("targets", [])
        ):
            continue
        entry = by_id.get(panel["id"])
        if entry is None:
            raise SystemExit(f"panel {panel['id']} ({panel.get('title')}) queries Jaeger; add it to {TRACEQL.name}")
        panel["datasource"] = dict(TEMPO)
        panel["targets"] = [
            {"datasource": dict(TEMPO), "refId": target["refId"], **entry["tempo"]} for target in panel["targets"]
        ]
        if entry["name"] in DESCRIPTIONS:
            panel["description"] = DESCRIPTIONS[entry["name"]]
    for panel in _panels(dashboard):
        # The log panel's trace links are the VictoriaLogs data source's and still open Jaeger.
        logs = panel.get("datasource", {}).get("uid") == "victorialogs"
        if isinstance(panel.get("description"), str) and not logs:
            panel["description"] = panel["description"].replace("Jaeger", "Tempo")
    _retarget_links(dashboard, traceql["explore_link"]["tempo"])
    return dashboard


def render(dashboard: dict[str, Any]) -> str:
    """The file text: two-space JSON, UTF-8, trailing newline (as dashboards/joblogger.json)."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def expected_text() -> str:
    """What dashboards/joblogger-tempo.json must contain."""
    source = json.loads(SOURCE.read_text(encoding="utf-8"))
    return render(generate(source, load_traceql()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the file is not up to date")
    args = parser.parse_args(argv)
    text = expected_text()
    if args.check:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(REPO_ROOT)} is out of date: run scripts/tempo_dashboard.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
