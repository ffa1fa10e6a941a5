#!/usr/bin/env python3
"""Local telemetry stack for joblogger, without Docker.

Builds (or installs) and runs, on 127.0.0.1, the same services that
docker-compose runs, with the repository's own configuration files:

* ``otelcol-joblogger``: the OpenTelemetry Collector built by the collector
  builder from ``collector/builder-config.yaml``, run with ``collector/config.yaml``;
* Jaeger v2 (traces), built from the Go tool module ``backends/jaeger/build``,
  run with ``backends/jaeger/config.yaml``;
* Prometheus 3 (metrics and alert rules) and promtool, built from the Go tool
  module ``backends/prometheus/build``, run with ``backends/prometheus/prometheus.yml``;
* VictoriaLogs (log records), built from the Go tool module
  ``backends/victorialogs/build``, configured by ``VL_*`` environment
  variables (``-envflag.enable -envflag.prefix=VL_``) exactly as in docker-compose.

``build`` also builds Thanos (``backends/thanos/build``, :func:`ensure_thanos`), which
only the scale tier uses (scripts/tier.py, docs/scale.md); ``up`` does not start it.

Command line::

    python scripts/stack.py up [--fresh]   # build what is missing, start, wait until ready
    python scripts/stack.py down           # stop what `up` started
    python scripts/stack.py status         # pid and readiness of each service
    python scripts/stack.py build          # only build / install
    python scripts/stack.py env            # print the env vars tests and users need

Everything lives under ``${JOBLOGGER_STACK_HOME:-~/.cache/joblogger/stack}``:
``bin/`` holds binaries whose names carry a version and a hash of their build
inputs (a change rebuilds, only the first run on a machine pays), ``run/`` the
pid files and logs, ``data/`` Prometheus' TSDB, Jaeger's Badger store and VictoriaLogs' storage. Go
builds use the Go module proxy (the default ``GOPROXY``) with ``GOFLAGS=-mod=mod``.

``up`` keeps services that already run, unless what they run no longer matches
what they would be started with (another binary, other arguments or
environment, or a changed configuration file): such a service is restarted,
and only it.

Ports are overridable with ``JOBLOGGER_STACK_*_PORT`` variables (see
:data:`PORT_DEFAULTS`).

The same logic is importable (``sys.path.insert(0, "scripts")``)::

    import stack
    urls = stack.start()        # builds first if needed
    print(urls.prometheus)      # http://127.0.0.1:9090
    stack.stop()
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "PORT_DEFAULTS",
    "SERVICES",
    "Binaries",
    "StackEndpoints",
    "StackError",
    "endpoints",
    "ensure_built",
    "ensure_thanos",
    "main",
    "start",
    "started_by_last_start",
    "status",
    "stop",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTOR_MANIFEST = REPO_ROOT / "collector" / "builder-config.yaml"
COLLECTOR_CONFIG = REPO_ROOT / "collector" / "config.yaml"
#: Metrics routing overlays of the collector (``JOBLOGGER_METRICS``): remote-write.yaml, otlp.yaml.
COLLECTOR_METRICS_DIR = REPO_ROOT / "collector" / "metrics"
JAEGER_BUILD_DIR = REPO_ROOT / "backends" / "jaeger" / "build"
JAEGER_CONFIG = REPO_ROOT / "backends" / "jaeger" / "config.yaml"
PROMETHEUS_CONFIG = REPO_ROOT / "backends" / "prometheus" / "prometheus.yml"
VICTORIALOGS_BUILD_DIR = REPO_ROOT / "backends" / "victorialogs" / "build"
PROMETHEUS_BUILD_DIR = REPO_ROOT / "backends" / "prometheus" / "build"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
THANOS_BUILD_DIR = REPO_ROOT / "backends" / "thanos" / "build"
THANOS_MODULE = "github.com/thanos-io/thanos"
VICTORIALOGS_PACKAGE = "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"
#: VictoriaLogs' retention, the same in docker-compose.yml.
VICTORIALOGS_RETENTION = "7d"

HOST = "127.0.0.1"
SERVICES: tuple[str, ...] = ("prometheus", "jaeger", "victorialogs", "collector")
"""Services in start order (backends first, then the collector)."""

PORT_DEFAULTS: Mapping[str, int] = {
    "JOBLOGGER_STACK_OTLP_GRPC_PORT": 4317,
    "JOBLOGGER_STACK_OTLP_HTTP_PORT": 4318,
    "JOBLOGGER_STACK_COLLECTOR_HEALTH_PORT": 13133,
    "JOBLOGGER_STACK_COLLECTOR_TELEMETRY_PORT": 8888,
    "JOBLOGGER_STACK_JAEGER_OTLP_GRPC_PORT": 4417,
    "JOBLOGGER_STACK_JAEGER_OTLP_HTTP_PORT": 4418,
    "JOBLOGGER_STACK_JAEGER_QUERY_PORT": 16686,
    "JOBLOGGER_STACK_JAEGER_QUERY_GRPC_PORT": 16685,
    "JOBLOGGER_STACK_JAEGER_HEALTH_PORT": 13134,
    "JOBLOGGER_STACK_PROMETHEUS_PORT": 9090,
    "JOBLOGGER_STACK_VICTORIALOGS_PORT": 9428,
}
"""Environment variables that move a local port, with their defaults."""

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 40


class StackError(RuntimeError):
    """A build, start or stop of the local stack failed; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class StackEndpoints:
    """Loopback URLs of a running local stack.

    Example:
        >>> urls = endpoints({})
        >>> urls.otlp_grpc, urls.prometheus
        ('http://127.0.0.1:4317', 'http://127.0.0.1:9090')
    """

    otlp_grpc: str
    otlp_http: str
    collector_health: str
    collector_metrics: str
    jaeger: str
    prometheus: str
    logs: str
    """VictoriaLogs: LogsQL at ``/select/logsql/query``, OTLP logs in at ``/insert/opentelemetry/v1/logs``."""

    def env(self) -> dict[str, str]:
        """Return the environment variables that point clients at this stack.

        Example:
            >>> endpoints({}).env()["PROMETHEUS_URL"]
            'http://127.0.0.1:9090'
        """
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_grpc,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTLP_HTTP_URL": self.otlp_http,
            "COLLECTOR_HEALTH_URL": self.collector_health,
            "COLLECTOR_METRICS_URL": self.collector_metrics,
            "JAEGER_URL": self.jaeger,
            "PROMETHEUS_URL": self.prometheus,
            "VICTORIALOGS_URL": self.logs,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Binaries:
    """Paths of the executables the stack runs."""

    collector: Path
    jaeger: Path
    prometheus: Path
    victorialogs: Path
    promtool: Path


