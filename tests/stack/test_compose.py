"""Offline checks of docker-compose.yml: schema, pinned images, loopback ports, mounts, Grafana security.

The VictoriaLogs checks also hold docker-compose.yml and the local stack
(scripts/stack.py) to the same flags and release.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo_scripts import stack_script

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yml"
VICTORIALOGS_GO_MOD = REPO_ROOT / "backends/victorialogs/build/go.mod"
LOGS_PLUGIN = "victoriametrics-logs-datasource"
TIER_CONFIGS = ("collector/tier/agent.yaml", "collector/tier/gateway.yaml")
RECEIVERS = ("thanos-receive-1", "thanos-receive-2", "thanos-receive-3")
SCALE_SERVICES = {
    "tier-queue-owner", "otel-agent-1", "otel-agent-2", "otel-gateway-1", "otel-gateway-2", *RECEIVERS, "thanos-query",
}  # fmt: skip


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _services() -> dict[str, dict[str, Any]]:
    return dict(_compose()["services"])


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume entry."""
    out = []
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else "rw"
        out.append((source, target, mode))
    return out


def _bind_mounts() -> list[tuple[str, str, str, str]]:
    return [
        (name, src, dst, mode)
        for name, svc in _services().items()
        for src, dst, mode in _mounts(svc)
        if src.startswith(("./", "/", "../"))
    ]


