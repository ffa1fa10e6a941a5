"""Bad input never reaches the job as an exception, warns once per kind and keeps the telemetry valid and exact."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from joblogger import JobLogger, semconv
from joblogger.testing import Capture, capture

from ._helpers import FakeClock, assert_telemetry_valid, attrs, joblogger_warnings

BIG = 2**63 - 1
MB = 1_000_000


class Unprintable:
    """An object whose str() and repr() both raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Plain:
    """An object with only the default str()."""


class Ambiguous:
    """An object whose truth value raises, as a numpy array's or a pandas Series' does."""

    def __bool__(self) -> bool:
        raise ValueError("The truth value of an array with more than one element is ambiguous")

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Any:
        return iter(["a", "b"])

    def __str__(self) -> str:
        return "[a b]"


class IndexLike:
    """An integer-like object that is not an int (numpy.int64 behaves like this)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __index__(self) -> int:
        return self.n


def recursive_dict() -> dict[str, Any]:
    """A dict that contains itself."""
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    return d


def recursive_list() -> list[Any]:
    """A list that contains itself."""
    items: list[Any] = [1]
    items.append(items)
    return items


def deep_list(depth: int) -> list[Any]:
    """A list nested ``depth`` levels."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@dataclass
class Case:
    """One bad-input scenario: what to do with a fresh logger and what must come out."""

    id: str
    run: Callable[[JobLogger], Any]
    processed: int | None = None  # summary.entities_processed (the final phase)
    processed_total: int | None = None  # job.entities.processed metric, when it differs from processed
    total: object = ...  # summary.entities_total (Ellipsis: not checked)
    outcomes: dict[str, int] | None = None  # outcomes recorded with add_outcome (job.outcomes metric)
    warns: frozenset[str] = frozenset()  # warning kinds that must appear
    kwargs: dict[str, Any] = field(default_factory=dict)
    check: Callable[[JobLogger, Capture], None] | None = None


def _inc(*values: Any) -> Callable[[JobLogger], None]:
    def run(job: JobLogger) -> None:
        for v in values:
            job.increment_progress(v)

    return run


def _total(value: Any, then: int = 0) -> Callable[[JobLogger], None]:
    def run(job: JobLogger) -> None:
        job.set_total(value)
        job.increment_progress(then)

    return run


def _outcome(key: Any, *counts: Any) -> Callable[[JobLogger], None]:
    def run(job: JobLogger) -> None:
        for c in counts:
            job.add_outcome(key, c)

    return run


def _info(message: Any, context: Any = None, **fields: Any) -> Callable[[JobLogger], None]:
    def run(job: JobLogger) -> None:
        job.set_stage("S")
        job.info(message, context, **fields)

    return run


def _event(cap: Capture, name: str | None = None) -> dict[str, Any]:
    """Attributes of the one non-milestone event on stage S."""
    events = [e for e in cap.span("S").events if (e.attributes or {}).get(semconv.JOB_LOG_LEVEL) == "info"]
    assert len(events) == 1, [e.name for e in cap.span("S").events]
    if name is not None:
        assert events[0].name == name
    return dict(events[0].attributes or {})


def _check_event(expected: dict[str, Any], name: str | None = None) -> Callable[[JobLogger, Capture], None]:
    def check(job: JobLogger, cap: Capture) -> None:
        got = _event(cap, name)
        for key, value in expected.items():
            assert got[key] == value, (key, got[key])

    return check


def _check_event_pred(pred: Callable[[dict[str, Any]], bool]) -> Callable[[JobLogger, Capture], None]:
    def check(job: JobLogger, cap: Capture) -> None:
        assert pred(_event(cap)), _event(cap)

    return check


def _many_outcome_keys(job: JobLogger) -> None:
    for i in range(2_000):
        job.add_outcome(f"key-{i}")


