"""Fixtures for the offline checks of the stack's assets (dashboards, alert rules, compose)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("joblogger") is None:  # src layout, package not installed in this venv
    sys.path.insert(0, str(REPO_ROOT / "src"))

#: Debian bookworm's prometheus package ships promtool 2.42, the version the rules target.
PROMTOOL_INSTALL = "apt-get update && apt-get install -y --no-install-recommends prometheus"


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool, installed from Debian's prometheus package when missing."""
    path = shutil.which("promtool")
    if path is None:
        result = subprocess.run(["sh", "-c", PROMTOOL_INSTALL], capture_output=True, text=True, check=False)
        path = shutil.which("promtool")
        if path is None:
            pytest.fail(
                f"promtool is missing and `{PROMTOOL_INSTALL}` did not install it "
                f"(exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
    return path