@dataclasses.dataclass(frozen=True, slots=True)
class _Service:
    """How to run one service and how to tell that it is ready."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    ready_url: str
    ports: tuple[int, ...]
    configs: tuple[Path, ...] = ()
    """Files the service reads at start-up: a change to them means a restart."""


# --------------------------------------------------------------------------
# Configuration


def _home(environ: Mapping[str, str]) -> Path:
    """Return the cache directory of the stack."""
    raw = environ.get("JOBLOGGER_STACK_HOME") or "~/.cache/joblogger/stack"
    return Path(raw).expanduser().resolve()


def _ports(environ: Mapping[str, str]) -> dict[str, int]:
    """Return every port, taking overrides from ``environ``."""
    ports: dict[str, int] = {}
    for name, default in PORT_DEFAULTS.items():
        raw = environ.get(name, "").strip()
        if not raw:
            ports[name] = default
            continue
        try:
            ports[name] = int(raw)
        except ValueError:
            raise StackError(f"{name}={raw!r} is not a port number") from None
    return ports


def endpoints(environ: Mapping[str, str] | None = None) -> StackEndpoints:
    """Return the URLs of the local stack for the given (or current) environment.

    Example:
        >>> endpoints({"JOBLOGGER_STACK_PROMETHEUS_PORT": "19090"}).prometheus
        'http://127.0.0.1:19090'
    """
    p = _ports(os.environ if environ is None else environ)
    return StackEndpoints(
        otlp_grpc=f"http://{HOST}:{p['JOBLOGGER_STACK_OTLP_GRPC_PORT']}",
        otlp_http=f"http://{HOST}:{p['JOBLOGGER_STACK_OTLP_HTTP_PORT']}",
        collector_health=f"http://{HOST}:{p['JOBLOGGER_STACK_COLLECTOR_HEALTH_PORT']}",
        collector_metrics=f"http://{HOST}:{p['JOBLOGGER_STACK_COLLECTOR_TELEMETRY_PORT']}/metrics",
        jaeger=f"http://{HOST}:{p['JOBLOGGER_STACK_JAEGER_QUERY_PORT']}",
        prometheus=f"http://{HOST}:{p['JOBLOGGER_STACK_PROMETHEUS_PORT']}",
        logs=f"http://{HOST}:{p['JOBLOGGER_STACK_VICTORIALOGS_PORT']}",
    )


def _log(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[stack] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Building


def _go(environ: Mapping[str, str]) -> str:
    """Return the path of the ``go`` command, or raise."""
    found = shutil.which("go", path=environ.get("PATH")) or shutil.which("go")
    if found is None and Path("/usr/local/go/bin/go").exists():
        found = "/usr/local/go/bin/go"
    if found is None:
        raise StackError("the `go` command is needed to build the collector, Jaeger and VictoriaLogs")
    return found


def _digest(*paths: Path, extra: str = "") -> str:
    """Return a short hash of the files' contents (and ``extra``)."""
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _collector_versions() -> tuple[str, str]:
    """Return (core version, dist version) read from the builder manifest."""
    text = COLLECTOR_MANIFEST.read_text()
    core = re.search(r"go\.opentelemetry\.io/collector/\S+ (v0\.\d+\.\d+)", text)
    dist = re.search(r"^\s+version:\s*(\S+)", text, re.MULTILINE)
    if core is None or dist is None:
        raise StackError(f"cannot find the collector versions in {COLLECTOR_MANIFEST}")
    return core.group(1), dist.group(1)


def _required_version(build_dir: Path, module: str) -> str:
    """Return the version of ``module`` that the tool module in ``build_dir`` requires."""
    go_mod = build_dir / "go.mod"
    match = re.search(rf"^require {re.escape(module)} (\S+)", go_mod.read_text(), re.MULTILINE)
    if match is None:
        raise StackError(f"cannot find the version of {module} in {go_mod}")
    return match.group(1)