def _check_many_outcome_keys(job: JobLogger, cap: Capture) -> None:
    metric = {p.attributes[semconv.JOB_OUTCOME]: p.value for p in cap.metrics() if p.name == semconv.METRIC_OUTCOMES}
    assert len(metric) == 101 and metric["other"] == 1_900
    assert sum(metric.values()) == 2_000


def _many_stages(job: JobLogger) -> None:
    for i in range(1_500):
        job.set_stage(f"stage {i}")
        job.increment_progress()


def _check_many_stages(job: JobLogger, cap: Capture) -> None:
    labels = {p.attributes[semconv.JOB_STAGE]: p.value for p in cap.metrics()
              if p.name == semconv.METRIC_STAGE_DURATION}  # fmt: skip
    assert len(labels) == 101 and labels["other"] == 1_400
    assert len(cap.spans()) == 1_501


def _from_thread(job: JobLogger) -> None:
    def work() -> None:
        job.set_stage("In a thread")
        job.set_total(50)
        for _ in range(50):
            job.increment_progress()
        job.add_outcome("updates", 50)
        job.warning("from a thread")

    t = threading.Thread(target=work)
    t.start()
    t.join()


def _after_end(job: JobLogger) -> None:
    job.increment_progress(2)
    job.log_summary()
    job.log_summary()
    job.set_stage("Too late")
    job.increment_progress()
    job.add_outcome("updates")
    job.info("late")


def _control_stage(job: JobLogger) -> None:
    job.set_stage("Line1\nLine2\t\x00\x1b[31mred")
    job.increment_progress()


def _check_control_stage(job: JobLogger, cap: Capture) -> None:
    [label] = [p.attributes[semconv.JOB_STAGE] for p in cap.metrics() if p.name == semconv.METRIC_STAGE_DURATION]
    assert label == "Line1 Line2 [31mred"


def _surrogates(job: JobLogger) -> None:
    job.set_stage("stage \ud800")
    job.info("message \udcff", {"k\ud800": "v\udfff", "list": ["a\ud800"]})
    job.add_outcome("out\ud800")


def _check_labels_single_line(job: JobLogger, cap: Capture) -> None:
    labels = {v for p in cap.metrics() for v in p.attributes.values()}
    assert labels and not [v for v in labels if any(ord(c) < 0x20 or ord(c) == 0x7F for c in v)], labels
    assert "nightly export" in labels


def _check_snapshots_clamped(job: JobLogger, cap: Capture) -> None:
    snapshots = [attrs(s) for s in cap.spans() if attrs(s).get(semconv.JOB_SNAPSHOT_KIND)]
    stage_start = next(a for a in snapshots if a[semconv.JOB_SNAPSHOT_KIND] == semconv.SNAPSHOT_STAGE_START)
    assert stage_start[semconv.JOB_PROGRESS_CURRENT] == BIG
    assert stage_start[semconv.JOB_OUTCOMES_PREFIX + "bytes"] == BIG


def _huge_snapshot(job: JobLogger) -> None:
    job.increment_progress(10**30)
    job.increment_progress(10**30)
    job.add_outcome("bytes", BIG)
    job.add_outcome("bytes")
    job.set_stage("After the huge counts")


def _parameter_names_as_fields(job: JobLogger) -> None:
    job.set_stage("S")
    job.info("loaded", message="hi", self="me")


def _junk_log_options(job: JobLogger) -> None:
    job.info("no exception being handled", exc_info=True)
    job.warning("a tuple that is no exc_info", exc_info=(1, 2))
    job.error("a stacklevel that is no number", stacklevel="deep")  # type: ignore[arg-type]
    job.milestone("a negative stacklevel", stacklevel=-3)
    job.exception("exception() outside an except block")


def _reserved_context_keys(job: JobLogger) -> None:
    job.set_stage("S")
    job.info("reserved", {"message": "m", "args": (1, 2), "exc_info": True, "levelname": "x", "name": "n"})


