"""Helpers shared by the integration tests: polling, and reading Prometheus and Jaeger."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
TIMEOUT_S = 45.0


def get_json(url: str, params: dict[str, str] | None = None) -> Any:
    """GET ``url`` (with query ``params``) and decode JSON."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def eventually(probe: Callable[[], T | None], what: str, timeout: float = TIMEOUT_S) -> T:
    """Poll ``probe`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (OSError, KeyError, IndexError, ValueError) as exc:
            last, result = exc, None
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{what}: not seen within {timeout:.0f} s (last: {last!r})")


def promql(stack: Any, query: str) -> list[dict[str, Any]]:
    """Instant PromQL query against the live Prometheus."""
    body = get_json(f"{stack.prometheus}/api/v1/query", {"query": query})
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(stack: Any, query: str) -> float | None:
    """Value of a PromQL query that returns one sample, or None."""
    result = promql(stack, query)
    return float(result[0]["value"][1]) if result else None


def job_env(stack: Any, service: str, **extra: str) -> dict[str, str]:
    """Environment of a job process exporting to the stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=stack.otlp_grpc,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_SERVICE_NAME=service,
        OTEL_METRIC_EXPORT_INTERVAL="1000",
    )
    env.update(extra)
    return env


def jaeger_traces(stack: Any, service: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    """Traces of ``service`` whose spans carry ``tags`` (Jaeger query API, as Grafana's Jaeger datasource uses)."""
    body = get_json(
        f"{stack.jaeger}/api/traces",
        {"service": service, "tags": json.dumps(tags), "limit": "20", "lookback": "1h"},
    )
    return body.get("data") or []


def tags_of(span: dict[str, Any]) -> dict[str, Any]:
    """A Jaeger span's tags as a dict."""
    return {t["key"]: t["value"] for t in span.get("tags", [])}
