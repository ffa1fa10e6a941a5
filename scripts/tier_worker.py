#!/usr/bin/env python3
"""The job process of the scale tier's test and benchmark (scripts/tier.py, docs/scale.md).

``python scripts/tier_worker.py '<json>'`` runs real joblogger runs against one
agent (keys: ``service``, ``endpoint``, ``job``, ``runs``, ``items``, ``sleep``,
optional ``threads`` (runs at a time), ``stages``, ``logs_every``; every fourth
run fails) and prints, as JSON lines, every run's summary and, at exit, how many
spans, log records and metric points its OTLP exporters delivered (answered with
success) and how many failed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any


def worker(cfg: dict[str, Any]) -> None:
    """Run ``cfg["runs"]`` joblogger runs against ``cfg["endpoint"]``; print summaries and delivery counts."""
    import atexit
    import threading

    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    lock = threading.Lock()
    counts: dict[str, int] = {}

    def add(key: str, n: int) -> None:
        with lock:
            counts[key] = counts.get(key, 0) + n

    out_lock = threading.Lock()

    def emit(kind: str, **data: Any) -> None:
        line = json.dumps({"kind": kind, **data}) + "\n"
        with out_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def patch(cls: Any, signal_name: str, size: Any) -> None:
        original = cls.export

        def export(self: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, batch, *args, **kwargs)
            ok = getattr(result, "name", str(result)) == "SUCCESS"
            for key, n in size(batch).items():
                add(f"{key}_{'delivered' if ok else 'failed'}", n)
            return result

        cls.export = export

    def metric_points(data: Any) -> dict[str, int]:
        sizes = {"points": 0, "outcome_points": 0}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    n = len(metric.data.data_points)
                    sizes["points"] += n
                    if metric.name == "job.outcomes":
                        sizes["outcome_points"] += n
        return sizes

    patch(OTLPSpanExporter, "spans", lambda batch: {"spans": len(batch)})
    patch(OTLPLogExporter, "logs", lambda batch: {"logs": len(batch)})
    patch(OTLPMetricExporter, "metrics", metric_points)
    # Registered before configure(): atexit runs it after joblogger's own shutdown flushed everything.
    atexit.register(lambda: emit("exit", **counts))

    from joblogger import create_job_logger, otlp

    otlp.configure(endpoint=cfg["endpoint"], service_name=cfg["service"], protocol="grpc")
    items, sleep = int(cfg["items"]), float(cfg["sleep"])
    logs_every = int(cfg.get("logs_every", 5))
    stages = int(cfg.get("stages", 0))

    def one_run(r: int) -> None:
        with contextlib.suppress(RuntimeError), create_job_logger(f"{cfg['service']}-{r}", cfg["job"]) as job:
            job.set_total(items, "items")
            for i in range(items):
                if stages and i % max(1, items // stages) == 0:
                    job.set_stage(f"Stage {i // max(1, items // stages) + 1}")
                if sleep:
                    time.sleep(sleep)
                job.increment_progress()
                job.add_outcome("skipped" if i % 7 == 0 else "updates")
                if i % logs_every == 0:
                    job.info("batch done", item=i)
            if r % 4 == 3:
                job.add_outcome("errors")
                raise RuntimeError("every fourth run fails")
        emit("summary", **job.summary.to_dict())

    # ``threads`` runs at a time in this process (concurrent runs), ``runs`` in all.
    threads = max(1, int(cfg.get("threads", 1)))
    todo = list(range(int(cfg["runs"])))

    def lane(k: int) -> None:
        for r in todo[k::threads]:
            one_run(r)

    lanes = [threading.Thread(target=lane, args=(k,)) for k in range(threads)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()


def main(argv: list[str]) -> int:
    """``tier_worker.py '<json>'``."""
    if len(argv) == 1:
        worker(json.loads(argv[0]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