CASES: list[Case] = [
    # --- counts ------------------------------------------------------------------------------------
    Case("inc-none", _inc(None), processed=0, warns=frozenset({"count-type"})),
    Case("inc-negative", _inc(-5), processed=0, warns=frozenset({"count-negative"})),
    Case("inc-zero", _inc(0, 0), processed=0),
    Case("inc-nan", _inc(math.nan), processed=0, warns=frozenset({"count-nonfinite"})),
    Case("inc-inf", _inc(math.inf, -math.inf), processed=0, warns=frozenset({"count-nonfinite"})),
    Case("inc-huge", _inc(10**30), processed=BIG, warns=frozenset({"count-huge"})),
    Case("inc-huge-twice", _inc(10**30, 10**30), processed=2 * BIG),
    Case("inc-float-integral", _inc(3.0), processed=3),
    Case("inc-float-fraction", _inc(2.6), processed=3, warns=frozenset({"count-fraction"})),
    Case("inc-bools", _inc(True, False, True), processed=2),
    Case("inc-numeric-strings", _inc("5", " 7 ", "1e3"), processed=1012, warns=frozenset({"count-str"})),
    Case("inc-junk-string", _inc("abc", ""), processed=0, warns=frozenset({"count-type"})),
    Case("inc-object", _inc(object(), [1], {"n": 1}), processed=0, warns=frozenset({"count-type"})),
    Case("inc-index-like", _inc(IndexLike(4)), processed=4),
    Case("inc-decimal-fraction", _inc(Decimal("4"), Fraction(6, 2)), processed=7),
    # --- totals -------------------------------------------------------------------------------------
    Case("total-none", _total(None, 3), processed=3, total=None, warns=frozenset({"total-type"})),
    Case("total-negative", _total(-1, 3), processed=3, total=None, warns=frozenset({"total-negative"})),
    Case("total-zero", _total(0), processed=0, total=0,
         check=lambda job, cap: _assert(job.percent == 100.0 and job.progress_text == "bad-input")),
    Case("total-nan", _total(math.nan), total=None, warns=frozenset({"total-nonfinite"})),
    Case("total-huge", _total(10**40, 5), processed=5, total=BIG, warns=frozenset({"total-huge"})),
    Case("total-string", _total("100", 25), processed=25, total=100,
         check=lambda job, cap: _assert(job.percent == 25.0)),
    Case("total-bool", _total(True, 1), processed=1, total=1, warns=frozenset({"total-bool"})),
    Case("total-float", _total(7.9), total=8, warns=frozenset({"total-fraction"})),
    # --- set_progress -------------------------------------------------------------------------------
    Case("progress-above-total", lambda j: (j.set_total(10), j.set_progress(25)), processed=25, total=10,
         warns=frozenset({"progress-over-total"}), check=lambda job, cap: _assert(job.percent == 100.0)),
    Case("progress-backwards", lambda j: (j.set_progress(10), j.set_progress(4)), processed=4, processed_total=10,
         warns=frozenset({"progress-backwards"})),
    Case("progress-junk", lambda j: (j.set_progress(None), j.set_progress(-3), j.set_progress(math.nan)),
         processed=0),
    # --- stage names ----------------------------------------------------------------------------------
    Case("stage-none", lambda j: j.set_stage(None), warns=frozenset({"stage-type"}),
         check=lambda job, cap: _assert(job.stage == "None")),
    Case("stage-empty", lambda j: (j.set_stage(""), j.set_stage("   ")), warns=frozenset({"stage-empty"}),
         check=lambda job, cap: _assert(len(cap.spans("(unnamed stage)")) == 2)),
    Case("stage-int", lambda j: j.set_stage(123, 456), warns=frozenset({"stage-type", "message-type"}),
         check=lambda job, cap: _assert(job.progress_text == "123 (456)")),
    Case("stage-control-chars", _control_stage, check=_check_control_stage),
    Case("stage-megabyte", lambda j: j.set_stage("s" * MB), warns=frozenset({"stage-long"}),
         check=lambda job, cap: _assert(all(len(s.name) <= 4096 for s in cap.spans()))),
    Case("stage-after-end", lambda j: (j.log_summary(), j.set_stage("late")), warns=frozenset({"ended"}),
         check=lambda job, cap: _assert(cap.spans("late") == [])),
    Case("stage-thousands", _many_stages, processed=1_500, warns=frozenset({"stage-cap"}), check=_check_many_stages),
    # --- messages -------------------------------------------------------------------------------------
    Case("message-none", _info(None), warns=frozenset({"message-type"}), check=_check_event({}, "None")),
    Case("message-int", _info(42), warns=frozenset({"message-type"}), check=_check_event({}, "42")),
    Case("message-empty", _info(""), check=_check_event({}, "")),
    Case("message-bytes", _info(b"raw"), warns=frozenset({"message-type"})),
    Case("message-megabyte", _info("m" * MB), warns=frozenset({"message-long"}),
         check=lambda job, cap: _assert(len(next(iter(_event_names(cap)))) <= 8192)),
    Case("message-unicode", _info("Café ☕ 用户 🚀 \u202ertl", {"emoji🚀": "✓", "名前": "値"}),
         check=_check_event({"emoji🚀": "✓", "名前": "値"}, "Café ☕ 用户 🚀 \u202ertl")),
    Case("message-newlines-control", _info("line1\nline2\r\n\x00\x07\x1b[0m")),
    Case("surrogates", _surrogates),
    # --- context values ---------------------------------------------------------------------------------
    Case("ctx-nested", _info("n", {"cfg": {"w": [1, 2], "deep": {"x": None}}}),
         check=_check_event({"cfg": '{"deep": {"x": null}, "w": [1, 2]}'})),
    Case("ctx-recursive-dict", _info("r", {"d": recursive_dict()})),
    Case("ctx-recursive-list", _info("r", {"l": recursive_list()})),
    Case("ctx-deep", _info("deep", {"l": deep_list(5_000)})),
    Case("ctx-objects", _info("o", {"plain": Plain(), "broken": Unprintable(), "nested": {"b": Unprintable()}}),
         check=_check_event_pred(lambda a: "unprintable" in str(a["broken"]).lower() and "nested" in a)),
    Case("ctx-bytes", _info("b", {"b": b"abc", "ba": bytearray(b"xyz"), "bad": b"\xff\xfe"}),
         check=_check_event({"b": "abc", "ba": "xyz", "bad": "\ufffd\ufffd"})),
    Case("ctx-sets", _info("s", {"s": {3, 1, 2}, "f": frozenset({"a"})}), check=_check_event({"s": '["1", "2", "3"]'})),
    Case("ctx-datetime-etc", _info("d", {"when": dt.datetime(2024, 6, 1, 3, 0, tzinfo=dt.timezone.utc),
                                         "day": dt.date(2024, 6, 1), "dec": Decimal("1.5"), "id": uuid.UUID(int=1)}),
         check=_check_event_pred(lambda a: a["when"].startswith("2024-06-01") and a["dec"] == "1.5")),
    Case("ctx-lists", _info("l", {"mixed": [1, "a"], "empty": [], "nones": [None], "big": [10**30], "ok": [1.5, 2.5],
                                  "bools": [True, False], "tuple": (1, 2)}),
         check=_check_event({"mixed": '[1, "a"]', "ok": (1.5, 2.5), "bools": (True, False), "tuple": (1, 2)})),
    Case("ctx-numbers", _info("n", {"nan": math.nan, "inf": math.inf, "huge": 10**30, "neg": -(10**30), "b": True}),
         check=_check_event({"nan": "NaN", "inf": "Infinity", "huge": str(10**30), "neg": str(-(10**30)), "b": True})),
    # Jaeger's query API cannot encode a non-finite double: one NaN made every search of the service answer 500.
    Case("ctx-nonfinite-floats", _info("loss", {"loss": -math.inf, "losses": [0.5, math.nan], "ok": [0.5, 1.5]}),
         check=_check_event({"loss": "-Infinity", "losses": "[0.5, NaN]", "ok": (0.5, 1.5)})),
    # an array or a Series where a dict or a flag was expected: its truth value raises
    Case("options-ambiguous-truth", _info("m"),
         kwargs={"attributes": Ambiguous(), "snapshots": Ambiguous(), "run_id_on_metrics": Ambiguous(),
                 "debug_events": Ambiguous()},
         warns=frozenset({"attributes-type", "snapshots-type", "run_id_on_metrics-type", "debug_events-type"})),
    Case("options-ambiguous-secret-keys", _info("m", password="p"), kwargs={"secret_keys": Ambiguous()},
         check=_check_event({"password": "[REDACTED]"})),
    Case("ctx-ambiguous", _info("m", Ambiguous()), warns=frozenset({"context-type"}),
         check=_check_event({"context": "[a b]"})),
    Case("ctx-odd-keys", _info("k", {1: "int", (1, 2): "tuple", None: "none", "": "empty", Unprintable(): "x"})),
    Case("ctx-not-mapping", _info("c", ["a", "b"]), warns=frozenset({"context-type"}),
         check=_check_event({"context": ("a", "b")})),
    Case("ctx-too-many", _info("t", {f"k{i}": i for i in range(1_000)}), warns=frozenset({"context-size"})),
    Case("ctx-megabyte-value", _info("v", {"v": "x" * MB}), check=_check_event_pred(lambda a: len(a["v"]) <= 4096)),
    Case("ctx-reserved-keys", _reserved_context_keys),
    Case("ctx-parameter-names-as-fields", _parameter_names_as_fields,
         check=_check_event({"message": "hi", "self": "me"}, "loaded")),
    Case("log-options-junk", _junk_log_options,
         warns=frozenset({"exc_info-none", "exc_info-type", "stacklevel-type", "stacklevel-negative"}),
         check=lambda job, cap: _assert(job.log_counts["error"] == 2 and not [
             e for s in cap.spans() for e in s.events if e.name == "exception"])),
    # --- outcomes ---------------------------------------------------------------------------------------
    Case("outcome-odd-keys",
         lambda j: [j.add_outcome(k) for k in ("  Rows  Merged!! ", "UPDATES", "a.b/c:d", "tab\tkey\n")],
         outcomes={"rows_merged": 1, "updates": 1, "a_b_c_d": 1, "tab_key": 1},
         check=lambda job, cap: _assert({k for k in attrs(cap.span("bad-input")) if k.startswith("job.outcomes.")}
                                        == {"job.outcomes.updates", "job.outcomes.rows_merged",
                                            "job.outcomes.a_b_c_d", "job.outcomes.tab_key"})),
    Case("outcome-non-string-keys", lambda j: [j.add_outcome(k) for k in (None, 42, ("t",), ["x"])],
         outcomes={"none": 1, "42": 1, "t": 1, "x": 1}, warns=frozenset({"outcome key-type"})),
    Case("outcome-empty-key", _outcome("", 3), outcomes={"other": 3}, warns=frozenset({"outcome-empty"})),
    Case("outcome-bad-counts", _outcome("k", None, -1, math.nan, "3", 2.6, True, 0), outcomes={"k": 7}),
    Case("outcome-huge", _outcome("k", 10**30), outcomes={"k": BIG}),
    Case("outcome-thousands", _many_outcome_keys, warns=frozenset({"outcome-cap"}), check=_check_many_outcome_keys),
    Case("outcome-int64-overflow", lambda j: (j.add_outcome("bytes", BIG), j.add_outcome("bytes")),
         outcomes={"bytes": BIG}, warns=frozenset({"outcome-int64"}),
         check=lambda job, cap: _assert(attrs(cap.span("bad-input"))[semconv.JOB_OUTCOMES_PREFIX + "bytes"] == BIG)),
    Case("snapshot-huge-counts", _huge_snapshot, kwargs={"snapshots": True}, processed=2 * BIG,
         check=_check_snapshots_clamped),
    # --- lifecycle and threads -----------------------------------------------------------------------------
    Case("after-end", _after_end, processed=2, outcomes={}, warns=frozenset({"ended"})),
    Case("other-thread", _from_thread, processed=50, total=50, outcomes={"updates": 50}),
    # --- construction ----------------------------------------------------------------------------------------
    Case("name-and-id-odd", lambda j: j.increment_progress(), processed=1,
         kwargs={"job_run_id": 3.5, "job_name": 12345}, warns=frozenset({"job_run_id-type", "job_name-type"})),
    Case("name-empty", lambda j: None, kwargs={"job_name": "  "}, warns=frozenset({"job_name-empty"}),
         check=lambda job, cap: _assert(cap.spans("job") != [])),
    Case("name-megabyte", lambda j: None, kwargs={"job_name": "n" * MB, "job_run_id": "r" * MB}),
    Case("name-control-chars", lambda j: (j.set_stage("S"), j.increment_progress(), j.add_outcome("updates")),
         kwargs={"job_name": "nightly\nexport\x00", "job_run_id": "run\r\n1\x1b[0m"},
         check=_check_labels_single_line),
    Case("name-percent-signs", lambda j: j.increment_progress("lots"), warns=frozenset({"count-type"}),
         kwargs={"job_name": "100% %s done", "job_run_id": "run-%d%%"},
         check=lambda job, cap: _assert(job.job_name == "100% %s done")),
    Case("budget-junk", lambda j: [j.warning(str(i)) for i in range(200)], kwargs={"event_budget": "lots"},
         check=lambda job, cap: _assert(len(cap.span("bad-input").events) <= 128)),
    Case("secret-keys-as-string", lambda j: j.info("x", {"ssn": "1", "user": "u"}), kwargs={"secret_keys": "ssn"},
         check=lambda job, cap: _assert(
             dict(cap.span("bad-input").events[0].attributes or {}) == {
                 "ssn": "[REDACTED]", "user": "u", semconv.JOB_LOG_LEVEL: "info"})),
]  # fmt: skip


