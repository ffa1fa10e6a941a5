"""The exporters of one signal, built from its resolved :class:`~joblogger._otlp_settings.SignalSettings`.

Only what the user passed to ``configure()`` (and the timeout, in seconds) is
given to the SDK classes; everything else they read from the ``OTEL_*`` variables.
"""

from __future__ import annotations

from typing import Any

from ._otlp_settings import SignalSettings

__all__ = ["exporters"]


def _otlp_exporter(signal: SignalSettings) -> Any:
    """The OTLP exporter of one signal; what ``signal`` leaves ``None`` the SDK class reads from OTEL_* variables."""
    kwargs: dict[str, Any] = {"timeout": signal.timeout_s}  # seconds; the SDK would read the ms variables as seconds
    if signal.endpoint is not None:
        kwargs["endpoint"] = signal.endpoint
    if signal.headers is not None:
        kwargs["headers"] = dict(signal.headers)
    if signal.protocol == "grpc":
        if signal.signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(**kwargs)
        if signal.signal == "metrics":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            return OTLPMetricExporter(**kwargs)
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(**kwargs)
    if signal.signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter

        return HTTPSpanExporter(**kwargs)
    if signal.signal == "metrics":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HTTPMetricExporter

        return HTTPMetricExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPLogExporter

    return HTTPLogExporter(**kwargs)


def exporters(signal: SignalSettings) -> list[Any]:
    """The push exporters ``OTEL_<SIGNAL>_EXPORTER`` asked for (``otlp``, ``console``), in order."""
    built: list[Any] = []
    for kind in signal.exporters:
        if kind == "otlp":
            built.append(_otlp_exporter(signal))
        elif kind == "console" and signal.signal == "traces":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            built.append(ConsoleSpanExporter())
        elif kind == "console" and signal.signal == "metrics":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            built.append(ConsoleMetricExporter())
        elif kind == "console":
            from opentelemetry.sdk._logs import export as log_export

            console_cls = getattr(log_export, "ConsoleLogRecordExporter", None) or log_export.ConsoleLogExporter
            built.append(console_cls())
    return built
