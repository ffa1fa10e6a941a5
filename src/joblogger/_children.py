"""Child runs: the carrier a child starts from, and the parent's roll-up of its children.

A run starts child runs three ways (docs/children.md):

- in this process, ``job.child(name)``: the child is a ``JobLogger`` whose span is a
  child of the parent's run span; its progress and outcomes roll up into the
  parent live (the parent reads the child's tally when asked), and its result is
  counted when it ends;
- in a pool, ``job.map(fn, items)`` (``_map``): thread children are in-process
  children; process children start from a carrier and send a :class:`ChildReport`
  back with their results;
- anywhere else, from ``job.child_carrier()`` (a short JSON string: W3C trace
  context plus the parent's run id and job name) passed as ``JobLogger(parent=...)``,
  the ``JOBLOGGER_PARENT`` environment variable or a task header. Such a child
  knows its parent; the parent knows nothing of it unless its report comes back
  (``job.add_child_report()``). Prometheus knows every child that exported.

Nothing here is on the per-item path: the parent reads its children when its
progress or summary is read (the gauges once per collection), never when a
child counts.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import _fork, _format, _sanitize, semconv
from ._state import MAX_OUTCOME_KEYS

if TYPE_CHECKING:
    from ._logger import JobLogger

__all__ = ["ChildReport", "Children", "ParentRef", "decode", "encode", "resolve_parent"]

_PROPAGATOR = TraceContextTextMapPropagator()
#: Longest carrier accepted (a W3C traceparent is 55 characters; tracestate at most 512 by the spec).
_MAX_CARRIER_CHARS = 2048
#: How much of a bad carrier its warning shows.
_SHOWN_CHARS = 200
#: How the summary and span attributes group children's results.
STATE_OF_RESULT = {
    semconv.RESULT_SUCCESS: "ok",
    semconv.RESULT_SKIP: "ok",
    semconv.RESULT_FAILURE: "failed",
    semconv.RESULT_ERROR: "failed",
    semconv.RESULT_TIMEOUT: "failed",
    semconv.RESULT_CANCELLATION: "cancelled",
}
STATES = ("ok", "failed", "cancelled", "running")


@dataclass(frozen=True, slots=True)
class ParentRef:
    """What a child knows of its parent: its run id, job name and trace context."""

    run_id: str
    job: str
    traceparent: str | None = None
    tracestate: str | None = None
    link: bool = False


@dataclass(frozen=True, slots=True)
class ChildReport:
    """What a child in another process sends back: small, picklable, JSON-able.

    ``processed`` is every entity the child counted (all its phases), ``outcomes`` what
    it recorded with ``add_outcome`` (and its own children's), ``result`` one of
    :data:`joblogger.semconv.RESULTS`.
    """

    run_id: str
    job: str
    result: str
    processed: int = 0
    outcomes: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ChildReport(**d)`` reads it back)."""
        return {
            "run_id": self.run_id,
            "job": self.job,
            "result": self.result,
            "processed": self.processed,
            "outcomes": dict(self.outcomes),
        }


def encode(job: JobLogger, *, link: bool = False) -> str:
    """The carrier of ``job``'s run: compact JSON of its trace context, run id and job name."""
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers, context=job._run.ctx)
    body: dict[str, object] = {"run_id": job.job_run_id, "job": job.job_name}
    if "traceparent" in headers:
        body["traceparent"] = headers["traceparent"]
    if headers.get("tracestate"):
        body["tracestate"] = headers["tracestate"]
    if link:
        body["link"] = True
    return json.dumps(body, separators=(",", ":"))