def _assert(condition: bool) -> None:
    assert condition


def _event_names(cap: Capture) -> Iterator[str]:
    for span in cap.spans():
        for event in span.events:
            if (event.attributes or {}).get(semconv.JOB_LOG_LEVEL) == "info":
                yield event.name


def test_enough_cases() -> None:
    """The table has at least 40 distinct cases."""
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    """No exception reaches the job, one warning per kind at most, valid telemetry, exact counts."""
    caplog.set_level(logging.DEBUG, logger="joblogger")  # exercise the stdlib path too
    clock = FakeClock()
    with capture(clock=clock) as cap:
        kwargs = dict(case.kwargs)
        run_id = kwargs.pop("job_run_id", "run-bad")
        name = kwargs.pop("job_name", "bad-input")
        job = cap.job_logger(run_id, name, **kwargs)
        case.run(job)
        summary = job.log_summary()

        kinds = joblogger_warnings(caplog.records)
        assert len(kinds) == len(set(kinds)), kinds
        assert not [k for k in kinds if k.startswith("internal")], kinds
        assert case.warns <= set(kinds), (case.warns, kinds)
        for record in caplog.records:
            record.getMessage()  # every record formats
        assert_telemetry_valid(cap)
        run_span = cap.spans(job.job_name)
        assert len(run_span) == 1 and attrs(run_span[0])[semconv.JOB_RESULT] == "success"

        if case.processed is not None:
            assert summary.entities_processed == case.processed
            expected_total = case.processed if case.processed_total is None else case.processed_total
            assert job.processed_total == expected_total
            assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == min(expected_total, BIG)
        if case.total is not ...:
            assert summary.entities_total == case.total
        if case.outcomes is not None:
            metric = {p.attributes[semconv.JOB_OUTCOME]: p.value for p in cap.metrics()
                      if p.name == semconv.METRIC_OUTCOMES}  # fmt: skip
            assert metric == case.outcomes
            for key, value in case.outcomes.items():
                assert summary.outcomes[key] == value
        if case.check is not None:
            case.check(job, cap)


