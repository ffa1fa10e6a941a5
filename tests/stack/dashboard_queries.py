"""Every query of the Grafana dashboard, with its variables substituted as Grafana would.

Offline tests (tests/stack/test_dashboard.py) check the names and the syntax of
these queries; live tests can run the same list against a real Prometheus,
Jaeger and VictoriaLogs::

    import sys

    sys.path.insert(0, "tests/stack")
    from dashboard_queries import dashboard_queries

    for q in dashboard_queries(service="billing", job=["import"], trace_id="4bf92f3577b34da6a3ce929d0e0e4736"):
        if q.datasource_type == "prometheus":
            ...  # GET {prometheus}/api/v1/query?query=<q.query> (instant) or /api/v1/query_range
        elif q.datasource_type == "jaeger":
            ...  # GET {jaeger}<q.query>: "/api/traces?service=..." or "/api/traces/<trace id>"
        else:  # victoriametrics-logs-datasource, q.query_type "instant": raw log lines
            ...  # GET {victorialogs}/select/logsql/query?query=<q.query>&limit=<q.max_lines>&start=...

Substitution follows Grafana's rules for each data source:

* Prometheus, variable with multi-value or "All": each value is regex-escaped
  with its backslashes doubled for the PromQL string, several values become
  ``(a|b)``, "All" becomes the variable's ``allValue`` (``.*``);
* Prometheus, single-value variable: only backslashes (and ``'``) are escaped;
* Jaeger: values are used as they are; a panel or row repeated over ``job``
  is queried once per job value, as Grafana repeats it;
* VictoriaLogs (LogsQL): every variable carries an explicit Grafana format
  (``${job:regex}``, ``${level:doublequote}``), so Grafana's own formatter
  renders it and the plugin's rewriting of bare ``$var`` filters never applies.
  ``regex``: values escaped with Grafana's ``escapeStringForRegex``, several
  become ``(a|b)``, "All" is the variable's ``allValue`` as it is;
  ``doublequote``: each value in double quotes (``"`` escaped), joined by commas.

Example:
    >>> qs = dashboard_queries(service="billing", job=["import", "db.sync"])
    >>> any('job_name=~"(import|db\\\\\\\\.sync)"' in q.query for q in qs)
    True
    >>> sorted({q.datasource_type for q in qs})
    ['jaeger', 'prometheus', 'victoriametrics-logs-datasource']
    >>> qs = dashboard_queries(service="svc", job=["import"], run=["r.1"], level=["warning", "error"])
    >>> live = next(q for q in qs if q.datasource_type == LOGS_DATASOURCE_TYPE)
    >>> print(live.title, live.query_type, live.max_lines)
    Live log instant 1000
    >>> print(live.query)  # doctest: +NORMALIZE_WHITESPACE
    service.name:~`^svc$` AND job.name:~`^import$` AND job.run.id:~`^r\\.1$`
      AND job.log.level:in("warning","error") | sort by (_time) desc
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_PATH = REPO_ROOT / "dashboards" / "joblogger.json"

#: Values of Grafana's built-in interval variables used when none are given.
DEFAULT_BUILTINS: Mapping[str, str] = {
    "__interval": "1m",
    "__rate_interval": "1m",
    "__range": "1h",
    "__interval_ms": "60000",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*(\w+)\s*\)")
_QUERY_RESULT = re.compile(r"query_result\((.+)\)")
#: A ``query_result`` variable's regex: the one label whose values it lists.
_RESULT_LABEL = re.compile(r'/(\w+)="\(\[\^"\]\+\)"/')
_REGEX_META = re.compile(r"[$^*{}\[\]+?.()|]")
#: Characters Grafana's escapeStringForRegex (@grafana/data) escapes for the ``regex`` format.
_GRAFANA_REGEX_META = re.compile(r"[/.*+?|()\[\]{}\\^$]")
#: Data source type of the VictoriaLogs plugin.
LOGS_DATASOURCE_TYPE = "victoriametrics-logs-datasource"


@dataclass(frozen=True)
class DashboardQuery:
    """One query of the dashboard, ready to send to its data source."""

    datasource_type: str  # "prometheus" or "jaeger"
    datasource_uid: str
    title: str  # panel title (substituted) or "variable <name> (label <label>)"
    ref_id: str
    query: str  # PromQL (a variable's label_values selector or query_result expression), a Jaeger path, or LogsQL
    instant: bool = False  # Prometheus: instant query (tables) rather than range
    query_type: str = ""  # VictoriaLogs: the plugin's queryType ("instant" = raw log lines)
    max_lines: int | None = None  # VictoriaLogs: the target's maxLines (the `limit` of /select/logsql/query)
    variable_label: str = ""  # a variable's query: the label whose values it lists
    variable_kind: str = ""  # a variable's query: "label_values" (series API) or "query_result" (instant query)


def _variable_query(name: str, query: str, regex: str) -> tuple[str, str, str]:
    """A Prometheus query variable's selector or expression, the label it lists, and how Grafana runs it."""
    match = _LABEL_VALUES.fullmatch(query)
    if match is not None:
        return match.group(1).strip(), match.group(2), "label_values"
    result, label = _QUERY_RESULT.fullmatch(query), _RESULT_LABEL.fullmatch(regex)
    if result is not None and label is not None:
        return result.group(1).strip(), label.group(1), "query_result"
    raise ValueError(
        f"variable {name}: expected label_values(<selector>, <label>) or query_result(<expr>) with a "
        f'/<label>="([^"]+)"/ regex, got {query!r} and {regex!r}'
    )


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    """Return the dashboard JSON as a dict."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel, rows and the panels inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _prom_regex_escape(value: str) -> str:
    return _REGEX_META.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def _prom_plain_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def _grafana_regex_escape(value: str) -> str:
    return _GRAFANA_REGEX_META.sub(lambda m: "\\" + m.group(0), value)


def _explicit_format(var: Mapping[str, Any] | None, value: str | Sequence[str] | None, fmt: str) -> str:
    """Render ``${var:fmt}`` the way Grafana's formatter registry does, whatever the data source."""
    if value is None:  # "All": a custom allValue is used as it is
        return str((var or {}).get("allValue") or ".*")
    values = [value] if isinstance(value, str) else list(value)
    if fmt == "regex":
        escaped = [_grafana_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "queryparam":
        name = (var or {}).get("name", "")
        return "&".join(f"var-{name}={urllib.parse.quote(v)}" for v in values)
    raise ValueError(f"variable format {fmt!r} is not emulated here")


def _variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def _format(var: Mapping[str, Any] | None, value: str | Sequence[str] | None, datasource_type: str) -> str:
    """Render one variable's value the way Grafana does for ``datasource_type``."""
    if var is None:  # a built-in such as $__interval
        return str(value)
    multi_or_all = bool(var.get("multi") or var.get("includeAll"))
    if value is None:  # "All"
        return str(var.get("allValue") or ".*")
    values = [value] if isinstance(value, str) else list(value)
    if datasource_type == "prometheus":
        if not multi_or_all:
            return _prom_plain_escape(values[0])
        escaped = [_prom_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    # Jaeger (Grafana's default "glob" format)
    return values[0] if len(values) == 1 else "{" + ",".join(values) + "}"


def substitute(
    text: str,
    dashboard: Mapping[str, Any],
    values: Mapping[str, str | Sequence[str] | None],
    datasource_type: str,
) -> str:
    """Replace ``$var``, ``${var}`` and ``${var:format}`` in ``text``.

    ``values`` maps variable names to a value, a list of values, or None for "All";
    built-in interval variables default to :data:`DEFAULT_BUILTINS`.
    """
    variables = _variables(dashboard)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        fmt = match.group(2)
        if name in values:
            value = values[name]
        elif name in DEFAULT_BUILTINS:
            return DEFAULT_BUILTINS[name]
        else:
            return match.group(0)
        var = variables.get(name)
        if fmt:
            return _explicit_format(var, value, fmt)
        return _format(var, value, datasource_type)

    return _VAR.sub(replace, text)


def _jaeger_query(target: Mapping[str, Any], sub: Any) -> str | None:
    if target.get("queryType") == "search":
        params: dict[str, str] = {"service": sub(target.get("service", ""))}
        if target.get("operation"):
            params["operation"] = sub(target["operation"])
        if target.get("tags"):
            tags = dict(pair.split("=", 1) for pair in sub(target["tags"]).split())
            params["tags"] = json.dumps(tags, separators=(",", ":"))
        params["limit"] = str(target.get("limit", 20))
        return "/api/traces?" + urllib.parse.urlencode(params)
    trace_id = sub(target.get("query", "")).strip()
    return f"/api/traces/{trace_id}" if trace_id else None


def dashboard_queries(
    dashboard: Mapping[str, Any] | None = None,
    *,
    service: str = "joblogger",
    job: str | Sequence[str] | None = None,
    run: str | Sequence[str] | None = None,
    level: Sequence[str] | None = ("info", "milestone", "warning", "error"),
    trace_id: str = "",
    parent_run: str = "",
    builtins: Mapping[str, str] | None = None,
) -> list[DashboardQuery]:
    """Return every panel and variable query with the variables substituted.

    Args:
        dashboard: The dashboard JSON (default: dashboards/joblogger.json).
        service: Value of ``$service`` (the ``job`` label, i.e. service.name).
        job: Job name(s) for ``$job``; None means "All" (then the panels repeated per job,
            whose copies Grafana makes from the variable's options, are left out).
        run: Run id(s) for ``$run``; None means "All".
        level: Log levels for ``$level`` (the Live log panel); the default is the dashboard's.
        trace_id: Value of ``$trace_id``; the Run detail query is left out when empty.
        parent_run: Value of ``$parent_run``; the Children row's queries are left out when empty.
        builtins: Overrides for ``$__interval``, ``$__rate_interval``, ...

    Example:
        >>> [q.query for q in dashboard_queries(trace_id="abc") if q.query.startswith("/api/traces/")]
        ['/api/traces/abc']
    """
    board = load_dashboard() if dashboard is None else dashboard
    values: dict[str, str | Sequence[str] | None] = {
        "service": service,
        "job": job,
        "run": run,
        "level": level,
        "trace_id": trace_id,
        "parent_run": parent_run,
        **DEFAULT_BUILTINS,
        **(builtins or {}),
    }
    job_values = [job] if isinstance(job, str) else list(job or [])
    out: list[DashboardQuery] = []

    for var in board.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        ds = var["datasource"]
        selector, label, kind = _variable_query(var["name"], query.strip(), var.get("regex") or "")
        out.append(
            DashboardQuery(
                ds["type"],
                ds["uid"],
                f"variable {var['name']} (label {label})",
                var["name"],
                substitute(selector, board, values, ds["type"]),
                instant=True,
                variable_label=label,
                variable_kind=kind,
            )
        )

    repeat_job = None
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            repeat_job = panel.get("repeat")
        panels = [panel, *panel.get("panels", [])]
        for p in panels:
            repeat = p.get("repeat") or (repeat_job if p.get("type") != "row" else None)
            for target in p.get("targets", []):
                ds = target.get("datasource") or p.get("datasource")
                ds_type = ds["type"]
                # A repeated panel sees one value of the repeated variable per copy; with
                # "All" Grafana repeats over every option, unknown here: such panels are left out.
                if repeat and not job_values:
                    continue
                if not parent_run and "$parent_run" in json.dumps(target):
                    continue  # the Children row's panels need a parent run id (the row opens collapsed)
                scopes: list[dict[str, str | Sequence[str] | None]] = (
                    [{**values, repeat: v} for v in job_values] if repeat else [values]
                )
                for scope in scopes:

                    def sub(text: str, scope: Mapping[str, Any] = scope, ds_type: str = ds_type) -> str:
                        return substitute(text, board, scope, ds_type)

                    title = sub(p.get("title", ""))
                    if ds_type == "prometheus":
                        out.append(
                            DashboardQuery(
                                ds_type,
                                ds["uid"],
                                title,
                                target["refId"],
                                sub(target["expr"]),
                                instant=bool(target.get("instant")),
                            )
                        )
                    elif ds_type == "jaeger":
                        query = _jaeger_query(target, sub)
                        if query is not None:
                            out.append(DashboardQuery(ds_type, ds["uid"], title, target["refId"], query))
                    elif ds_type == LOGS_DATASOURCE_TYPE:
                        bare = [m.group(0) for m in _VAR.finditer(target["expr"]) if not m.group(2)]
                        if bare:
                            raise ValueError(f"panel {title!r}: LogsQL variables need an explicit format: {bare}")
                        out.append(
                            DashboardQuery(
                                ds_type,
                                ds["uid"],
                                title,
                                target["refId"],
                                sub(target["expr"]),
                                query_type=target.get("queryType", "instant"),
                                max_lines=target.get("maxLines"),
                            )
                        )
                    else:
                        raise ValueError(f"panel {title!r}: unexpected data source type {ds_type!r}")
    return out
