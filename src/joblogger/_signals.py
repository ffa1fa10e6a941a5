"""SIGTERM and SIGINT handling that never cuts joblogger's end-of-run or final flush short.

Python runs a signal handler in the main thread between two bytecodes, so a
handler that raises (``SystemExit`` for SIGTERM, ``KeyboardInterrupt`` for
SIGINT) can interrupt *anything*: the middle of ``JobLogger._end_run`` (the run
span is then never ended and never exported) or the exit-time flush (the
queued spans and logs are then lost).

:func:`install` (called by ``joblogger.otlp.configure()`` from the main thread)
replaces only handlers that are still Python's defaults:

- SIGTERM (``SIG_DFL``, which kills the process on the spot) by one that raises
  ``SystemExit(143)``, so ``with`` blocks end runs as cancelled, ``finally:``
  blocks run and telemetry is flushed at exit;
- SIGINT (``default_int_handler``) by one that raises ``KeyboardInterrupt``
  exactly like the default.

Both are *flag-and-defer* inside a critical section (:func:`critical`): while
the main thread ends a run or flushes at shutdown, the signal is recorded and
raised when the section ends (ending a run), or dropped (the final flush, which
is bounded and is itself the process's way out). :func:`restore` puts the
previous handlers back; ``Telemetry.shutdown()`` calls it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["critical", "install", "installed", "restore"]

#: signal number -> the handler it had before :func:`install`.
_previous: dict[int, Any] = {}
#: Critical sections the main thread is in.
_depth = 0
#: Signals that arrived during a critical section, in order.
_pending: list[int] = []


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _handler(signum: int, frame: object) -> None:
    """Raise at once, or, inside a critical section, remember the signal for its end."""
    if _depth > 0:
        if signum not in _pending:
            _pending.append(signum)
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
    _pending.clear()


@contextmanager
def critical(*, deliver: bool = True) -> Iterator[None]:
    """Hold SIGTERM/SIGINT (when handled here) while the main thread runs the block.

    On leaving the outermost section, a held signal is raised (``deliver=True``)
    or dropped. Other threads are never interrupted by signal handlers, so for
    them this is a no-op.
    """
    global _depth
    if not _previous or threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending:
            held = _pending[0]
            _pending.clear()
            if deliver and signal.getsignal(held) is _handler:
                _raise_for(held)