class BrokenError(Exception):
    """An exception whose str() raises."""

    def __str__(self) -> str:
        raise RuntimeError("cannot print me")


def test_exception_with_broken_str_still_ends_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """A job exception whose str() raises is re-raised untouched and the run still ends as failed."""
    err = BrokenError()
    with capture() as cap:
        with pytest.raises(BrokenError) as info, cap.job_logger("r", "broken") as job:
            job.set_stage("S")
            raise err
        assert info.value is err
        assert job.summary is not None and job.summary.result == "failure"
        run = cap.span("broken")
        assert attrs(run)[semconv.JOB_RESULT] == "failure"
        assert any(e.name == "exception" for e in run.events)
        assert not [k for k in joblogger_warnings(caplog.records) if k.startswith("internal")]
        assert cap.metric_value(semconv.METRIC_RUNS, **{semconv.JOB_RESULT: "failure"}) == 1
        assert_telemetry_valid(cap)


def test_exception_with_surrogates_keeps_telemetry_valid() -> None:
    """An exception message with lone surrogates does not make the spans unexportable."""
    with capture() as cap:
        with pytest.raises(ValueError), cap.job_logger("r", "j"):
            raise ValueError("bad \ud800 value")
        assert_telemetry_valid(cap)


# --- stateful: random call sequences --------------------------------------------------------------------