def _environment(service: str) -> dict[str, str]:
    env = _services()[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_matches_compose_spec() -> None:
    """check-jsonschema validates the file against the compose specification, offline."""
    exe = Path(sys.executable).parent / "check-jsonschema"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "check_jsonschema"]
    result = subprocess.run(
        [*command, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_expected_services() -> None:
    """Collector, three backends, Grafana, Alertmanager, volume owner; Tempo (tempo profile); the scale tier."""
    assert set(_services()) == {
        "otel-collector", "jaeger", "jaeger-data-owner", "prometheus", "victorialogs", "grafana", "alertmanager",
        "tempo",
    } | SCALE_SERVICES  # fmt: skip


def test_jaeger_keeps_run_history_on_a_volume() -> None:
    """Jaeger stores traces in Badger on a named volume its uid owns; the config reads the directory from env."""
    jaeger = _services()["jaeger"]
    env = _environment("jaeger")
    assert "jaeger-data:" + env["JAEGER_BADGER_DIR"] in jaeger["volumes"]
    owner = _services()["jaeger-data-owner"]
    assert owner["command"][:3] == ["chown", "-R", "10001:10001"] and "jaeger-data:/badger" in owner["volumes"]
    assert jaeger["depends_on"]["jaeger-data-owner"]["condition"] == "service_completed_successfully"
    config = yaml.safe_load((REPO_ROOT / "backends/jaeger/config.yaml").read_text())
    (backend,) = config["extensions"]["jaeger_storage"]["backends"].values()
    assert backend["badger"]["ephemeral"] is False
    assert "${env:JAEGER_BADGER_DIR" in backend["badger"]["directories"]["keys"]
    assert "${env:JAEGER_RETENTION" in backend["badger"]["ttl"]["spans"]


@pytest.mark.parametrize("service", sorted(_services()))
def test_image_pinned(service: str) -> None:
    """Every image names an explicit version tag, never latest."""
    image = _services()[service]["image"]
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image}: no tag"
    assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{image}: tag is not a version"


def test_ports_bound_to_loopback() -> None:
    """Every published port is bound to 127.0.0.1."""
    ports = [(name, str(p)) for name, svc in _services().items() for p in svc.get("ports", [])]
    assert ports
    for name, port in ports:
        assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_bind_mounts_exist_and_read_only() -> None:
    """Every mounted host path exists in the repository and is mounted read-only."""
    mounts = _bind_mounts()
    assert mounts
    for name, src, dst, mode in mounts:
        assert (REPO_ROOT / src).exists(), f"{name}: {src} does not exist"
        assert mode == "ro", f"{name}: {src} -> {dst} is not read-only"


def test_configs_mounted_not_built() -> None:
    """No service builds an image or copies configs in: configuration is mounted."""
    for name, svc in _services().items():
        assert "build" not in svc, name
        assert "configs" not in svc, name


def test_named_volumes_declared() -> None:
    """Every named volume a service uses is declared at top level."""
    declared = set(_compose().get("volumes") or {})
    for svc in _services().values():
        for src, _dst, _mode in _mounts(svc):
            if not src.startswith(("./", "/", "../")):
                assert src in declared, src


def test_expected_mount_targets() -> None:
    """Each program finds its configuration where its image looks for it."""
    targets = {(name, dst): src for name, src, dst, _mode in _bind_mounts()}
    assert targets[("otel-collector", "/etc/otelcol-contrib/config.yaml")] == "./collector/config.yaml"
    assert targets[("jaeger", "/etc/jaeger/config.yaml")] == "./backends/jaeger/config.yaml"
    assert targets[("prometheus", "/etc/prometheus")] == "./backends/prometheus"
    assert targets[("alertmanager", "/etc/alertmanager")] == "./backends/alertmanager"
    assert targets[("grafana", "/etc/grafana/provisioning/datasources")] == "./dashboards/provisioning/datasources"
    assert targets[("grafana", "/etc/grafana/provisioning/dashboards")] == "./dashboards/provisioning/dashboards"
    provider = yaml.safe_load((REPO_ROOT / "dashboards/provisioning/dashboards/dashboards.yaml").read_text())
    assert targets[("grafana", provider["providers"][0]["options"]["path"])] == "./dashboards"


def test_prometheus_flags() -> None:
    """Prometheus accepts remote write and stores exemplars, with the rules directory mounted."""
    command = _services()["prometheus"]["command"]
    assert "--web.enable-remote-write-receiver" in command
    assert "--enable-feature=exemplar-storage" in command
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert (REPO_ROOT / "backends/prometheus/alerts.yml").exists()


def test_prometheus_version_matches_promtool(promtool: str) -> None:
    """The Prometheus image is the release the local stack builds, whose promtool tests the rules here."""
    version = subprocess.run([promtool, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"version (\d+\.\d+\.\d+)", version)
    assert match is not None, version
    assert match.group(1) == stack_script().prometheus_version()
    assert _services()["prometheus"]["image"] == f"prom/prometheus:v{match.group(1)}"


def test_alertmanager_config_valid(amtool: str) -> None:
    """amtool accepts the Alertmanager configuration the compose stack mounts."""
    config = REPO_ROOT / "backends/alertmanager/alertmanager.yml"
    result = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_image_matches_amtool(amtool: str) -> None:
    """The Alertmanager image is the release whose amtool checks the configuration here."""
    version = subprocess.run([amtool, "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"version (\d+\.\d+\.\d+)", version.stdout + version.stderr)
    assert match is not None, version.stdout + version.stderr
    assert _services()["alertmanager"]["image"] == f"prom/alertmanager:v{match.group(1)}"


def test_grafana_admin_password_has_no_default() -> None:
    """Grafana's admin password must come from GRAFANA_ADMIN_PASSWORD, with no default value."""
    password = _environment("grafana")["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", password), password
    assert "GRAFANA_ADMIN_PASSWORD:-" not in COMPOSE.read_text(encoding="utf-8")


def test_grafana_anonymous_viewer() -> None:
    """Anonymous access is on and limited to the Viewer role."""
    env = _environment("grafana")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_collector_version_matches_builder_manifest() -> None:
    """The collector image is the release the local collector is built from."""
    manifest = yaml.safe_load((REPO_ROOT / "collector/builder-config.yaml").read_text(encoding="utf-8"))
    version = str(manifest["dist"]["version"]).lstrip("v")
    assert _services()["otel-collector"]["image"] == f"otel/opentelemetry-collector-contrib:{version}"


def test_jaeger_image_matches_local_build() -> None:
    """The Jaeger image is the release backends/jaeger builds for the local stack."""
    image = _services()["jaeger"]["image"]
    notes = (REPO_ROOT / "backends/jaeger/build/go.mod").read_text(encoding="utf-8")
    assert image in notes, f"{image} is not the release named in backends/jaeger/build/go.mod"


def test_hosts_in_configs_are_services() -> None:
    """Hosts the mounted configs send to by default (collector, Grafana, Prometheus) are compose services."""
    services = set(_services())
    texts = {
        "collector/config.yaml": (REPO_ROOT / "collector/config.yaml").read_text(encoding="utf-8"),
        "datasources.yaml": (REPO_ROOT / "dashboards/provisioning/datasources/datasources.yaml").read_text(),
        "prometheus.yml": (REPO_ROOT / "backends/prometheus/prometheus.yml").read_text(encoding="utf-8"),
        **{name: (REPO_ROOT / name).read_text(encoding="utf-8") for name in TIER_CONFIGS},
    }
    pattern = re.compile(r"(?:\$\{env:\w+:-|url: |targets: \[\"|- \")(?:https?://)?([a-z][\w.-]*):\d+")
    found = {}
    for name, text in texts.items():
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                continue
            for host in pattern.findall(line):
                if host not in {"localhost", "0.0.0.0"}:
                    found[host] = name
    assert found, "no hosts found: the pattern no longer matches the configs"
    missing = {host: name for host, name in found.items() if host not in services}
    assert missing == {}


def test_victorialogs_image_matches_local_build() -> None:
    """The VictoriaLogs image tag is the release backends/victorialogs/build pins for the local stack."""
    go_mod = VICTORIALOGS_GO_MOD.read_text(encoding="utf-8")
    match = re.search(r"^require github\.com/VictoriaMetrics/VictoriaLogs (v\S+)$", go_mod, re.M)
    assert match is not None
    assert _services()["victorialogs"]["image"] == f"victoriametrics/victoria-logs:{match.group(1)}"
    assert stack_script()._victorialogs_version() == match.group(1)


def test_victorialogs_env_flags_same_as_local_stack(tmp_path: Path) -> None:
    """Compose and stack.py start VictoriaLogs with the same arguments and VL_* variables; only addresses differ."""
    svc = _services()["victorialogs"]
    assert svc["command"] == ["-envflag.enable", "-envflag.prefix=VL_"]
    env = _environment("victorialogs")
    assert env == {
        "VL_httpListenAddr": ":9428",
        "VL_storageDataPath": "/victoria-logs-data",
        "VL_retentionPeriod": "7d",
    }
    assert ("victorialogs-data", "/victoria-logs-data", "rw") in _mounts(svc)
    assert svc["ports"] == ["127.0.0.1:9428:9428"]
    stack = stack_script()
    bins = stack.Binaries(*(tmp_path / n for n in ("otelcol", "jaeger", "prometheus", "victoria-logs", "promtool")))
    local = {s.name: s for s in stack._services(bins, tmp_path, {})}["victorialogs"]
    assert list(local.argv[1:]) == svc["command"]
    assert set(local.env) == set(env)
    assert local.env["VL_retentionPeriod"] == env["VL_retentionPeriod"]
    assert local.env["VL_httpListenAddr"] == "127.0.0.1:9428"
    assert local.env["VL_storageDataPath"] == str(tmp_path / "data" / "victorialogs")
    assert local.ready_url == "http://127.0.0.1:9428/health"


def test_collector_sends_logs_to_victorialogs(tmp_path: Path) -> None:
    """The collector waits for VictoriaLogs in compose and gets its loopback logs URL from stack.py."""
    assert "victorialogs" in _services()["otel-collector"]["depends_on"]
    config = yaml.safe_load((REPO_ROOT / "collector/config.yaml").read_text(encoding="utf-8"))
    exporter = config["exporters"]["otlphttp/victorialogs"]
    assert exporter["logs_endpoint"] == (
        "${env:VICTORIALOGS_OTLP_LOGS_ENDPOINT:-http://victorialogs:9428/insert/opentelemetry/v1/logs}"
    )
    assert exporter["headers"] == {"VL-Stream-Fields": "service.name,job.name"}
    assert config["service"]["pipelines"]["logs"]["exporters"] == ["otlphttp/victorialogs"]
    stack = stack_script()
    bins = stack.Binaries(*(tmp_path / n for n in ("otelcol", "jaeger", "prometheus", "victoria-logs", "promtool")))
    collector = {s.name: s for s in stack._services(bins, tmp_path, {})}["collector"]
    assert collector.env["VICTORIALOGS_OTLP_LOGS_ENDPOINT"] == "http://127.0.0.1:9428/insert/opentelemetry/v1/logs"
    moved = {s.name: s for s in stack._services(bins, tmp_path, {"JOBLOGGER_STACK_VICTORIALOGS_PORT": "19428"})}
    assert moved["collector"].env["VICTORIALOGS_OTLP_LOGS_ENDPOINT"].startswith("http://127.0.0.1:19428/")
    assert moved["victorialogs"].env["VL_httpListenAddr"] == "127.0.0.1:19428"
    assert stack.endpoints({"JOBLOGGER_STACK_VICTORIALOGS_PORT": "19428"}).logs == "http://127.0.0.1:19428"


def test_builder_manifest_lists_exactly_the_components_used() -> None:
    """Every component collector/config.yaml and the scale tier's configs use is compiled in, and nothing else."""
    manifest = yaml.safe_load((REPO_ROOT / "collector/builder-config.yaml").read_text(encoding="utf-8"))
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set(), "extensions": set()}
    for name in ("collector/config.yaml", *TIER_CONFIGS):
        config = yaml.safe_load((REPO_ROOT / name).read_text(encoding="utf-8"))
        pipelines = config["service"]["pipelines"].values()
        found = {
            "receivers": {n.split("/")[0] for p in pipelines for n in p["receivers"]},
            "processors": {n.split("/")[0] for p in pipelines for n in p.get("processors", [])},
            "exporters": {n.split("/")[0] for p in pipelines for n in p["exporters"]},
            "extensions": {n.split("/")[0] for n in config["service"].get("extensions", [])},
        }
        for kind, names in found.items():
            declared = {n.split("/")[0] for n in config.get(kind, {})}
            assert declared == names, f"{name}: {kind} declared but not used: {declared - names}"
            used[kind] |= names
    for kind, names in used.items():
        # Module basenames: otlpreceiver, batchprocessor, ...; storage extensions are extension/storage/<name>.
        built = {entry["gomod"].split()[0].rsplit("/", 1)[1] for entry in manifest[kind]}
        expected = {
            name.replace("_", "") if name == "file_storage" else f"{name.replace('_', '')}{kind[:-1]}" for name in names
        }
        assert built == expected, kind


def test_grafana_installs_pinned_logs_plugin_without_depending_on_the_catalog() -> None:
    """Grafana installs the VictoriaLogs plugin, pinned, in the background, and waits for VictoriaLogs.

    ``GF_PLUGINS_PREINSTALL_SYNC`` (and the older ``GF_INSTALL_PLUGINS``) make Grafana's
    start-up fail, and the container restart forever, when the plugin catalog is unreachable.
    """
    grafana = _services()["grafana"]
    env = _environment("grafana")
    assert env["GF_PLUGINS_PREINSTALL"] == f"{LOGS_PLUGIN}@0.26.3"
    assert "GF_PLUGINS_PREINSTALL_SYNC" not in env
    assert "GF_INSTALL_PLUGINS" not in env
    assert "victorialogs" in grafana["depends_on"]


def _tier_config(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO_ROOT / "collector/tier" / name).read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", ["agent.yaml", "gateway.yaml"])
def test_tier_exporter_queues_are_persistent_and_never_give_up(name: str) -> None:
    """Every exporter of an agent or gateway queues on disk (file_storage) and retries until it is delivered."""
    config = _tier_config(name)
    storages = {n for n in config["extensions"] if n.split("/")[0] == "file_storage"}
    assert storages and storages <= set(config["service"]["extensions"])
    used = {e for p in config["service"]["pipelines"].values() for e in p["exporters"]}
    assert used == set(config["exporters"])
    for exporter_name, exporter in config["exporters"].items():
        assert exporter["sending_queue"]["storage"] in storages, exporter_name
        assert exporter["retry_on_failure"]["max_elapsed_time"] == 0, exporter_name
    # Nothing acknowledged waits in memory: no batch processor between receiver and queue.
    assert all("batch" not in p.get("processors", []) for p in config["service"]["pipelines"].values())


def test_scale_profile_topology() -> None:
    """Profile `scale`: agents -> gateways -> Thanos Receive (3-node hashring, replication 2) + Query; same files."""
    services = _services()
    for name in SCALE_SERVICES:
        assert services[name].get("profiles") == ["scale"], name
    targets = {(name, dst): src for name, src, dst, _mode in _bind_mounts()}
    for n in (1, 2):
        assert targets[(f"otel-agent-{n}", "/etc/otelcol-contrib/agent.yaml")] == "./collector/tier/agent.yaml"
        assert targets[(f"otel-gateway-{n}", "/etc/otelcol-contrib/gateway.yaml")] == "./collector/tier/gateway.yaml"
        agent_env = _environment(f"otel-agent-{n}")
        assert agent_env["GATEWAY_OTLP_ENDPOINT"].split(":")[0] in services
        queue = [src for src, dst, _ in _mounts(services[f"otel-gateway-{n}"]) if dst == "/var/lib/otelcol/queue"]
        assert queue and queue[0] in (_compose().get("volumes") or {}), "the gateway queue must survive the container"
    (ring,) = json.loads((REPO_ROOT / "backends/thanos/hashring.json").read_text(encoding="utf-8"))
    assert sorted(ring["endpoints"]) == [f"{r}:10901" for r in RECEIVERS]
    replica_labels = set()
    for r in RECEIVERS:
        command = services[r]["command"]
        assert command[0] == "receive"
        assert "--receive.replication-factor=2" in command
        assert "--receive.hashrings-file=/etc/thanos/hashring.json" in command
        assert f"--receive.local-endpoint={r}:10901" in command
        assert targets[(r, "/etc/thanos")] == "./backends/thanos"
        replica_labels |= {c.split("=", 1)[1].split("=")[0] for c in command if c.startswith("--label=")}
    query = services["thanos-query"]["command"]
    assert sorted(c.removeprefix("--endpoint=") for c in query if c.startswith("--endpoint=")) == sorted(
        ring["endpoints"]
    )
    assert replica_labels == {"receive_replica"} and "--query.replica-label=receive_replica" in query


def test_thanos_image_matches_local_build() -> None:
    """The Thanos image is the release backends/thanos/build pins for the scale-tier test."""
    go_mod = (REPO_ROOT / "backends/thanos/build/go.mod").read_text(encoding="utf-8")
    match = re.search(r"^require github\.com/thanos-io/thanos (v\S+)$", go_mod, re.M)
    assert match is not None
    for name in (*RECEIVERS, "thanos-query"):
        assert _services()[name]["image"] == f"quay.io/thanos/thanos:{match.group(1)}"
    assert stack_script().thanos_version() == match.group(1)
