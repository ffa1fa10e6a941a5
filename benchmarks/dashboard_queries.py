"""Query cost of the dashboard (dashboards/joblogger.json) and the rules (backends/prometheus/alerts.yml) at scale.

Run:   .venv/bin/python benchmarks/dashboard_queries.py [--runs-per-day 10000] [--repeats 3]
       .venv/bin/python benchmarks/dashboard_queries.py --quick      # tiny data, seconds: a smoke run

Generates a synthetic day of ``--runs-per-day`` runs of ``--jobs`` jobs, one process per run (its own
``instance``), exporting every 5 s with the label sets joblogger's OTLP export produces in the stack's
Prometheus (job_progress_* per run with job_run_id/job_run_slot/job_stage/job_entity_type, job_runs_active,
the observable counters every export, job_runs_total and the duration histograms at the run's end). The data
goes through ``promtool tsdb create-blocks-from openmetrics`` into the stack's own Prometheus, started on a
temporary directory (benchmarks/promdata.py). Then it times, as wall-clock milliseconds of the HTTP request
(median of ``--repeats``):

* every Prometheus query of the dashboard, with its variables substituted the way Grafana sends them
  (tests/stack/dashboard_queries.py; ``$job`` and ``$run`` "All"): instant queries at the end of the data,
  range queries over the last 24 h and 6 h with a Grafana-like step (the panel's ``interval`` as minimum,
  the data source's 15 s ``timeInterval``, about 1,000 points), variable queries as Grafana's label-values
  requests over 24 h. Bound: 1 s per query;
* every rule expression, an instant query at the end of the data. Bound: 10 % of its group's evaluation
  interval (the group's ``interval``, else prometheus.yml's ``evaluation_interval``).

The per-job minute sums the panels read (alerts.yml's ``joblogger.jobs`` group: ``--backfill-group``) are
evaluated over the generated day with ``promtool tsdb create-blocks-from rules``, as Prometheus records them
live; a check line compares their day total of finished runs with the generated runs. The other rules'
outputs (carried-forward state, ALERTS_FOR_STATE) are not in the data: panels that read only them measure an
empty selection.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import tempfile
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import promdata
import yaml
from promdata import ROOT, BlockFiles, backfill_rules, binaries, create_blocks, serve, steps, version

# tests/stack/dashboard_queries.py, loaded by path: this script has the same module name.
_spec = importlib.util.spec_from_file_location(
    "stack_dashboard_queries", ROOT / "tests" / "stack" / "dashboard_queries.py"
)
assert _spec is not None and _spec.loader is not None
_board = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _board  # dataclasses look their module up
_spec.loader.exec_module(_board)
dashboard_queries: Callable[..., list[Any]] = _board.dashboard_queries

RULES = ROOT / "backends" / "prometheus" / "alerts.yml"
PROMETHEUS_YML = ROOT / "backends" / "prometheus" / "prometheus.yml"
SERVICE = "bench"
EXPORT_S = 5
BUCKETS = ("0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "600", "1800", "3600", "7200",
           "14400", "43200", "86400", "+Inf")  # fmt: skip
LEVELS = ("debug", "info", "milestone", "warning", "error")
NICE_STEPS = (15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
PANEL_BOUND_MS = 1000.0
#: Recording rule groups of alerts.yml backfilled into the data (what the panels read; all self-contained).
BACKFILL_GROUPS = ("joblogger.jobs",)


#: Per request, seconds (``--timeout``): Prometheus's own query ``timeout`` and the HTTP client's.
request_timeout = 120.0


def get(base: str, path: str, params: dict[str, str]) -> object:
    """A Prometheus API request that Prometheus itself abandons after ``request_timeout``."""
    limit = {"timeout": f"{request_timeout:g}s"} if "label" not in path else {}
    return promdata.get(base, path, {**params, **limit}, request_timeout + 5)


def _duration_s(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(text[:-1]) * units[text[-1]]


#: Runs that ended within the generated day, per result (filled by :func:`generate`).
finished: dict[str, int] = {}


def generate(out: BlockFiles, runs: int, jobs: int, now: float, seed: int = 12) -> int:
    """Write one day of ``runs`` runs ending at ``now``; returns the number of samples."""
    finished.clear()
    rng = random.Random(seed)
    samples = 0
    for i in range(runs):
        start = now - 86400 + i * 86400 / runs + rng.uniform(0, 5)
        length = rng.uniform(20, 100)
        end = start + length
        job = f"job-{i % jobs:03d}"
        result = "failure" if i % 50 == 0 else "success"
        total = 1000
        base = f'job="{SERVICE}", instance="p-{i:06d}", job_name="{job}"'
        run = f'{base}, job_entity_type="row", job_run_id="r{i:06d}", job_run_slot="0", job_stage="load"'
        live = [t for t in steps(start, min(end, now), EXPORT_S)]
        done = [(t, total * (t - start) / length) for t in live]
        samples += out.write("job_progress_current", run, ((t, int(v)) for t, v in done))
        samples += out.write("job_progress_expected", run, ((t, total) for t, _ in done))
        samples += out.write("job_progress_ratio", run, ((t, v / total) for t, v in done))
        samples += out.write("job_progress_eta_seconds", run, ((t, end - t) for t, _ in done))
        if end > now:  # still running at the end of the data
            samples += out.write("job_runs_active", base, ((t, 1) for t in live))
            continue
        final = [*live, end]
        samples += out.write("job_runs_active", base, ((t, 1 if t < end else 0) for t in final))
        samples += out.write(
            "job_entities_processed_total",
            f'{base}, job_entity_type="row"',
            ((t, int(total * min(1.0, (t - start) / length))) for t in final),
        )
        samples += out.write(
            "job_outcomes_total", f'{base}, job_outcome="skipped"', ((t, 0 if t < end else 3) for t in final)
        )
        for level in LEVELS:
            count = 2 if level in ("info", "milestone") or (level == "error" and result == "failure") else 0
            samples += out.write("job_logs_total", f'{base}, job_log_level="{level}"', ((t, count) for t in final))
        finished[result] = finished.get(result, 0) + 1
        at_end = [(end, 1.0)]
        samples += out.write("job_runs_total", f'{base}, job_result="{result}"', at_end)
        for family, extra in (
            ("job_run_duration_seconds", f'job_result="{result}"'),
            ("job_stage_duration_seconds", 'job_stage="load"'),
        ):
            for le in BUCKETS:
                hit = 1 if le == "+Inf" or float(le) >= length else 0
                samples += out.write(f"{family}_bucket", f'{base}, {extra}, le="{le}"', [(end, hit)])
            samples += out.write(f"{family}_sum", f"{base}, {extra}", [(end, length)])
            samples += out.write(f"{family}_count", f"{base}, {extra}", at_end)
    return samples


def grafana_step(window_s: int, min_interval: str | None) -> int:
    """The step Grafana picks: about 1,000 points, rounded down to a nice interval, at least the minimum."""
    floor = max(15, _duration_s(min_interval) if min_interval else 15)
    raw = window_s / 1000
    nice = max((s for s in NICE_STEPS if s <= raw), default=15)
    return max(floor, nice)


def _panel_intervals() -> dict[str, str | None]:
    import json

    board = json.loads((ROOT / "dashboards" / "joblogger.json").read_text())
    found: dict[str, str | None] = {}
    stack = list(board["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        found[panel.get("title", "")] = panel.get("interval")
    return found


def _builtins(step: int, window_s: int) -> dict[str, str]:
    return {
        "__interval": f"{step}s",
        "__interval_ms": str(step * 1000),
        "__rate_interval": f"{max(step + 15, 60)}s",
        "__range": f"{window_s}s",
        "__range_s": str(window_s),
        "__range_ms": str(window_s * 1000),
    }


def workload(now: float) -> list[tuple[str, str, float, Callable[[str, float], object]]]:
    """(kind, name, bound ms, request) of every dashboard query and rule."""
    items: list[tuple[str, str, float, Callable[[str, float], object]]] = []
    intervals = _panel_intervals()
    seen: set[str] = set()
    for window in ("24h", "6h"):
        window_s = _duration_s(window)
        for q in dashboard_queries(service=SERVICE, builtins=_builtins(60, window_s)):
            if q.datasource_type != "prometheus":
                continue
            if q.title.startswith("variable "):
                if q.title in seen:
                    continue
                seen.add(q.title)

                def label_values(base: str, t: float, sel: str = q.query, var: Any = q) -> object:
                    if var.variable_kind == "query_result":  # an instant query at the range's end
                        return get(base, "/api/v1/query", {"query": sel, "time": f"{t:.0f}"})
                    return get(
                        base,
                        f"/api/v1/label/{var.variable_label}/values",
                        {"match[]": sel, "start": f"{t - 86400:.0f}", "end": f"{t:.0f}"},
                    )

                items.append(("variable", f"{q.title} 24h", PANEL_BOUND_MS, label_values))
                continue
            if q.instant:
                key = f"{q.title} {q.ref_id}"
                if key in seen:
                    continue
                seen.add(key)

                def instant(base: str, t: float, expr: str = q.query) -> object:
                    return get(base, "/api/v1/query", {"query": expr, "time": f"{t:.3f}"})

                items.append(("panel", f"{q.title} {q.ref_id} instant", PANEL_BOUND_MS, instant))
                continue
            step = grafana_step(window_s, intervals.get(q.title))
            expr = next(
                r.query
                for r in dashboard_queries(service=SERVICE, builtins=_builtins(step, window_s))
                if r.title == q.title and r.ref_id == q.ref_id
            )

            def ranged(base: str, t: float, expr: str = expr, w: int = window_s, step: int = step) -> object:
                end = t - t % step
                return get(
                    base,
                    "/api/v1/query_range",
                    {"query": expr, "start": f"{end - w:.0f}", "end": f"{end:.0f}", "step": str(step)},
                )

            items.append(("panel", f"{q.title} {q.ref_id} range {window} step {step}s", PANEL_BOUND_MS, ranged))
    default_eval = yaml.safe_load(PROMETHEUS_YML.read_text())["global"]["evaluation_interval"]
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        every = _duration_s(group.get("interval", default_eval))
        for rule in group["rules"]:

            def evaluate(base: str, t: float, expr: str = rule["expr"]) -> object:
                return get(base, "/api/v1/query", {"query": expr, "time": f"{t:.3f}"})

            name = rule.get("alert") or rule.get("record")
            items.append(("rule", f"{name} (every {every}s)", every * 100.0, evaluate))
    return items


def _backfill_passes() -> list[list[dict[str, Any]]]:
    """BACKFILL_GROUPS in passes: promtool's backfill does not let a rule read what an earlier rule of its
    group records (Prometheus does, live), so such rules go into a later pass, once the earlier blocks are in."""
    passes: list[list[dict[str, Any]]] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        if group["name"] not in BACKFILL_GROUPS:
            continue
        pending = list(group["rules"])
        while pending:
            ready = [r for r in pending if not any(name in r["expr"] for name in {x["record"] for x in pending})]
            pending = [r for r in pending if r not in ready]
            passes.append([{**group, "name": f"{group['name']}.{len(passes)}", "rules": ready}])
    return passes


def _extra(spec: str) -> tuple[str, str, float, Callable[[str, float], object]]:
    name, _, expr = spec.partition("=")

    def instant(base: str, t: float) -> object:
        return get(base, "/api/v1/query", {"query": expr, "time": f"{t:.3f}"})

    return "extra", name, PANEL_BOUND_MS, instant


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-per-day", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    parser.add_argument("--quick", action="store_true", help="200 runs, one repeat, no compaction wait")
    parser.add_argument(
        "--expr", action="append", default=[], metavar="NAME=PROMQL",
        help="also time this instant query (e.g. a part of a slow panel query); repeatable",
    )  # fmt: skip
    parser.add_argument("--only-expr", action="store_true", help="time only the --expr queries")
    args = parser.parse_args()
    global request_timeout
    request_timeout = args.timeout
    if args.quick:
        args.runs_per_day, args.repeats = 200, 1
    prometheus, promtool = binaries()
    now = float(int(time.time() // 60 * 60 - 300))
    with tempfile.TemporaryDirectory(prefix="joblogger-dashboard-bench-") as tmp:
        work = Path(tmp)
        (work / "om").mkdir()
        files = BlockFiles(work / "om")
        t0 = time.monotonic()
        samples = generate(files, args.runs_per_day, args.jobs, now)
        sources = files.close()
        print(
            f"generated {samples:,} samples of {args.runs_per_day:,} runs in {time.monotonic() - t0:.0f} s", flush=True
        )
        t0 = time.monotonic()
        create_blocks(promtool, sources, work / "data")
        print(f"promtool created the blocks in {time.monotonic() - t0:.0f} s", flush=True)
        t0 = time.monotonic()
        count = sum(
            backfill_rules(promtool, prometheus, work, groups, start=now - 86400, end=now)
            for groups in _backfill_passes()
        )
        print(f"recording rules {', '.join(BACKFILL_GROUPS)} backfilled ({count} blocks) in "
              f"{time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip
        with serve(prometheus, work, compact=not args.quick) as base:
            print(f"\nPrometheus {version(prometheus)}, {args.runs_per_day:,} runs/day, {args.jobs} jobs, "
                  f"median of {args.repeats} (wall ms per request)")  # fmt: skip
            day = promdata.query(base, "sum by (job_result) (sum_over_time(job_name:job_runs_total:added_1m[1d]))", now)
            recorded = {r["metric"].get("job_result", ""): float(r["value"][1]) for r in day["result"]}
            print(f"check: finished runs generated {finished}, counted by job_name:job_runs_total:added_1m {recorded}")
            print(f"| {'kind':8} | {'query':90} | {'ms':>9} | {'bound ms':>8} | result |")
            print(f"|{'-' * 10}|{'-' * 92}|{'-' * 11}|{'-' * 10}|--------|")
            failed = 0
            for kind, name, bound, request in [*([] if args.only_expr else workload(now)), *map(_extra, args.expr)]:
                times: list[float] = []
                error = ""
                for _ in range(args.repeats):
                    t1 = time.monotonic()
                    try:
                        request(base, now)
                    except (OSError, urllib.error.URLError, AssertionError) as exc:
                        error = type(exc).__name__
                        times.append(time.monotonic() - t1)
                        break
                    times.append(time.monotonic() - t1)
                ms = statistics.median(times) * 1000
                ok = not error and ms < bound
                failed += not ok
                shown = f">{ms:.0f} {error}" if error else f"{ms:.1f}"
                print(
                    f"| {kind:8} | {name[:90]:90} | {shown:>9} | {bound:>8.0f} | {'PASS' if ok else 'FAIL':6} |",
                    flush=True,
                )
            print(f"\n{failed} of the queries and rules over their bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
