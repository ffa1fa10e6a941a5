"""End-to-end check of a running VictoriaLogs: OTLP/HTTP logs in, LogsQL out.

Sends joblogger-shaped log records (job.name, job.run.id, job.stage,
job.log.level, userId, a severity, inside an active span) with the
OpenTelemetry Python SDK's OTLP/HTTP exporter, then reads them back through
``/select/logsql/query``, ``/hits``, ``/streams``, ``/stats_query`` and
``/tail``, and prints what it saw plus ingestion-to-queryable latency.

Usage (VictoriaLogs already listening, e.g. on 127.0.0.1:9428)::

    .venv/bin/python backends/victorialogs/verify_otlp.py \
        [--base http://127.0.0.1:9428] [--endpoint URL] \
        [--stream-fields service.name,job.name | --stream-fields ""]

``--endpoint`` defaults to ``<base>/insert/opentelemetry/v1/logs``; point it at
a collector's OTLP/HTTP receiver (``http://127.0.0.1:4318/v1/logs``) to check
the collector route instead, with ``--stream-fields "" --expect-stream-fields
service.name,job.name`` (the collector's exporter sets the header). Exits
non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import get_current
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

JOB = "match-scores"
SERVICE = "joblogger-verify"
#: (job.stage, job.log.level, severity_text, severity_number, body)
RECORDS = [
    ("load", "info", "INFO", SeverityNumber.INFO, "loaded 120 fixtures"),
    ("score", "debug", "DEBUG", SeverityNumber.DEBUG, "scoring user 42"),
    ("score", "warning", "WARNING", SeverityNumber.WARN, "user 42 has no ranking"),
    ("publish", "error", "ERROR", SeverityNumber.ERROR, "publish failed: timeout"),
]


def get(base: str, path: str, **params: str) -> str:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback only)
        return resp.read().decode()


def rows(base: str, query: str, **params: str) -> list[dict[str, str]]:
    body = get(base, "/select/logsql/query", query=query, **params)
    return [json.loads(line) for line in body.splitlines() if line.strip()]


class Tail(threading.Thread):
    """Reads ``/select/logsql/tail`` and remembers when each row arrived."""

    def __init__(self, base: str, query: str, offset: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base}/select/logsql/tail?" + urllib.parse.urlencode(
            {"query": query, "offset": offset, "refresh_interval": "500ms"}
        )
        self.arrivals: list[tuple[float, dict[str, str]]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=30) as resp:  # noqa: S310
                for line in resp:
                    if line.strip():
                        self.arrivals.append((time.monotonic(), json.loads(line)))
        except BaseException as exc:  # noqa: BLE001
            self.error = exc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="http://127.0.0.1:9428")
    ap.add_argument("--endpoint", default=None)
    ap.add_argument(
        "--stream-fields",
        default="service.name,job.name",
        help="VL-Stream-Fields header this client sends ('' sends none)",
    )
    ap.add_argument(
        "--expect-stream-fields",
        default=None,
        help="stream fields the records should end up with (default: --stream-fields; "
        "give service.name,job.name when a collector or ?_stream_fields= sets them)",
    )
    ap.add_argument("--tail-offset", default="1s", help="offset arg of /select/logsql/tail (server default 5s)")
    args = ap.parse_args()
    base = args.base.rstrip("/")
    endpoint = args.endpoint or f"{base}/insert/opentelemetry/v1/logs"
    headers = {"VL-Stream-Fields": args.stream_fields} if args.stream_fields else {}
    expect_stream = args.stream_fields if args.expect_stream_fields is None else args.expect_stream_fields
    expect_stream_fields = [f for f in expect_stream.split(",") if f]
    run_id = f"verify-{uuid.uuid4().hex[:8]}"
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(("  ok   " if ok else "  FAIL ") + what)
        if not ok:
            failures.append(what)

    resource = Resource.create({"service.name": SERVICE, "service.instance.id": uuid.uuid4().hex})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, headers=headers)))
    logger = provider.get_logger("joblogger")
    tracer = TracerProvider(resource=resource).get_tracer("joblogger")

    # Live tail first, so it is open before the records are sent.
    tail = Tail(base, f'job.run.id:="{run_id}"', args.tail_offset)
    tail.start()
    time.sleep(0.5)

    print(f"sending {len(RECORDS)} records to {endpoint} (run {run_id}, headers {headers})")
    with tracer.start_as_current_span("stage") as span:
        ctx = span.get_span_context()
        trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        for stage, level, sev_text, sev_num, body in RECORDS:
            logger.emit(
                LogRecord(
                    timestamp=time.time_ns(),
                    context=get_current(),
                    severity_text=sev_text,
                    severity_number=sev_num,
                    body=body,
                    attributes={
                        "job.name": JOB,
                        "job.run.id": run_id,
                        "job.stage": stage,
                        "job.log.level": level,
                        "userId": 42,
                    },
                )
            )
    sent = time.monotonic()  # SimpleLogRecordProcessor: each export has returned

    # Ingestion-to-queryable latency: poll until every record is returned.
    query = f'job.name:="{JOB}" AND job.run.id:="{run_id}"'
    got: list[dict[str, str]] = []
    while time.monotonic() - sent < 30:
        got = rows(base, query)
        if len(got) >= len(RECORDS):
            break
        time.sleep(0.05)
    latency = time.monotonic() - sent
    print(f"\nqueryable after {latency:.2f} s: {query}")
    check(len(got) == len(RECORDS), f"{len(got)} of {len(RECORDS)} records returned")
    check(latency < 5, f"latency {latency:.2f} s < 5 s")

    if got:
        sample = next((r for r in got if r.get("job.log.level") == "error"), got[0])
        print("\nfields of one record (as returned by /select/logsql/query):")
        for key in sorted(sample):
            print(f"  {key} = {sample[key]!r}")
        check(sample.get("trace_id") == trace_id, f"trace_id == {trace_id}")
        check(sample.get("span_id") == span_id, f"span_id == {span_id}")
        check(sample.get("_msg") == "publish failed: timeout", "body is _msg")
        check(sample.get("severity_text") == "ERROR", "severity_text == ERROR")
        check(sample.get("severity_number") == "17", "severity_number == 17")
        check(sample.get("job.name") == JOB, "job.name kept as-is (dotted, not renamed)")
        check(sample.get("userId") == "42", "userId == '42' (values come back as strings)")
        print(f"  _stream = {sample.get('_stream')!r}")

    print("\nLogsQL queries:")
    # A stream filter ({...} or _stream:{...}) matches stream fields only: it finds
    # nothing when job.name is an ordinary field.
    in_stream = 4 if "job.name" in expect_stream_fields else 0
    queries = {
        f'job.run.id:="{run_id}" AND job.log.level:in("warning","error")': 2,
        f'{{job.name="{JOB}"}} AND job.run.id:="{run_id}"': in_stream,
        f'_stream:{{service.name="{SERVICE}",job.name="{JOB}"}} AND job.run.id:="{run_id}"': in_stream,
        f'trace_id:="{trace_id}"': 4,
        f'job.run.id:="{run_id}" AND severity_text:="ERROR"': 1,
        f'job.run.id:="{run_id}" AND job.stage:="score" AND userId:=42': 2,
        f'job.run.id:="{run_id}" AND timeout': 1,
        f'job.run.id:="{run_id}" | fields _time, job.stage, job.log.level, _msg': 4,
    }
    for q, want in queries.items():
        try:
            n = len(rows(base, q))
        except Exception as exc:  # noqa: BLE001
            n = -1
            print(f"    error: {exc}")
        check(n == want, f"{n} rows (want {want}): {q}")

    hits = json.loads(
        get(base, "/select/logsql/hits", query=f'job.run.id:="{run_id}"', start="5m", step="1h", field="job.log.level")
    )
    counts = {tuple(sorted(h["fields"].items())): h["total"] for h in hits.get("hits", [])}
    print(f"\n/select/logsql/hits (field=job.log.level): {counts}")
    check(sum(counts.values()) == len(RECORDS), "hits total == records sent")

    stats = json.loads(
        get(base, "/select/logsql/stats_query", query=f'job.run.id:="{run_id}" | stats by (job.log.level) count() logs')
    )
    print(f"/select/logsql/stats_query: {[(r['metric'], r['value'][1]) for r in stats['data']['result']]}")

    streams = json.loads(get(base, "/select/logsql/streams", query=f'job.run.id:="{run_id}"', start="5m"))
    names = [s["value"] for s in streams.get("values", [])]
    print(f"/select/logsql/streams: {names}")
    if expect_stream_fields:
        want_stream = (
            "{"
            + ",".join(
                f'{k}="{v}"'
                for k, v in sorted({"service.name": SERVICE, "job.name": JOB}.items())
                if k in expect_stream_fields
            )
            + "}"
        )
        check(names == [want_stream], f"one stream {want_stream}")

    while len(tail.arrivals) < len(RECORDS) and tail.is_alive() and time.monotonic() - sent < 15:
        time.sleep(0.05)
    tail_rows = [(t - sent, r) for t, r in tail.arrivals]
    print(
        f"\n/select/logsql/tail (offset={args.tail_offset}): {len(tail_rows)} rows, first after {tail_rows[0][0]:.2f} s"
        if tail_rows
        else f"\n/select/logsql/tail: no rows ({tail.error})"
    )
    check(len(tail_rows) == len(RECORDS), "live tail delivered every record")

    provider.shutdown()
    print(f"\n{len(failures)} failed" if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
