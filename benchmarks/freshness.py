"""How fresh is what the stack shows? Measured against the real local stack, with the shipped settings.

Run:   .venv/bin/python benchmarks/freshness.py [--repeats N]

Starts the local stack (scripts/stack.py) if it is not running, configures
joblogger exactly as users do (``joblogger.otlp.configure()`` defaults), and
measures, in one process:

- progress: from ``set_progress(k)`` until Prometheus answers ``job_progress_current == k``;
- traces: from the end of a run until Jaeger's search finds it by ``job.run.id``;
- snapshot: from the start of a stage until Jaeger finds its ``stage.start`` snapshot;
- logs: from a ``warning()`` call until the log store returns the line (when the stack has one).

Targets (docs/stack.md): progress within 5 s, traces within 10 s, logs within 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import stack as stack_script  # noqa: E402

TARGETS_S = {
    "progress -> Prometheus": 5.0,
    "run end -> Jaeger search": 10.0,
    "stage start -> Jaeger (snapshot)": 10.0,
    "warning() -> log store": 5.0,
}


def get_json(url: str, params: dict[str, str]) -> Any:
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(params)}", timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def wait_for(probe: Callable[[], bool], timeout: float = 60.0, step: float = 0.05) -> float:
    """Seconds until ``probe()`` is true (raises TimeoutError after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if probe():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(step)
    raise TimeoutError("not visible in time")


def measure(urls: Any, repeats: int) -> dict[str, list[float]]:
    """Run ``repeats`` rounds of each measurement; return seconds per round."""
    from joblogger import create_job_logger, otlp

    service = f"freshness-{uuid.uuid4().hex[:6]}"
    os.environ["OTEL_SERVICE_NAME"] = service
    otlp.configure(endpoint=urls.otlp_grpc, protocol="grpc")
    results: dict[str, list[float]] = {name: [] for name in TARGETS_S}
    logs_url = getattr(urls, "logs", None)
    for round_no in range(repeats):
        run_id = f"fresh-{round_no}-{uuid.uuid4().hex[:6]}"
        job = create_job_logger(run_id, "freshness")
        job.set_total(1000)
        stage = f"Stage {round_no}"
        job.set_stage(stage)
        results["stage start -> Jaeger (snapshot)"].append(
            wait_for(
                lambda: bool(
                    get_json(
                        f"{urls.jaeger}/api/traces",
                        {
                            "service": service,
                            "tags": json.dumps({"job.run.id": run_id, "job.snapshot.kind": "stage.start"}),
                            "lookback": "1h",
                        },
                    ).get("data")
                )
            )
        )
        for step in (100, 200):
            job.set_progress(step)
            query = f'job_progress_current{{job="{service}", job_run_id="{run_id}"}} == {step}'
            results["progress -> Prometheus"].append(
                wait_for(
                    lambda q=query: bool(get_json(f"{urls.prometheus}/api/v1/query", {"query": q})["data"]["result"])
                )
            )
        if logs_url:
            marker = uuid.uuid4().hex
            job.warning(f"freshness marker {marker}")
            results["warning() -> log store"].append(wait_for(lambda m=marker: marker_found(logs_url, m)))
        job.log_summary()
        results["run end -> Jaeger search"].append(
            wait_for(
                lambda: any(
                    not any(t["key"] == "job.snapshot" for t in s.get("tags", [])) and s["operationName"] == "freshness"
                    for trace in get_json(
                        f"{urls.jaeger}/api/traces",
                        {"service": service, "tags": json.dumps({"job.run.id": run_id}), "lookback": "1h"},
                    ).get("data")
                    or []
                    for s in trace["spans"]
                )
            )
        )
    return {k: v for k, v in results.items() if v}


def marker_found(logs_url: str, marker: str) -> bool:
    """True when the log store returns a line containing ``marker`` (VictoriaLogs LogsQL API)."""
    with urllib.request.urlopen(
        f"{logs_url}/select/logsql/query?{urllib.parse.urlencode({'query': marker, 'limit': '1'})}", timeout=10
    ) as resp:
        return marker in resp.read().decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    urls = stack_script.start()
    started = stack_script.started_by_last_start()
    try:
        results = measure(urls, args.repeats)
    finally:
        stack_script.stop(services=started)
    print(f"| {'what':<34} | {'median s':>8} | {'max s':>6} | {'target s':>8} | ok   |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 8}|{'-' * 10}|------|")
    failed = 0
    for name, samples in results.items():
        ok = max(samples) <= TARGETS_S[name]
        failed += not ok
        print(
            f"| {name:<34} | {statistics.median(samples):>8.2f} | {max(samples):>6.2f} | "
            f"{TARGETS_S[name]:>8.0f} | {'PASS' if ok else 'FAIL':<4} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
