"""The frozen result of a run: what ``log_summary()`` returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Summary:
    """Outcome of a job run.

    Attributes:
        line: The summary line, e.g. ``"Completed in 2m 34s | Processed: 5,000 users | ..."``.
        result: One of OpenTelemetry's CI/CD results (:data:`joblogger.semconv.RESULTS`): ``"success"``,
            ``"failure"``, ``"error"``, ``"timeout"``, ``"cancellation"`` or ``"skip"``; ``"detached"`` for
            a forked child's copy of a run its parent started (never exported, see docs/otlp.md).
        entities_processed: Processed count of the final phase.
        entities_total: Total of the final phase, or None when it was never set.
        entity_type: What was processed ("users"), or None.
        outcomes: Outcome counts in summary order (errors/warnings merged from log calls).
        duration_ms: Run duration measured with the logger's clock.
        events_dropped: Span events joblogger dropped to stay within its budget, by level.
        logs_suppressed: debug/info records not emitted because of the log rate limits, by level.
        children: Child runs by state (``ok``, ``failed``, ``cancelled``, ``running``), empty for a
            run that had none (docs/children.md).

    Example:
        >>> s = Summary("Completed in 1.0s | Processed: 1 entities", "success", 1, 1, None, {}, 1000.0)
        >>> s.to_dict()["entitiesProcessed"]
        1
    """

    line: str
    result: str
    entities_processed: int
    entities_total: int | None
    entity_type: str | None
    outcomes: Mapping[str, int]
    duration_ms: float
    events_dropped: Mapping[str, int] = field(default_factory=dict)
    logs_suppressed: Mapping[str, int] = field(default_factory=dict)
    children: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcomes", MappingProxyType(dict(self.outcomes)))
        object.__setattr__(self, "events_dropped", MappingProxyType(dict(self.events_dropped)))
        object.__setattr__(self, "logs_suppressed", MappingProxyType(dict(self.logs_suppressed)))
        object.__setattr__(self, "children", MappingProxyType(dict(self.children)))

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data, with the reference guide's keys first.

        Keys: ``entitiesProcessed``, ``entitiesTotal``, ``outcomeSummary``, then
        ``entityType``, ``durationMs``, ``result``, ``line`` and, when the log rate
        limits suppressed any records, ``logsSuppressed`` (by level), and ``children`` (by state)
        for a run that had child runs.
        """
        return {
            "entitiesProcessed": self.entities_processed,
            "entitiesTotal": self.entities_total,
            "outcomeSummary": dict(self.outcomes),
            "entityType": self.entity_type,
            "durationMs": round(self.duration_ms, 3),
            "result": self.result,
            "line": self.line,
        } | (
            ({"logsSuppressed": dict(self.logs_suppressed)} if self.logs_suppressed else {})
            | ({"children": dict(self.children)} if self.children else {})
        )

    def __str__(self) -> str:
        return self.line


#: The read-only empty mapping every empty field of a built summary shares (immutable, so one serves all).
_EMPTY: Mapping[str, int] = MappingProxyType({})
_FIELDS = (
    "line",
    "result",
    "entities_processed",
    "entities_total",
    "entity_type",
    "outcomes",
    "duration_ms",
    "events_dropped",
    "logs_suppressed",
    "children",
)
#: Each field's slot setter (what the frozen ``__init__`` reaches through ``object.__setattr__``).
_SET = tuple(Summary.__dict__[name].__set__ for name in _FIELDS)


def _frozen(mapping: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(mapping)) if mapping else _EMPTY


def build_summary(
    line: str,
    result: str,
    *,
    entities_processed: int,
    entities_total: int | None,
    entity_type: str | None,
    outcomes: Mapping[str, int],
    duration_ms: float,
    events_dropped: Mapping[str, int],
    logs_suppressed: Mapping[str, int],
    children: Mapping[str, int],
) -> Summary:
    """A :class:`Summary` equal to ``Summary(...)`` with the same values, built for the end of every run.

    The dataclass's frozen ``__init__`` and ``__post_init__`` cost about 7 µs (ten
    ``object.__setattr__`` calls, three default factories, four copies); this sets the
    slots directly and shares one empty read-only mapping (about 2 µs). Same fields,
    same read-only copies, same equality and repr.
    """
    summary: Summary = object.__new__(Summary)
    values = (
        line,
        result,
        entities_processed,
        entities_total,
        entity_type,
        _frozen(outcomes),
        duration_ms,
        _frozen(events_dropped),
        _frozen(logs_suppressed),
        _frozen(children),
    )
    for set_slot, value in zip(_SET, values, strict=True):
        set_slot(summary, value)
    return summary