def _jaeger_version() -> str:
    """Return the Jaeger module version required by the tool module."""
    return _required_version(JAEGER_BUILD_DIR, "github.com/jaegertracing/jaeger")


def prometheus_version() -> str:
    """The Prometheus release the tool module pins: module version v0.3NN.M is Prometheus 3.NN.M.

    Example:
        >>> prometheus_version()  # doctest: +SKIP
        '3.16.0'
    """
    module = _required_version(PROMETHEUS_BUILD_DIR, PROMETHEUS_MODULE)
    match = re.fullmatch(r"v0\.3(\d\d)\.(\d+)", module)
    if match is None:
        raise StackError(f"{PROMETHEUS_MODULE} {module} is not a Prometheus 3.x module version (v0.3NN.M)")
    return f"3.{int(match.group(1))}.{match.group(2)}"


def _victorialogs_version() -> str:
    """Return the VictoriaLogs module version required by the tool module."""
    return _required_version(VICTORIALOGS_BUILD_DIR, "github.com/VictoriaMetrics/VictoriaLogs")


#: Seconds between "still building" lines while a build runs.
HEARTBEAT_S = 30.0
_PACKAGE_LINE = re.compile(r"^[\w.~-]+(/[\w.~+-]+)*$")


def _run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    what: str | None = None,
    packages: int | None = None,
) -> None:
    """Run a build command with output to ``log``; raise with its tail on failure.

    With ``what``, print a progress line every :data:`HEARTBEAT_S` seconds: the time
    spent and, for ``go build -v`` given the number of ``packages`` it may compile,
    how many it has compiled so far (packages already in Go's build cache are not
    compiled again, so a warm build finishes below the total).
    """
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}  (in {cwd})\n".encode())
        out.flush()
        offset = out.tell()
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        next_beat = started + HEARTBEAT_S
        while True:
            try:
                rc = proc.wait(timeout=min(1.0, HEARTBEAT_S))
                break
            except subprocess.TimeoutExpired:
                pass
            if what is not None and time.monotonic() >= next_beat:
                next_beat += HEARTBEAT_S
                _log(_progress_line(what, time.monotonic() - started, log, offset, packages))
    if rc != 0:
        raise StackError(f"`{' '.join(argv)}` failed with exit code {rc}\n{_tail(log)}")


def _progress_line(what: str, elapsed: float, log: Path, offset: int, packages: int | None) -> str:
    """``building jaeger: 4m30s, 812 of at most 1,630 packages compiled``."""
    minutes, seconds = divmod(int(elapsed), 60)
    line = f"{what}: {minutes}m{seconds:02d}s"
    if packages:
        with log.open("rb") as fh:
            fh.seek(offset)
            done = sum(1 for raw in fh if _PACKAGE_LINE.match(raw.decode(errors="replace").strip()))
        line += f", {done:,} of at most {packages:,} packages compiled ({min(100, 100 * done // packages)}%)"
    return line + " ..."


def _count_packages(
    go: str, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path, what: str
) -> int | None:
    """How many packages ``go build *args`` may compile (downloads the modules first); None if unknown."""
    try:
        _run([go, "list", "-deps", *args], cwd=cwd, env=env, log=log, what=f"{what}: downloading modules")
        with log.open("rb") as fh:
            lines = fh.read().decode(errors="replace").splitlines()
        # the listing is the tail of the log after the last command header
        start = max(i for i, text in enumerate(lines) if text.startswith("$ "))
        found = [text for text in lines[start + 1 :] if _PACKAGE_LINE.match(text.strip())]
        return len(found) or None
    except (StackError, ValueError, OSError):
        return None


def _go_env(environ: Mapping[str, str], **extra: str) -> dict[str, str]:
    """Return the environment for Go builds."""
    env = dict(environ)
    env["GOFLAGS"] = "-mod=mod"
    env.update(extra)
    return env


def _build_collector(home: Path, environ: Mapping[str, str]) -> Path:
    """Build ``otelcol-joblogger`` unless the cached binary matches the manifest."""
    core, dist = _collector_versions()
    key = _digest(COLLECTOR_MANIFEST)
    target = home / "bin" / f"otelcol-joblogger-{dist}-{key}"
    if target.exists():
        return target
    go = _go(environ)
    logs = home / "build-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{target.name}.log"
    started = time.monotonic()

    gobin = home / "tools" / f"builder-{core}"
    builder = gobin / "builder"
    if not builder.exists():
        _log(f"installing the collector builder {core} ...")
        _run(
            [go, "install", f"go.opentelemetry.io/collector/cmd/builder@{core}"],
            cwd=home,
            env=_go_env(environ, GOBIN=str(gobin)),
            log=log,
            what=f"installing the collector builder {core}",
        )

    out_dir = home / "build" / target.name
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    manifest = re.sub(
        r"^(\s+output_path:).*$",
        lambda m: f"{m.group(1)} {out_dir}",
        COLLECTOR_MANIFEST.read_text(),
        count=1,
        flags=re.MULTILINE,
    )
    manifest_path = out_dir / "builder-config.yaml"
    manifest_path.write_text(manifest)
    _log(f"building otelcol-joblogger {dist} (first run only; several minutes) ...")
    _run(
        [str(builder), "--config", str(manifest_path)],
        cwd=out_dir,
        env=_go_env(environ),
        log=log,
        what=f"building otelcol-joblogger {dist}",
    )
    built = out_dir / "otelcol-joblogger"
    if not built.exists():
        raise StackError(f"the builder did not produce {built}\n{_tail(log)}")
    _install(built, target)
    shutil.rmtree(out_dir, ignore_errors=True)
    _log(f"built {target.name} in {time.monotonic() - started:.0f} s")
    return target


