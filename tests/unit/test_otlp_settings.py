"""joblogger._otlp_settings.resolve(): argument > OTEL_* variable > default, per signal; spec units."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from joblogger._otlp_settings import SIGNALS, resolve


def test_defaults_follow_the_specification_protocol_and_joblogger_timings():
    """Nothing set: OTLP/HTTP to localhost:4318/v1/<signal>, 5 s timeouts, 1 s batches, 2 s metric interval."""
    s = resolve({})
    assert [x.protocol for x in s.signals] == ["http/protobuf"] * 3
    assert [x.effective_endpoint for x in s.signals] == [f"http://localhost:4318/v1/{sig}" for sig in SIGNALS]
    assert [x.endpoint for x in s.signals] == [None, None, None]  # left to the SDK exporters
    assert [x.timeout_s for x in s.signals] == [5.0] * 3
    assert (s.traces.schedule_delay_ms, s.logs.schedule_delay_ms, s.traces.export_timeout_ms) == (1000, 1000, 5000)
    assert s.metric_export_interval_s == 2.0
    assert [x.exporters for x in s.signals] == [("otlp",)] * 3


def test_timeouts_are_milliseconds_per_signal_and_the_argument_wins():
    """OTEL_EXPORTER_OTLP_TIMEOUT=10000 is 10 s; a per-signal variable beats it; export_timeout_s beats both."""
    env = {"OTEL_EXPORTER_OTLP_TIMEOUT": "10000", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "250"}
    s = resolve(env)
    assert (s.traces.timeout_s, s.metrics.timeout_s, s.logs.timeout_s) == (10.0, 10.0, 0.25)
    assert s.export_timeout_s == 10.0
    assert [x.timeout_s for x in resolve(env, export_timeout_s=2).signals] == [2, 2, 2]


def test_per_signal_protocol_and_endpoints_follow_the_exporter_specification():
    """Per-signal endpoints are used as given, the generic one gets /v1/<signal> for HTTP only, protocols per signal."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:9999/ingest",
    }
    s = resolve(env)
    assert [(x.protocol, x.effective_endpoint) for x in s.signals] == [
        ("grpc", "http://collector:4317"),
        ("http/protobuf", "http://collector:4318/v1/metrics"),
        ("http/protobuf", "http://logs:9999/ingest"),
    ]
    explicit = resolve(env, endpoint="http://other:4318", protocol="http/protobuf")
    assert [x.endpoint for x in explicit.signals] == [f"http://other:4318/v1/{sig}" for sig in SIGNALS]
    assert resolve({}, protocol="grpc").traces.effective_endpoint == "http://localhost:4317"


def test_user_set_batch_variables_are_left_to_the_sdk():
    """OTEL_BSP_*, OTEL_BLRP_* and OTEL_METRIC_EXPORT_* the user set are left to the SDK (None)."""
    env = {
        "OTEL_BSP_SCHEDULE_DELAY": "3000",
        "OTEL_BSP_EXPORT_TIMEOUT": "4000",
        "OTEL_BLRP_SCHEDULE_DELAY": "3000",
        "OTEL_BLRP_EXPORT_TIMEOUT": "4000",
        "OTEL_METRIC_EXPORT_TIMEOUT": "4000",
        "OTEL_METRIC_EXPORT_INTERVAL": "15000",
    }
    s = resolve(env)
    assert (s.traces.schedule_delay_ms, s.traces.export_timeout_ms) == (None, None)
    assert (s.logs.schedule_delay_ms, s.logs.export_timeout_ms, s.metrics.export_timeout_ms) == (None, None, None)
    assert s.metric_export_interval_s == 15.0
    assert resolve(env, metric_export_interval_s=7).metric_export_interval_s == 7


def test_exporter_variables_select_kinds_per_signal():
    """OTEL_*_EXPORTER: none, console, comma lists, the deprecated 'logging'; otlp=False drops otlp."""
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "otlp, logging"}
    s = resolve(env)
    assert [x.exporters for x in s.signals] == [("console",), (), ("otlp", "console")]
    assert [x.exporters for x in resolve(env, otlp=False).signals] == [("console",), (), ("console",)]
    assert resolve({"OTEL_METRICS_EXPORTER": "prometheus"}).metrics.exporters == ("prometheus",)


def test_bad_variables_warn_once_and_fall_back(caplog: pytest.LogCaptureFixture):
    """Unusable values are ignored with a warning; a bad protocol argument raises at set-up."""
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
        "OTEL_METRIC_EXPORT_INTERVAL": "-5",
        "OTEL_TRACES_EXPORTER": "zipkin,otlp",
    }
    with caplog.at_level(logging.WARNING, logger="joblogger"):
        s = resolve(env)
    assert s.traces.protocol == "http/protobuf" and s.traces.timeout_s == 5.0 and s.metric_export_interval_s == 2.0
    assert s.traces.exporters == ("otlp",)
    text = caplog.text
    assert "http/json" in text and "'soon'" in text and "'-5'" in text and "'zipkin'" in text
    with pytest.raises(ValueError, match="unsupported OTLP protocol"):
        resolve({}, protocol="thrift")


def test_default_protocol_to_the_grpc_port_warns(caplog: pytest.LogCaptureFixture):
    """The new default protocol aimed at port 4317 says why nothing will arrive; an explicit protocol does not."""
    with caplog.at_level(logging.WARNING, logger="joblogger"):
        resolve({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert caplog.text.count("OTEL_EXPORTER_OTLP_PROTOCOL=grpc") == 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="joblogger"):
        resolve({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert caplog.text == ""


def test_settings_are_frozen_and_slotted():
    """Settings are values: frozen, slotted dataclasses."""
    s = resolve({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.traces.timeout_s = 1.0  # type: ignore[misc]
    assert not hasattr(s, "__dict__") and not hasattr(s.traces, "__dict__")
