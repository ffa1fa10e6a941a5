"""The README's `scripts/stack.py` commands work against the running stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

STACK = Path(__file__).resolve().parents[2] / "scripts" / "stack.py"


def test_status_and_env_commands(stack: Any):
    """`stack.py status` reports every service ready and `stack.py env` prints the endpoint variables."""
    status = subprocess.run(
        [sys.executable, str(STACK), "status"], capture_output=True, text=True, timeout=60, check=False
    )
    assert status.returncode == 0, status.stdout + status.stderr
    for service in ("collector", "jaeger", "prometheus"):
        assert service in status.stdout
    env = subprocess.run([sys.executable, str(STACK), "env"], capture_output=True, text=True, timeout=60, check=True)
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT={stack.otlp_grpc}" in env.stdout
    assert f"PROMETHEUS_URL={stack.prometheus}" in env.stdout