def _build_go_tool(
    home: Path,
    environ: Mapping[str, str],
    *,
    build_dir: Path,
    name: str,
    version: str,
    package: str,
    ldflags: str = "-s -w",
    tags: str = "",
    **go_env: str,
) -> Path:
    """Build ``package`` from the tool module in ``build_dir`` unless the cached binary matches it.

    The binary is named ``<name>-<version>-<hash of go.mod, go.sum, tools.go>``, so a
    change of the tool module rebuilds and nothing else does.
    """
    files = [build_dir / n for n in ("go.mod", "go.sum", "tools.go")]
    target = home / "bin" / f"{name}-{version}-{_digest(*files, extra=tags)}"
    if target.exists():
        return target
    go = _go(environ)
    logs = home / "build-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{target.name}.log"
    started = time.monotonic()
    # Build in a copy so that -mod=mod never rewrites the committed go.mod/go.sum.
    src = home / "build" / target.name
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, src / f.name)
    _log(f"building {name} {version} (first run only; several minutes) ...")
    out = src / name
    env = _go_env(environ, **go_env)
    what = f"building {name}"
    tag_args = [f"-tags={tags}"] if tags else []
    packages = _count_packages(go, [*tag_args, package], cwd=src, env=env, log=log, what=what)
    _run(
        [go, "build", "-v", *tag_args, "-trimpath", f"-ldflags={ldflags}", "-o", str(out), package],
        cwd=src,
        env=env,
        log=log,
        what=what,
        packages=packages,
    )
    _install(out, target)
    shutil.rmtree(src, ignore_errors=True)
    _log(f"built {target.name} in {time.monotonic() - started:.0f} s")
    return target


def _build_jaeger(home: Path, environ: Mapping[str, str]) -> Path:
    """Build Jaeger v2 from its tool module (backends/jaeger/build)."""
    return _build_go_tool(
        home,
        environ,
        build_dir=JAEGER_BUILD_DIR,
        name="jaeger",
        version=_jaeger_version(),
        package="github.com/jaegertracing/jaeger/cmd/jaeger",
    )


def _build_victorialogs(home: Path, environ: Mapping[str, str]) -> Path:
    """Build VictoriaLogs from its tool module (backends/victorialogs/build).

    Upstream's "pure" build (``CGO_ENABLED=0``, no C compiler needed); the
    ldflag makes ``-version`` and ``vm_app_version`` name the release.
    """
    version = _victorialogs_version()
    return _build_go_tool(
        home,
        environ,
        build_dir=VICTORIALOGS_BUILD_DIR,
        name="victoria-logs",
        version=version,
        package=VICTORIALOGS_PACKAGE,
        ldflags=f"-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-{version}",
        CGO_ENABLED="0",
    )


