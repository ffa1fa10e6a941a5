"""Resolution of :func:`joblogger.otlp.configure`'s settings: explicit argument > ``OTEL_*`` variable > default.

Pure: :func:`resolve` reads an injected environment mapping and returns a frozen
:class:`Settings`; :mod:`joblogger.otlp` only wires SDK providers from it.

Where the OpenTelemetry SDK already reads a variable the way the specification
says, it is *delegated*: the value is left ``None`` here and the SDK class reads
the variable itself (endpoints and ``/v1/<signal>`` paths, headers, compression,
certificates, client keys, ``INSECURE``, ``OTEL_BSP_*``, ``OTEL_BLRP_*``,
``OTEL_METRIC_EXPORT_TIMEOUT``). Two things are resolved here instead:

- the exporter **timeouts**: the specification gives ``OTEL_EXPORTER_OTLP_TIMEOUT``
  and its per-signal variants in milliseconds, while the Python OTLP exporters read
  them as seconds (10000 meant almost three hours); joblogger converts and always
  passes seconds;
- the **protocol** and the **exporter kinds** (``OTEL_*_EXPORTER``), which choose
  the classes to build.

Example:
    >>> s = resolve({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_LOGS_EXPORTER": "none"})
    >>> s.traces.protocol, s.traces.timeout_s, s.logs.exporters
    ('http/protobuf', 2.5, ())
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlparse

__all__ = [
    "DEFAULT_EXPORT_TIMEOUT_S",
    "DEFAULT_METRIC_EXPORT_INTERVAL_S",
    "DEFAULT_PROTOCOL",
    "DEFAULT_SCHEDULE_DELAY_MS",
    "PROTOCOLS",
    "SIGNALS",
    "Settings",
    "SignalSettings",
    "resolve",
]

_log = logging.getLogger("joblogger")

SIGNALS = ("traces", "metrics", "logs")
PROTOCOLS = ("grpc", "http/protobuf")
#: The specification's default transport (exporter.md: SDKs SHOULD default to http/protobuf).
DEFAULT_PROTOCOL = "http/protobuf"
#: Default seconds between metric exports (the SDK's own default is 60 s): dashboards move while a job runs.
DEFAULT_METRIC_EXPORT_INTERVAL_S = 2.0
#: Default per-export timeout in seconds (the specification's is 10 s): a short job's exit waits at most 3 x this.
DEFAULT_EXPORT_TIMEOUT_S = 5.0
#: Default batch delay of spans and log records in ms (the SDK's are 5000 and 1000): live views lag ~1 s.
DEFAULT_SCHEDULE_DELAY_MS = 1000
_DEFAULT_PORTS = {"grpc": 4317, "http/protobuf": 4318}
_EXPORTER_KINDS: dict[str, tuple[str, ...]] = {
    "traces": ("otlp", "console"),
    "metrics": ("otlp", "console", "prometheus"),
    "logs": ("otlp", "console"),
}
# Names of the batch-processor variables per signal: (schedule delay, export timeout).
_BATCH_VARIABLES = {
    "traces": ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT"),
    "logs": ("OTEL_BLRP_SCHEDULE_DELAY", "OTEL_BLRP_EXPORT_TIMEOUT"),
    "metrics": ("", "OTEL_METRIC_EXPORT_TIMEOUT"),
}


@dataclass(frozen=True, slots=True)
class SignalSettings:
    """How one signal (``traces``, ``metrics`` or ``logs``) is exported.

    ``None`` means "not given as an argument: the SDK class reads its variable".
    """

    signal: str
    #: Exporter kinds in order: ``"otlp"``, ``"console"`` (and ``"prometheus"`` for metrics); empty for ``none``.
    exporters: tuple[str, ...]
    protocol: str
    #: Endpoint given to ``configure()``, already completed with ``/v1/<signal>`` for HTTP; else ``None``.
    endpoint: str | None
    #: Where the exporter will send, for messages and the :class:`~joblogger.otlp.Telemetry` handle.
    effective_endpoint: str
    #: Headers given to ``configure()``; else ``None`` (the exporter reads ``OTEL_EXPORTER_OTLP_*HEADERS``).
    headers: Mapping[str, str] | None
    #: Timeout of one export request in seconds (always passed: the SDK would read the variables as seconds).
    timeout_s: float
    #: Batch delay for spans and logs in ms; ``None`` when the user set the variable (the SDK reads it).
    schedule_delay_ms: int | None
    #: Processor export timeout in ms; ``None`` when the user set the variable (the SDK reads it).
    export_timeout_ms: int | None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything :func:`joblogger.otlp.configure` needs to build the exporters."""

    traces: SignalSettings
    metrics: SignalSettings
    logs: SignalSettings
    metric_export_interval_s: float
    #: Host and port for ``OTEL_METRICS_EXPORTER=prometheus`` (``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``).
    prometheus_host: str
    prometheus_port: int

    @property
    def signals(self) -> tuple[SignalSettings, SignalSettings, SignalSettings]:
        """The three signals' settings."""
        return self.traces, self.metrics, self.logs

    @property
    def export_timeout_s(self) -> float:
        """The longest export timeout of a signal exporting over OTLP (bounds shutdown)."""
        timeouts = [s.timeout_s for s in self.signals if "otlp" in s.exporters]
        return max(timeouts, default=self.traces.timeout_s)


