"""Pure formatting and estimation: no clock, no I/O, total over their inputs.

Every function here takes plain values and returns a string or a number, so the
progress text, the summary line, rates and ETAs can be property-tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from . import semconv

#: Outcome keys printed before custom keys, in this order.
LEADING_OUTCOMES = (
    semconv.OUTCOME_UPDATES,
    semconv.OUTCOME_INSERTS,
    semconv.OUTCOME_DELETES,
    semconv.OUTCOME_SKIPPED,
)
#: Outcome keys printed after custom keys, in this order.
TRAILING_OUTCOMES = (semconv.OUTCOME_ERRORS, semconv.OUTCOME_WARNINGS)
STANDARD_OUTCOMES = frozenset(LEADING_OUTCOMES + TRAILING_OUTCOMES)
DEFAULT_ENTITY_TYPE = "entities"


def format_count(n: int | float) -> str:
    """Format a count with thousands separators.

    Example:
        >>> format_count(1250)
        '1,250'
        >>> format_count(2.5)
        '2.5'
    """
    if isinstance(n, float):
        if not math.isfinite(n):
            return str(n)
        if n.is_integer():
            return f"{int(n):,}"
        return f"{n:,.2f}".rstrip("0").rstrip(".")
    return f"{n:,}"


def format_duration(seconds: float) -> str:
    """Format a duration the way people read it.

    Below a second ``"850ms"``, below ten seconds ``"2.5s"``, below a minute
    ``"42s"``, below an hour ``"2m 34s"``, below a day ``"1h 02m 05s"``, then
    ``"2d 03h 04m 05s"``. Negative or non-finite input formats as ``"0ms"``.

    Example:
        >>> format_duration(154)
        '2m 34s'
        >>> format_duration(3725)
        '1h 02m 05s'
    """
    if not math.isfinite(seconds) or seconds <= 0:
        return "0ms"
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 10:
        tenths = int(seconds * 10)
        return f"{tenths // 10}.{tenths % 10}s"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m {secs:02d}s"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"


def _lower_first(text: str) -> str:
    """Lower-case the first letter unless the word is an acronym ("API")."""
    if len(text) >= 2 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]


def progress_text(
    stage: str,
    current: int,
    total: int | None,
    message: str | None,
    *,
    counting: bool,
) -> str:
    """Render the one-line progress text.

    ``counting`` says whether the counts belong to this line: true when progress
    advanced during the current stage. A stage without a message also shows
    the counts of a phase still under way (a known total not yet reached, or
    something counted against an unknown total); a stage that starts after its
    phase completed shows just its name, as the reference guide's
    ``"Saving results"``. The forms are:

    - ``"Scoring users (1,250 / 5,000)"`` (known total)
    - ``"Scanning for orphaned files (1,250 processed)"`` (unknown total)
    - ``"Processing in batches (2,500 / 10,000): batch 5 complete"`` (counts and message)
    - ``"Initializing (loading configuration)"`` (message, no counts)
    - ``"Initializing"`` (nothing else known)

    Example:
        >>> progress_text("Scoring users", 1250, 5000, None, counting=True)
        'Scoring users (1,250 / 5,000)'
        >>> progress_text("Initializing", 0, None, "Loading configuration", counting=False)
        'Initializing (loading configuration)'
        >>> progress_text("Saving results", 1000, 1000, None, counting=False)
        'Saving results'
    """
    under_way = current < total if total is not None else current > 0
    if counting or (not message and under_way):
        if total is not None:
            counts = f"{format_count(current)} / {format_count(total)}"
        else:
            counts = f"{format_count(current)} processed"
        text = f"{stage} ({counts})"
        return f"{text}: {_lower_first(message)}" if message else text
    if message:
        return f"{stage} ({_lower_first(message)})"
    return stage


def percent(current: int, total: int | None) -> float | None:
    """Percentage done, capped to [0, 100]; None when the total is unknown.

    Example:
        >>> percent(1250, 5000)
        25.0
        >>> percent(3, 0)
        100.0
    """
    if total is None:
        return None
    if total <= 0 or current >= total:
        return 100.0
    if current <= 0:
        return 0.0
    return current * 100 / total  # int true division: exact for ints of any size


def rate(done: int, elapsed_s: float) -> float | None:
    """Average items per second over the phase; None until it can be told.

    Example:
        >>> rate(100, 4.0)
        25.0
    """
    if done <= 0 or not math.isfinite(elapsed_s) or elapsed_s <= 0:
        return None
    try:
        return done / elapsed_s
    except OverflowError:  # a count beyond float range
        return math.inf


def eta(current: int, total: int | None, items_per_s: float | None) -> float | None:
    """Seconds left at the given rate; None when it cannot be estimated.

    Example:
        >>> eta(1250, 5000, 25.0)
        150.0
        >>> eta(10, None, 1.0) is None
        True
    """
    if total is None or items_per_s is None or items_per_s <= 0:
        return None
    try:
        return max(0, total - current) / items_per_s
    except OverflowError:  # a count beyond float range
        return math.inf


def outcome_label(key: str) -> str:
    """Human label of an outcome key: ``"rows_merged"`` -> ``"Rows merged"``.

    Example:
        >>> outcome_label("updates")
        'Updates'
    """
    words = key.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else key


def ordered_outcomes(
    recorded: Mapping[str, int],
    log_counts: Mapping[str, int],
) -> dict[str, int]:
    """Merge recorded outcomes with log counts in summary order.

    ``errors`` and ``warnings`` default to the number of ``error()`` and
    ``warning()`` calls unless the job recorded the key itself. Standard keys
    with a zero count are left out; custom keys keep first-recorded order.

    Example:
        >>> ordered_outcomes({"skipped": 2, "updates": 5}, {"warning": 2})
        {'updates': 5, 'skipped': 2, 'warnings': 2}
    """
    merged: dict[str, int] = {}
    if not recorded:  # most small runs: only the log counts can add anything
        errors = log_counts.get(semconv.LEVEL_ERROR, 0)
        if errors:
            merged[semconv.OUTCOME_ERRORS] = errors
        warnings = log_counts.get(semconv.LEVEL_WARNING, 0)
        if warnings:
            merged[semconv.OUTCOME_WARNINGS] = warnings
        return merged
    for key in LEADING_OUTCOMES:
        if recorded.get(key):
            merged[key] = recorded[key]
    for key, value in recorded.items():
        if key not in STANDARD_OUTCOMES:
            merged[key] = value
    for key, level in (
        (semconv.OUTCOME_ERRORS, semconv.LEVEL_ERROR),
        (semconv.OUTCOME_WARNINGS, semconv.LEVEL_WARNING),
    ):
        value = recorded[key] if key in recorded else log_counts.get(level, 0)
        if value:
            merged[key] = value
    return merged


RESULT_PREFIX = {
    semconv.RESULT_SUCCESS: "Completed in",
    semconv.RESULT_FAILURE: "Failed after",
    semconv.RESULT_ERROR: "Errored after",
    semconv.RESULT_TIMEOUT: "Timed out after",
    semconv.RESULT_CANCELLATION: "Cancelled after",
    semconv.RESULT_SKIP: "Skipped after",
}


def summary_line(
    result: str,
    duration_s: float,
    processed: int,
    entity_type: str | None,
    outcomes: Iterable[tuple[str, int]],
) -> str:
    """Render the final summary line.

    Example:
        >>> summary_line("success", 154, 5000, None, [("updates", 235750), ("errors", 2)])
        'Completed in 2m 34s | Processed: 5,000 entities | Updates: 235,750 | Errors: 2'
    """
    parts = [
        f"{RESULT_PREFIX.get(result, 'Finished in')} {format_duration(duration_s)}",
        f"Processed: {format_count(processed)} {entity_type or DEFAULT_ENTITY_TYPE}",
    ]
    parts.extend(f"{outcome_label(k)}: {format_count(v)}" for k, v in outcomes)
    return " | ".join(parts)
