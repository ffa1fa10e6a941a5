"""Run a benchmark script of benchmarks/ on its ``--quick`` sizes, so the smoke tests cannot let it rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_quick(script: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<script> --quick`` in a fresh interpreter; it must exit 0 (its output is in the message)."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc
