"""Outcome counts as span attributes, kept within the span's attribute limit.

The SDK keeps at most ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` (default 128) attributes per
span and, beyond that, silently evicts the *oldest*: on a run span those are the
job's own ``attributes=``, ``job.name`` and ``job.run.id``. So outcome attributes
get only the room the span has left, decided once per run: standard keys always
fit, custom keys in first-recorded order while there is room, the rest summed into
``job.outcomes.other`` (the summary and the metric keep every key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from . import _format, _sanitize, semconv

#: The SDK's default span attribute count limit (OpenTelemetry specification).
DEFAULT_SPAN_ATTRIBUTE_LIMIT = 128
#: Attributes a run sets on its span when it ends besides outcomes (job.result, job.entity.type,
#: job.progress.*, error.type, process.exit.code, job.events.dropped, job.logs.<level>), with room to spare.
RESERVED_RUN_END_ATTRIBUTES = 16
#: Slots an outcome selection always needs: every standard key plus ``other``.
_FIXED = (*_format.LEADING_OUTCOMES, *_format.TRAILING_OUTCOMES)
_MIN_ROOM = len(_FIXED) + 1
_MISSING = object()


def span_attribute_limit(span: object) -> int | None:
    """The attribute count limit of ``span``'s tracer; None when unlimited.

    Read from the SDK span's limits when it has them, else from the environment
    variables the SDK reads (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``, then
    ``OTEL_ATTRIBUTE_COUNT_LIMIT``), else 128.

    Example:
        >>> from types import SimpleNamespace
        >>> span_attribute_limit(SimpleNamespace(_limits=SimpleNamespace(max_span_attributes=64)))
        64
    """
    limits = getattr(span, "_limits", None)
    value = getattr(limits, "max_span_attributes", _MISSING)
    if value is _MISSING:
        for name in ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"):
            raw = os.environ.get(name, "").strip()
            if raw:
                try:
                    return max(0, int(raw))
                except ValueError:
                    break
        return DEFAULT_SPAN_ATTRIBUTE_LIMIT
    if value is None:
        return None
    return max(0, value) if isinstance(value, int) else DEFAULT_SPAN_ATTRIBUTE_LIMIT


def room(limit: int | None, used: int) -> int | None:
    """Attributes left for outcomes on a span of ``limit`` that holds (or will hold) ``used`` others."""
    return None if limit is None else max(0, limit - used)


def outcome_attributes(recorded: Mapping[str, int], space: int | None) -> tuple[dict[str, int], int]:
    """``job.outcomes.<key>`` attributes for ``recorded``, at most ``space`` of them.

    Returns the attributes and how many custom keys were summed into ``other``.
    The selection only grows as keys are added (standard keys and ``other`` have
    reserved slots; custom keys keep first-recorded order), so setting it again on
    the same span never pushes an earlier attribute out.

    Example:
        >>> outcome_attributes({"rows_merged": 2, "errors": 1}, None)
        ({'job.outcomes.errors': 1, 'job.outcomes.rows_merged': 2}, 0)
        >>> outcome_attributes({"a": 1, "b": 2, "c": 3}, 8)
        ({'job.outcomes.a': 1, 'job.outcomes.other': 5}, 2)
    """
    if not recorded:
        return {}, 0
    prefix = semconv.JOB_OUTCOMES_PREFIX
    standard = [key for key in _FIXED if key in recorded]
    custom = [key for key in recorded if key not in _format.STANDARD_OUTCOMES and key != semconv.OUTCOME_OTHER]
    capacity = len(custom) if space is None else max(0, space - _MIN_ROOM)
    kept, rest = custom[:capacity], custom[capacity:]
    attrs = {prefix + key: _sanitize.clamp_int(recorded[key]) for key in (*standard, *kept)}
    if rest or semconv.OUTCOME_OTHER in recorded:
        other = recorded.get(semconv.OUTCOME_OTHER, 0) + sum(recorded[key] for key in rest)
        attrs[prefix + semconv.OUTCOME_OTHER] = _sanitize.clamp_int(other)
    if space is not None and len(attrs) > space:  # a span with almost no room: standard keys first
        attrs = dict(list(attrs.items())[:space])
    return attrs, len(rest)
