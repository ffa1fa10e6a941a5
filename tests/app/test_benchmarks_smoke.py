"""The benchmark script runs end to end (small sizes, no timing assertions) so it cannot rot."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_quick_run_completes():
    """`benchmarks/bench.py --quick` runs every row and prints the table."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "measure" not in line]
    assert len(rows) == 21, proc.stdout
    assert "quick smoke run" in proc.stdout
