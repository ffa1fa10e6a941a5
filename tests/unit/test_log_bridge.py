"""The stdlib-to-OpenTelemetry log bridge used by joblogger.otlp: records, severities and trace correlation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs import export as log_export
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from joblogger import MILESTONE
from joblogger._bridge import OTelLogHandler, severity
from joblogger.testing import capture


def test_severity_mapping():
    """DEBUG, INFO, MILESTONE, WARNING, ERROR map to OTel DEBUG, INFO, INFO4, WARN, ERROR."""
    assert MILESTONE not in (5, 15, 21, 25, 35)  # SUBDEBUG, VERBOSE, ..., SUBWARNING/NOTICE/SUCCESS, SUCCESS
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


#: A job process: ``argv[1]`` says what other code did to the level names before and after importing joblogger.
_LEVEL_JOB = textwrap.dedent("""
    import json, logging, sys
    if sys.argv[1] == "taken-before":
        logging.addLevelName(int(sys.argv[2]), "SOMEONE_ELSES")
    import billiard.util  # Celery's process pool
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs import export as log_export
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from joblogger import MILESTONE
    from joblogger._bridge import OTelLogHandler
    from joblogger.testing import capture

    billiard.util.get_logger()  # registers SUBDEBUG=5 and SUBWARNING=25, as in every Celery pool worker
    if sys.argv[1] == "taken-after":
        logging.addLevelName(MILESTONE, "SOMEONE_ELSES")
    exporter_class = getattr(log_export, "InMemoryLogRecordExporter", None) or log_export.InMemoryLogExporter
    exporter = exporter_class()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    joblog = logging.getLogger("joblogger")
    joblog.addHandler(OTelLogHandler(provider.get_logger("joblogger")))
    joblog.addHandler(handler)
    joblog.setLevel(logging.INFO)
    with capture() as cap:
        with cap.job_logger("r", "pool-job") as job:
            job.milestone("Loaded users")
    record = next(r for r in seen if r.getMessage() == "Loaded users")
    otel = next(i.log_record for i in exporter.get_finished_logs() if i.log_record.body == "Loaded users")
    print(json.dumps({"levelname": record.levelname, "severity_text": otel.severity_text,
                      "severity_number": otel.severity_number.value}))
""")


def _milestone_in_a_fresh_process(situation: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _LEVEL_JOB, situation, str(MILESTONE)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_milestones_keep_their_name_in_a_celery_pool_worker():
    """In a Celery pool worker (billiard registers SUBWARNING=25, as multiprocessing did) milestones stay MILESTONE."""
    got = _milestone_in_a_fresh_process("pool-worker")
    assert got == {"levelname": "MILESTONE", "severity_text": "MILESTONE", "severity_number": 12}


@pytest.mark.parametrize("situation", ["taken-before", "taken-after"])
def test_milestone_severity_text_survives_a_renamed_level(situation: str):
    """If other code names joblogger's level number, joblogger never renames it and OTLP still says MILESTONE."""
    got = _milestone_in_a_fresh_process(situation)
    assert got == {"levelname": "SOMEONE_ELSES", "severity_text": "MILESTONE", "severity_number": 12}
