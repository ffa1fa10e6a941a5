"""A real Redis server for the job-framework tests (Celery, RQ, Dramatiq, arq), started on 127.0.0.1.

Debian's ``redis-server`` (installed by ``scripts/stack.py build`` when missing) runs
without persistence in a temporary directory, on ``JOBLOGGER_TEST_REDIS_PORT`` or
a free port, and stops with the test session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(binary: Path, workdir: Path) -> Iterator[str]:
    """Run ``redis-server`` until the block ends; yield its URL (``redis://127.0.0.1:PORT``)."""
    port = int(os.environ.get("JOBLOGGER_TEST_REDIS_PORT") or _free_port())
    if _ping(port):
        raise RuntimeError(f"port {port} already answers PING: stop that Redis or set JOBLOGGER_TEST_REDIS_PORT")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    argv = [
        str(binary),
        "--bind", HOST,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--logfile", str(log),
        "--daemonize", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ping(port):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on {HOST}:{port} within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        yield f"redis://{HOST}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
