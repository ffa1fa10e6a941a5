"""Shared helpers of the Prometheus benchmarks: synthetic data into TSDB blocks, a throwaway server, queries.

Used by benchmarks/schedule_rules.py and benchmarks/dashboard_queries.py: they write OpenMetrics
text with :class:`BlockFiles`, turn it into blocks with :func:`create_blocks` (``promtool tsdb
create-blocks-from openmetrics``) and query the stack's own Prometheus started by :func:`serve` on
a temporary data directory.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import stack as stack_script  # noqa: E402

BLOCK_S = 7200


class BlockFiles:
    """OpenMetrics files, one per 2-hour TSDB block range: promtool re-reads its whole input for every
    block range it covers, so one file per range keeps the import linear in the data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[int, TextIO] = {}

    def write(self, name: str, labels: str, points: Iterable[tuple[float, float]]) -> int:
        labels = labels.replace(", ", ",")  # OpenMetrics: no spaces between labels
        count = 0
        for stamp, value in points:
            block = int(stamp // BLOCK_S)
            out = self.files.get(block)
            if out is None:
                out = self.files[block] = (self.folder / f"{block}.om").open("w", encoding="utf-8")
            out.write(f"{name}{{{labels}}} {value} {stamp:.3f}\n")
            count += 1
        return count

    def close(self) -> list[Path]:
        for out in self.files.values():
            out.write("# EOF\n")
            out.close()
        return [self.folder / f"{block}.om" for block in sorted(self.files)]


def steps(start: float, end: float, step: float) -> Iterator[float]:
    """The multiples of ``step`` in ``(start, end]``."""
    t = start - (start % step) + step
    while t <= end:
        yield t
        t += step


def binaries() -> tuple[str, str]:
    """The stack's own ``prometheus`` and ``promtool`` (scripts/stack.py builds them on first use)."""
    built = stack_script.ensure_built()
    return str(built.prometheus), str(built.promtool)


def create_blocks(promtool: str, sources: list[Path], data: Path) -> None:
    """Turn the OpenMetrics files into TSDB blocks under ``data`` (deleting each file once imported)."""
    for source in sources:
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data)], check=True
        )
        source.unlink()


def backfill_rules(
    promtool: str, prometheus: str, work: Path, groups: list[dict[str, Any]], *, start: float, end: float
) -> int:
    """Evaluate recording rule ``groups`` over ``[start, end]`` into blocks of ``work/data``, as Prometheus
    would have recorded them live (``promtool tsdb create-blocks-from rules`` against a server on the data;
    each group at its own ``interval``). Returns the number of blocks written."""
    rules = work / "backfill-rules.yml"
    rules.write_text(json.dumps({"groups": groups}), encoding="utf-8")  # JSON is YAML
    out = work / "backfill"
    with serve(prometheus, work, compact=False) as base:
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "rules", "-q", f"--url={base}", f"--start={start:.0f}",
             f"--end={end:.0f}", f"--output-dir={out}", str(rules)],
            check=True,
        )  # fmt: skip
    blocks = [d for d in out.iterdir() if d.is_dir()] if out.exists() else []
    for block in blocks:
        block.rename(work / "data" / block.name)
    return len(blocks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(prometheus: str, work: Path, *, compact: bool = True) -> Iterator[str]:
    """Run Prometheus on ``work/data`` (rules off, no scraping) until the block ends; yields its base URL."""
    (work / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        if compact:
            wait_for_compaction(work / "data")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)


def query(base: str, expr: str, at: float, timeout: float = 300) -> dict[str, Any]:
    """An instant query with ``stats=all``; returns the response's ``data``."""
    return get(base, "/api/v1/query", {"query": expr, "time": f"{at:.3f}", "stats": "all"}, timeout)


def get(base: str, path: str, params: dict[str, str], timeout: float = 300) -> dict[str, Any]:
    """GET a Prometheus API path; returns the response's ``data`` (fails unless ``status`` is success)."""
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=timeout) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]  # type: ignore[no-any-return]


def _blocks(data: Path) -> int:
    return sum(1 for d in data.iterdir() if d.is_dir() and len(d.name) == 26 and (d / "meta.json").exists())


def wait_for_compaction(data: Path, timeout: float = 600.0) -> None:
    """Let Prometheus merge promtool's 2-hour blocks, as it does with its own data over time."""
    t0 = time.monotonic()
    before, last, stable_since = _blocks(data), -1, time.monotonic()
    while time.monotonic() - t0 < timeout:
        count = _blocks(data)
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since > 150:  # compaction runs every minute: two idle rounds
            break
        time.sleep(5)
    print(f"Prometheus compacted {before} blocks into {last} in {time.monotonic() - t0:.0f} s", flush=True)


def version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if out.startswith("prometheus, version") else "?"
