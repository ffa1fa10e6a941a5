"""Signal safety: joblogger's end-of-run, final flush and telemetry calls are never cut short or deadlocked.

Python runs a signal handler in the main thread between two bytecodes of
whatever the main thread is doing. Two hazards follow:

- A handler that *raises* (``SystemExit`` for SIGTERM, ``KeyboardInterrupt`` for
  SIGINT) can stop ``JobLogger._end_run`` half-way (the run span is then never
  ended and never exported) or the exit-time flush (queued spans and logs lost).
- A handler that *calls joblogger* (an application's own SIGTERM handler calling
  ``job.warning()`` or ``log_summary()``) can land while the main thread is
  inside the OpenTelemetry SDK on the same span, whose lock is not re-entrant:
  the handler then waits for a lock its own thread holds, forever.

So joblogger marks two kinds of sections (main thread only; signal handlers
never run in other threads):

- :func:`critical`: ending a run, and the final shutdown. A signal handled by
  joblogger's own handlers (below) is *held* and raised when the section ends
  (ending a run) or dropped (the final flush: it is bounded, and it is the
  process's way out anyway).
- :func:`sdk`: around each call into the SDK. Signals are held as above, and a
  joblogger call made from a signal handler meanwhile (:func:`reentered`) is
  *deferred* (:func:`defer`) and runs as soon as the interrupted SDK call
  returns, on the same thread.

:func:`install` (``joblogger.otlp.configure()``, main thread) replaces only
handlers that are still Python's defaults: SIGTERM (``SIG_DFL``) by one raising
``SystemExit(143)`` and SIGINT (``default_int_handler``) by one raising
``KeyboardInterrupt`` like the default, both held inside the sections above.
:func:`restore` (``Telemetry.shutdown()``) puts the previous handlers back.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

from . import _fork
from ._results import SignalExit

__all__ = [
    "critical",
    "defer",
    "hold_application_handlers",
    "install",
    "installed",
    "reentered",
    "restore",
    "sdk",
]

#: signal number -> the handler it had before :func:`install`.
_previous: dict[int, Any] = {}
#: Sections the main thread is in, innermost last: the frame that entered each, and whether it is an SDK call.
#: A handler that raises at the very start of ``__exit__`` skips it, so an entry can outlive its frame;
#: :func:`_live_sections` drops such stale entries whenever they matter.
_sections: list[tuple[FrameType, bool]] = []
#: Signals that arrived inside a section, in order.
_held: list[int] = []
#: joblogger calls made from a signal handler during an SDK call.
_deferred: list[Callable[[], object]] = []
_drain_at_exit = [False]
#: Thread id of the main thread, the only one Python runs signal handlers in.
_main_ident = threading.main_thread().ident


def _after_fork_in_child() -> None:
    global _main_ident
    _main_ident = threading.main_thread().ident  # the forking thread is the child's main thread
    _sections.clear()
    _held.clear()
    _deferred.clear()


_fork.register(_after_fork_in_child)


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SignalExit(128 + signum)


def _live_sections(frame: FrameType | None) -> list[tuple[FrameType, bool]]:
    """The sections still open in the stack of ``frame`` (stale entries are removed)."""
    if _sections:
        stack = set()
        while frame is not None:
            stack.add(id(frame))
            frame = frame.f_back
        _sections[:] = [entry for entry in _sections if id(entry[0]) in stack]
    return _sections


def _drain() -> None:
    while _deferred and not any(is_sdk for _, is_sdk in _sections):
        _deferred.pop(0)()


def _handler(signum: int, frame: FrameType | None) -> None:
    """Raise at once or, inside a section, hold the signal until it ends."""
    if _live_sections(frame):
        if signum not in _held:
            _held.append(signum)
        return
    _raise_for(signum)


def install() -> bool:
    """Install the handlers where the defaults are in place (main thread only); whether SIGTERM is now ours."""
    if threading.current_thread() is not threading.main_thread():
        return False
    defaults = {signal.SIGTERM: (signal.SIG_DFL, None), signal.SIGINT: (signal.default_int_handler,)}
    for signum, wanted in defaults.items():
        current = signal.getsignal(signum)
        if current is _handler or not any(current is w for w in wanted):
            continue  # ours already, or the application handles it itself
        _previous[signum] = current
        signal.signal(signum, _handler)
    return signal.getsignal(signal.SIGTERM) is _handler


def sigterm_handler() -> Any:
    """The SIGTERM handler :func:`install` puts in place."""
    return _handler


def installed() -> bool:
    """Whether any of the handlers is installed."""
    return bool(_previous)


def restore() -> None:
    """Put back the handlers :func:`install` replaced (those still ours; main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_previous.items()):
        if signal.getsignal(signum) is _handler:
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        del _previous[signum]
    _held.clear()


