"""Offline checks of backends/prometheus/alerts.yml with promtool and joblogger.semconv."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from promql_names import promql_names
from semconv_names import LABELS, METRICS

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "backends" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
#: Every promtool test file of the rules (the schedule rules have their own; the DST case evaluates every 30m).
RULE_TEST_FILES = (
    RULE_TESTS,
    PROMETHEUS_DIR / "alerts.schedule.test.yml",
    PROMETHEUS_DIR / "alerts.dst.test.yml",
    PROMETHEUS_DIR / "alerts.jobs.test.yml",
)

EXPECTED_ALERTS = {
    "JobErrorsRecorded",
    "JobSkipRatioHigh",
    "JobRunFailed",
    "JobRunStalled",
    "JobRunVanished",
    "JobNotSucceeded",
    "JobRunMissed",
    "JobRunOverdue",
    "JobRunTooShort",
    "JobRunEmpty",
    "JobRunOverlap",
    "JobScheduleNoSuccess",
}


def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=PROMETHEUS_DIR, check=False)


def test_promtool_check_rules(promtool: str) -> None:
    """promtool accepts the rule file."""
    result = _run(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("tests", [path.name for path in RULE_TEST_FILES])
def test_promtool_unit_tests(promtool: str, tests: str) -> None:
    """Every promtool unit test of the rules passes."""
    result = _run(promtool, "test", "rules", tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_expected_alerts_present() -> None:
    """The rule file defines exactly the documented alerts."""
    assert {r["alert"] for r in _rules() if "alert" in r} == EXPECTED_ALERTS


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_alert_has_severity_and_annotations(alert: str) -> None:
    """Each alert has a severity label and summary and description annotations naming the job."""
    rule = next(r for r in _rules() if r.get("alert") == alert)
    labels = rule.get("labels") or {}
    annotations = rule.get("annotations") or {}
    assert isinstance(labels, dict) and labels.get("severity") in {"info", "warning", "critical"}
    assert isinstance(annotations, dict) and {"summary", "description"} <= set(annotations)
    assert "$labels.job_name" in annotations["summary"]
    assert "$labels.job_name" in annotations["description"]


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_alert_has_unit_tests_firing_and_not_firing(alert: str) -> None:
    """alerts.test.yml checks every alert both firing and not firing."""
    docs = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in RULE_TEST_FILES]
    cases = [c for d in docs for t in d["tests"] for c in t.get("alert_rule_test", []) if c["alertname"] == alert]
    assert any(c.get("exp_alerts") for c in cases), "no case where the alert fires"
    assert any(not c.get("exp_alerts") for c in cases), "no case where the alert stays silent"


def test_rule_names_come_from_semconv() -> None:
    """Every metric and label in the rules is a semconv name (or a recording rule of the file)."""
    rules = _rules()
    recorded = {str(r["record"]) for r in rules if "record" in r}
    problems = []
    for rule in rules:
        names = promql_names(str(rule["expr"]))
        name = rule.get("alert") or rule.get("record")
        problems += [f"{name}: metric {m}" for m in names.metrics - METRICS - recorded]
        problems += [f"{name}: label {lbl}" for lbl in names.labels - LABELS]
        problems += [f"{name}: function {f}" for f in names.unknown_functions]
    assert problems == []


def test_counter_rules_count_series_born_non_zero() -> None:
    """Every increase() over a counter in an alert is paired with the born-in-window term."""
    for rule in _rules():
        expr = str(rule["expr"])
        if "increase(" in expr:
            assert "last_over_time(" in expr and " offset " in expr, rule.get("alert")
