"""Fixtures for integration tests: the local telemetry stack from scripts/stack.py."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from redis_server import redis_server

_STACK_PY = Path(__file__).resolve().parents[2] / "scripts" / "stack.py"


def _load_stack() -> ModuleType:
    """Import scripts/stack.py as module ``joblogger_stack`` (it is not a package)."""
    name = "joblogger_stack"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _STACK_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    return module


stack_module = _load_stack()


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