def decode(carrier: object, warn: Callable[..., None]) -> ParentRef | None:
    """Read a carrier (the JSON string or its dict); None, with one warning, when it is not one."""
    try:
        body: object = carrier
        if isinstance(carrier, bytes):
            body = carrier.decode("utf-8")
        if isinstance(body, str):
            if len(body) > _MAX_CARRIER_CHARS:
                raise ValueError(f"longer than {_MAX_CARRIER_CHARS} characters")
            body = json.loads(body)
        if not isinstance(body, Mapping):
            raise TypeError(f"expected the string job.child_carrier() returned, got {type(body).__name__}")
        run_id, job = body.get("run_id"), body.get("job")
        if not isinstance(run_id, str) or not isinstance(job, str):
            raise ValueError("no run_id and job")
        parent = body.get("traceparent")
        state = body.get("tracestate")
        fields = (run_id, job, parent, state)
        if sum(len(f) for f in fields if isinstance(f, str)) > _MAX_CARRIER_CHARS:  # a dict skips the check above
            raise ValueError(f"longer than {_MAX_CARRIER_CHARS} characters")
        return ParentRef(
            run_id,
            job,
            parent if isinstance(parent, str) else None,
            state if isinstance(state, str) else None,
            body.get("link") is True,
        )
    except Exception as exc:  # noqa: BLE001 - bad input never raises into a job
        shown = _sanitize.truncate(_safe_repr(carrier), _SHOWN_CHARS)
        warn("parent-carrier", "parent=%s is not a joblogger carrier (%s); the run has no parent", shown, exc)
        return None


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not break the run
        return f"<unprintable {type(value).__name__}>"


def _span_context(ref: ParentRef) -> trace.SpanContext | None:
    if ref.traceparent is None:
        return None
    headers = {"traceparent": ref.traceparent}
    if ref.tracestate:
        headers["tracestate"] = ref.tracestate
    context = trace.get_current_span(_PROPAGATOR.extract(headers)).get_span_context()
    return context if context.is_valid else None


def resolve_parent(
    parent: object, warn: Callable[..., None]
) -> tuple[otel_context.Context | None, list[Link], dict[str, str], JobLogger | None]:
    """Where a run with ``parent`` starts: (context, links, span attributes, in-process parent).

    - a ``JobLogger``: a child span of its run span, rolled up into it live;
    - a carrier: a child span of the carrier's run span when this thread has no current
      span, or the current span is in the carrier's trace (a framework span between
      them, e.g. Celery's); a new span linked to it when the current span is in another
      trace or the carrier asks for a link (``child_carrier(link=True)``);
    - None: the ``JOBLOGGER_PARENT`` variable's carrier if set and this thread has no
      current span (a process's first run), else no parent.
    """
    try:
        return _resolve(parent, warn)
    except Exception as exc:  # noqa: BLE001 - a run starts whatever its parent argument holds
        warn("parent-internal", "internal error reading parent=%r (%r); the run has no parent", parent, exc)
        return None, [], {}, None


def _resolve(
    parent: object, warn: Callable[..., None]
) -> tuple[otel_context.Context | None, list[Link], dict[str, str], JobLogger | None]:
    if parent is None:
        # The common case (no parent argument, no JOBLOGGER_PARENT) returns here, with no
        # current-span lookup and no import: a small run's fixed cost (BENCHMARKS.md).
        env = os.environ.get(semconv.ENV_PARENT)
        if not env:
            return None, [], {}, None
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            return None, [], {}, None
        parent = env
    else:
        current = trace.get_current_span().get_span_context()
    from ._logger import JobLogger

    if isinstance(parent, JobLogger):
        attrs = {semconv.JOB_PARENT_RUN_ID: parent.job_run_id, semconv.JOB_PARENT_NAME: parent.job_name}
        return parent._run.ctx, [], attrs, parent
    ref = decode(parent, warn)
    if ref is None:
        return None, [], {}, None
    attrs = {semconv.JOB_PARENT_RUN_ID: ref.run_id, semconv.JOB_PARENT_NAME: ref.job}
    span_context = _span_context(ref)
    if span_context is None:
        return None, [], attrs, None
    if ref.link:
        return otel_context.Context(), [Link(span_context)], attrs, None
    if not current.is_valid:
        return trace.set_span_in_context(trace.NonRecordingSpan(span_context)), [], attrs, None
    if current.trace_id == span_context.trace_id:
        return None, [], attrs, None
    return None, [Link(span_context)], attrs, None