def _get(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value of ``name``, or ``None`` when it is unset or empty (the spec treats both alike)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def _positive_ms(env: Mapping[str, str], name: str) -> float | None:
    """``name`` as a positive number of milliseconds; a warning and ``None`` if it is not one."""
    raw = _get(env, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        _log.warning("joblogger: ignoring %s=%r (not a positive number of milliseconds)", name, raw)
        return None
    return value


def _exporter_kinds(env: Mapping[str, str], signal: str, otlp: bool) -> tuple[str, ...]:
    """``OTEL_<SIGNAL>_EXPORTER`` (comma-separated; default ``otlp``) as known kinds, ``otlp=False`` removing OTLP."""
    name = f"OTEL_{signal.upper()}_EXPORTER"
    raw = _get(env, name)
    values = [v.strip().lower() for v in (raw or "otlp").split(",") if v.strip()]
    if "none" in values:
        if len(values) > 1:
            _log.warning("joblogger: %s=%r combines 'none' with exporters; exporting no %s", name, raw, signal)
        return ()
    kinds: list[str] = []
    for value in values:
        kind = "console" if value == "logging" else value  # "logging" is the deprecated name of "console"
        if kind not in _EXPORTER_KINDS[signal]:
            supported = ", ".join(_EXPORTER_KINDS[signal])
            _log.warning("joblogger: ignoring %r in %s (supported: none, %s)", value, name, supported)
        elif kind not in kinds:
            kinds.append(kind)
    if not otlp and "otlp" in kinds:
        kinds.remove("otlp")
    return tuple(kinds)


def _protocol(env: Mapping[str, str], signal: str, argument: str | None) -> str:
    """Argument > ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`` > ``OTEL_EXPORTER_OTLP_PROTOCOL`` > http/protobuf."""
    if argument is not None:
        protocol = argument.strip().lower()
        if protocol not in PROTOCOLS:
            raise ValueError(f"unsupported OTLP protocol {argument!r}; use one of {PROTOCOLS}")
        return protocol
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = _get(env, name)
        if raw is None:
            continue
        if raw.lower() in PROTOCOLS:
            return raw.lower()
        _log.warning("joblogger: ignoring %s=%r (supported: %s)", name, raw, ", ".join(PROTOCOLS))
    return DEFAULT_PROTOCOL


def _endpoints(env: Mapping[str, str], signal: str, protocol: str, argument: str | None) -> tuple[str | None, str]:
    """(endpoint to pass to the exporter, endpoint it will use) following the OTLP exporter specification."""
    path = f"/v1/{signal}" if protocol == "http/protobuf" else ""
    if argument is not None:
        explicit = argument.rstrip("/") + path if path else argument
        return explicit, explicit
    own = _get(env, f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if own is not None:
        return None, own  # per-signal endpoints are used as they are
    base = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT") or f"http://localhost:{_DEFAULT_PORTS[protocol]}"
    return None, base.rstrip("/") + path if path else base


def _timeout_s(env: Mapping[str, str], signal: str, argument: float | None) -> float:
    """Argument (s) > ``OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT`` (ms) > ``OTEL_EXPORTER_OTLP_TIMEOUT`` (ms) > 5 s."""
    if argument is not None and argument > 0:
        return float(argument)
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        millis = _positive_ms(env, name)
        if millis is not None:
            return millis / 1000
    return DEFAULT_EXPORT_TIMEOUT_S


def _warn_grpc_port(signal: SignalSettings, protocol_set: bool) -> None:
    """Say once why nothing arrives when the new default protocol meets the gRPC port."""
    if protocol_set or "otlp" not in signal.exporters:
        return
    try:
        port = urlparse(signal.effective_endpoint).port
    except ValueError:
        return
    if port == _DEFAULT_PORTS["grpc"]:
        _log.warning(
            "joblogger: exporting %s with OTLP/HTTP (the default protocol) to port 4317, the usual OTLP/gRPC port;"
            " set OTEL_EXPORTER_OTLP_PROTOCOL=grpc or use port 4318",
            signal.signal,
        )


def _signal(
    env: Mapping[str, str],
    signal: str,
    *,
    otlp: bool,
    endpoint: str | None,
    protocol: str | None,
    headers: Mapping[str, str] | None,
    export_timeout_s: float | None,
) -> SignalSettings:
    chosen = _protocol(env, signal, protocol)
    passed, effective = _endpoints(env, signal, chosen, endpoint)
    timeout_s = _timeout_s(env, signal, export_timeout_s)
    delay_name, timeout_name = _BATCH_VARIABLES[signal]
    settings = SignalSettings(
        signal=signal,
        exporters=_exporter_kinds(env, signal, otlp),
        protocol=chosen,
        endpoint=passed,
        effective_endpoint=effective,
        headers=None if headers is None else MappingProxyType(dict(headers)),
        timeout_s=timeout_s,
        schedule_delay_ms=None if delay_name and _get(env, delay_name) else DEFAULT_SCHEDULE_DELAY_MS,
        export_timeout_ms=None if _get(env, timeout_name) else round(timeout_s * 1000),
    )
    protocol_set = protocol is not None or any(
        _get(env, n) for n in ("OTEL_EXPORTER_OTLP_PROTOCOL", f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
    )
    _warn_grpc_port(settings, protocol_set)
    return settings


def resolve(
    env: Mapping[str, str],
    *,
    otlp: bool = True,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    export_timeout_s: float | None = None,
    metric_export_interval_s: float | None = None,
) -> Settings:
    """Resolve the export settings: explicit argument > ``OTEL_*`` variable in ``env`` > joblogger default.

    Raises:
        ValueError: ``protocol`` is not ``"grpc"`` or ``"http/protobuf"`` (a bad *variable* only warns).
    """
    per_signal = {
        signal: _signal(
            env,
            signal,
            otlp=otlp,
            endpoint=endpoint,
            protocol=protocol,
            headers=headers,
            export_timeout_s=export_timeout_s,
        )
        for signal in SIGNALS
    }
    if metric_export_interval_s is not None and metric_export_interval_s > 0:
        interval_s = metric_export_interval_s
    else:
        millis = _positive_ms(env, "OTEL_METRIC_EXPORT_INTERVAL")
        interval_s = millis / 1000 if millis is not None else DEFAULT_METRIC_EXPORT_INTERVAL_S
    port_raw = _get(env, "OTEL_EXPORTER_PROMETHEUS_PORT") or "9464"
    try:
        prometheus_port = int(port_raw)
    except ValueError:
        _log.warning("joblogger: ignoring OTEL_EXPORTER_PROMETHEUS_PORT=%r (not a port number)", port_raw)
        prometheus_port = 9464
    return Settings(
        traces=per_signal["traces"],
        metrics=per_signal["metrics"],
        logs=per_signal["logs"],
        metric_export_interval_s=interval_s,
        prometheus_host=_get(env, "OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost",
        prometheus_port=prometheus_port,
    )
