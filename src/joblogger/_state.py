"""State every part of a JobLogger shares, and the guard that keeps internal failures out of the job.

:class:`RunState` only declares the attributes (``JobLogger`` owns the slots);
the mixins in ``_progress``, ``_stages``, ``_logcalls`` and ``_ending`` each
implement one concern on top of it.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import metrics, trace

from . import _outcome_attrs, _sanitize, semconv

if TYPE_CHECKING:
    from ._children import Children
    from ._metrics import Hub
    from ._ratelimit import TokenBucket
    from ._schedule import Schedule
    from ._spans import SpanSlot
    from ._summary import Summary
    from ._tally import Tally, Ticks

_F = TypeVar("_F", bound=Callable[..., Any])

#: Distinct custom outcome keys per run, and distinct custom outcome labels per job name on the
#: metrics of one process, before new ones fold into "other" (standard keys never fold).
MAX_OUTCOME_KEYS = 100
#: Distinct stage names per job on the metrics of one process before new ones fold into "other".
MAX_STAGES = 100
DEFAULT_EVENT_BUDGET = 128
#: ``Summary.result`` of a forked child's copy of a run that its parent started (never exported).
RESULT_DETACHED = "detached"

pylog = logging.getLogger("joblogger")
pylog.addHandler(logging.NullHandler())


class RunState:
    """Attributes of one run, shared by the JobLogger mixins."""

    __slots__ = (
        "_children",
        "_clock",
        "_context_token",
        "_debug_events",
        "_dropped",
        "_ended_at",
        "_entity_type",
        "_event_budget",
        "_gauge_attrs",
        "_hub",
        "_job_name",
        "_limit_specs",
        "_limits",
        "_lock",
        "_message",
        "_meter_provider",
        "_outcome_labels",
        "_outcome_room",
        "_outcome_ticks",
        "_outer_exc",
        "_parent",
        "_phase_adjust",
        "_phase_base",
        "_rate_anchor",
        "_run",
        "_run_id",
        "_run_id_on_metrics",
        "_schedule",
        "_secret_keys",
        "_snapshot_attr_limit",
        "_snapshots",
        "_stage",
        "_stage_label",
        "_stage_name",
        "_started",
        "_summary",
        "_tally",
        "_ticks",
        "_total",
        "_tracer",
        "_tracer_provider",
        "_wall_started",
        "_warn",
    )

    #: The run's children (``job.child()``, ``job.map()``, reports), made at the first one.
    _children: Children | None
    _clock: Callable[[], float]
    _context_token: object | None
    _debug_events: bool
    _dropped: dict[str, int]
    _ended_at: float | None
    _entity_type: str | None
    _event_budget: int
    _gauge_attrs: dict[str, Any] | None
    _hub: Hub
    _job_name: str
    _limit_specs: Mapping[str, tuple[float, float]]
    _limits: dict[str, TokenBucket]
    _lock: threading.RLock
    _message: str | None
    _meter_provider: metrics.MeterProvider
    _outcome_labels: dict[object, str]
    _outcome_ticks: dict[str, Ticks]
    _outer_exc: BaseException | None
    #: The in-process parent run this child rolls up into (``job.child()``), else None.
    _parent: Any
    _phase_adjust: int
    _phase_base: int
    _rate_anchor: tuple[float, int]
    _run: SpanSlot
    _run_id: str
    _run_id_on_metrics: bool
    #: The run's Schedule (its own or joblogger run's default), None for an unscheduled run.
    _schedule: Schedule | None
    #: Unix time of the start of a scheduled run (0.0 otherwise).
    _wall_started: float
    _outcome_room: int | None
    _secret_keys: tuple[str, ...]
    _snapshot_attr_limit: int | None
    _snapshots: bool
    _stage: SpanSlot | None
    _stage_label: str
    _stage_name: str | None
    _started: float
    _summary: Summary | None
    _tally: Tally
    _ticks: Any
    _total: int | None
    _tracer: trace.Tracer
    _tracer_provider: trace.TracerProvider
    _warn: _sanitize.Warner

    if TYPE_CHECKING:
        # Implemented by the mixins; declared for the type checker only.
        @property
        def current(self) -> int: ...
        @property
        def eta_seconds(self) -> float | None: ...
        @property
        def outcomes(self) -> Mapping[str, int]: ...
        @property
        def started_at(self) -> float: ...
        def _recorded_outcomes(self) -> dict[str, int]: ...
        def _close_stage(self, slot: SpanSlot, label: str, now: float) -> None: ...
        def _close_stage_in_section(self, slot: SpanSlot, label: str, now: float) -> None: ...
        def _refresh_gauge_attrs(self) -> None: ...
        def _children_processed(self) -> int: ...
        @property
        def processed_total(self) -> int: ...
        def set_stage(self, stage: str, message: str | None = None) -> None: ...
        def _gauge_points(self) -> tuple[dict[str, Any], int, int | None, float | None] | None: ...
        def _log(
            self,
            level: str,
            message: object,
            context: Mapping[str, Any] | None,
            fields: Mapping[str, Any] | None,
            *,
            exc_info: object = None,
            stacklevel: object = 1,
            site: tuple[str, int, str] | None = None,
        ) -> None: ...
        def _emit(
            self,
            level: str,
            levelno: int,
            text: str,
            attrs: dict[str, Any],
            to_stdlib: bool,
            *,
            reserved: bool = False,
            event: bool = True,
            in_section: bool = False,
            exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None,
            skip: int = 0,
            site: tuple[str, int, str] | None = None,
        ) -> None: ...
        def _record_only(self, level: str, text: str) -> None: ...

    def _outcome_attributes(self, space: int | None, recorded: dict[str, int] | None = None) -> dict[str, int]:
        """``job.outcomes.<key>`` span attributes of ``recorded`` (default: the recorded outcomes) within ``space``."""
        if recorded is None:
            recorded = self._recorded_outcomes()
        attrs, folded = _outcome_attrs.outcome_attributes(recorded, space)
        if folded:
            self._warn(
                "outcome-span-cap",
                "%d outcome keys do not fit the span attribute limit; spans sum them into %r "
                "(the summary and the job.outcomes metric keep them)",
                folded,
                semconv.OUTCOME_OTHER,
            )
        return attrs

    def _ended_call(self) -> bool:
        summary = self._summary
        if summary is None:
            return False
        if summary.result == RESULT_DETACHED:
            self._warn(
                "detached",
                "the run was started by another process before this one forked; it ends there, call ignored",
            )
        else:
            self._warn("ended", "the run has ended (log_summary was called); call ignored")
        return True

    def _detach_after_fork(self) -> None:
        """Called in a forked child for each run that was active at the fork.

        The run belongs to the process that started it: only that process ends its
        span, counts it and exports it. This copy never does; every later call on it
        is ignored with one warning, and ``log_summary()`` returns a summary whose
        ``result`` is ``"detached"``. Nothing here may block: another thread of the
        parent may have held the run's locks at the fork, so they are replaced.
        """
        from ._summary import Summary

        self._lock = threading.RLock()
        self._tally.flush_lock = threading.Lock()
        self._tally.ended = True
        self._ticks = Closed(self)
        self._outcome_ticks = {}
        self._stage = None
        self._ended_at = self._clock()
        current = self.current
        line = f"Detached: run started by process {os.getppid()}, which ends and reports it"
        self._summary = Summary(line, RESULT_DETACHED, current, self._total, self._entity_type, {}, 0.0)

    def _internal_error(self, where: str, exc: Exception) -> None:
        try:
            self._warn(f"internal-{where}", "internal error in %s ignored: %r", where, exc)
        except Exception:  # noqa: BLE001, S110 - logging itself failed; nothing left to do
            pass


class Closed:
    """Stands in for the progress counter once the run has ended: warns once, counts nothing."""

    __slots__ = ("_owner",)

    def __init__(self, owner: RunState) -> None:
        # A weak reference: a strong one made every ended run a reference cycle (run -> Closed -> run),
        # freed only by the cyclic garbage collector instead of when its last reference goes.
        self._owner = weakref.ref(owner)

    def __next__(self) -> int:
        owner = self._owner()
        if owner is not None:
            owner._ended_call()
        return 0


def guarded(method: _F) -> _F:
    """Turn an internal failure of ``method`` into one logged error and a no-op."""

    @functools.wraps(method)
    def wrapper(self: RunState, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - never raise into the job
            self._internal_error(method.__name__, exc)
            return None

    return wrapper  # type: ignore[return-value]


def quietly(flush: Callable[..., object], timeout_millis: int) -> None:
    """Run a provider's force_flush on a helper thread; its failures are logged, never raised."""
    try:
        flush(timeout_millis=timeout_millis)
    except Exception as exc:  # noqa: BLE001
        pylog.warning("joblogger: save_outcome flush failed: %r", exc)
