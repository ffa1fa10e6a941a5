"""benchmarks/dashboard_queries.py runs end to end on tiny data (no timing assertions) so it cannot rot."""

import sys
from pathlib import Path

import yaml

from ._bench import run_quick

ROOT = Path(__file__).resolve().parents[2]


def test_dashboard_benchmark_quick_times_every_query_and_rule() -> None:
    """`--quick` prints one timing line per dashboard Prometheus query and per rule of alerts.yml."""
    proc = run_quick("dashboard_queries.py")
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| ")]
    rows = [[cell.strip() for cell in row] for row in rows if row[0].strip() != "kind"]
    for row in rows:
        assert row[4] in ("PASS", "FAIL"), row
        assert float(row[2]) > 0, row  # a real timing, not an error marker
    rules = [
        r for g in yaml.safe_load((ROOT / "backends/prometheus/alerts.yml").read_text())["groups"] for r in g["rules"]
    ]
    timed_rules = [row[1].rsplit(" (every", 1)[0] for row in rows if row[0] == "rule"]
    assert timed_rules == [r.get("alert") or r.get("record") for r in rules]
    sys.path.insert(0, str(ROOT / "tests" / "stack"))
    from dashboard_queries import dashboard_queries

    prom = [q for q in dashboard_queries(service="bench") if q.datasource_type == "prometheus"]
    panels = {row[1] for row in rows if row[0] in ("panel", "variable")}
    for q in prom:
        if q.title.startswith("variable "):
            assert f"{q.title} 24h" in panels, q.title
        elif q.instant:
            assert f"{q.title} {q.ref_id} instant" in panels, q.title
        else:
            for window in ("24h", "6h"):
                assert any(p.startswith(f"{q.title} {q.ref_id} range {window} ") for p in panels), (q.title, window)
