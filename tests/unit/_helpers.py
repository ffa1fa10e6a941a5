"""Helpers for the unit tests: a fake clock, warning capture and telemetry validators."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from joblogger.testing import Capture

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


def joblogger_warnings(records: Sequence[logging.LogRecord]) -> list[str]:
    """Kinds of joblogger's own warnings (not the job's warning() calls) among ``records``."""
    return [getattr(r, "joblogger.warning") for r in records if hasattr(r, "joblogger.warning")]


def _legal_scalar(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return True
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return False


def is_legal_attribute(value: object) -> bool:
    """True for a value OTLP can carry: str/bool/int64/float, or a homogeneous sequence of one."""
    if isinstance(value, (list, tuple)):
        kinds = {type(v) for v in value}
        return len(kinds) <= 1 and all(_legal_scalar(v) for v in value)
    return _legal_scalar(value)


def assert_telemetry_valid(cap: Capture) -> None:
    """Every span, event and metric point is legal and the OTLP encoders accept all of it."""
    spans = cap.spans()
    for span in spans:
        assert _legal_scalar(span.name), span.name
        for key, value in (span.attributes or {}).items():
            assert _legal_scalar(key) and is_legal_attribute(value), (span.name, key, value)
        for event in span.events:
            assert _legal_scalar(event.name), event.name
            for key, value in (event.attributes or {}).items():
                assert _legal_scalar(key) and is_legal_attribute(value), (event.name, key, value)
    for point in cap.metrics():
        assert isinstance(point.value, (int, float)) and math.isfinite(point.value), point
        if isinstance(point.value, int):
            assert INT64_MIN <= point.value <= INT64_MAX, point
        for key, value in point.attributes.items():
            assert isinstance(value, str) and _legal_scalar(value), (point.name, key, value)
    encode_spans(spans).SerializeToString()
    data = cap.metric_reader.get_metrics_data()
    if data is not None:
        encode_metrics(data).SerializeToString()


def attrs(span: Any) -> dict[str, Any]:
    """A span's attributes as a plain dict."""
    return dict(span.attributes or {})


def in_child(body: Callable[[], Any]) -> Any:
    """Run ``body()`` in a forked child; return what it returned (JSON) or fail with its error."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            result = {"ok": body()}
        except BaseException as exc:
            result = {"error": repr(exc)}
        os.write(write_fd, json.dumps(result).encode())
        os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as pipe:
        result = json.loads(pipe.read() or b"{}")
    assert os.waitstatus_to_exitcode(status) == 0
    assert "error" not in result, result["error"]
    return result["ok"]
