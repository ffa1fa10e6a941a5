"""Fixtures for integration tests: the local telemetry stack from scripts/stack.py."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import redis_server

#: Helper modules (`_*.py`) are programs the tests start (workers, apps): `--doctest-modules` must
#: not import them, some read their settings from the environment at import.
collect_ignore_glob = ["_*.py"]


# The loader of the repository's scripts is tests/stack's (one module object per script for both suites).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stack"))
from repo_scripts import stack_script  # noqa: E402

stack_module = stack_script()

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


@pytest.fixture(scope="module")
def tasks(redis_url: str) -> Iterator[Any]:
    """The Celery live tests' task module (_celery_tasks.py), imported in the producer with the harness's Redis."""
    os.environ["CELERY_TEST_REDIS"] = redis_url
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _celery_tasks  # type: ignore[import-not-found, unused-ignore]

    yield _celery_tasks
    # The module's AsyncResults (some in reference cycles) unsubscribe from Redis now, while it runs: at exit,
    # after the harness stopped Redis, their __del__ failed and pytest ended with an unraisable exception.
    gc.collect()


@pytest.fixture
def celery_producer_gc() -> Iterator[None]:
    """No cyclic garbage collection inside a Celery producer test; it runs between tests instead.

    Celery's ``AsyncResult.__del__`` unsubscribes from Redis on the producer's one pub/sub
    connection. Run by the cyclic collector in the middle of a subscribe (``apply_async``), it
    waited for ever for a reply that the outer call would read (a CI run hung 10 minutes in
    ``apply_async``: Celery + redis-py, not joblogger). Collected here, between calls, it is harmless.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()
