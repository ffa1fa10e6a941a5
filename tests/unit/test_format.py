"""Pure formatting: counts, durations, progress text, percent, rate, ETA and the summary line."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from joblogger import _format, format_count, format_duration

# --- counts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1_000, "1,000"),
        (1_250, "1,250"),
        (235_750, "235,750"),
        (1_000_000, "1,000,000"),
        (-1_250, "-1,250"),
        (2.5, "2.5"),
        (1250.0, "1,250"),
        (1234.567, "1,234.57"),
        (math.inf, "inf"),
    ],
)
def test_format_count(value: float, text: str) -> None:
    """Counts get thousands separators; integral floats print as ints, others with two decimals at most."""
    assert format_count(value) == text


@given(st.integers())
def test_format_count_round_trips(n: int) -> None:
    """Removing the separators from a formatted int gives the int back."""
    text = format_count(n)
    assert int(text.replace(",", "")) == n
    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*", text)


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (-5, "0ms"),
        (math.nan, "0ms"),
        (math.inf, "0ms"),
        (0.0004, "0ms"),
        (0.85, "850ms"),
        (0.999, "999ms"),
        (1, "1.0s"),
        (2.5, "2.5s"),
        (9.99, "9.9s"),
        (10, "10s"),
        (42.7, "42s"),
        (59.99, "59s"),
        (60, "1m 00s"),
        (154, "2m 34s"),
        (3_599, "59m 59s"),
        (3_600, "1h 00m 00s"),
        (3_725, "1h 02m 05s"),
        (86_399, "23h 59m 59s"),
        (86_400, "1d 00h 00m 00s"),
        (2 * 86_400 + 3 * 3_600 + 4 * 60 + 5, "2d 03h 04m 05s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    """Each duration range has its documented form."""
    assert format_duration(seconds) == text


_DURATION_UNITS = [
    (re.compile(r"(\d+)ms"), 0),
    (re.compile(r"(\d+)\.(\d)s"), 1),
    (re.compile(r"(\d+)s"), 1),
    (re.compile(r"(\d+)m (\d\d)s"), 2),
    (re.compile(r"(\d+)h (\d\d)m (\d\d)s"), 3),
    (re.compile(r"(\d+)d (\d\d)h (\d\d)m (\d\d)s"), 4),
]


def _parse_duration(text: str) -> tuple[int, float]:
    """(rank of the leading unit, seconds) of a formatted duration."""
    for pattern, rank in _DURATION_UNITS:
        m = pattern.fullmatch(text)
        if m:
            g = [int(x) for x in m.groups()]
            if rank == 0:
                return rank, g[0] / 1000
            if rank == 1:
                return rank, g[0] + (g[1] / 10 if len(g) == 2 else 0)
            if rank == 2:
                return rank, g[0] * 60 + g[1]
            if rank == 3:
                return rank, g[0] * 3600 + g[1] * 60 + g[2]
            return rank, g[0] * 86400 + g[1] * 3600 + g[2] * 60 + g[3]
    raise AssertionError(f"unrecognised duration {text!r}")


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_format_duration_never_raises(seconds: float) -> None:
    """Any float formats to one of the documented forms."""
    _parse_duration(format_duration(seconds))


@given(st.floats(0, 1e9), st.floats(0, 1e9))
@example(0.999, 1.0)
@example(9.99, 10.0)
@example(59.9, 60.0)
@example(3599.5, 3600.0)
def test_format_duration_is_monotone(a: float, b: float) -> None:
    """A longer duration never shows a smaller leading unit or a smaller value, and never overstates."""
    lo, hi = min(a, b), max(a, b)
    rank_lo, value_lo = _parse_duration(format_duration(lo))
    rank_hi, value_hi = _parse_duration(format_duration(hi))
    assert rank_lo <= rank_hi
    assert value_lo <= value_hi
    assert value_hi <= hi + 1e-9


# --- progress text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("Scoring users", 1_250, 5_000, None, True), "Scoring users (1,250 / 5,000)"),
        (("Scanning for orphaned files", 1_250, None, None, True), "Scanning for orphaned files (1,250 processed)"),
        (("Initializing", 0, None, "Loading configuration", False), "Initializing (loading configuration)"),
        (
            ("Processing in batches", 2_500, 10_000, "Batch 5 complete", True),
            "Processing in batches (2,500 / 10,000): batch 5 complete",
        ),
        (("Scanning", 1_250, None, "Found 3 orphans", True), "Scanning (1,250 processed): found 3 orphans"),
        (("Syncing", 0, None, "API handshake", False), "Syncing (API handshake)"),
        (("Syncing", 10, 20, "CRM export", True), "Syncing (10 / 20): CRM export"),
        (("Initializing", 0, None, None, False), "Initializing"),
        (("Scoring users", 0, 5_000, None, False), "Scoring users (0 / 5,000)"),
        (("Reporting", 1_250, None, None, False), "Reporting (1,250 processed)"),
        (("Finalizing", 5_000, 5_000, "Saving results", False), "Finalizing (saving results)"),
        (("Saving results", 1_000, 1_000, None, False), "Saving results"),
        (("Processing", 2_500, 5_000, None, False), "Processing (2,500 / 5,000)"),
        (("Empty", 0, 0, None, True), "Empty (0 / 0)"),
        (("X", 0, None, "a", False), "X (a)"),
    ],
)
def test_progress_text_forms(args: tuple[str, int, int | None, str | None, bool], text: str) -> None:
    """Every documented progress-text form renders exactly."""
    stage, current, total, message, counting = args
    assert _format.progress_text(stage, current, total, message, counting=counting) == text


# --- percent, rate, ETA ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "total", "expected"),
    [(1_250, 5_000, 25.0), (0, 5_000, 0.0), (5_000, 5_000, 100.0), (6_000, 5_000, 100.0),
     (-5, 10, 0.0), (3, 0, 100.0), (0, 0, 100.0), (5, None, None), (1, 3, 100 / 3)],
)  # fmt: skip
def test_percent(current: int, total: int | None, expected: float | None) -> None:
    """Percent is capped to [0, 100], 100 for an empty total and None for an unknown one."""
    assert _format.percent(current, total) == expected


@given(st.integers(), st.one_of(st.none(), st.integers()))
@example(10**400, 10**401)
@example(10**400, 1)
@example(1, 10**400)
def test_percent_in_range(current: int, total: int | None) -> None:
    """Percent is None exactly when the total is unknown and otherwise in [0, 100]."""
    value = _format.percent(current, total)
    if total is None:
        assert value is None
    else:
        assert value is not None and 0.0 <= value <= 100.0


def test_rate() -> None:
    """Rate is items per second, None until something was done over a positive time."""
    assert _format.rate(100, 4.0) == 25.0
    assert _format.rate(0, 4.0) is None
    assert _format.rate(10, 0.0) is None
    assert _format.rate(10, -1.0) is None
    assert _format.rate(10, math.nan) is None
    assert _format.rate(10, math.inf) is None


def test_eta() -> None:
    """ETA is what is left divided by the rate, never negative, None when not estimable."""
    assert _format.eta(1_250, 5_000, 25.0) == 150.0
    assert _format.eta(6_000, 5_000, 25.0) == 0.0
    assert _format.eta(10, None, 1.0) is None
    assert _format.eta(10, 100, None) is None
    assert _format.eta(10, 100, 0.0) is None
    assert _format.eta(10, 100, -1.0) is None


@given(
    st.integers(),
    st.one_of(st.none(), st.integers()),
    st.one_of(st.none(), st.floats(allow_nan=False)),
)
@example(0, 10**400, 1.0)
@example(0, 10**400, 1e-300)
def test_eta_non_negative(current: int, total: int | None, items_per_s: float | None) -> None:
    """ETA never raises and is None or a non-negative number."""
    value = _format.eta(current, total, items_per_s)
    assert value is None or value >= 0


@given(st.integers(), st.floats(allow_nan=True, allow_infinity=True))
@example(10**400, 1.0)
def test_rate_total(done: int, elapsed: float) -> None:
    """Rate never raises and is None or positive."""
    value = _format.rate(done, elapsed)
    assert value is None or value > 0


# --- outcomes and the summary line -----------------------------------------------------------


def test_ordered_outcomes_order() -> None:
    """Standard keys lead, custom keys follow in first-recorded order, errors and warnings close."""
    recorded = {"warnings": 1, "merged": 4, "skipped": 2, "errors": 3, "indexed": 5, "updates": 6,
                "deletes": 7, "inserts": 8}  # fmt: skip
    assert list(_format.ordered_outcomes(recorded, {})) == [
        "updates", "inserts", "deletes", "skipped", "merged", "indexed", "errors", "warnings",
    ]  # fmt: skip


def test_ordered_outcomes_drops_zero_standard_keys() -> None:
    """Standard keys with zero counts are left out; custom keys are kept even at zero."""
    recorded = {"updates": 0, "inserts": 0, "deletes": 0, "skipped": 0, "cached": 0}
    assert _format.ordered_outcomes(recorded, {}) == {"cached": 0}


def test_ordered_outcomes_errors_warnings_default_to_log_counts() -> None:
    """Errors and warnings come from log counts unless recorded explicitly."""
    logs = {"error": 4, "warning": 150, "info": 9}
    assert _format.ordered_outcomes({"skipped": 150}, logs) == {"skipped": 150, "errors": 4, "warnings": 150}
    assert _format.ordered_outcomes({"errors": 2}, logs) == {"errors": 2, "warnings": 150}
    assert _format.ordered_outcomes({"warnings": 0}, logs) == {"errors": 4}
    assert _format.ordered_outcomes({}, {}) == {}
    # nothing recorded (the fast path most small runs take): the log counts alone, errors first
    assert list(_format.ordered_outcomes({}, {"warning": 2, "error": 1, "info": 9}).items()) == [
        ("errors", 1), ("warnings", 2),
    ]  # fmt: skip
    assert _format.ordered_outcomes({}, {"warning": 3}) == {"warnings": 3}


@pytest.mark.parametrize(
    ("key", "label"),
    [("updates", "Updates"), ("rows_merged", "Rows merged"), ("cache-hits", "Cache hits"), ("API calls", "API calls"),
     ("", "")],
)  # fmt: skip
def test_outcome_label(key: str, label: str) -> None:
    """Outcome keys become capitalised words."""
    assert _format.outcome_label(key) == label


@pytest.mark.parametrize(
    ("result", "duration", "processed", "entity_type", "outcomes", "line"),
    [
        (
            "success", 154, 5_000, "users",
            [("updates", 235_750), ("skipped", 150), ("errors", 2), ("warnings", 150)],
            "Completed in 2m 34s | Processed: 5,000 users | Updates: 235,750 | Skipped: 150 | Errors: 2"
            " | Warnings: 150",
        ),
        ("success", 154, 5_000, None, [], "Completed in 2m 34s | Processed: 5,000 entities"),
        ("failure", 154, 12, "users", [("errors", 1)], "Failed after 2m 34s | Processed: 12 users | Errors: 1"),
        ("cancellation", 3_725, 0, None, [], "Cancelled after 1h 02m 05s | Processed: 0 entities"),
        ("error", 2, 0, None, [], "Errored after 2.0s | Processed: 0 entities"),
        ("timeout", 60, 5, "rows", [], "Timed out after 1m 00s | Processed: 5 rows"),
        ("skip", 0, 0, None, [], "Skipped after 0ms | Processed: 0 entities"),
        ("success", 0.85, 1, "files", [("rows_merged", 1_000)],
         "Completed in 850ms | Processed: 1 files | Rows merged: 1,000"),
        ("weird", 2.5, 0, None, [], "Finished in 2.5s | Processed: 0 entities"),
    ],
)  # fmt: skip
def test_summary_line(  # noqa: PLR0917 - parametrized
    result: str, duration: float, processed: int, entity_type: str | None, outcomes: list[tuple[str, int]], line: str
) -> None:
    """The summary line has the documented prefix, processed count and outcomes in order."""
    assert _format.summary_line(result, duration, processed, entity_type, outcomes) == line


def test_summary_line_from_ordered_outcomes() -> None:
    """The reference summary line comes out of ordered_outcomes plus summary_line."""
    outcomes = _format.ordered_outcomes(
        {"skipped": 150, "updates": 235_750, "errors": 2}, {"warning": 150, "error": 2, "milestone": 9}
    )
    assert _format.summary_line("success", 154.9, 5_000, None, outcomes.items()) == (
        "Completed in 2m 34s | Processed: 5,000 entities | Updates: 235,750 | Skipped: 150 | Errors: 2 | Warnings: 150"
    )
