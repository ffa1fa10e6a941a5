"""One-call OpenTelemetry set-up for applications that have none (extra ``joblogger[otlp]``).

:func:`configure` builds SDK tracer, meter and logger providers with OTLP
exporters, registers them globally and bridges the ``joblogger`` logger to
OTLP logs. It is the only place in joblogger that sets global providers.

Choices, and why (see docs/otlp.md):

- **Standard configuration**: arguments, then the ``OTEL_*`` variables, then joblogger's
  defaults, resolved per signal in :mod:`joblogger._otlp_settings`; OTLP/HTTP on port
  4318 unless ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``.
- **Live by default**: metrics are exported every 2 s (``OTEL_METRIC_EXPORT_INTERVAL``
  or ``metric_export_interval_s=`` change it), so dashboards move while a job runs.
- **Cumulative temporality and a unique ``service.instance.id`` per process**: every
  process reports its own counter series, which Prometheus adds up with
  ``sum by (job_name)``. A collector outage loses no counts (the next export
  carries the whole total) and concurrent processes never overwrite each other.
- **Nothing lost at exit, and exit never hangs**: the providers are shut down at
  interpreter exit, which ends the spans' batch, takes a final metric collection
  and flushes logs. Exports that would start more than two export timeouts after
  shutdown began are dropped (and counted in one warning), and an export in flight
  is bounded by the export timeout, so shutdown takes at most three export
  timeouts (15 s by default) whatever the collector does and however full the
  queues are.
- **Drop-in**: if the application already registered SDK providers (for example
  through ``opentelemetry-instrument``), nothing is replaced; joblogger uses them.
- **The application's logging is left alone**: job log records go to OpenTelemetry
  through the Logs API (see ``joblogger._logexport``), not through a handler on the
  ``joblogger`` logger, so ``configure()`` changes no logger's level or handlers.

Example:
    >>> from joblogger import otlp
    >>> telemetry = otlp.configure(service_name="nightly-jobs", disabled=True)
    >>> telemetry.enabled
    False
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from . import _logexport, _signals
from ._otlp_deadline import (
    ExitDeadline,
    batch_log_processor,
    batch_span_processor,
)
from ._otlp_exporters import exporters as _exporters
from ._otlp_fork import (
    after_fork,
    child_instance_id,
    flush_at_multiprocessing_exit,
    in_multiprocessing_child,
    own,
    sigterm_handler_installed,
)
from ._otlp_settings import (
    DEFAULT_EXPORT_TIMEOUT_S,
    DEFAULT_METRIC_EXPORT_INTERVAL_S,
    Settings,
    resolve,
)
from ._producer import ProgressProducer
from ._snapshots import DEFAULT_INTERVAL_S as DEFAULT_CHECKPOINT_INTERVAL_S
from ._snapshots import configure_snapshots
from ._version import __version__

__all__ = ["DEFAULT_METRIC_EXPORT_INTERVAL_S", "Telemetry", "after_fork", "configure"]

_log = logging.getLogger("joblogger")

#: Exports may start until this many export timeouts after shutdown began (one in
#: flight plus one final export per signal); shutdown as a whole waits at most one
#: more export timeout for the exports still in flight.
SHUTDOWN_GRACE_EXPORTS = 2
_lock = threading.Lock()
_current: Telemetry | None = None


@dataclass
class Telemetry:
    """What :func:`configure` set up; ``shutdown()`` flushes and stops it (also run at exit)."""

    enabled: bool
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    protocol: str | None = None
    endpoint: str | None = None
    metric_export_interval_s: float | None = None
    prometheus_port: int | None = None
    reused_existing: bool = False
    sigterm_handled: bool = False
    console: Any = None
    export_timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S
    #: The resolved export settings (argument > OTEL_* variable > default), per signal.
    settings: Settings | None = None
    _deadline: ExitDeadline | None = field(default=None, repr=False)
    _shut: bool = field(default=False, repr=False)

    def force_flush(self, timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S) -> None:
        """Export everything buffered now, waiting at most about ``timeout_s`` per signal."""
        millis = int(timeout_s * 1000)
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            flush = getattr(provider, "force_flush", None)
            if callable(flush):
                try:
                    flush(timeout_millis=millis)
                except Exception as exc:  # noqa: BLE001 - flushing must never break the caller
                    _log.warning("joblogger: flush failed: %r", exc)

    def shutdown(self) -> None:
        """Stop the terminal view, flush and shut down the providers joblogger created; idempotent.

        Takes at most ``(SHUTDOWN_GRACE_EXPORTS + 1) * export_timeout_s`` (15 s by
        default) even if the collector never answers: see :class:`ExitDeadline`.
        """
        self._shutdown_once(at_exit=False)

    def _shutdown_at_exit(self) -> None:
        self._shutdown_once(at_exit=True)

    def _shutdown_once(self, *, at_exit: bool) -> None:
        if self._shut:
            return
        self._shut = True
        # A second Ctrl-C or SIGTERM while flushing is held and dropped, not raised into the flush;
        # one for a handler of the application's own reaches that handler once the flush is over.
        with _signals.hold_application_handlers(at_exit=at_exit):
            with _signals.critical(deliver=False):
                self._shutdown()
            _signals.restore()

    def _shutdown(self) -> None:
        if self.console is not None:
            self.console.stop()
        if self.reused_existing or not self.enabled:
            return
        if self._deadline is not None:
            self._deadline.arm(SHUTDOWN_GRACE_EXPORTS * self.export_timeout_s)
        # Order matters: spans first, then a final metric collection, then logs.
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is None:
                continue
            try:
                provider.shutdown()
            except Exception as exc:  # noqa: BLE001
                _log.warning("joblogger: shutdown of %s failed: %r", type(provider).__name__, exc)
        dropped = self._deadline.dropped if self._deadline is not None else {}
        if dropped:
            _log.warning(
                "joblogger: the collector at %s did not take everything within %g s of shutdown; dropped %s",
                self.endpoint,
                SHUTDOWN_GRACE_EXPORTS * self.export_timeout_s,
                ", ".join(f"{n} {what}" for what, n in sorted(dropped.items())),
            )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class _PerProcessIdentity(MetricExporter):
    """Stamps every metric export with this process's own ``service.instance.id``.

    Counters are cumulative per process, so each process must be its own series.
    A forked child (Celery prefork, multiprocessing) inherits the parent's
    providers; this wrapper notices the new pid and gives the child its own id
    (the SDK's per-process one where it has it), so the child's counts never
    overwrite or duplicate the parent's. That holds even when the configuring
    process's id was set by the user or filled in by the SDK (``parent_id``): that
    id names the configuring process only. (The child's inherited counts are
    emptied separately, see ``_otlp_fork``.)
    """

    def __init__(
        self,
        inner: MetricExporter,
        parent_id: str | None,
        deadline: ExitDeadline | None = None,
        producer: ProgressProducer | None = None,
    ) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._deadline = deadline
        self._producer = producer
        self._pid = os.getpid()
        self._id = parent_id or str(uuid.uuid4())

    @property
    def instance_id(self) -> str:
        """The id of the calling process."""
        return self._id if os.getpid() == self._pid else child_instance_id()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        """Export with the active runs' progress added and the resource stamped.

        The collection is dropped if shutdown's deadline has passed.
        """
        if self._deadline is not None and self._deadline.refuse("metric collections", 1):
            return MetricExportResult.FAILURE
        if self._producer is not None:
            metrics_data = self._producer.add_to(metrics_data, self)
        stamp = Resource({"service.instance.id": self.instance_id})
        stamped = MetricsData(
            [
                ResourceMetrics(rm.resource.merge(stamp), rm.scope_metrics, rm.schema_url)
                for rm in metrics_data.resource_metrics
            ]
        )
        return self._inner.export(stamped, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Delegate."""
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Delegate."""
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _already_configured() -> bool:
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider

    return isinstance(trace.get_tracer_provider(), SDKTracerProvider) or isinstance(
        metrics.get_meter_provider(), MeterProvider
    )


def configure(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    metric_export_interval_s: float | None = None,
    export_timeout_s: float | None = None,
    otlp: bool = True,
    prometheus_port: int | None = None,
    prometheus_addr: str = "127.0.0.1",
    log_level: int = logging.INFO,
    console: bool | Mapping[str, Any] = False,
    handle_sigterm: bool = True,
    snapshots: bool = True,
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
    disabled: bool | None = None,
) -> Telemetry:
    """Set up OpenTelemetry export for joblogger (and the rest of the application).

    Each setting is resolved per signal as explicit argument > standard ``OTEL_*``
    variable (per-signal before generic) > joblogger default, with the
    specification's units (``OTEL_EXPORTER_OTLP_*TIMEOUT`` and the batch and
    interval variables in milliseconds); see docs/otlp.md for every variable.
    Calling it again returns the first result.

    Args:
        service_name: ``service.name`` of the resource (default ``OTEL_SERVICE_NAME``, else ``"joblogger"``).
        endpoint: OTLP base endpoint for all signals, e.g. ``http://127.0.0.1:4318`` (HTTP, ``/v1/<signal>``
            is appended) or ``http://127.0.0.1:4317`` (gRPC).
        protocol: ``"http/protobuf"`` (default, as the specification says) or ``"grpc"``.
        headers: Extra export headers (e.g. authentication).
        resource_attributes: Added to the resource (a ``service.instance.id`` is generated unless given).
        metric_export_interval_s: Seconds between metric exports (default ``OTEL_METRIC_EXPORT_INTERVAL``, else 2).
        export_timeout_s: Seconds each export may take (default ``OTEL_EXPORTER_OTLP_*TIMEOUT`` in ms, else 5);
            shutdown at exit takes at most three times the longest signal's timeout.
        otlp: Set to False to skip OTLP exporters (e.g. terminal view or Prometheus pull only).
        prometheus_port: Also serve ``/metrics`` for Prometheus to scrape on this port.
        prometheus_addr: Address of that endpoint (loopback unless you say otherwise).
        log_level: Level from which job log records are exported (INFO by default; debug is opt-in),
            whatever the stdlib ``joblogger`` logger's level is.
        console: True (or options for :class:`joblogger.console.ConsoleView`) to show the live terminal view.
        handle_sigterm: Turn SIGTERM into ``SystemExit(143)`` (only when called from the main thread
            and nothing else handles SIGTERM), so runs end as cancelled and telemetry is flushed;
            SIGTERM and Ctrl-C arriving while a run ends or at the final flush are held until
            it is done (see docs/reliability.md). ``shutdown()`` restores the previous handlers.
            ``multiprocessing`` children keep the defaults (``Pool.terminate()`` ends them at once;
            their runs are exported as they end).
        snapshots: Make runs emit snapshot spans (start markers, checkpoints every
            ``checkpoint_interval_s``) so they show in the trace backend before they end.
        checkpoint_interval_s: Seconds between checkpoints of each active run.
        disabled: Configure nothing (default ``OTEL_SDK_DISABLED``).

    Returns:
        A :class:`Telemetry` handle; its ``shutdown()`` is also registered to run at exit.
    """
    global _current
    with _lock:
        if _current is not None:
            _log.info("joblogger: configure() was already called; keeping the first set-up")
            return _current
        telemetry = _configure(
            service_name=service_name,
            endpoint=endpoint,
            protocol=protocol,
            headers=headers,
            resource_attributes=resource_attributes,
            metric_export_interval_s=metric_export_interval_s,
            export_timeout_s=export_timeout_s,
            otlp=otlp,
            prometheus_port=prometheus_port,
            prometheus_addr=prometheus_addr,
            log_level=log_level,
            disabled=disabled,
        )
        if console:
            from .console import ConsoleView

            options = dict(console) if isinstance(console, Mapping) else {}
            telemetry.console = ConsoleView(**options).start()
        if snapshots and telemetry.enabled:
            configure_snapshots(True, checkpoint_interval_s)
        # multiprocessing children keep the defaults: Pool.terminate() means "end now" (see _otlp_fork).
        if handle_sigterm and telemetry.enabled and not in_multiprocessing_child():
            telemetry.sigterm_handled = _signals.install()
            if telemetry.sigterm_handled:
                sigterm_handler_installed(_signals.sigterm_handler())
        _current = telemetry
        atexit.register(telemetry._shutdown_at_exit)
        if telemetry.enabled and not telemetry.reused_existing:
            own(telemetry.meter_provider)  # forked children forget the parent's counts
            flush_at_multiprocessing_exit(telemetry)  # multiprocessing children skip atexit
        return telemetry


def _configure(
    *,
    service_name: str | None,
    endpoint: str | None,
    protocol: str | None,
    headers: Mapping[str, str] | None,
    resource_attributes: Mapping[str, str] | None,
    metric_export_interval_s: float | None,
    export_timeout_s: float | None,
    otlp: bool,
    prometheus_port: int | None,
    prometheus_addr: str,
    log_level: int,
    disabled: bool | None,
) -> Telemetry:
    if disabled if disabled is not None else _env_flag("OTEL_SDK_DISABLED"):
        return Telemetry(enabled=False)
    _logexport.set_level(log_level)
    if _already_configured():
        _log.info("joblogger: OpenTelemetry SDK providers are already registered; using them unchanged")
        return Telemetry(
            enabled=True,
            tracer_provider=trace.get_tracer_provider(),
            meter_provider=metrics.get_meter_provider(),
            logger_provider=get_logger_provider(),
            reused_existing=True,
        )
    settings = resolve(
        os.environ,
        otlp=otlp,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        export_timeout_s=export_timeout_s,
        metric_export_interval_s=metric_export_interval_s,
    )
    attrs: dict[str, Any] = {"telemetry.distro.name": "joblogger", "telemetry.distro.version": __version__}
    attrs.update(resource_attributes or {})
    if service_name:
        attrs["service.name"] = service_name
    resource = Resource.create(attrs)
    configured_id = resource.attributes.get("service.instance.id")
    parent_id = None if configured_id is None else str(configured_id)
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "joblogger"}))

    deadline = ExitDeadline()
    tracer_provider = TracerProvider(resource=resource)
    # Progress gauges come from the live runs at each export, not from SDK instruments (see _producer).
    producer = ProgressProducer()
    for exporter in _exporters(settings.traces):
        tracer_provider.add_span_processor(batch_span_processor(exporter, settings.traces, deadline))
    readers: list[MetricReader] = [
        PeriodicExportingMetricReader(
            _PerProcessIdentity(exporter, parent_id, deadline, producer),
            export_interval_millis=settings.metric_export_interval_s * 1000,
            export_timeout_millis=settings.metrics.export_timeout_ms,
        )
        for exporter in _exporters(settings.metrics)
    ]
    logger_provider = None
    log_exporters = _exporters(settings.logs)
    if log_exporters:
        from opentelemetry.sdk._logs import LoggerProvider

        logger_provider = LoggerProvider(resource=resource)
        for exporter in log_exporters:
            logger_provider.add_log_record_processor(batch_log_processor(exporter, settings.logs, deadline))
    if prometheus_port is not None or "prometheus" in settings.metrics.exporters:
        from ._prometheus import serve

        if prometheus_port is None:
            prometheus_port, prometheus_addr = settings.prometheus_port, settings.prometheus_host
        readers.append(serve(prometheus_port, prometheus_addr, producer=producer))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    producer.bind(meter_provider)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    if logger_provider is not None:
        from opentelemetry._logs import set_logger_provider

        set_logger_provider(logger_provider)
    exporting = [signal for signal in settings.signals if "otlp" in signal.exporters]
    return Telemetry(
        enabled=True,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        protocol=exporting[0].protocol if exporting else None,
        endpoint=exporting[0].effective_endpoint if exporting else None,
        metric_export_interval_s=settings.metric_export_interval_s,
        prometheus_port=prometheus_port,
        export_timeout_s=settings.export_timeout_s,
        settings=settings,
        _deadline=deadline if exporting else None,
    )


def _reset_for_tests() -> None:
    """Forget the process-wide set-up (tests only; global providers cannot be unset)."""
    global _current
    with _lock:
        _current = None
