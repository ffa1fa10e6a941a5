"""The telemetry contract's names: OpenTelemetry's naming rules, outcome keys, outcome attributes on spans."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from joblogger import semconv
from joblogger.testing import Capture, capture

from ._helpers import FakeClock, joblogger_warnings

#: Attribute keys that are not semconv constants: OpenTelemetry's own exception event keys.
_OTEL_KEYS = {"exception.type", "exception.message", "exception.stacktrace", "exception.escaped"}


def _namespaces(name: str) -> Iterable[str]:
    parts = name.split(".")
    return (".".join(parts[:i]) for i in range(1, len(parts)))


def _clashes(names: set[str]) -> list[tuple[str, str]]:
    """(name, longer name) pairs where ``name`` is also a namespace of the longer one."""
    return sorted((ns, name) for name in names for ns in _namespaces(name) if ns in names)


def _attribute_constants() -> tuple[set[str], set[str]]:
    """semconv's attribute names and the prefixes of its dynamic attribute names."""
    values = [v for k, v in vars(semconv).items() if k.startswith("JOB_") or k in ("ERROR_TYPE", "PROCESS_EXIT_CODE")]
    names = {v for v in values if isinstance(v, str) and not v.endswith(".")}
    prefixes = {v for v in values if isinstance(v, str) and v.endswith(".")}
    return names, prefixes


def test_no_semconv_attribute_name_is_also_a_namespace() -> None:
    """No attribute name in semconv coincides with a namespace ("Names SHOULD NOT coincide with namespaces")."""
    names, prefixes = _attribute_constants()
    assert prefixes, "semconv declares dynamic attribute prefixes"
    # Dynamic names: every level for the per-level prefixes, any outcome key for job.outcomes.
    every = names | {p + level for p in prefixes for level in semconv.LEVELS} | {p + "some_key" for p in prefixes}
    assert _clashes(every) == []
    for prefix in prefixes:  # a prefix whose keys the job chooses owns its whole namespace
        assert not any(n.startswith(prefix) for n in names), prefix


def test_emitted_attribute_keys_follow_the_naming_rules(clock: FakeClock) -> None:
    """Every attribute key on spans, events and metric points of a full run is lower-case and no key is a namespace."""
    with capture() as cap:
        job = cap.job_logger("r", "names", clock=clock, event_budget=8, snapshots=True)
        job.set_total(3, "rows")
        job.set_stage("Load")
        for i in range(20):
            job.info(f"row {i}")  # beyond the budget: dropped-events attributes and event
        job.add_outcome("Rows Merged", 2)
        job.add_outcome("errors")
        job.warning("careful")
        job.increment_progress(3)
        job._checkpoint()
        job.log_summary()
        keys: set[str] = set()
        for span in cap.spans():
            keys |= set(span.attributes or {})
            for event in span.events:
                keys |= set(event.attributes or {})
        for point in cap.metrics():
            keys |= set(point.attributes)
    keys -= _OTEL_KEYS
    assert "job.outcomes.rows_merged" in keys and "job.events.dropped" in keys
    assert any(k.startswith(semconv.JOB_EVENTS_DROPPED_BY_LEVEL_PREFIX) for k in keys)
    assert _clashes(keys) == []
    assert all(k == k.lower() and " " not in k for k in keys), sorted(keys)


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("Rows Merged", "rows_merged"),
        ("rows-merged", "rows_merged"),
        ("rows.merged", "rows_merged"),
        ("  ERRORS\n", "errors"),
        ("Größe", "größe"),
        ("a..b__c", "a_b_c"),
    ],
)
def test_outcome_keys_are_normalised_everywhere(cap: Capture, written: str, key: str) -> None:
    """An outcome key is lower-case snake_case on the summary, the span attribute and the metric label."""
    job = cap.job_logger("r", "norm")
    job.add_outcome(written, 2)
    summary = job.log_summary()
    assert dict(summary.outcomes) == {key: 2}
    run = cap.span("norm")
    assert {k: v for k, v in (run.attributes or {}).items() if k.startswith("job.outcomes.")} == {
        f"job.outcomes.{key}": 2
    }
    assert cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: key}) == 2


def test_spellings_of_one_key_count_together(cap: Capture) -> None:
    """``Rows Merged`` and ``rows_merged`` are one outcome, not two."""
    job = cap.job_logger("r", "same")
    job.add_outcome("Rows Merged")
    job.add_outcome("rows_merged", 2)
    job.add_outcome("rows.merged")
    assert job.log_summary().line.endswith("| Rows merged: 4")


