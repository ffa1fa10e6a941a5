"""How a tqdm bar reports into a run (``joblogger.tqdm``): per-bar state, the run's bar groups, the sync.

Nothing here runs per item. tqdm itself counts (``update()``, its iterator); a
bar reports to its run only where tqdm redraws (``refresh()``, at most every
``mininterval``), at ``reset()`` and at ``close()``, as the difference since
the last report.

The model (docs/integrations.md, "tqdm"):

- A bar opened in a run while no bar of that run is open in the same context
  (thread or asyncio task) is a *top* bar. The first top bar of a run to open
  starts a *group*: its ``desc`` becomes the stage (unless it is the stage
  already) and a new phase starts with its total. Top bars opened while the
  group is open (other threads' bars on a shared run) join it: the phase's
  total is the sum of the group's totals (unknown if one is), its count the sum
  of the bars' counts. A later ``set_description`` is the run's message.
- A bar opened while a top bar of the same run is open in the same context is a
  *child* (an inner loop): it leaves the stage and the counts alone and shows as
  the run's message (``"batches: 120/500"``), cleared when it closes.
- A count going backwards (``bar.n = 0``, ``update(-k)``) moves the phase's count
  back for display; ``job.entities.processed`` never un-counts. ``reset()`` of the
  only open top bar starts a new phase.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import io
import math
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from . import _format, _sanitize
from ._current import current_job
from ._logger import JobLogger

__all__ = ["ATTR", "BarState", "attach", "finish", "prepare", "resetting", "resolve", "sync"]

#: The attribute of a tqdm bar that holds its :class:`BarState`.
ATTR = "_joblogger_bar"
#: Class attribute of bar classes that report by themselves (the drop-in): the patch leaves them alone.
BRIDGED = "_joblogger_bridged"
_DEFAULT_UNIT = "it"

warn = _sanitize.Warner("joblogger.tqdm: ")


class BarState:
    """What the bridge remembers of one bar: its run, its role, and what it reported last."""

    __slots__ = ("closed", "count", "desc", "job", "lock", "message", "resetting", "scale", "stage", "top", "total")

    def __init__(self, job: JobLogger, top: bool, *, scale: float, count: int, total: int | None, desc: str) -> None:
        self.job = job
        self.top = top
        self.scale = scale
        self.count = count
        self.total = total
        self.desc = desc
        self.stage = _stage_name(desc)
        self.message: str | None = None
        self.lock = threading.Lock()
        self.closed = False
        self.resetting = False


class _Group:
    """The top bars of one run open now, and the total of every top bar since the first of them opened."""

    __slots__ = ("lock", "open", "totals")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: set[BarState] = set()
        self.totals: dict[BarState, int | None] = {}

    def total(self) -> int | None:
        values = list(self.totals.values())
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)


_GROUPS: weakref.WeakKeyDictionary[JobLogger, _Group] = weakref.WeakKeyDictionary()
_GROUPS_LOCK = threading.Lock()
#: The bars open in this context (thread or asyncio task), outermost first.
_OPEN: contextvars.ContextVar[tuple[BarState, ...]] = contextvars.ContextVar("joblogger_tqdm_open", default=())


def _group_of(job: JobLogger) -> _Group:
    with _GROUPS_LOCK:
        group = _GROUPS.get(job)
        if group is None:
            group = _GROUPS[job] = _Group()
        return group


# --- arguments -------------------------------------------------------------------------------


def resolve(job: object) -> JobLogger | None:
    """The run a new bar reports to: ``job=`` if given, else the current run; None outside a run."""
    if job is not None and not isinstance(job, JobLogger):
        warn("job-type", "job= should be a JobLogger, got %s; using the current run", type(job).__name__)
        job = None
    run = current_job() if job is None else job
    if run is None or run.ended:
        return None
    return run


class _Nowhere(io.TextIOBase):
    """Where a bar that must count without drawing draws."""

    encoding = "utf-8"

    def write(self, s: str) -> int:
        return len(s)

    def isatty(self) -> bool:
        return False


NOWHERE = _Nowhere()
_PARAMS: list[tuple[str, ...]] = []


def _param_names() -> tuple[str, ...]:
    """Positional parameter names of ``tqdm.std.tqdm.__init__`` after ``self`` (read once)."""
    if not _PARAMS:
        from tqdm import std

        init = std.tqdm.__dict__["__init__"]
        init = getattr(init, "func", init)  # a partialmethod (tqdm's TQDM_* environment overrides)
        params = inspect.signature(init).parameters.values()
        _PARAMS.append(tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)[1:])
    return _PARAMS[0]


def _view_drawing() -> bool:
    console = sys.modules.get("joblogger.console")
    return bool(console is not None and console.drawing())


def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """tqdm's ``__init__`` arguments for a bar in a run.

    A bar tqdm would not draw (``disable=True``, or ``disable=None`` off a terminal)
    would not count either, so it counts and draws nowhere; so does every bar while
    joblogger's terminal view draws the run. Other bars draw as tqdm draws them.
    """
    try:
        if len(args) > 1:
            extra = dict(zip(_param_names(), args[1:], strict=False))
            if extra.keys() & kwargs.keys():  # tqdm's own TypeError, untouched
                return args, kwargs
            kwargs = {**extra, **kwargs}
            args = args[:1]
        file = kwargs.get("file")
        if file is None:
            file = sys.stderr
        disable = kwargs.get("disable", False)
        hidden = bool(disable) or (disable is None and hasattr(file, "isatty") and not file.isatty())
        if hidden or _view_drawing():
            kwargs = {**kwargs, "disable": False, "file": NOWHERE}
    except Exception as exc:  # noqa: BLE001 - the bar goes on as tqdm would have made it
        warn("prepare", "could not read a tqdm bar's arguments: %r", exc)
    return args, kwargs


# --- values ----------------------------------------------------------------------------------


def _scale_of(bar: Any) -> float:
    """tqdm's numeric ``unit_scale`` (it multiplies ``n`` and ``total`` for display), else 1."""
    scale = getattr(bar, "unit_scale", False)
    if isinstance(scale, bool) or not scale or scale == 1:
        return 1.0
    try:
        value = float(scale)
    except (TypeError, ValueError):
        return 1.0
    return value if math.isfinite(value) and value > 0 else 1.0


