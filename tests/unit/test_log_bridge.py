"""The stdlib-to-OpenTelemetry log bridge used by joblogger.otlp: records, severities and trace correlation."""

from __future__ import annotations

import logging

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs import export as log_export
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from joblogger import MILESTONE
from joblogger._bridge import OTelLogHandler, severity
from joblogger.testing import capture


def test_severity_mapping():
    """DEBUG, INFO, MILESTONE, WARNING, ERROR map to OTel DEBUG, INFO, INFO4, WARN, ERROR."""
    assert [severity(n) for n in (10, 20, MILESTONE, 30, 40, 50)] == [
        SeverityNumber.DEBUG, SeverityNumber.INFO, SeverityNumber.INFO4,
        SeverityNumber.WARN, SeverityNumber.ERROR, SeverityNumber.FATAL,
    ]  # fmt: skip


def test_job_logs_become_otel_records_with_the_stage_trace_ids():
    """A job's warning goes out as an OTel log record carrying its context and the stage span's ids."""
    # renamed in newer SDKs; the old name still exists in the lowest supported one
    exporter_class = getattr(log_export, "InMemoryLogRecordExporter", None) or log_export.InMemoryLogExporter
    exporter = exporter_class()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = OTelLogHandler(provider.get_logger("joblogger"), level=logging.INFO)
    joblog = logging.getLogger("joblogger")
    old_level = joblog.level
    joblog.addHandler(handler)
    joblog.setLevel(logging.INFO)
    try:
        with capture() as cap:
            with cap.job_logger("run-b", "bridged") as job:
                job.set_stage("Scoring users")
                job.warning("No valid candidates for user 1234", userId="1234")
            stage = cap.span("Scoring users")
    finally:
        joblog.removeHandler(handler)
        joblog.setLevel(old_level)
    records = [item.log_record for item in exporter.get_finished_logs()]
    warning = next(r for r in records if r.body == "No valid candidates for user 1234")
    assert warning.severity_number == SeverityNumber.WARN
    assert warning.attributes["userId"] == "1234"
    assert warning.attributes["job.run.id"] == "run-b"
    assert warning.attributes["job.stage"] == "Scoring users"
    assert warning.trace_id == stage.context.trace_id
    assert warning.span_id == stage.context.span_id
    milestones = [r for r in records if r.severity_number == SeverityNumber.INFO4]
    assert any(str(r.body).startswith("Completed in") for r in milestones)
