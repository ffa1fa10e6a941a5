#!/usr/bin/env python3
"""joblogger's scale tier (docs/scale.md) as local processes on 127.0.0.1, without Docker.

Per-host agent collectors (``collector/tier/agent.yaml``) -> gateway collectors
(``collector/tier/gateway.yaml``) -> Jaeger (traces), VictoriaLogs (log records)
and Thanos Receive (a hashring of receivers with replication, metrics) with
Thanos Query in front. The Thanos flags are docker-compose.yml's (profile
``scale``) with container addresses replaced by free loopback ports, and the
hashring is ``backends/thanos/hashring.json`` with the same replacement, so the
test and the benchmark run the files users deploy.

Used by tests/integration/test_scale_tier.py and benchmarks/scale_tier.py::

    tier = Tier.create(tmp_dir, hosts=4, gateways=2)
    tier.start()
    ...  # job processes export to tier.agents[i].otlp_grpc
    tier.stop()

The job process both use is ``scripts/tier_worker.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # scripts/ is not a package

REPO_ROOT = stack.REPO_ROOT
HOST = stack.HOST
AGENT_CONFIG = REPO_ROOT / "collector" / "tier" / "agent.yaml"
GATEWAY_CONFIG = REPO_ROOT / "collector" / "tier" / "gateway.yaml"
HASHRING = REPO_ROOT / "backends" / "thanos" / "hashring.json"
COMPOSE = REPO_ROOT / "docker-compose.yml"
#: Container ports in docker-compose.yml's Thanos commands and what each is.
THANOS_PORTS = {"10901": "grpc", "10902": "http", "19291": "write", "19391": "capnp"}


class Ports:
    """Loopback ports for the tier, taken in order from a block below the ephemeral range.

    Ports the kernel picks for ``bind(0)`` are the ones it also gives outgoing
    connections (32768-60999 on Linux), so with a dozen processes connecting to
    each other such a port can be taken before its server binds it. The block
    starts at ``JOBLOGGER_TIER_BASE_PORT``, by default 500 above the stack's OTLP/gRPC
    port (4817 for the default stack, 14817 for the test suite's, +1000 per
    ``JOBLOGGER_STACK_*`` offset); ports something already listens on are skipped.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        raw = environ.get("JOBLOGGER_TIER_BASE_PORT") or ""
        if raw.strip():
            self._next = int(raw)
        else:
            self._next = stack._ports(environ)["JOBLOGGER_STACK_OTLP_GRPC_PORT"] + 500

    def __call__(self) -> int:
        while True:
            port, self._next = self._next, self._next + 1
            with socket.socket() as sock:
                try:
                    sock.bind((HOST, port))
                except OSError:
                    continue
            return port