def reentered() -> bool:
    """Whether this call comes from a signal handler that interrupted one of joblogger's SDK calls."""
    if not _sections or threading.get_ident() != _main_ident:
        return False
    frame: FrameType | None = sys._getframe(1)
    owners = {id(owner) for owner, is_sdk in _live_sections(frame) if is_sdk}
    if not owners:
        _drain()  # calls deferred by a handler whose section's exit was skipped
        return False
    # What the innermost SDK section's frame is running: the section's own __enter__ or __exit__
    # means no SDK call is under way (and a handler that raises there would skip the drain).
    callee = None
    while frame is not None and id(frame) not in owners:
        callee, frame = frame, frame.f_back
    return callee is None or callee.f_code not in _SECTION_CODES


def defer(call: Callable[[], object]) -> None:
    """Run ``call`` when the interrupted SDK call returns (see :func:`reentered`), at the latest at exit."""
    _deferred.append(call)
    if not _drain_at_exit[0]:
        _drain_at_exit[0] = True
        atexit.register(_drain)  # registered after configure(): runs before its shutdown


class _Section:
    """A context manager without per-use state (the thread decides), so one instance serves every use."""

    __slots__ = ("_deliver", "_sdk")

    def __init__(self, sdk: bool, deliver: bool) -> None:
        self._sdk = sdk
        self._deliver = deliver

    def __enter__(self) -> None:
        if threading.get_ident() == _main_ident:
            _sections.append((sys._getframe(1), self._sdk))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not _sections or threading.get_ident() != _main_ident:
            return
        caller = sys._getframe(1)
        if _sections[-1][0] is not caller:
            _live_sections(caller)  # drop entries whose exit was skipped
        if _sections and _sections[-1][0] is caller:
            _sections.pop()
        if _deferred:
            _drain()
        if not _sections and _held:
            held = _held[0]
            _held.clear()
            if self._deliver and signal.getsignal(held) is _handler:
                _raise_for(held)


_SECTION_CODES = frozenset((_Section.__enter__.__code__, _Section.__exit__.__code__))
_SDK = _Section(True, True)
_CRITICAL = _Section(False, True)
_CRITICAL_DROP = _Section(False, False)


def sdk() -> _Section:
    """Section around one call into the SDK: signals held, joblogger calls from signal handlers deferred."""
    return _SDK


def critical(*, deliver: bool = True) -> _Section:
    """Section that must not be cut short: held signals are raised at its end, or dropped (``deliver=False``)."""
    return _CRITICAL if deliver else _CRITICAL_DROP


@contextmanager
def hold_application_handlers(*, at_exit: bool = False) -> Iterator[None]:
    """Around the final flush: an application's own SIGTERM/SIGINT handler runs after it, not inside it.

    joblogger's handlers are held by :func:`critical`; a handler the application
    installed would run in the middle of the providers' shutdown, and one that leaves
    with ``sys.exit()`` (the usual way) cut it short: what was still queued (the last
    run's span, every log record) was lost. Here such a handler is swapped for one that
    notes the signal; it is put back afterwards and each noted signal is raised again,
    so the application's handler runs once the flush is over (main thread only; the
    flush is bounded, see ``Telemetry.shutdown``). ``at_exit``: the interpreter is
    already exiting (``atexit``), so the handler is called directly and a ``SystemExit``
    or ``KeyboardInterrupt`` it raises, which could change nothing then, is not printed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if signum not in held:
            held.append(signum)

    swapped: dict[int, Any] = {}
    for app_signal in (signal.SIGTERM, signal.SIGINT):
        current = signal.getsignal(app_signal)
        if callable(current) and current is not _handler and current is not signal.default_int_handler:
            swapped[app_signal] = current
            signal.signal(app_signal, hold)
    try:
        yield
    finally:
        for signum, handler in swapped.items():
            if signal.getsignal(signum) is hold:
                signal.signal(signum, handler)
        for signum in held:
            if not at_exit:
                signal.raise_signal(signum)  # the application's handler runs now
                continue
            try:
                swapped[signum](signum, sys._getframe())
            except (SystemExit, KeyboardInterrupt):
                pass