def _count(value: object, scale: float) -> int | None:
    """A bar's ``n`` or ``total`` as a whole count (scaled, floored, at least 0); None if unknown."""
    if value is None:
        return None
    if type(value) is int and scale == 1.0:
        return value if value > 0 else 0
    number = float(value) * scale  # type: ignore[arg-type]
    if not math.isfinite(number):
        return None
    return max(int(number), 0)


def _read(value: object, scale: float, fallback: int | None) -> int | None:
    """:func:`_count`, or ``fallback`` (with one warning) when the bar holds something that is not a number."""
    try:
        return _count(value, scale)
    except (TypeError, ValueError, OverflowError):
        warn("value", "a tqdm bar's n or total is not a number (%r); keeping the last one", value)
        return fallback


def _stage_name(desc: object) -> str:
    text = str(desc or "").strip()
    return text[:-1].rstrip() if text.endswith(":") else text


def _child_text(desc: str, n: int, total: int | None) -> str:
    counted = _format.format_count(n) if total is None else f"{_format.format_count(n)}/{_format.format_count(total)}"
    name = _stage_name(desc)
    return f"{name}: {counted}" if name else counted


# --- the bar's life --------------------------------------------------------------------------


def attach(bar: Any, job: JobLogger) -> BarState | None:
    """Make ``bar`` (just built by tqdm) report to ``job``; returns its state (None if it could not)."""
    try:
        if getattr(bar, ATTR, None) is not None or job.ended:
            return None
        scale = _scale_of(bar)
        n = _count(bar.n, scale) or 0
        total = _count(bar.total, scale)
        desc = str(getattr(bar, "desc", "") or "")
        stack = tuple(s for s in _OPEN.get() if not s.closed)
        top = not any(s.job is job for s in stack)
        state = BarState(job, top, scale=scale, count=n, total=total, desc=desc)
        setattr(bar, ATTR, state)
        _OPEN.set((*stack, state))
        if not top:
            state.message = _child_text(desc, n, total)
            job._set_message(state.message)
            return state
        group = _group_of(job)
        with group.lock:  # the first top bar sets the stage and phase before a sibling can join
            first = not group.open
            group.open.add(state)
            if first:
                group.totals.clear()
            group.totals[state] = total
            if first:
                if state.stage and state.stage != job.stage:
                    job.set_stage(state.stage)
                job._begin_phase(total)
                unit = getattr(bar, "unit", _DEFAULT_UNIT)
                if total is not None and isinstance(unit, str) and unit.strip() and unit != _DEFAULT_UNIT:
                    job.set_total(total, unit)
            else:
                job._set_phase_total(group.total())
        if n:
            job._shift_phase(n)  # ``initial=``: where the bar starts, not work done in this run
        return state
    except Exception as exc:  # noqa: BLE001 - the bar goes on without the run
        warn("attach", "could not attach a tqdm bar to the run: %r; the bar goes on without it", exc)
        return None


