"""Backend faults: a job keeps its pace, memory and exit bound whatever the collector does.

Every test runs real job processes configured with ``joblogger.otlp.configure(endpoint=...)``
against a real fault: nothing listening, a port that resets every connection, a
collector that accepts but never answers (a blackhole), a slow link (a proxy that
delays every byte by 2 s), a collector restarted mid-run, and one that is down
for the first part of a run. The shared stack's collector is never touched: the
tests start their own collector processes (same binary, same collector/config.yaml,
free ports) that forward to the shared Jaeger and Prometheus.

How time is compared. The machine is a shared 2-core VM whose speed drifts by
tens of percent from one second to the next (the same job took 1.7 s to 2.8 s
in consecutive runs), so two runs one after the other cannot resolve 5 %. Each
fault test therefore runs the faulty job and a healthy twin *at the same time,
pinned to the same core*: both see the same core at the same moments. The
figure compared is each process's CPU time during the job body, all threads
included (exporters, gRPC) - on one core that is the wall time the job would
take with the core to itself. The twins' wall times are compared as well
(a weaker check: the twin that finishes first hands the whole core to the other).

Bounds used (see ``joblogger.otlp``): each export is bounded by the export
timeout (5 s); at exit, exports may start for two export timeouts and the last
one in flight ends within one more, so a process exits at most
``3 x 5 s = 15 s`` after its job ends, plus interpreter teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from live import eventually, get_json

from joblogger import otlp

T = TypeVar("T")
HOST = "127.0.0.1"

EXPORT_TIMEOUT_S = otlp.DEFAULT_EXPORT_TIMEOUT_S
#: Longest possible shutdown: exports may start for SHUTDOWN_GRACE_EXPORTS timeouts, the last one runs one more.
SHUTDOWN_BOUND_S = (otlp.SHUTDOWN_GRACE_EXPORTS + 1) * EXPORT_TIMEOUT_S
#: Interpreter teardown after the atexit handlers (module finalisation, gRPC channel close) on a loaded VM.
EXIT_SLACK_S = 2.0
#: Allowed slowdown of the job body under a fault.
MAX_OVERHEAD = 0.05
#: Pairs run before the pace assertion counts: other processes on this 2-core machine preempt one twin more than
#: the other (a CI run under load saw +8.5 % CPU where earlier runs passed). A systematic slowdown fails every attempt.
PACE_ATTEMPTS = 3
#: Absolute allowance on top of MAX_OVERHEAD: one-off work of a failing exporter (channel re-creation,
#: a few warning lines) that does not scale with the job; healthy twins differ by < 1 % of ~2.5 s.
OVERHEAD_SLACK_S = 0.1
#: A telemetry call that waited for the network would take seconds (timeouts are 5 s); preemption on a loaded VM is ms.
MAX_CALL_S = 0.5
#: Peak RSS of a faulty job may exceed its healthy twin's by at most this much (MiB).
RSS_SLACK_MIB = 10.0
SLOW_LINK_DELAY_S = 2.0
BACKEND_TIMEOUT_S = 45.0
#: The core both twins run on (the last one this process may use).
PIN_CPU = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

# A light job: CPU-bound items, progress and an outcome per item, info logs every 50 items, warnings every 200.
LIGHT = {"stages": 5, "items": 800, "spin": 5000, "sleep": 0.0}
# A job that runs long enough (about 8 s, mostly sleeping) for the collector to go away and come back.
LONG = {"stages": 8, "items": 100, "spin": 100, "sleep": 0.01}

JOB_SCRIPT = textwrap.dedent(
    '''
    """A job process for the backend-fault tests: set up OTLP export, run one job, report JSON lines."""
    import atexit, gc, json, logging, os, resource, sys, time

    cfg = json.loads(sys.argv[1])
    if cfg.get("cpu") is not None:
        os.sched_setaffinity(0, {cfg["cpu"]})  # before any thread starts, so every thread inherits it

    def emit(kind, **data):
        print(json.dumps({"kind": kind, **data}), flush=True)

    def peak_rss_mib():
        # VmHWM starts afresh at exec; ru_maxrss would include the forking test process's own size.
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    marks = {}

    def report_exit():  # registered before configure(), so atexit runs it after telemetry.shutdown
        if "body_end" in marks:
            deadline = getattr(telemetry, "_deadline", None)
            emit("exit", shutdown_s=time.perf_counter() - marks["body_end"], peak_rss_mib=peak_rss_mib(),
                 dropped_at_exit=dict(getattr(deadline, "dropped", {})))

    atexit.register(report_exit)
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    logging.getLogger().addHandler(warnings)

    from joblogger import create_job_logger, otlp

    # The fault servers and the own collector listen for OTLP/gRPC (the default protocol is http/protobuf).
    telemetry = otlp.configure(endpoint=cfg["endpoint"], service_name=cfg["service"], protocol="grpc")

    def queued():
        """Items waiting in the span and log batch queues (SDK internals, read for the report only)."""
        found = {}
        for name, provider, attr in (("spans", telemetry.tracer_provider, "_active_span_processor"),
                                     ("logs", telemetry.logger_provider, "_multi_log_record_processor")):
            multi = getattr(provider, attr, None)
            for proc in getattr(multi, "_span_processors", getattr(multi, "_log_record_processors", ())):
                q = getattr(getattr(proc, "_batch_processor", None), "_queue", None)
                if q is not None:
                    found[name] = len(q)
        return found

    def work(n):
        acc = 0
        for i in range(n):
            acc = (acc * 31 + i) % 1000003
        return acc

    emit("ready")
    sys.stdin.readline()  # paired jobs start their bodies at the same moment
    t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
    worst_call, samples, blocks = 0.0, [], []
    with create_job_logger(cfg["run_id"], cfg["job"]) as job:
        if cfg["mode"] == "heavy":  # many short stages (span + snapshot span each) and many log records
            stages = cfg["stages"]
            for s in range(stages):
                job.set_stage(f"Stage {s % 10}")
                for k in range(cfg["logs_per_stage"]):
                    job.info("record written", n=k)
                job.increment_progress()
                if (s + 1) % (stages // 10) == 0:
                    samples.append(round(rss_mib(), 2))
                    gc.collect()  # live Python memory blocks, without garbage waiting for the cyclic collector
                    blocks.append(sys.getallocatedblocks())
        elif cfg["mode"] == "save":  # the one call documented to wait for I/O, at most timeout_s
            for _ in range(2):
                job.add_outcome("updates", 10)
                time.sleep(0.7)
                tc = time.perf_counter()
                job.save_outcome(timeout_s=2.0)
                worst_call = max(worst_call, time.perf_counter() - tc)
        else:
            job.set_total(cfg["stages"] * cfg["items"], "items")
            for s in range(cfg["stages"]):
                job.set_stage(f"Stage {s + 1}")
                emit("stage", n=s + 1, at=time.time())
                for i in range(cfg["items"]):
                    work(cfg["spin"])
                    if cfg["sleep"]:
                        time.sleep(cfg["sleep"])
                    tc = time.perf_counter()
                    job.increment_progress()
                    job.add_outcome("skipped" if i % 10 == 0 else "updates")
                    if i % 50 == 0:
                        job.info("batch done", batch=i // 50, stage=s + 1)
                    if i % 200 == 0:
                        job.warning("slow item", item=i)
                    worst_call = max(worst_call, time.perf_counter() - tc)
    marks["body_end"] = time.perf_counter()
    emit("body", body_s=marks["body_end"] - t0, cpu_s=time.process_time() - c0, main_cpu_s=time.thread_time() - m0,
         worst_call_s=worst_call, rss_mib=rss_mib(), peak_rss_mib=peak_rss_mib(), samples=samples, blocks=blocks,
         queued=queued(), summary=job.summary.to_dict())
    '''
)


# ------------------------------------------------------------------------------------------
# Helpers: ports, backends, fault servers, job processes


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def promql(stack: Any, query: str) -> list[dict[str, Any]]:
    """Instant PromQL query against the shared Prometheus."""
    body = get_json(f"{stack.prometheus}/api/v1/query", {"query": query})
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def scalar(stack: Any, query: str) -> float | None:
    """Value of a PromQL query that returns one sample, or None."""
    result = promql(stack, query)
    return float(result[0]["value"][1]) if result else None


class OwnCollector:
    """A collector process of this test's own: the stack's binary and collector/config.yaml on free ports.

    It forwards to the shared Jaeger and Prometheus exactly as the shared
    collector does (the environment comes from scripts/stack.py), so only this
    process is ever stopped or restarted.
    """

    def __init__(self, log: Path) -> None:
        stack_module = sys.modules["joblogger_stack"]  # loaded by tests/integration/conftest.py
        bins = stack_module.ensure_built()
        home = stack_module._home(os.environ)
        shared = next(s for s in stack_module._services(bins, home, os.environ) if s.name == "collector")
        self.grpc_port, health_port = free_port(), free_port()
        self.argv = list(shared.argv)
        self.env = {**os.environ, **shared.env}
        self.env.update(
            OTLP_GRPC_ENDPOINT=f"{HOST}:{self.grpc_port}",
            OTLP_HTTP_ENDPOINT=f"{HOST}:{free_port()}",
            COLLECTOR_HEALTH_ENDPOINT=f"{HOST}:{health_port}",
            COLLECTOR_TELEMETRY_HOST=HOST,
            COLLECTOR_TELEMETRY_PORT=str(free_port()),
        )
        self.health_url = f"http://{HOST}:{health_port}/"
        self.endpoint = f"http://{HOST}:{self.grpc_port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Start the collector and wait until it is healthy; return the monotonic time it became ready."""
        assert self.proc is None or self.proc.poll() is not None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"own collector exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.health_url, timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic()
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"own collector not healthy within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM this collector (it drains its batches), SIGKILL it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