def _install(built: Path, target: Path) -> None:
    """Move a fresh binary into place atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copy2(built, tmp)
    tmp.chmod(0o755)
    tmp.replace(target)


def _build_prometheus(home: Path, environ: Mapping[str, str]) -> tuple[Path, Path]:
    """Build Prometheus and promtool from their tool module (backends/prometheus/build).

    ``JOBLOGGER_STACK_PROMETHEUS_BIN`` / ``JOBLOGGER_STACK_PROMTOOL_BIN`` use other binaries instead.
    """
    version = prometheus_version()
    built: list[Path] = []
    for name in ("prometheus", "promtool"):
        override = environ.get(f"JOBLOGGER_STACK_{name.upper()}_BIN")
        if override:
            built.append(Path(override))
            continue
        built.append(
            _build_go_tool(
                home,
                environ,
                build_dir=PROMETHEUS_BUILD_DIR,
                name=name,
                version=version,
                package=f"{PROMETHEUS_MODULE}/cmd/{name}",
                ldflags=(
                    "-s -w"
                    f" -X github.com/prometheus/common/version.Version={version}"
                    " -X github.com/prometheus/common/version.Branch=HEAD"
                ),
                # Only the static/file/HTTP service discovery the stack's config uses: the
                # cloud SDKs of the other discovery plugins are most of a full build's time.
                tags="remove_all_sd",
                CGO_ENABLED="0",
            )
        )
    return built[0], built[1]


def thanos_version() -> str:
    """The Thanos release the tool module in ``backends/thanos/build`` pins.

    Example:
        >>> thanos_version()  # doctest: +SKIP
        'v0.42.0'
    """
    return _required_version(THANOS_BUILD_DIR, THANOS_MODULE)


def ensure_thanos(environ: Mapping[str, str] | None = None) -> Path:
    """Return the ``thanos`` binary of the scale tier (docs/scale.md), building it if missing.

    Built from the tool module ``backends/thanos/build`` (Thanos' go.mod has replace
    directives, so ``go install`` is refused); ``JOBLOGGER_STACK_THANOS_BIN`` uses
    another binary instead. Not part of :func:`ensure_built`: only the scale-tier
    test and benchmark need it (``stack.py build`` builds it too).

    Example:
        >>> ensure_thanos().name  # doctest: +SKIP
        'thanos-v0.42.0-1a2b3c4d5e6f'
    """
    env = dict(os.environ if environ is None else environ)
    override = env.get("JOBLOGGER_STACK_THANOS_BIN")
    if override:
        return Path(override)
    home = _home(env)
    home.mkdir(parents=True, exist_ok=True)
    version = thanos_version()
    with _locked(home):
        return _build_go_tool(
            home,
            env,
            build_dir=THANOS_BUILD_DIR,
            name="thanos",
            version=version,
            package=f"{THANOS_MODULE}/cmd/thanos",
            ldflags=f"-s -w -X github.com/prometheus/common/version.Version={version.lstrip('v')}",
            # Upstream's tags (.promu.yml). `slicelabels` is not optional: Thanos casts its
            # protobuf labels to Prometheus' labels.Labels with unsafe zero-copy conversions
            # that assume the slice representation; without the tag Receive corrupts memory
            # and panics on its first write.
            tags="netgo,slicelabels",
            CGO_ENABLED="0",
        )


def ensure_redis(environ: Mapping[str, str] | None = None) -> Path:
    """Return the ``redis-server`` binary (the job-framework tests' broker), installing Debian's package if missing.

    Example:
        >>> ensure_redis().name  # doctest: +SKIP
        'redis-server'
    """
    env = dict(os.environ if environ is None else environ)
    return _ensure_debian_binary("redis-server", "redis-server", ">= 6", "JOBLOGGER_REDIS_SERVER_BIN", env)


def _ensure_debian_binary(
    binary: str, package: str, wanted: str, override_var: str, environ: Mapping[str, str]
) -> Path:
    """Return ``binary`` from PATH (or ``override_var``), installing Debian's ``package`` if it is missing."""
    override = environ.get(override_var)
    if override:
        return Path(override)
    found = shutil.which(binary)
    if found:
        return Path(found)
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise StackError(
            f"{binary} ({wanted}) is not installed. Install it (Debian/Ubuntu: "
            f"`sudo apt-get install --no-install-recommends {package}`) or set "
            f"{override_var} to its path."
        )
    _log(f"installing Debian's {package} package ...")
    env = dict(environ, DEBIAN_FRONTEND="noninteractive")
    with _no_service_start():
        for argv in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", package]):
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
            if proc.returncode != 0:
                raise StackError(f"`{' '.join(argv)}` failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    found = shutil.which(binary)
    if found is None:
        raise StackError(f"apt-get installed {package} but {binary} is not on PATH")
    return Path(found)


@contextlib.contextmanager
def _no_service_start() -> Iterator[None]:
    """Keep dpkg from starting a packaged service (Redis): we run our own."""
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists():
        yield
        return
    policy.write_text("#!/bin/sh\n# written by joblogger scripts/stack.py\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def ensure_built(environ: Mapping[str, str] | None = None) -> Binaries:
    """Build or install whatever is missing and return the binaries' paths.

    Only the first call on a machine (or after a version change) builds; later
    calls find the cached binaries in a few milliseconds.

    Example:
        >>> bins = ensure_built()  # doctest: +SKIP
        >>> bins.collector.name  # doctest: +SKIP
        'otelcol-joblogger-0.142.0-1a2b3c4d5e6f'
    """
    env = dict(os.environ if environ is None else environ)
    home = _home(env)
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home):
        prometheus, promtool = _build_prometheus(home, env)
        collector = _build_collector(home, env)
        jaeger = _build_jaeger(home, env)
        victorialogs = _build_victorialogs(home, env)
    return Binaries(
        collector=collector, jaeger=jaeger, prometheus=prometheus, victorialogs=victorialogs, promtool=promtool
    )


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Hold an exclusive lock on the stack home (one builder/starter at a time)."""
    with (home / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------
# Running


def _services(bins: Binaries, home: Path, environ: Mapping[str, str]) -> list[_Service]:
    """Return how to run each service with loopback addresses."""
    p = _ports(environ)
    urls = endpoints(environ)
    data = home / "data" / "prometheus"
    prom_argv = [
        str(bins.prometheus),
        f"--config.file={PROMETHEUS_CONFIG}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={HOST}:{p['JOBLOGGER_STACK_PROMETHEUS_PORT']}",
        "--web.enable-remote-write-receiver",
        "--web.enable-otlp-receiver",
        "--web.enable-lifecycle",
        "--enable-feature=exemplar-storage",
        "--enable-feature=created-timestamp-zero-ingestion",
    ]
    metrics_overlay = collector_metrics_overlay(environ)
    return [
        _Service(
            name="prometheus",
            argv=tuple(prom_argv),
            env={},
            ready_url=f"{urls.prometheus}/-/ready",
            ports=(p["JOBLOGGER_STACK_PROMETHEUS_PORT"],),
            configs=(PROMETHEUS_CONFIG,),
        ),
        _Service(
            name="jaeger",
            argv=(str(bins.jaeger), f"--config={JAEGER_CONFIG}"),
            env={
                "JAEGER_OTLP_GRPC_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_JAEGER_OTLP_GRPC_PORT']}",
                "JAEGER_OTLP_HTTP_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_JAEGER_OTLP_HTTP_PORT']}",
                "JAEGER_QUERY_HTTP_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_JAEGER_QUERY_PORT']}",
                "JAEGER_QUERY_GRPC_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_JAEGER_QUERY_GRPC_PORT']}",
                "JAEGER_HEALTH_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_JAEGER_HEALTH_PORT']}",
                "JAEGER_BADGER_DIR": str(home / "data" / "jaeger"),
            },
            ready_url=f"{urls.jaeger}/api/services",
            configs=(JAEGER_CONFIG,),
            ports=tuple(
                p[k]
                for k in (
                    "JOBLOGGER_STACK_JAEGER_OTLP_GRPC_PORT",
                    "JOBLOGGER_STACK_JAEGER_OTLP_HTTP_PORT",
                    "JOBLOGGER_STACK_JAEGER_QUERY_PORT",
                    "JOBLOGGER_STACK_JAEGER_QUERY_GRPC_PORT",
                    "JOBLOGGER_STACK_JAEGER_HEALTH_PORT",
                )
            ),
        ),
        _Service(
            name="victorialogs",
            # The same two arguments as docker-compose; every flag comes from VL_* variables.
            argv=(str(bins.victorialogs), "-envflag.enable", "-envflag.prefix=VL_"),
            env={
                "VL_httpListenAddr": f"{HOST}:{p['JOBLOGGER_STACK_VICTORIALOGS_PORT']}",
                "VL_storageDataPath": str(home / "data" / "victorialogs"),
                "VL_retentionPeriod": VICTORIALOGS_RETENTION,
            },
            ready_url=f"{urls.logs}/health",
            ports=(p["JOBLOGGER_STACK_VICTORIALOGS_PORT"],),
        ),
        _Service(
            name="collector",
            argv=(str(bins.collector), f"--config={COLLECTOR_CONFIG}", f"--config={metrics_overlay}"),
            env={
                "OTLP_GRPC_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_OTLP_GRPC_PORT']}",
                "OTLP_HTTP_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_OTLP_HTTP_PORT']}",
                "COLLECTOR_HEALTH_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_COLLECTOR_HEALTH_PORT']}",
                "COLLECTOR_TELEMETRY_HOST": HOST,
                "COLLECTOR_TELEMETRY_PORT": str(p["JOBLOGGER_STACK_COLLECTOR_TELEMETRY_PORT"]),
                "TRACES_OTLP_ENDPOINT": f"{HOST}:{p['JOBLOGGER_STACK_JAEGER_OTLP_GRPC_PORT']}",
                "PROMETHEUS_REMOTE_WRITE_URL": f"{urls.prometheus}/api/v1/write",
                "PROMETHEUS_OTLP_URL": f"{urls.prometheus}/api/v1/otlp/v1/metrics",
                "VICTORIALOGS_OTLP_LOGS_ENDPOINT": f"{urls.logs}/insert/opentelemetry/v1/logs",
            },
            ready_url=f"{urls.collector_health}/",
            configs=(COLLECTOR_CONFIG, metrics_overlay),
            ports=tuple(
                p[k]
                for k in (
                    "JOBLOGGER_STACK_OTLP_GRPC_PORT",
                    "JOBLOGGER_STACK_OTLP_HTTP_PORT",
                    "JOBLOGGER_STACK_COLLECTOR_HEALTH_PORT",
                    "JOBLOGGER_STACK_COLLECTOR_TELEMETRY_PORT",
                )
            ),
        ),
    ]


def collector_metrics_overlay(environ: Mapping[str, str]) -> Path:
    """The collector's metrics routing overlay: ``JOBLOGGER_METRICS`` as in docker-compose.

    ``remote-write`` (default) or ``otlp`` (Prometheus's native OTLP receiver)::

        >>> collector_metrics_overlay({}).name
        'remote-write.yaml'
        >>> collector_metrics_overlay({"JOBLOGGER_METRICS": "otlp"}).name
        'otlp.yaml'
    """
    choice = environ.get("JOBLOGGER_METRICS") or "remote-write"
    path = COLLECTOR_METRICS_DIR / f"{choice}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in COLLECTOR_METRICS_DIR.glob("*.yaml")))
        raise SystemExit(f"JOBLOGGER_METRICS={choice!r}: no {path.name} in collector/metrics ({known})")
    return path


def _run_dir(home: Path) -> Path:
    """Return (and create) the directory with pid files and logs."""
    run = home / "run"
    run.mkdir(parents=True, exist_ok=True)
    return run


def _read_pid(home: Path, name: str) -> int | None:
    """Return the pid of a service started by this script if it still runs."""
    pid_file = _run_dir(home) / f"{name}.pid"
    try:
        record = json.loads(pid_file.read_text())
        pid = int(record["pid"])
        exe = str(record["exe"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    for _ in range(40):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if raw:
            break
        # Right after exec the new image's arguments are not yet visible.
        time.sleep(0.025)
    # Guard against a recycled pid: the process must still run our binary.
    if raw.split(b"\0")[0].decode(errors="replace") != exe:
        return None
    return pid


def _ready(url: str, timeout: float = 2.0) -> bool:
    """Return whether ``url`` answers HTTP 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except (OSError, ValueError):
        return False


def _port_in_use(port: int) -> bool:
    """Return whether something listens on ``HOST:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file, framed for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return f"--- last {len(text)} lines of {path} ---\n" + "\n".join(text)


def _spawn(service: _Service, home: Path, environ: Mapping[str, str]) -> int:
    """Start one service in the background and record its pid."""
    run = _run_dir(home)
    log = run / f"{service.name}.log"
    env = dict(environ)
    env.update(service.env)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(service.argv)}\n".encode())
    # posix_spawn rather than Popen: the service outlives this process, in its
    # own session, and no Popen object is left to warn about it.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        pid = os.posix_spawn(
            service.argv[0],
            list(service.argv),
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(fd)
    record = {"pid": pid, "exe": service.argv[0], "log": str(log), "configs": _config_digest(service)}
    (run / f"{service.name}.pid").write_text(json.dumps(record))
    return pid


def _config_digest(service: _Service) -> str:
    """Return a hash of the configuration files ``service`` reads at start-up."""
    return _digest(*(p for p in service.configs if p.exists()), extra=" ".join(str(p) for p in service.configs))


def _drift(service: _Service, pid: int, home: Path) -> str | None:
    """Say why the running ``pid`` no longer matches ``service`` (None when it does).

    Compares the process' real command line and the environment variables that
    this script sets with what ``service`` would be started with now, and the
    digest of its configuration files with the one recorded when it started.
    """
    try:
        argv = tuple(a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1])
        environ = dict(
            item.decode(errors="replace").partition("=")[::2]
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if item
        )
    except OSError:
        return None  # cannot tell (another user's process): keep it
    if argv != service.argv:
        return "its binary or arguments changed"
    changed = sorted(k for k, v in service.env.items() if environ.get(k) != v)
    if changed:
        return "its environment changed (" + ", ".join(changed) + ")"
    try:
        recorded = json.loads((_run_dir(home) / f"{service.name}.pid").read_text()).get("configs")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded is not None and recorded != _config_digest(service):
        return "its configuration file changed"
    return None


def start(
    environ: Mapping[str, str] | None = None,
    *,
    fresh: bool = False,
    timeout: float = READY_TIMEOUT_S,
) -> StackEndpoints:
    """Build what is missing, start every service not yet running, wait until ready.

    Services that already run (started earlier by this script) are kept, unless
    their binary, arguments, environment or configuration file changed since:
    those are restarted (and are not counted as started by this call, so a
    caller that stops what it started leaves them running, as it found them).
    The names of the services this call started are in :func:`started_by_last_start`.

    Args:
        environ: Environment to read overrides from (default ``os.environ``).
        fresh: Delete the stored data (Prometheus, VictoriaLogs) before starting.
        timeout: Seconds to wait for each service to become ready.

    Returns:
        The loopback URLs of the stack.

    Raises:
        StackError: A build failed, a port is taken by another program, or a
            service exited or did not become ready in time (with its log tail).

    Example:
        >>> urls = start()  # doctest: +SKIP
        >>> urls.otlp_grpc  # doctest: +SKIP
        'http://127.0.0.1:4317'
    """
    env = dict(os.environ if environ is None else environ)
    bins = ensure_built(env)
    home = _home(env)
    started: list[str] = []
    restarted: list[str] = []
    with _locked(home):
        services = _services(bins, home, env)
        if fresh:
            if any(_read_pid(home, s.name) for s in services):
                raise StackError("`fresh` needs a stopped stack: run `stack.py down` first")
            shutil.rmtree(home / "data", ignore_errors=True)
        (home / "data").mkdir(parents=True, exist_ok=True)
        pending: list[_Service] = []
        for service in services:
            pid = _read_pid(home, service.name)
            if pid is not None:
                reason = _drift(service, pid, home)
                if reason is None:
                    pending.append(service)
                    continue
                _log(f"restarting {service.name}: {reason}")
                _terminate(pid)
                restarted.append(service.name)
            busy = [port for port in service.ports if _port_in_use(port)]
            if busy:
                raise StackError(
                    f"cannot start {service.name}: port(s) {busy} on {HOST} are in use by "
                    "another program; stop it or move the port with the "
                    "JOBLOGGER_STACK_*_PORT variables"
                )
            _spawn(service, home, env)
            if service.name not in restarted:
                started.append(service.name)
            pending.append(service)
        try:
            _wait_ready(pending, home, timeout)
        except StackError:
            # Leave nothing half-started behind: stop what this call launched.
            for name in reversed(started + restarted):
                pid = _read_pid(home, name)
                if pid is not None:
                    _terminate(pid)
                (_run_dir(home) / f"{name}.pid").unlink(missing_ok=True)
            raise
    _write_started(home, started)
    for name in started + restarted:
        _log(f"{name} is ready")
    return endpoints(env)


def _wait_ready(services: Sequence[_Service], home: Path, timeout: float) -> None:
    """Poll every service's readiness URL; raise with a log tail on failure."""
    deadline = time.monotonic() + timeout
    waiting = list(services)
    while waiting:
        for service in list(waiting):
            if _read_pid(home, service.name) is None:
                log = _run_dir(home) / f"{service.name}.log"
                raise StackError(f"{service.name} exited during start-up\n{_tail(log)}")
            if _ready(service.ready_url):
                waiting.remove(service)
        if not waiting:
            return
        if time.monotonic() > deadline:
            details = "\n".join(
                f"{s.name}: {s.ready_url} not ready after {timeout:.0f} s\n{_tail(_run_dir(home) / f'{s.name}.log')}"
                for s in waiting
            )
            raise StackError(details)
        time.sleep(0.2)


def _write_started(home: Path, names: Sequence[str]) -> None:
    """Remember which services the last :func:`start` launched."""
    (_run_dir(home) / "last-start.json").write_text(json.dumps(list(names)))


def started_by_last_start(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Return the services that the most recent :func:`start` launched itself.

    Example:
        >>> isinstance(started_by_last_start(), tuple)  # doctest: +SKIP
        True
    """
    home = _home(os.environ if environ is None else environ)
    try:
        names = json.loads((_run_dir(home) / "last-start.json").read_text())
    except (OSError, ValueError):
        return ()
    return tuple(str(n) for n in names)


def stop(
    environ: Mapping[str, str] | None = None,
    *,
    services: Sequence[str] | None = None,
) -> list[str]:
    """Stop services started by this script (all by default), collector first.

    Sends SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S` seconds. Only
    processes whose pid file names our binary are signalled.

    Returns:
        Names of the services that were running and are now stopped.

    Example:
        >>> stop(services=["collector"])  # doctest: +SKIP
        ['collector']
    """
    env = dict(os.environ if environ is None else environ)
    home = _home(env)
    wanted = SERVICES if services is None else tuple(services)
    stopped: list[str] = []
    with _locked(home):
        for name in reversed(SERVICES):
            if name not in wanted:
                continue
            pid = _read_pid(home, name)
            if pid is not None:
                _terminate(pid)
                stopped.append(name)
            (_run_dir(home) / f"{name}.pid").unlink(missing_ok=True)
    return stopped


def _terminate(pid: int) -> None:
    """SIGTERM a process, wait for it, SIGKILL it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Return whether ``pid`` runs (reaping it if it is our zombie child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def status(environ: Mapping[str, str] | None = None) -> dict[str, dict[str, object]]:
    """Return pid, readiness URL and readiness of each service.

    Example:
        >>> sorted(status())  # doctest: +SKIP
        ['collector', 'jaeger', 'prometheus', 'victorialogs']
    """
    env = dict(os.environ if environ is None else environ)
    home = _home(env)
    urls = endpoints(env)
    ready_urls = {
        "prometheus": f"{urls.prometheus}/-/ready",
        "jaeger": f"{urls.jaeger}/api/services",
        "victorialogs": f"{urls.logs}/health",
        "collector": f"{urls.collector_health}/",
    }
    return {
        name: {
            "pid": _read_pid(home, name),
            "url": ready_urls[name],
            "ready": _ready(ready_urls[name]),
            "log": str(_run_dir(home) / f"{name}.log"),
        }
        for name in SERVICES
    }


# --------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build what is missing, start, wait until ready")
    up.add_argument("--fresh", action="store_true", help="delete stored data first")
    up.add_argument("--timeout", type=float, default=READY_TIMEOUT_S)
    sub.add_parser("down", help="stop the services started by `up`")
    sub.add_parser("status", help="show pid and readiness of each service")
    sub.add_parser("build", help="only build / install the binaries")
    sub.add_parser("env", help="print shell exports for clients of the stack")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            t0 = time.monotonic()
            bins = ensure_built()
            for field in dataclasses.fields(bins):
                print(f"{field.name}: {getattr(bins, field.name)}")
            print(f"redis (job-framework tests' broker): {ensure_redis()}")
            print(f"thanos (scale tier, docs/scale.md): {ensure_thanos()}")
            _log(f"build step took {time.monotonic() - t0:.1f} s")
        elif args.command == "up":
            t0 = time.monotonic()
            urls = start(fresh=args.fresh, timeout=args.timeout)
            _log(f"stack ready in {time.monotonic() - t0:.1f} s; logs in {_run_dir(_home(os.environ))}")
            for key, value in urls.env().items():
                print(f"export {key}={value}")
        elif args.command == "down":
            stopped = stop()
            _log("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.command == "status":
            all_ready = True
            for name, info in status().items():
                state = "ready" if info["ready"] else ("starting?" if info["pid"] else "down")
                all_ready = all_ready and bool(info["ready"])
                print(f"{name:<12} {state:<9} pid={info['pid']} {info['url']}  log={info['log']}")
            return 0 if all_ready else 3
        elif args.command == "env":
            for key, value in endpoints().env().items():
                print(f"export {key}={value}")
    except StackError as exc:
        print(f"stack.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
