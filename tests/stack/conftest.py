"""Fixtures for the offline checks of the stack's assets (dashboards, alert rules, compose)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repo_scripts import stack_script

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Not a doctest module. `--doctest-modules` would import this file as module "conftest" again, which
#: fails when another directory's conftest.py was loaded last (`pytest tests/stack tests/integration/...`).
collect_ignore = ["conftest.py"]

if importlib.util.find_spec("joblogger") is None:  # src layout, package not installed in this venv
    sys.path.insert(0, str(REPO_ROOT / "src"))

#: Debian bookworm's prometheus-alertmanager package ships amtool 0.25, the compose image's release.
AMTOOL_INSTALL = "apt-get update && apt-get install -y --no-install-recommends prometheus-alertmanager"


def _tool(name: str, install: str) -> str:
    """Path of ``name``, installed with ``install`` when missing; the test fails if that does not work."""
    path = shutil.which(name)
    if path is None:
        result = subprocess.run(["sh", "-c", install], capture_output=True, text=True, check=False)
        path = shutil.which(name)
        if path is None:
            pytest.fail(
                f"{name} is missing and `{install}` did not install it "
                f"(exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of the promtool built with the stack's Prometheus (scripts/stack.py; built on first use)."""
    return str(stack_script().ensure_built().promtool)


@pytest.fixture(scope="session")
def amtool() -> str:
    """Path of amtool, installed from Debian's prometheus-alertmanager package when missing."""
    return _tool("amtool", AMTOOL_INSTALL)