class FaultServer:
    """A listener on a free loopback port that mistreats every connection in one of three ways.

    ``blackhole``: accept and never read or reply; ``reset``: accept and reset at
    once; ``delay``: forward to ``target_port``, holding every chunk of bytes for
    ``delay_s`` in each direction (order and throughput kept).
    """

    def __init__(self, kind: str, target_port: int | None = None, delay_s: float = 0.0) -> None:
        self.kind, self.target_port, self.delay_s = kind, target_port, delay_s
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.endpoint = f"http://{HOST}:{self.port}"
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"fault-{kind}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.kind == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif self.kind == "blackhole":
                self._held.append(conn)
            else:
                self._proxy(conn)

    def _proxy(self, client: socket.socket) -> None:
        assert self.target_port is not None
        try:
            upstream = socket.create_connection((HOST, self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)
        self._held += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._read, args=(src, chunks), daemon=True).start()
            threading.Thread(target=self._write, args=(dst, chunks), daemon=True).start()

    def _read(self, src: socket.socket, chunks: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            chunks.put((time.monotonic() + self.delay_s, data))
            if not data:
                return

    def _write(self, dst: socket.socket, chunks: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = chunks.get()
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()


class JobProcess:
    """A job process running JOB_SCRIPT; its JSON lines are time-stamped on arrival by a reader thread."""

    def __init__(
        self, script: Path, workdir: Path, name: str, cfg: dict[str, Any], env: dict[str, str] | None = None
    ) -> None:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **(env or {})}
        self.name, self.cfg = name, cfg
        self.stderr_path = workdir / f"{name}.stderr"
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), json.dumps(cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        self.lines: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.seen: dict[str, tuple[float, dict[str, Any]]] = {}
        self.exited_at: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put((time.monotonic(), json.loads(line)))
        self.proc.wait()
        self.exited_at = time.monotonic()
        self.lines.put((self.exited_at, {"kind": "eof"}))

    def next_line(self, timeout: float) -> tuple[float, dict[str, Any]]:
        """The next line and its arrival time; fail on timeout."""
        try:
            at, line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            pytest.fail(f"{self.name}: silent for {timeout:.0f} s\n{self.stderr()}")
        self.seen[line["kind"]] = (at, line)
        return at, line

    def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        """Wait for the next line of ``kind`` (skipping others); fail on timeout or early exit."""
        deadline = time.monotonic() + timeout
        while True:
            _, line = self.next_line(max(0.01, deadline - time.monotonic()))
            if line["kind"] == kind:
                return line
            if line["kind"] == "eof":
                pytest.fail(f"{self.name}: exited ({self.proc.returncode}) before {kind!r}\n{self.stderr()}")

    def go(self) -> None:
        """Let the job body start."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for the body report, the exit report and the process exit; return the figures."""
        body = self.seen["body"][1] if "body" in self.seen else self.expect("body", timeout)
        body_at = self.seen["body"][0]
        exit_report = self.expect("exit", SHUTDOWN_BOUND_S + EXIT_SLACK_S + 30)
        self.expect("eof", 30)
        assert self.proc.returncode == 0, self.stderr()
        assert self.exited_at is not None
        return {**body, **exit_report, "exit_s": self.exited_at - body_at}

    def stderr(self) -> str:
        """The process's stderr so far (tail)."""
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def full_stderr(self) -> str:
        """The process's whole stderr."""
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        """Kill the process if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the job script, stderr files and collector logs."""
    path = tmp_path_factory.mktemp("backend-faults")
    (path / "job.py").write_text(JOB_SCRIPT)
    return path


@pytest.fixture(scope="module")
def own_collector(stack: Any, workdir: Path) -> Iterator[OwnCollector]:
    """A healthy collector of our own (for the healthy twins and behind the slow link)."""
    collector = OwnCollector(workdir / "own-collector.log")
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def spawn(workdir: Path) -> Iterator[Callable[..., JobProcess]]:
    """Start job processes; kill any left running when the test ends."""
    started: list[JobProcess] = []

    def start(name: str, endpoint: str, **cfg: Any) -> JobProcess:
        full = {
            "mode": "light",
            "endpoint": endpoint,
            "service": f"faults-{name}-{uuid.uuid4().hex[:8]}",
            "run_id": f"run-{uuid.uuid4().hex[:8]}",
            "job": "fault-job",
            "cpu": None,
            **LIGHT,
            **cfg,
        }
        job = JobProcess(workdir / "job.py", workdir, name, full)
        started.append(job)
        return job

    yield start
    for job in started:
        job.kill()


def run_together(*jobs: JobProcess, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Start the jobs' bodies at the same moment and collect each one's figures."""
    for job in jobs:
        job.expect("ready", 60)
    for job in jobs:
        job.go()
    return [job.finish(timeout) for job in jobs]


def fault_vs_healthy(spawn: Callable[..., JobProcess], healthy_endpoint: str, fault_endpoint: str, name: str) -> Any:
    """Run the light job against the fault and, at the same time on the same core, against a healthy collector."""
    for attempt in range(1, PACE_ATTEMPTS + 1):
        healthy = spawn(f"{name}-twin", healthy_endpoint, cpu=PIN_CPU)
        faulty = spawn(name, fault_endpoint, cpu=PIN_CPU)
        h, f = run_together(healthy, faulty)
        print(f"\nFIGURES attempt {attempt}: {json.dumps(figures_of(name, h, f))}")
        if kept_pace(h, f):
            break
    return h, f, faulty


def kept_pace(h: dict[str, Any], f: dict[str, Any]) -> bool:
    """Whether the faulty twin's CPU and wall time stayed within the allowed overhead over the healthy one's."""
    factor = 1 + MAX_OVERHEAD
    return all(f[key] <= h[key] * factor + OVERHEAD_SLACK_S for key in ("cpu_s", "body_s"))


def figures_of(name: str, h: dict[str, Any], f: dict[str, Any]) -> dict[str, Any]:
    """The side-by-side figures of one healthy/faulty pair, as printed for the record."""
    return {
        "fault": name,
        "cpu_s": (round(h["cpu_s"], 3), round(f["cpu_s"], 3)),
        "cpu_overhead_pct": round(100 * (f["cpu_s"] / h["cpu_s"] - 1), 2),
        "wall_s": (round(h["body_s"], 3), round(f["body_s"], 3)),
        "wall_overhead_pct": round(100 * (f["body_s"] / h["body_s"] - 1), 2),
        "worst_call_ms": round(1000 * f["worst_call_s"], 1),
        "exit_s": (round(h["exit_s"], 2), round(f["exit_s"], 2)),
        "peak_rss_mib": (round(h["peak_rss_mib"], 1), round(f["peak_rss_mib"], 1)),
        "dropped_at_exit": f["dropped_at_exit"],
    }


def assert_job_unharmed(h: dict[str, Any], f: dict[str, Any]) -> None:
    """The faulty job finished correctly, as fast as its healthy twin, with bounded memory and a bounded exit."""
    items = LIGHT["stages"] * LIGHT["items"]
    for run in (h, f):
        assert run["summary"]["result"] == "success"
        assert run["summary"]["entitiesProcessed"] == items
        assert run["summary"]["outcomeSummary"]["skipped"] == items // 10
    # Time: the job body is not slowed (CPU of all threads on the shared core, then the twins' wall times).
    assert f["cpu_s"] <= h["cpu_s"] * (1 + MAX_OVERHEAD) + OVERHEAD_SLACK_S, (h["cpu_s"], f["cpu_s"])
    assert f["body_s"] <= h["body_s"] * (1 + MAX_OVERHEAD) + OVERHEAD_SLACK_S, (h["body_s"], f["body_s"])
    # No telemetry call ever waited for the network.
    assert f["worst_call_s"] < MAX_CALL_S, f["worst_call_s"]
    # Exit: bounded by the documented shutdown bound; the healthy twin exits at once.
    assert f["exit_s"] <= SHUTDOWN_BOUND_S + EXIT_SLACK_S, f["exit_s"]
    assert h["exit_s"] <= EXIT_SLACK_S + 1.0, h["exit_s"]
    # Memory: no more than the healthy twin's, give or take a few MiB.
    assert f["peak_rss_mib"] <= h["peak_rss_mib"] + RSS_SLACK_MIB, (h["peak_rss_mib"], f["peak_rss_mib"])


# ------------------------------------------------------------------------------------------
# 1. A collector that is not there, refuses, hangs or is slow


def test_collector_not_running(own_collector: OwnCollector, spawn: Callable[..., JobProcess]):
    """Nothing listens: the job keeps its pace and memory and exits within 15 s; only its telemetry is lost."""
    h, f, _ = fault_vs_healthy(spawn, own_collector.endpoint, f"http://{HOST}:{free_port()}", "not-running")
    assert_job_unharmed(h, f)


def test_collector_refusing_connections(own_collector: OwnCollector, spawn: Callable[..., JobProcess]):
    """Every connection is reset: the job keeps its pace and memory, exits within 15 s; only its telemetry is lost."""
    server = FaultServer("reset")
    try:
        h, f, _ = fault_vs_healthy(spawn, own_collector.endpoint, server.endpoint, "refusing")
    finally:
        server.close()
    assert server.connections > 0  # the exporters did try
    assert_job_unharmed(h, f)


def test_collector_accepting_but_never_answering(own_collector: OwnCollector, spawn: Callable[..., JobProcess]):
    """Accepted, never answered: the job keeps its pace and memory, exits within 15 s; only its telemetry is lost."""
    server = FaultServer("blackhole")
    try:
        h, f, _ = fault_vs_healthy(spawn, own_collector.endpoint, server.endpoint, "blackhole")
    finally:
        server.close()
    assert server.connections > 0
    assert_job_unharmed(h, f)
    assert f["exit_s"] >= EXPORT_TIMEOUT_S - 1  # it did wait for the hung exports, within the bound


def test_slow_collector(stack: Any, own_collector: OwnCollector, spawn: Callable[..., JobProcess]):
    """Every byte delayed 2 s: the job keeps its pace and memory, exits within 15 s, and no telemetry is lost."""
    proxy = FaultServer("delay", target_port=own_collector.grpc_port, delay_s=SLOW_LINK_DELAY_S)
    try:
        h, f, faulty = fault_vs_healthy(spawn, own_collector.endpoint, proxy.endpoint, "slow")
    finally:
        proxy.close()
    assert_job_unharmed(h, f)
    # Nothing lost: final counters in Prometheus equal the summary, and the run span reached Jaeger.
    service, run_id = faulty.cfg["service"], faulty.cfg["run_id"]
    assert_counts_in_prometheus(stack, service, f["summary"])
    spans = run_spans_in_jaeger(stack, service, run_id, {"fault-job"})
    run = next(s for s in spans if s["operationName"] == "fault-job" and "job.result" in tags_of(s))
    assert tags_of(run)["job.outcomes.updates"] == f["summary"]["outcomeSummary"]["updates"]


# ------------------------------------------------------------------------------------------
# 2. A collector that goes away and comes back


def tags_of(span: dict[str, Any]) -> dict[str, Any]:
    """A Jaeger span's tags as a dict."""
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def run_spans_in_jaeger(stack: Any, service: str, run_id: str, names: set[str]) -> list[dict[str, Any]]:
    """All spans of the run's trace once spans with every one of ``names`` are in Jaeger."""

    def probe() -> list[dict[str, Any]] | None:
        body = get_json(
            f"{stack.jaeger}/api/traces",
            {"service": service, "tags": json.dumps({"job.run.id": run_id}), "limit": "20", "lookback": "1h"},
        )
        spans = [s for t in body.get("data") or [] for s in t["spans"]]
        return spans if names <= {s["operationName"] for s in spans} else None

    return eventually(probe, f"spans {sorted(names)} of {run_id} in Jaeger")


def assert_counts_in_prometheus(stack: Any, service: str, summary: dict[str, Any]) -> None:
    """Final counters in Prometheus equal the job's summary exactly, from one series each, never reset."""
    sel = f'job="{service}", job_name="fault-job"'
    outcomes = summary["outcomeSummary"]
    expected = {
        f'sum(job_outcomes_total{{{sel}, job_outcome="updates"}})': outcomes["updates"],
        f'sum(job_outcomes_total{{{sel}, job_outcome="skipped"}})': outcomes["skipped"],
        f'sum(job_logs_total{{{sel}, job_log_level="warning"}})': outcomes["warnings"],
        f"sum(job_entities_processed_total{{{sel}}})": summary["entitiesProcessed"],
        f'sum(job_runs_total{{{sel}, job_result="success"}})': 1,
    }

    def final() -> dict[str, float | None] | None:
        found = {q: scalar(stack, q) for q in expected}
        return found if all(found[q] == v for q, v in expected.items()) else None

    eventually(final, f"final counters of {service} equal to the summary {expected}")
    # One process, one series per outcome: nothing counted twice, and no counter ever went down.
    assert len(promql(stack, f'job_outcomes_total{{{sel}, job_outcome="updates"}}')) == 1
    resets = promql(stack, f"resets(job_outcomes_total{{{sel}}}[10m])")
    resets += promql(stack, f"resets(job_entities_processed_total{{{sel}}}[10m])")
    assert resets and all(float(r["value"][1]) == 0 for r in resets), resets


def outage_run(
    workdir: Path, spawn: Callable[..., JobProcess], name: str, restart: bool, at_stage: int
) -> tuple[dict[str, Any], JobProcess, int]:
    """Run the long job against a collector of its own that is restarted (or started late) at ``at_stage``.

    Returns the job's figures, the process and the first stage that began after
    the collector was ready again.
    """
    collector = OwnCollector(workdir / f"{name}-collector.log")
    if restart:
        collector.start()
    try:
        job = spawn(name, collector.endpoint, **LONG)
        job.expect("ready", 60)
        job.go()
        while job.expect("stage", 30)["n"] < at_stage:
            pass
        if restart:
            collector.stop()
            time.sleep(1.0)  # down for a moment, then the same ports again
        ready_at = collector.start()
        stage_after = None
        for _ in range(LONG["stages"] + 1):  # the remaining stage lines, then the body line
            at, line = job.next_line(30)
            if line["kind"] == "stage" and at > ready_at and stage_after is None:
                stage_after = int(line["n"])
            if line["kind"] == "body":
                break
        assert stage_after is not None, "the collector came back too late: no stage began after it"
        figures = job.finish(60)
    finally:
        collector.stop()
    print(f"\nFIGURES {json.dumps({'fault': name, 'first_stage_after_recovery': stage_after})}")
    return figures, job, stage_after


def test_collector_restarted_mid_run(stack: Any, workdir: Path, spawn: Callable[..., JobProcess]):
    """Collector restarted mid-run: trace and exact final counters arrive, never reset; only downtime risks spans."""
    f, job, stage_after = outage_run(workdir, spawn, "restarted", restart=True, at_stage=3)
    service, run_id = job.cfg["service"], job.cfg["run_id"]
    assert_counts_in_prometheus(stack, service, f["summary"])
    later = {f"Stage {n}" for n in range(stage_after, LONG["stages"] + 1)}
    spans = run_spans_in_jaeger(stack, service, run_id, {"fault-job", *later})
    names = sorted({s["operationName"] for s in spans})
    print(f"\nFIGURES {json.dumps({'fault': 'restarted', 'spans_in_jaeger': names})}")
    run = next(s for s in spans if s["operationName"] == "fault-job" and "job.result" in tags_of(s))
    assert tags_of(run)["job.result"] == "success"
    assert tags_of(run)["job.outcomes.updates"] == f["summary"]["outcomeSummary"]["updates"]


def test_collector_down_then_back(stack: Any, workdir: Path, spawn: Callable[..., JobProcess]):
    """Collector down, then back: later spans and exact final counters arrive; the first seconds' spans may be lost."""
    f, job, stage_after = outage_run(workdir, spawn, "down-then-back", restart=False, at_stage=6)
    service, run_id = job.cfg["service"], job.cfg["run_id"]
    assert_counts_in_prometheus(stack, service, f["summary"])
    later = {f"Stage {n}" for n in range(stage_after, LONG["stages"] + 1)}
    spans = run_spans_in_jaeger(stack, service, run_id, {"fault-job", *later})
    names = sorted({s["operationName"] for s in spans})
    print(f"\nFIGURES {json.dumps({'fault': 'down-then-back', 'spans_in_jaeger': names})}")
    run = next(s for s in spans if s["operationName"] == "fault-job" and "job.result" in tags_of(s))
    assert tags_of(run)["job.outcomes.skipped"] == f["summary"]["outcomeSummary"]["skipped"]


# ------------------------------------------------------------------------------------------
# 3. Queue bounds


HEAVY = {"mode": "heavy", "stages": 4000, "logs_per_stage": 3}


@pytest.fixture(scope="module")
def heavy_runs(own_collector: OwnCollector, workdir: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """The heavy job (8,000 spans, 12,000 log records) run at once against four backends."""
    blackhole = FaultServer("blackhole")
    jobs: dict[str, JobProcess] = {}
    try:
        # Export batches of 64 instead of 512: a batch being exported is out of the queue while the queue
        # fills up again, so a memory sample taken during a failing export counts one batch more per signal.
        # 512 spans + 512 log records are ~15,000 blocks (6 % of the job's), so the flatness check below
        # compared two samples that differed by up to that much depending on the exporter's timing (a CI-like
        # loaded run saw +7 %); 64 of each are ~2,000. The queue bounds under test (2,048) are unchanged.
        batches = {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "64"}
        unbounded = {**batches, "OTEL_BSP_MAX_QUEUE_SIZE": "1000000", "OTEL_BLRP_MAX_QUEUE_SIZE": "1000000"}
        for name, endpoint, env in (
            ("healthy", own_collector.endpoint, batches),
            ("down", f"http://{HOST}:{free_port()}", batches),
            ("down-unbounded", f"http://{HOST}:{free_port()}", unbounded),
            ("blackhole", blackhole.endpoint, batches),
        ):
            cfg = {
                "endpoint": endpoint,
                "service": f"faults-heavy-{name}-{uuid.uuid4().hex[:8]}",
                "run_id": f"run-{uuid.uuid4().hex[:8]}",
                "job": "heavy-job",
                "cpu": None,
                **HEAVY,
            }
            jobs[name] = JobProcess(workdir / "job.py", workdir, f"heavy-{name}", cfg, env)
        results = dict(zip(jobs, run_together(*jobs.values(), timeout=180), strict=True))
        for name, r in results.items():
            r["stderr"] = jobs[name].full_stderr()
            keys = ("body_s", "exit_s", "peak_rss_mib", "samples", "blocks", "queued", "dropped_at_exit")
            figures = {k: r[k] for k in keys}
            print(f"\nFIGURES heavy {name} {json.dumps(figures)}")
        yield results
    finally:
        for job in jobs.values():
            job.kill()
        blackhole.close()


def test_queues_bound_memory_when_the_collector_is_down(heavy_runs: dict[str, dict[str, Any]]):
    """Collector down: queues stop at 2,048 spans and 2,048 logs, dropping the rest (warned); memory stays flat."""
    down, hung, unbounded, healthy = (heavy_runs[k] for k in ("down", "blackhole", "down-unbounded", "healthy"))
    for run in heavy_runs.values():
        assert run["summary"]["result"] == "success"
        assert run["summary"]["entitiesProcessed"] == HEAVY["stages"]
    # The queues reach their bound, never pass it, and say that they drop.
    for run in (down, hung):  # queue lengths are read from SDK internals, when this SDK version has them
        assert all(n <= 2048 for n in run["queued"].values()), run["queued"]
        assert "Queue full, dropping" in run["stderr"]
    # Live memory is flat over the second half of the emission (4,000 spans, 6,000 log records) ...
    growth = {}
    for name, run in heavy_runs.items():
        growth[name] = run["blocks"][-1] - run["blocks"][4]
    for run in (down, hung):
        assert run["blocks"][-1] - run["blocks"][4] <= 0.05 * run["blocks"][4], run["blocks"]
    # ... while with (practically) unbounded queues the same job grows all along.
    assert growth["down-unbounded"] >= 5 * max(1000, growth["down"], growth["blackhole"]), growth
    # What full queues cost over a healthy run, whose queues drain as fast as they fill.
    for run in (down, hung):
        assert run["peak_rss_mib"] <= healthy["peak_rss_mib"] + 25.0, (healthy["peak_rss_mib"], run["peak_rss_mib"])
    assert unbounded["peak_rss_mib"] > down["peak_rss_mib"]


def test_exit_is_bounded_with_full_queues(heavy_runs: dict[str, dict[str, Any]]):
    """Full queues, collector down or hung at exit: the process exits within 15 s, dropping what is left (counted)."""
    for name in ("down", "down-unbounded", "blackhole"):
        run = heavy_runs[name]
        assert run["exit_s"] <= SHUTDOWN_BOUND_S + EXIT_SLACK_S, (name, run["exit_s"])
    hung = heavy_runs["blackhole"]
    assert hung["dropped_at_exit"].get("spans", 0) > 0, hung["dropped_at_exit"]
    assert hung["dropped_at_exit"].get("log records", 0) > 0, hung["dropped_at_exit"]
    assert heavy_runs["healthy"]["exit_s"] <= EXIT_SLACK_S + 1.0
    assert not heavy_runs["healthy"]["dropped_at_exit"]


def test_save_outcome_waits_at_most_its_timeout(spawn: Callable[..., JobProcess]):
    """save_outcome(timeout_s=2) against a hung collector should block the job for at most about 2 s."""
    server = FaultServer("blackhole")
    try:
        job = spawn("save-outcome", server.endpoint, mode="save")
        job.expect("ready", 60)
        job.go()
        body = job.expect("body", 60)
    finally:
        job.kill()
        server.close()
    print(f"\nFIGURES {json.dumps({'fault': 'blackhole', 'save_outcome_worst_s': round(body['worst_call_s'], 2)})}")
    assert body["worst_call_s"] <= 2.0 + 0.5
