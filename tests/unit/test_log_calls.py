"""Log calls: parameter names as fields, the caller's call site, exception logging, redaction, bounded context."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs import export as log_export
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

import joblogger
from joblogger import JobLogger
from joblogger._bridge import OTelLogHandler
from joblogger.testing import Capture

from ._helpers import assert_telemetry_valid, joblogger_warnings

LOG_CALLS = ("debug", "info", "milestone", "warning", "error", "exception")
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.abc123"


class Records(logging.Handler):
    """Keeps every record of the ``joblogger`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def one(self, message: str) -> logging.LogRecord:
        """The one record whose message is ``message``."""
        found = [r for r in self.records if r.getMessage() == message]
        assert len(found) == 1, [r.getMessage() for r in self.records]
        return found[0]


@pytest.fixture
def records() -> Iterator[Records]:
    """A handler on the joblogger logger at DEBUG, removed afterwards."""
    handler = Records()
    log = logging.getLogger("joblogger")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old_level)


@pytest.fixture
def otel_records() -> Iterator[Callable[[], list[Any]]]:
    """joblogger's log bridge on a real SDK LoggerProvider; yields a reader of the exported OTLP log records."""
    exporter_class = getattr(log_export, "InMemoryLogRecordExporter", None) or log_export.InMemoryLogExporter
    exporter = exporter_class()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = OTelLogHandler(provider.get_logger("joblogger"), level=logging.DEBUG)
    log = logging.getLogger("joblogger")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield lambda: [item.log_record for item in exporter.get_finished_logs()]
    log.removeHandler(handler)
    log.setLevel(old_level)
    provider.shutdown()


def _line_of(marker: str) -> int:
    """Line number in this file of the line ending with ``# <marker>``."""
    lines = inspect.getsource(sys.modules[__name__]).splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.rstrip().endswith(f"# {marker}"))


# --- parameter names ---------------------------------------------------------------------------------------


def test_every_parameter_name_of_every_log_call_can_be_a_field(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """``message=``, ``self=`` (and any name) are fields; ``context=``/``exc_info=``/``stacklevel=`` never raise."""
    caplog.set_level(logging.DEBUG, logger="joblogger")
    job = cap.job_logger("r", "j", debug_events=True, log_rate_limits={})
    tried = 0
    for call in LOG_CALLS:
        method = getattr(job, call)
        names = [p.name for p in inspect.signature(method).parameters.values() if p.kind != p.VAR_KEYWORD]
        assert names[0] == "message" and inspect.signature(method).parameters["message"].kind == (
            inspect.Parameter.POSITIONAL_ONLY
        )
        for name in ["self", *names]:
            method(f"{call} {name}", **{name: "field value"})
            tried += 1
    job.log_summary()
    assert tried == len(LOG_CALLS) * 5  # self, message, context, exc_info, stacklevel
    assert not [k for k in joblogger_warnings(caplog.records) if k.startswith("internal")]
    events = {e.name: dict(e.attributes or {}) for s in cap.spans() for e in s.events}
    for call in LOG_CALLS:
        for name in ("self", "message", "context"):  # plain fields (a non-mapping context is kept as one)
            assert events[f"{call} {name}"][name] == "field value", (call, name)
    assert dict(job.log_counts) == {"debug": 5, "info": 5, "milestone": 6, "warning": 5, "error": 10}
    assert_telemetry_valid(cap)


# --- call site ---------------------------------------------------------------------------------------------


def _wrapped_log(job: JobLogger, message: str) -> None:
    """A user's logging helper: passes stacklevel=2 so records name its caller."""
    job.info(message, stacklevel=2)


def test_records_name_the_callers_file_line_and_function(cap: Capture, records: Records) -> None:
    """Direct calls, set_stage, track(stage=), bad input warnings, a helper with stacklevel=2 and the summary."""
    with cap.job_logger("r", "call-site") as job:  # with-line
        job.info("direct")  # direct
        job.set_stage("Loading")  # set-stage
        for _ in job.track([1, 2], stage="Tracking"):  # track
            pass
        job.increment_progress(-1)  # bad-input
        job.add_outcome(None)  # bad-outcome-key
        _wrapped_log(job, "through a helper")  # helper
        job.warning("last one")  # last
    here = test_records_name_the_callers_file_line_and_function.__name__
    for message, marker in [
        ("direct", "direct"),
        ("Starting: Loading", "set-stage"),
        ("Starting: Tracking", "track"),
        ("through a helper", "helper"),
        ("last one", "last"),
    ]:
        record = records.one(message)
        assert (record.pathname, record.funcName, record.lineno) == (__file__, here, _line_of(marker)), message
    warning = next(r for r in records.records if getattr(r, "joblogger.warning", None) == "count-negative")
    assert (warning.pathname, warning.lineno) == (__file__, _line_of("bad-input"))
    deferred = next(r for r in records.records if getattr(r, "joblogger.warning", None) == "outcome key-type")
    assert (deferred.pathname, deferred.lineno) == (__file__, _line_of("bad-outcome-key"))  # queued under the lock
    summary = next(r for r in records.records if r.getMessage().startswith("Completed in"))
    assert summary.pathname == __file__ and summary.funcName == here
    assert _line_of("with-line") <= summary.lineno <= _line_of("last")
    package = os.path.dirname(joblogger.__file__)
    assert not [(r.getMessage(), r.pathname) for r in records.records if r.pathname.startswith(package)]


def test_otlp_log_records_carry_the_callers_code_attributes(cap: Capture, otel_records: Any) -> None:
    """The bridge's code.* attributes on real SDK log records are the job's file, line and function."""
    with cap.job_logger("r", "otlp-call-site") as job:
        job.set_stage("Stage")  # otlp-stage
        job.milestone("half way")  # otlp-milestone
        for _ in job.track(["a"]):
            job.error("inside track")  # otlp-error
    here = test_otlp_log_records_carry_the_callers_code_attributes.__name__
    by_body = {r.body: dict(r.attributes or {}) for r in otel_records()}
    for body, marker in [("Starting: Stage", "otlp-stage"), ("half way", "otlp-milestone"),
                         ("inside track", "otlp-error")]:  # fmt: skip
        got = by_body[body]
        assert got["code.file.path"] == __file__, body
        assert got["code.function.name"] == here, body
        assert got["code.line.number"] == _line_of(marker), body


# --- exceptions ----------------------------------------------------------------------------------------------


def test_exception_logging_as_logging_users_expect(cap: Capture, records: Records, otel_records: Any) -> None:
    """exception() in except, exc_info=True and exc_info=<exception>: traceback on the record, event on the span."""
    with cap.job_logger("r", "exc") as job:
        job.set_stage("Scoring")
        for user in (1, 2):
            try:
                {}[f"user-{user}"]
            except KeyError:
                if user == 1:
                    job.exception("Could not score user", userId=user)
                else:
                    job.warning("Skipped user", exc_info=True, userId=user)
        job.error("Saved error", exc_info=ValueError("kept for later"))
    assert job.summary is not None and job.summary.result == "success"
    assert job.log_counts["error"] == 2 and job.log_counts["warning"] == 1
    formatter = logging.Formatter()
    for message, exc_type in [("Could not score user", KeyError), ("Skipped user", KeyError),
                              ("Saved error", ValueError)]:  # fmt: skip
        record = records.one(message)
        assert record.exc_info is not None and record.exc_info[0] is exc_type, message
        assert not hasattr(record, "exc_info.value") and "exc_info" not in (record.__dict__.get("args") or ())
        text = formatter.format(record)
        assert exc_type.__name__ in text and (exc_type is ValueError or "Traceback" in text), text
    stage = cap.span("Scoring")
    names = [e.name for e in stage.events]
    assert names.count("exception") == 3, names
    exc_events = [dict(e.attributes or {}) for e in stage.events if e.name == "exception"]
    assert [e["exception.type"] for e in exc_events] == ["KeyError", "KeyError", "ValueError"]
    assert all(e["exception.escaped"] in (False, "False") for e in exc_events)
    assert all("Traceback" in e["exception.stacktrace"] for e in exc_events[:2])
    assert names.index("exception") == names.index("Could not score user") + 1  # right after its log event
    assert "exception" not in [e.name for e in cap.span("exc").events]  # handled: the run did not fail
    otlp = {r.body: dict(r.attributes or {}) for r in otel_records()}
    assert otlp["Could not score user"]["exception.type"] == "KeyError"
    assert "Traceback" in otlp["Could not score user"]["exception.stacktrace"]
    assert otlp["Saved error"]["exception.message"] == "kept for later"
    assert "exc_info" not in otlp["Skipped user"]
    assert_telemetry_valid(cap)


# --- redaction -------------------------------------------------------------------------------------------------


def test_redaction_matches_the_spellings_real_code_uses(cap: Capture, records: Records) -> None:
    """camelCase, kebab-case, SCREAMING_CASE, nested, pair lists, name/value headers, PEM blocks, bearer tokens."""
    job = cap.job_logger("r", "j", secret_keys=["ssn-number"])
    job.info(
        f"calling the API with Bearer {TOKEN}",
        privateKey="k1",
        **{"private-key": "k2", "PRIVATE_KEY": "k3", "x-api-key": "k4", "apiKey": "k5", "clientSecret": "k6",
           "Set-Cookie": "k7", "SsnNumber": "k8"},
        sshKey=PEM,
        deployKeyPem=PEM.encode(),
        headers=[["Authorization", f"Bearer {TOKEN}"], ["Accept", "application/json"]],
        tupleHeaders=(("X-Auth-Token", "k9"),),
        harHeaders=[{"name": "Authorization", "value": "Basic dXNlcjpwYXNz"}, {"name": "Accept", "value": "*/*"}],
        config={"db": {"user": "u", "privateKey": "k10"}, "servers": [{"auth": {"PassWord": "k11"}}]},
        note=f"key: {PEM}",
        authHeaderList=["Authorization", f"Bearer {TOKEN}"],
    )  # fmt: skip
    job.log_summary()
    event = next(e for e in cap.span("j").events if e.name.startswith("calling the API"))
    a = dict(event.attributes or {})
    for key in ("privateKey", "private-key", "PRIVATE_KEY", "x-api-key", "apiKey", "clientSecret", "Set-Cookie",
                "SsnNumber"):  # fmt: skip
        assert a[key] == "[REDACTED]", key
    everything = str(a) + event.name + str(vars(records.one(event.name)))
    for secret in ("k1'", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "dXNlcjpwYXNz", TOKEN,
                   "b3BlbnNzaC1rZXktdjEAAAAA"):  # fmt: skip
        assert secret not in everything, secret
    assert event.name == "calling the API with [REDACTED]"
    assert '["Accept", "application/json"]' in a["headers"] and '"value": "*/*"' in a["harHeaders"]
    assert '"user": "u"' in a["config"]
    assert a["note"].startswith("key: [REDACTED]")


# --- bounded work ------------------------------------------------------------------------------------------------


class CountingList(list):  # type: ignore[type-arg]
    """A list that counts the items anyone iterates over."""

    visited = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            CountingList.visited += 1
            yield item


def test_huge_nested_context_costs_no_more_than_the_cap(cap: Capture) -> None:
    """info(rows=<1,000,000 dicts>) reads only what fits in the 4,096-character value, fast and in little memory."""
    job = cap.job_logger("r", "j")
    rows = CountingList({"id": i, "name": f"user {i}", "tags": ["a", "b"]} for i in range(1_000_000))
    CountingList.visited = 0
    tracemalloc.start()
    started = time.perf_counter()
    try:
        job.info("rows", rows=rows, wrapped={"rows": rows})
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    job.log_summary()
    value = dict(cap.span("j").events[0].attributes or {})["rows"]
    assert isinstance(value, str) and len(value) <= 4_096 and value.endswith("[truncated]")
    assert value.startswith('[{"id": 0, "name": "user 0", "tags": ["a", "b"]}, {"id": 1')
    assert CountingList.visited < 1_000, CountingList.visited
    assert peak < 2 * 2**20, peak
    assert elapsed < 0.5, elapsed
