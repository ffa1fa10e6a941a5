"""Offline checks of the metrics route option: Prometheus's native OTLP receiver beside remote write.

The live check (same series from both routes, created-timestamp zero samples) is
tests/integration/test_prometheus_otlp_live.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from collector_configs import merge_configs
from repo_scripts import stack_script

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yml"
COLLECTOR = REPO_ROOT / "collector/config.yaml"
OVERLAYS = REPO_ROOT / "collector/metrics"
PROMETHEUS_FLAGS = {
    "--web.enable-remote-write-receiver",
    "--web.enable-otlp-receiver",
    "--enable-feature=exemplar-storage",
    "--enable-feature=created-timestamp-zero-ingestion",
}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_compose_mounts_the_metrics_overlays_remote_write_by_default() -> None:
    """The collector merges collector/metrics/${JOBLOGGER_METRICS:-remote-write}.yaml; both overlays exist."""
    collector = _yaml(COMPOSE)["services"]["otel-collector"]
    assert collector["command"][-1] == "--config=/etc/otelcol-contrib/metrics/${JOBLOGGER_METRICS:-remote-write}.yaml"
    assert "./collector/metrics:/etc/otelcol-contrib/metrics:ro" in collector["volumes"]
    assert {p.stem for p in OVERLAYS.glob("*.yaml")} == {"remote-write", "otlp"}


def test_default_overlay_changes_nothing() -> None:
    """config.yaml merged with remote-write.yaml is config.yaml."""
    base = _yaml(COLLECTOR)
    assert merge_configs(base, _yaml(OVERLAYS / "remote-write.yaml")) == base


def test_otlp_overlay_sends_metrics_to_prometheus_otlp_receiver() -> None:
    """JOBLOGGER_METRICS=otlp: only the metrics pipeline changes, to Prometheus's /api/v1/otlp/v1/metrics."""
    base = _yaml(COLLECTOR)
    merged = merge_configs(base, _yaml(OVERLAYS / "otlp.yaml"))
    assert merged["service"]["pipelines"]["metrics"]["exporters"] == ["otlphttp/prometheus"]
    for signal in ("traces", "logs"):
        assert merged["service"]["pipelines"][signal] == base["service"]["pipelines"][signal]
    endpoint = merged["exporters"]["otlphttp/prometheus"]["metrics_endpoint"]
    match = re.fullmatch(r"\$\{env:PROMETHEUS_OTLP_URL:-http://prometheus:9090(/api/v1/otlp/v1/metrics)\}", endpoint)
    assert match is not None, endpoint
    manifest = _yaml(REPO_ROOT / "collector/builder-config.yaml")
    built = {e["gomod"].split()[0] for e in manifest["exporters"]}
    assert "go.opentelemetry.io/collector/exporter/otlphttpexporter" in built


def test_prometheus_runs_both_receivers_and_zero_ingestion_in_compose_and_locally() -> None:
    """Compose and scripts/stack.py start Prometheus with the same receivers and features."""
    assert set(_yaml(COMPOSE)["services"]["prometheus"]["command"]) >= PROMETHEUS_FLAGS
    stack = stack_script()
    bins = stack.Binaries(**{f: Path(f) for f in stack.Binaries.__dataclass_fields__})
    services = {s.name: s for s in stack._services(bins, Path("/nonexistent"), {})}
    assert set(services["prometheus"].argv) >= PROMETHEUS_FLAGS
    collector = services["collector"]
    assert collector.argv[-1] == f"--config={OVERLAYS / 'remote-write.yaml'}"
    assert collector.env["PROMETHEUS_OTLP_URL"].endswith("/api/v1/otlp/v1/metrics")
    otlp = {s.name: s for s in stack._services(bins, Path("/nonexistent"), {"JOBLOGGER_METRICS": "otlp"})}
    assert otlp["collector"].argv[-1] == f"--config={OVERLAYS / 'otlp.yaml'}"


def test_collector_accepts_both_overlays() -> None:
    """The stack's own collector build validates config.yaml merged with each overlay."""
    collector = str(stack_script().ensure_built().collector)
    for overlay in sorted(OVERLAYS.glob("*.yaml")):
        result = subprocess.run(
            [collector, "validate", f"--config={COLLECTOR}", f"--config={overlay}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, overlay.name + result.stdout + result.stderr