def sync(bar: Any) -> None:
    """Report what ``bar`` counted since its last report (called where tqdm redraws)."""
    state: BarState | None = getattr(bar, ATTR, None)
    if state is None or state.closed or state.resetting:
        return
    try:
        _sync(bar, state)
    except Exception as exc:  # noqa: BLE001 - a bar's odd values never reach the job
        warn("sync", "could not report a tqdm bar's progress: %r", exc)


def _sync(bar: Any, state: BarState) -> None:
    job = state.job
    if job.ended:
        return
    n = _read(bar.n, state.scale, state.count)
    total = _read(bar.total, state.scale, state.total)
    desc = str(bar.desc or "")
    with state.lock:
        if n is None:  # NaN, infinite: keep the last count
            n = state.count
        delta, state.count = n - state.count, n
        total_changed, state.total = total != state.total, total
        desc_changed, state.desc = desc != state.desc, desc
    if not state.top:
        text = _child_text(desc, n, total)
        if text != state.message:
            state.message = text
            job._set_message(text)
        return
    if delta > 0:
        job.increment_progress(delta)
    elif delta < 0:
        job._shift_phase(delta)
    if total_changed:
        _retotal(state, total)
    if desc_changed:
        text = _stage_name(desc)
        message = None if text in ("", state.stage) else text
        if message is not None:
            job._set_message(message)
        elif state.message is not None:
            job._set_message(None, only_if=state.message)
        state.message = message


def _retotal(state: BarState, total: int | None) -> None:
    group = _group_of(state.job)
    with group.lock:
        if state not in group.totals:
            return
        group.totals[state] = total
        state.job._set_phase_total(group.total())


@contextlib.contextmanager
def resetting(bar: Any) -> Iterator[None]:
    """Around tqdm's ``reset()``: report the count so far, then start the bar's next pass."""
    state: BarState | None = getattr(bar, ATTR, None)
    if state is None or state.closed:
        yield
        return
    sync(bar)
    state.resetting = True
    try:
        yield
    finally:
        state.resetting = False
        try:
            _after_reset(bar, state)
        except Exception as exc:  # noqa: BLE001
            warn("reset", "could not report a tqdm bar's reset: %r", exc)


def _after_reset(bar: Any, state: BarState) -> None:
    job = state.job
    if job.ended:
        return
    total = _read(bar.total, state.scale, state.total)
    with state.lock:
        old, state.count = state.count, 0
        state.total = total
    if not state.top:
        sync(bar)
        return
    group = _group_of(job)
    with group.lock:
        if state not in group.totals:
            return
        group.totals[state] = total
        if group.open == {state}:
            job._begin_phase(group.total())
        else:
            job._shift_phase(-old)
            job._set_phase_total(group.total())
    sync(bar)  # a count set right after reset (tqdm's reset leaves n at 0)


def finish(bar: Any) -> BarState | None:
    """After tqdm's ``close()``: report the final count and leave the group; returns the state it closed."""
    state: BarState | None = getattr(bar, ATTR, None)
    if state is None or state.closed:
        return None
    try:
        if not state.resetting:
            _sync(bar, state)
    except Exception as exc:  # noqa: BLE001
        warn("sync", "could not report a tqdm bar's progress: %r", exc)
    state.closed = True
    try:
        stack = _OPEN.get()
        if state in stack:
            _OPEN.set(tuple(s for s in stack if s is not state))
        if not state.top:
            if state.message is not None and not state.job.ended:
                state.job._set_message(None, only_if=state.message)
            return state
        group = _group_of(state.job)
        with group.lock:
            group.open.discard(state)
            if not group.open:
                group.totals.clear()
    except Exception as exc:  # noqa: BLE001
        warn("close", "could not close a tqdm bar's report: %r", exc)
    return state
