"""The benchmark script runs end to end (small sizes, no timing assertions) so it cannot rot."""

from ._bench import run_quick


def test_benchmark_quick_run_completes():
    """`benchmarks/bench.py --quick` runs every row and prints the table."""
    proc = run_quick("bench.py")
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "measure" not in line]
    assert len(rows) == 22, proc.stdout
    assert any("floor: a minimal Python wrapper" in row for row in rows), proc.stdout
    assert "quick smoke run" in proc.stdout