class Children:
    """A parent run's children: the live ones (read when asked) and the totals of those that ended."""

    __slots__ = ("__weakref__", "done_outcomes", "done_processed", "frozen_running", "live", "lock", "states")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[int, JobLogger] = {}
        self.done_processed = 0
        self.done_outcomes: dict[str, int] = {}
        self.states = dict.fromkeys(STATES[:3], 0)
        #: Set when the parent ends: the children still running then (the board no longer changes).
        self.frozen_running: int | None = None
        _CHILDREN.add(self)

    def started(self, child: JobLogger) -> None:
        with self.lock:
            if self.frozen_running is None:
                self.live[id(child)] = child

    def freeze(self) -> None:
        """The parent ends: live children's counts now are kept, their later counts and end are not."""
        with self.lock:
            if self.frozen_running is not None:
                return
            live = list(self.live.values())
        processed = [child.processed_total for child in live]
        outcomes = [child._recorded_outcomes() for child in live]
        with self.lock:
            if self.frozen_running is not None:
                return
            self.done_processed += sum(processed)
            for tally in outcomes:
                self._merge(tally)
            self.frozen_running = len(self.live)
            self.live.clear()

    def ended(self, child: JobLogger, result: str) -> None:
        """A live child ended: its final counts move into the totals (once)."""
        processed = child.processed_total
        outcomes = child._recorded_outcomes()
        with self.lock:
            if self.live.pop(id(child), None) is None:
                return
            self._add(result, processed, outcomes)

    def absorb(self, report: ChildReport) -> None:
        """A child of another process reported back."""
        with self.lock:
            if self.frozen_running is None:
                self._add(report.result, report.processed, report.outcomes)

    def _add(self, result: str, processed: int, outcomes: Mapping[str, int]) -> None:
        state = STATE_OF_RESULT.get(result, "failed")
        self.states[state] += 1
        self.done_processed += max(0, int(processed))
        self._merge(outcomes)

    def _merge(self, outcomes: Mapping[str, int]) -> None:
        merged = self.done_outcomes
        for key, value in outcomes.items():
            name = str(key)
            if name not in merged and len(merged) >= MAX_OUTCOME_KEYS + len(_format.STANDARD_OUTCOMES):
                name = semconv.OUTCOME_OTHER
            merged[name] = merged.get(name, 0) + max(0, int(value))

    def processed(self) -> int:
        """Entities the children processed: ended ones' totals plus live ones' counts now."""
        with self.lock:
            live = list(self.live.values())
            total = self.done_processed
        return total + sum(child.processed_total for child in live)

    def outcomes(self) -> dict[str, int]:
        """Outcomes the children recorded (ended and live)."""
        with self.lock:
            live = list(self.live.values())
            totals = dict(self.done_outcomes)
        for child in live:
            for key, value in child._recorded_outcomes().items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def counts(self) -> dict[str, int]:
        """Children by state: ``ok``, ``failed``, ``cancelled`` (ended) and ``running``."""
        with self.lock:
            running = len(self.live) if self.frozen_running is None else self.frozen_running
            return {**self.states, "running": running}


def children_text(counts: Mapping[str, int]) -> str:
    """The summary part, e.g. ``"Children: 48 ok, 2 failed"`` (states with zero children left out)."""
    parts = [f"{_format.format_count(counts[s])} {s}" for s in STATES if counts.get(s)]
    return "Children: " + ", ".join(parts) if parts else ""


def merge_outcomes(own: dict[str, int], children: Mapping[str, int]) -> dict[str, int]:
    """The run's own outcomes plus its children's, own keys first."""
    for key, value in children.items():
        own[key] = own.get(key, 0) + value
    return own


#: Every Children board of this process, so a forked child can replace their locks.
_CHILDREN: weakref.WeakSet[Children] = weakref.WeakSet()


def _new_locks_after_fork() -> None:
    for board in list(_CHILDREN):
        board.lock = threading.Lock()


_fork.register(_new_locks_after_fork)
