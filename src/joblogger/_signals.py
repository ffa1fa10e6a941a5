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

import os
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["critical", "defer", "install", "installed", "reentered", "restore", "sdk"]

#: signal number -> the handler it had before :func:`install`.
_previous: dict[int, Any] = {}
#: Sections (of both kinds) the main thread is in, and how many of them are SDK calls.
_depth = 0
_sdk_depth = 0
#: Signals that arrived inside a section, in order.
_held: list[int] = []
#: joblogger calls made from a signal handler during an SDK call.
_deferred: list[Callable[[], object]] = []
#: Thread id of the main thread, the only one Python runs signal handlers in.
_main_ident = threading.main_thread().ident


def _after_fork_in_child() -> None:
    global _main_ident, _depth, _sdk_depth
    _main_ident = threading.main_thread().ident  # the forking thread is the child's main thread
    _depth = _sdk_depth = 0
    _held.clear()
    _deferred.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _handler(signum: int, frame: object) -> None:
    """Raise at once or, inside a section, hold the signal until it ends."""
    if _depth > 0:
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
    return _sdk_depth > 0 and threading.get_ident() == _main_ident


def defer(call: Callable[[], object]) -> None:
    """Run ``call`` when the interrupted SDK call returns (see :func:`reentered`)."""
    _deferred.append(call)


class _Section:
    """A context manager without per-use state (the thread decides), so one instance serves every use."""

    __slots__ = ("_deliver", "_sdk")

    def __init__(self, sdk: bool, deliver: bool) -> None:
        self._sdk = sdk
        self._deliver = deliver

    def __enter__(self) -> None:
        global _depth, _sdk_depth
        if threading.get_ident() == _main_ident:
            _depth += 1
            if self._sdk:
                _sdk_depth += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        global _depth, _sdk_depth
        if threading.get_ident() != _main_ident:
            return
        if self._sdk:
            _sdk_depth -= 1
        _depth -= 1
        if _sdk_depth == 0:
            while _deferred:
                _deferred.pop(0)()
        if _depth == 0 and _held:
            held = _held[0]
            _held.clear()
            if self._deliver and signal.getsignal(held) is _handler:
                _raise_for(held)


_SDK = _Section(True, True)
_CRITICAL = _Section(False, True)
_CRITICAL_DROP = _Section(False, False)


def sdk() -> _Section:
    """Section around one call into the SDK: signals held, joblogger calls from signal handlers deferred."""
    return _SDK


def critical(*, deliver: bool = True) -> _Section:
    """Section that must not be cut short: held signals are raised at its end, or dropped (``deliver=False``)."""
    return _CRITICAL if deliver else _CRITICAL_DROP
