"""Fixtures for integration tests: the local telemetry stack from scripts/stack.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import load_script
from redis_server import redis_server

_STACK_PY = Path(__file__).resolve().parents[2] / "scripts" / "stack.py"

#: Helper modules (`_*.py`) are programs the tests start (workers, apps): `--doctest-modules` must
#: not import them, some read their settings from the environment at import.
collect_ignore_glob = ["_*.py"]


stack_module = load_script("joblogger_stack", _STACK_PY)

#: The test suite's own stack sits beside a developer's (`stack.py up`: default home and
#: ports) instead of inside it: its runs, series and firing alerts never land there.
TEST_PORT_OFFSET = 10_000


def _isolate_test_stack(environ: dict[str, str]) -> None:
    """Default the stack's home and ports to the test suite's own (explicit settings win)."""
    for name, default in stack_module.PORT_DEFAULTS.items():
        environ.setdefault(name, str(default + TEST_PORT_OFFSET))
    if "JOBLOGGER_STACK_HOME" not in environ:
        shared = stack_module._home({})
        home = shared.parent / "test-stack"
        home.mkdir(parents=True, exist_ok=True)
        # Binaries are shared: the first build on a machine serves both homes.
        (shared / "bin").mkdir(parents=True, exist_ok=True)
        if not (home / "bin").exists():
            (home / "bin").symlink_to(shared / "bin", target_is_directory=True)
        environ["JOBLOGGER_STACK_HOME"] = str(home)


_isolate_test_stack(os.environ)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack() -> Iterator[stack_module.StackEndpoints]:  # type: ignore[name-defined]
    """Start collector, Jaeger and Prometheus (building them on first use); stop them after.

    Services that were already running (e.g. a developer's `stack.py up`) are
    reused and left running.
    """
    urls = stack_module.start()
    started = stack_module.started_by_last_start()
    try:
        yield urls
    finally:
        stack_module.stop(services=started)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server on 127.0.0.1 for the job-framework tests; ``redis://127.0.0.1:PORT``."""
    binary = stack_module.ensure_redis()
    with redis_server(binary, tmp_path_factory.mktemp("redis")) as url:
        yield url