def ready(url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


@dataclasses.dataclass
class Proc:
    """One process of the tier: how to start it, how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait until ready; return the seconds it took."""
        t0 = time.monotonic()
        self.spawn()
        return self.wait_ready(t0, timeout)

    def spawn(self) -> None:
        """Start the process (its output appended to its log), without waiting for it to be ready."""
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} already runs"
        with self.log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, t0: float, timeout: float = 90.0) -> float:
        """Wait until the readiness URL answers 200; raise with the log tail if it exits or times out."""
        assert self.popen is not None
        while time.monotonic() - t0 < timeout:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            if ready(self.ready_url):
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: {self.ready_url} not ready after {timeout:.0f} s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Send ``sig`` (SIGTERM: graceful, SIGKILL: no shutdown at all) and wait for the exit."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)

    def restart(self, down_s: float = 0.0) -> float:
        """SIGTERM, stay down ``down_s`` seconds, start again; return the seconds until ready again."""
        self.stop()
        time.sleep(down_s)
        return self.start()

    def tail(self, chars: int = 3000) -> str:
        """The end of the process' log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@dataclasses.dataclass
class Collector(Proc):
    """An agent or gateway collector with its OTLP/gRPC address and internal metrics URL."""

    otlp_grpc: str = ""
    metrics_url: str = ""


@dataclasses.dataclass
class Tier:
    """Every process of the scale tier, with the URLs tests and benchmarks read."""

    root: Path
    agents: list[Collector]
    gateways: list[Collector]
    receivers: list[Proc]
    query: Proc
    jaeger: Proc
    logs: Proc
    query_url: str
    jaeger_url: str
    logs_url: str

    @classmethod
    def create(cls, root: Path, *, hosts: int = 4, gateways: int = 2, environ: Mapping[str, str] | None = None) -> Tier:
        """Lay out (not start) a tier under ``root``: ``hosts`` agents, ``gateways`` gateways, the compose receivers."""
        env = dict(os.environ if environ is None else environ)
        bins = stack.ensure_built(env)
        thanos = stack.ensure_thanos(env)
        root.mkdir(parents=True, exist_ok=True)
        free_port = Ports(env)
        services = _compose_services()
        receiver_names = sorted(n for n in services if n.startswith("thanos-receive-"))
        # container "name:port" -> loopback "127.0.0.1:free"
        addr: dict[str, str] = {}
        for name in [*receiver_names, "thanos-query"]:
            for port in THANOS_PORTS:
                addr[f"{name}:{port}"] = f"{HOST}:{free_port()}"
        ring = json.loads(HASHRING.read_text())
        for group in ring:
            group["endpoints"] = [addr[e] for e in group["endpoints"]]
        ring_file = root / "hashring.json"
        ring_file.write_text(json.dumps(ring))

        def thanos_argv(name: str) -> list[str]:
            out = [str(thanos)]
            for original in services[name]["command"]:
                arg = str(original)
                for container, local in addr.items():
                    arg = arg.replace(container, local)
                for port in THANOS_PORTS:
                    arg = arg.replace(f"0.0.0.0:{port}", addr[f"{name}:{port}"])
                arg = arg.replace("/etc/thanos/hashring.json", str(ring_file))
                arg = re.sub(r"^--tsdb\.path=.*", f"--tsdb.path={root / name}", arg)
                # Thanos v0.42.0: the tenant pruning job (run when the UTC minute of the day is a
                # multiple of 240, i.e. at 00:00, 04:00, ...) dereferences a nil TSDB head when a
                # tenant's TSDB is still opening, and Receive panics. Retention 0 (keep everything)
                # switches pruning off; the tier's data is a throw-away directory anyway.
                out.append(re.sub(r"^--tsdb\.retention=.*", "--tsdb.retention=0d", arg))
            return out

        receivers = [
            Proc(
                name=n,
                argv=thanos_argv(n),
                env={},
                ready_url=f"http://{addr[f'{n}:10902']}/-/ready",
                log=root / f"{n}.log",
            )
            for n in receiver_names
        ]
        query = Proc(
            name="thanos-query",
            argv=thanos_argv("thanos-query"),
            env={},
            ready_url=f"http://{addr['thanos-query:10902']}/-/ready",
            log=root / "thanos-query.log",
        )
        home = stack._home(env)
        shared = {s.name: s for s in stack._services(bins, home, env)}
        jp = {k: free_port() for k in ("grpc", "http", "query", "query_grpc", "health")}
        jaeger = Proc(
            name="jaeger",
            argv=list(shared["jaeger"].argv),
            env={
                **shared["jaeger"].env,
                "JAEGER_OTLP_GRPC_ENDPOINT": f"{HOST}:{jp['grpc']}",
                "JAEGER_OTLP_HTTP_ENDPOINT": f"{HOST}:{jp['http']}",
                "JAEGER_QUERY_HTTP_ENDPOINT": f"{HOST}:{jp['query']}",
                "JAEGER_QUERY_GRPC_ENDPOINT": f"{HOST}:{jp['query_grpc']}",
                "JAEGER_HEALTH_ENDPOINT": f"{HOST}:{jp['health']}",
                "JAEGER_BADGER_DIR": str(root / "jaeger"),
            },
            ready_url=f"http://{HOST}:{jp['query']}/api/services",
            log=root / "jaeger.log",
        )
        vl_port = free_port()
        logs = Proc(
            name="victorialogs",
            argv=list(shared["victorialogs"].argv),
            env={
                **shared["victorialogs"].env,
                "VL_httpListenAddr": f"{HOST}:{vl_port}",
                "VL_storageDataPath": str(root / "victorialogs"),
            },
            ready_url=f"http://{HOST}:{vl_port}/health",
            log=root / "victorialogs.log",
        )

        def collector(name: str, config: Path, extra: dict[str, str]) -> Collector:
            grpc, health, telemetry = free_port(), free_port(), free_port()
            return Collector(
                name=name,
                argv=[str(bins.collector), f"--config={config}"],
                env={
                    "OTLP_GRPC_ENDPOINT": f"{HOST}:{grpc}",
                    "OTLP_HTTP_ENDPOINT": f"{HOST}:{free_port()}",
                    "COLLECTOR_HEALTH_ENDPOINT": f"{HOST}:{health}",
                    "COLLECTOR_TELEMETRY_HOST": HOST,
                    "COLLECTOR_TELEMETRY_PORT": str(telemetry),
                    "QUEUE_DIR": str(root / name / "queue"),
                    **extra,
                },
                ready_url=f"http://{HOST}:{health}/",
                log=root / f"{name}.log",
                otlp_grpc=f"http://{HOST}:{grpc}",
                metrics_url=f"http://{HOST}:{telemetry}/metrics",
            )

        write_addr = [addr[f"{n}:19291"] for n in receiver_names]
        gws = [
            collector(
                f"gateway-{g + 1}",
                GATEWAY_CONFIG,
                {
                    "TRACES_OTLP_ENDPOINT": f"{HOST}:{jp['grpc']}",
                    # gateway g writes to receiver g (mod their number), as in docker-compose.yml
                    "THANOS_RECEIVE_OTLP_URL": f"http://{write_addr[g % len(write_addr)]}/api/v1/otlp",
                    "VICTORIALOGS_OTLP_LOGS_ENDPOINT": f"http://{HOST}:{vl_port}/insert/opentelemetry/v1/logs",
                },
            )
            for g in range(gateways)
        ]
        agents = [
            collector(
                f"agent-{h + 1}",
                AGENT_CONFIG,
                {"GATEWAY_OTLP_ENDPOINT": gws[h % gateways].otlp_grpc.removeprefix("http://")},
            )
            for h in range(hosts)
        ]
        return cls(
            root=root,
            agents=agents,
            gateways=gws,
            receivers=receivers,
            query=query,
            jaeger=jaeger,
            logs=logs,
            query_url=f"http://{addr['thanos-query:10902']}",
            jaeger_url=f"http://{HOST}:{jp['query']}",
            logs_url=f"http://{HOST}:{vl_port}",
        )

    def processes(self) -> list[Proc]:
        """Every process, in start order (backends first)."""
        return [*self.receivers, self.query, self.jaeger, self.logs, *self.gateways, *self.agents]

    def start(self) -> None:
        """Start every process (receivers together: each waits for its peers), wait until all are ready."""
        t0 = time.monotonic()
        for proc in self.receivers:
            proc.spawn()
        for proc in self.receivers:
            proc.wait_ready(t0)
        for proc in [self.query, self.jaeger, self.logs, *self.gateways, *self.agents]:
            proc.start()

    def stop(self) -> None:
        """SIGTERM everything, agents first (they drain into the gateways as far as they can)."""
        for proc in reversed(self.processes()):
            with contextlib.suppress(Exception):
                proc.stop(timeout=20)

    # ---- reading the backends ------------------------------------------------
    def promql(self, query: str, lookback: str | None = None) -> list[dict[str, Any]]:
        """Instant PromQL query through Thanos Query (replicas deduplicated), with its lookback if given."""
        params = {"query": query, "dedup": "true"} | ({"lookback_delta": lookback} if lookback else {})
        url = f"{self.query_url}/api/v1/query?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=20) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def jaeger_spans(self, service: str) -> list[tuple[str, str]]:
        """(trace id, span id) of every span of ``service`` Jaeger returns, duplicates included."""
        params = {"service": service, "limit": "10000", "lookback": "2h"}
        url = f"{self.jaeger_url}/api/traces?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=20) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            exc.close()
            return []
        return [
            (span["traceID"], span["spanID"])
            for trace in body.get("data") or []
            for span in trace["spans"]
            if trace["processes"][span["processID"]]["serviceName"] == service
        ]

    def log_count(self, service: str) -> int:
        """Log records of ``service`` in VictoriaLogs over the last two hours."""
        now = time.time()
        form = {
            "query": f'service.name:="{service}" | stats count() as n',
            "start": f"{now - 7200:.3f}",
            "end": f"{now + 60:.3f}",
        }
        request = urllib.request.Request(
            f"{self.logs_url}/select/logsql/query", data=urllib.parse.urlencode(form).encode()
        )
        with urllib.request.urlopen(request, timeout=20) as resp:
            rows = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
        return int(rows[0]["n"]) if rows else 0


def _compose_services() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return dict(data["services"])


def collector_counters(url: str) -> dict[str, float]:
    """Sums of a collector's own ``otelcol_*`` counters by metric name (its /metrics page)."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("otelcol_"):
                name = line.split("{")[0].split(" ")[0]
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
