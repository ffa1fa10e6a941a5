"""Metric names, label names and functions used by a PromQL expression.

A small tokenizer, not a parser: enough to check that dashboards and alert rules
only use names from ``joblogger.semconv`` (syntax is checked by promtool).

Example:
    >>> names = promql_names('sum by (job_name) (rate(job_runs_total{job_result="failure"}[5m]))')
    >>> sorted(names.metrics), sorted(names.labels), sorted(names.functions)
    (['job_runs_total'], ['job_name', 'job_result'], ['rate', 'sum'])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<number>(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},@])
    | (?P<space>\s+)
    """,
    re.VERBOSE,
)

#: Keywords whose parenthesised list holds label names.
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
#: Binary and other keywords that are neither metrics nor functions.
KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan", "Inf", "NaN"})
#: Aggregation operators and functions of PromQL (Prometheus 2.42).
FUNCTIONS = frozenset((
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "count_over_time", "days_in_month", "day_of_month", "day_of_week", "day_of_year", "deg", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn",
    "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "time", "timestamp",
    "vector", "year", "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh",
    "start", "end",  # the @ modifier's start() and end()
))  # fmt: skip


@dataclass
class PromqlNames:
    """Names found in one expression."""

    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    unknown_functions: set[str] = field(default_factory=set)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot tokenize PromQL at {pos}: {expr[pos : pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group(0)))
    return out


def promql_names(expr: str) -> PromqlNames:
    """Return the metric names, label names and functions ``expr`` uses."""
    tokens = _tokens(expr)
    names = PromqlNames()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in LABEL_LIST_KEYWORDS:
            if nxt == "(":
                i += 2
                while i < len(tokens) and tokens[i][1] != ")":
                    if tokens[i][0] == "ident":
                        names.labels.add(tokens[i][1])
                    i += 1
            i += 1
            continue
        if kind == "ident" and text in KEYWORDS:
            i += 1
            continue
        if kind == "ident" and (nxt == "(" or (text in FUNCTIONS and nxt in ("by", "without"))):
            (names.functions if text in FUNCTIONS else names.unknown_functions).add(text)
            i += 1
            continue
        if kind == "ident":
            names.metrics.add(text)
            i += 1
            continue
        if text == "{":
            i += 1
            while i < len(tokens) and tokens[i][1] != "}":
                if tokens[i][0] == "ident" and i + 1 < len(tokens) and tokens[i + 1][1] in ("=", "!=", "=~", "!~"):
                    names.labels.add(tokens[i][1])
                i += 1
        i += 1
    return names