def test_span_outcomes_are_what_add_outcome_recorded(cap: Capture) -> None:
    """Span and metric agree on ``errors``: add_outcome only; error() calls are job.logs.error; the summary merges."""
    job = cap.job_logger("r", "agree")
    job.error("bad row")
    job.error("another")
    job.warning("odd row")
    job.add_outcome("errors")
    job.add_outcome("skipped", 4)
    summary = job.log_summary()
    attrs = dict(cap.span("agree").attributes or {})
    assert (
        attrs["job.outcomes.errors"]
        == 1
        == cap.metric_value(semconv.METRIC_OUTCOMES, **{semconv.JOB_OUTCOME: "errors"})
    )
    assert "job.outcomes.warnings" not in attrs  # no warnings outcome was recorded
    assert attrs["job.logs.error"] == 2 and attrs["job.logs.warning"] == 1
    # The summary's Errors/Warnings: the recorded count if the key was recorded, else the log calls.
    assert dict(summary.outcomes) == {"skipped": 4, "errors": 1, "warnings": 1}


def test_run_span_has_no_duration_ms(cap: Capture, clock: FakeClock) -> None:
    """The run span's duration is the span's own: no ``job.duration_ms`` copy in another unit."""
    job = cap.job_logger("r", "dur", clock=clock)
    clock.advance(2.5)
    assert job.log_summary().duration_ms == 2500.0
    attrs = dict(cap.span("dur").attributes or {})
    assert not [k for k in attrs if "duration" in k], attrs


def test_outcome_attributes_never_evict_the_runs_own_attributes(caplog: pytest.LogCaptureFixture) -> None:
    """40 ``attributes=`` and 110 outcome keys: the SDK's 128-attribute limit evicts none of the run's attributes."""
    with capture() as cap:
        user = {f"tenant.field_{i}": i for i in range(40)}
        job = cap.job_logger("r", "crowded", attributes=user)
        for i in range(110):
            job.add_outcome(f"table_{i}")
        job.add_outcome("errors", 3)
        job.save_outcome(timeout_s=1)
        with caplog.at_level(logging.WARNING, logger="joblogger"):
            job.log_summary()
        run = cap.span("crowded")
    attrs = dict(run.attributes or {})
    assert run.dropped_attributes == 0
    assert all(attrs[k] == v for k, v in user.items())
    assert attrs[semconv.JOB_NAME] == "crowded" and attrs[semconv.JOB_RUN_ID] == "r"
    assert attrs[semconv.JOB_RESULT] == "success" and attrs["job.outcomes.errors"] == 3
    outcome_keys = [k for k in attrs if k.startswith("job.outcomes.")]
    kept = sum(attrs[k] for k in outcome_keys if k not in ("job.outcomes.errors", "job.outcomes.other"))
    assert kept + attrs["job.outcomes.other"] == 110  # nothing lost: folded into other
    assert len(attrs) <= 128
    assert "outcome-span-cap" in joblogger_warnings(caplog.records)


def test_outcome_attributes_follow_a_lower_sdk_limit() -> None:
    """A tracer with a 32-attribute limit gets fewer outcome attributes, and still loses none of the run's own."""
    with capture() as cap:
        provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=32))
        provider.add_span_processor(SimpleSpanProcessor(cap.span_exporter))
        job = cap.job_logger("r", "small", tracer_provider=provider, attributes={f"k{i}": i for i in range(10)})
        for i in range(30):
            job.add_outcome(f"key_{i}")
        job.log_summary()
        run = cap.span("small")
    assert run.dropped_attributes == 0
    assert (run.attributes or {})["k0"] == 0


def test_outcome_selection_only_grows() -> None:
    """A key placed on a span stays placed as more keys arrive (so save_outcome then end never evicts)."""
    from joblogger._outcome_attrs import outcome_attributes  # imported here: the other tests run on old code too

    first, _ = outcome_attributes({f"c{i}": 1 for i in range(5)}, 10)
    later, folded = outcome_attributes({**{f"c{i}": 1 for i in range(9)}, "errors": 1, "skipped": 1}, 10)
    assert set(first) <= set(later) and len(later) <= 10 and folded == 6