COUNT_VALUES = st.one_of(
    st.integers(-3, 2_000),
    st.sampled_from([None, 2.0, 2.6, -1.0, math.nan, math.inf, "7", "x", "-2", True, False]),
)
KEYS = {"updates": "updates", "skipped": "skipped", "errors": "errors", "warnings": "warnings",
        "Rows Merged": "rows_merged", " spaced  key ": "spaced_key", "emoji🚀": "emoji"}  # fmt: skip


STANDARD = ("updates", "inserts", "deletes", "skipped", "errors", "warnings")


def model_count(value: object) -> int | None:
    """What a count argument is worth, per the documented coercion rules."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        if not math.isfinite(value) or round(value) < 0:
            return None
        return round(value)
    if isinstance(value, str):
        try:
            n = int(value)
        except ValueError:
            return None
        return n if n >= 0 else None
    return None


class JobMachine(RuleBasedStateMachine):
    """Drives a logger with random calls and keeps a model of what it must report."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.cap = Capture(self.clock)
        self.job = self.cap.job_logger("run-sm", "state-machine")
        self.current = 0
        self.processed = 0
        self.total: int | None = None
        self.outcomes: dict[str, int] = {}
        self.logs = dict.fromkeys(semconv.LEVELS, 0)
        self.ended = False

    @rule(count=COUNT_VALUES)
    def increment(self, count: object) -> None:
        """increment_progress with any count."""
        self.job.increment_progress(count)  # type: ignore[arg-type]
        n = model_count(count)
        if not self.ended and n:
            self.current += n
            self.processed += n

    @rule(key=st.sampled_from(sorted(KEYS)), count=COUNT_VALUES)
    def outcome(self, key: str, count: object) -> None:
        """add_outcome with any count."""
        self.job.add_outcome(key, count)  # type: ignore[arg-type]
        n = model_count(count)
        if not self.ended and n is not None:
            label = KEYS[key]
            self.outcomes[label] = self.outcomes.get(label, 0) + n

    @rule(total=st.one_of(st.integers(-2, 3_000), st.none(), st.just(math.nan)))
    def set_total(self, total: object) -> None:
        """set_total, possibly starting a new phase."""
        self.job.set_total(total)  # type: ignore[arg-type]
        n = model_count(total)
        if not self.ended and n is not None:
            if self.total is not None and self.current != 0:
                self.current = 0
            self.total = n

    @rule(value=st.integers(-2, 3_000))
    def set_progress(self, value: int) -> None:
        """set_progress forwards or backwards."""
        self.job.set_progress(value)
        if not self.ended and value >= 0:
            if value > self.current:
                self.processed += value - self.current
            self.current = value

    @rule(name=st.sampled_from(["Fetch", "Score", "", "Stage\n2", "Save"]), message=st.none() | st.just("msg"))
    def set_stage(self, name: str, message: str | None) -> None:
        """set_stage (logs a milestone)."""
        self.job.set_stage(name, message)
        if not self.ended:
            self.logs["milestone"] += 1

    @rule(level=st.sampled_from(semconv.LEVELS), message=st.text(max_size=20))
    def log(self, level: str, message: str) -> None:
        """One of the five log levels."""
        getattr(self.job, level)(message, {"n": 1})
        if not self.ended:
            self.logs[level] += 1

    @rule(n=st.integers(0, 50), sized=st.booleans())
    def track(self, n: int, sized: bool) -> None:
        """track() over a list or a generator."""
        items: Any = list(range(n)) if sized else (x for x in range(n))
        for _ in self.job.track(items):
            pass
        if self.ended:
            return
        if sized:
            if self.total is not None and self.current != 0:
                self.current = 0
            self.total = n
        elif self.total is not None and self.current != 0:
            self.current = 0
            self.total = None
        self.current += n
        self.processed += n

    @precondition(lambda self: not self.ended)
    @rule(seconds=st.floats(0, 100))
    def tick(self, seconds: float) -> None:
        """Time passes."""
        self.clock.advance(seconds)

    @rule()
    def end(self) -> None:
        """log_summary (idempotent)."""
        self.job.log_summary()
        if not self.ended:
            self.logs["milestone"] += 1
        self.ended = True

    @invariant()
    def agrees_with_model(self) -> None:
        """Live state matches the model."""
        assert self.job.current == self.current
        assert self.job.processed_total == self.processed
        assert self.job.total == self.total
        assert dict(self.job.log_counts) == self.logs
        shown = dict(self.job.outcomes)
        for key, value in self.outcomes.items():
            if key not in STANDARD or value:
                assert shown[key] == value, key
        for key, level in (("errors", "error"), ("warnings", "warning")):
            expected = self.outcomes.get(key, self.logs[level])
            assert shown.get(key, 0) == expected
        pct = self.job.percent
        assert pct is None or 0 <= pct <= 100

    def teardown(self) -> None:
        """The summary and the metrics agree with the model."""
        try:
            summary = self.job.log_summary()
            if not self.ended:
                self.logs["milestone"] += 1
            assert summary.entities_processed == self.current
            assert summary.entities_total == self.total
            for key, value in self.outcomes.items():
                if key not in STANDARD or value:
                    assert summary.outcomes[key] == value
            cap = self.cap
            assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == self.processed
            metric = {p.attributes[semconv.JOB_OUTCOME]: p.value for p in cap.metrics()
                      if p.name == semconv.METRIC_OUTCOMES}  # fmt: skip
            assert metric == self.outcomes
            for level, n in self.logs.items():
                assert cap.metric_value(semconv.METRIC_LOGS, **{semconv.JOB_LOG_LEVEL: level}) == n
            assert cap.metric_value(semconv.METRIC_RUNS) == 1
            assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 0
            run = attrs(cap.span("state-machine"))
            assert run[semconv.JOB_PROGRESS_CURRENT] == self.current
            assert_telemetry_valid(cap)
        finally:
            self.cap.shutdown()


JobMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_job_state_machine = JobMachine.TestCase
