"""``joblogger.tqdm.patch()``: every tqdm bar, wherever it was imported from, reports to the current run.

Libraries import ``tqdm`` (``from tqdm.auto import tqdm``, their own subclasses)
long before a job starts, so replacing module attributes would miss them. The
patch wraps four methods of ``tqdm.std.tqdm``, the base of every tqdm class
(``tqdm.auto``, ``tqdm.asyncio``, ``tqdm.notebook``, ``tqdm.rich``, subclasses):
``__init__`` attaches a bar made inside a run while a patch is active;
``refresh``, ``reset`` and ``close`` report for bars that were attached.

Patches nest and may come from several threads: the wrappers are installed by
the first ``patch()`` and the originals restored when the last one is undone
and no attached bar is still open (else when that bar closes), so a bar made
under a patch keeps its numbers right to its end.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from . import _tqdm_bars as bars

__all__ = ["Patch", "active", "patch"]

_METHODS = ("__init__", "refresh", "reset", "close")
_LOCK = threading.RLock()
#: Active patches; the original methods while the wrappers are installed; bars attached by the patch, still open.
_state: dict[str, Any] = {"depth": 0, "originals": None}
_live: set[bars.BarState] = set()


def _ours(bar: Any) -> bool:
    """Whether the patch handles ``bar`` (the drop-in class reports by itself)."""
    return not getattr(type(bar), bars.BRIDGED, False)


def _wrap_init(original: Any) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        run = None
        if _state["depth"] and _ours(self):
            run = bars.resolve(None)
            if run is not None:
                args, kwargs = bars.prepare(args, kwargs)
        original.__get__(self, type(self))(*args, **kwargs)  # tqdm's is a partialmethod (TQDM_* variables)
        if run is not None:
            state = bars.attach(self, run)
            if state is not None:
                _live.add(state)  # a set's add is atomic; no lock here (see close)

    return __init__


def _wrap_refresh(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def refresh(self: Any, *args: Any, **kwargs: Any) -> Any:
        shown = original(self, *args, **kwargs)
        if _ours(self):
            bars.sync(self)
        return shown

    return refresh


def _wrap_reset(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def reset(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _ours(self):
            return original(self, *args, **kwargs)
        with bars.resetting(self):
            return original(self, *args, **kwargs)

    return reset


def _wrap_close(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def close(self: Any) -> Any:
        try:
            return original(self)
        finally:
            if _ours(self):
                state = bars.finish(self)
                if state is not None:
                    _live.discard(state)
                    # close() also runs from __del__, at any allocation, maybe under tqdm's lock while another
                    # thread holding _LOCK waits for it: never block here. If a patch()/unpatch() holds the lock,
                    # the methods stay wrapped (inactive: no patch, no open bar) until the next unpatch.
                    if _LOCK.acquire(blocking=False):
                        try:
                            _restore_if_idle()
                        finally:
                            _LOCK.release()

    return close


_WRAPPERS = {"__init__": _wrap_init, "refresh": _wrap_refresh, "reset": _wrap_reset, "close": _wrap_close}


def _install() -> None:
    """Wrap the methods (caller holds ``_LOCK``)."""
    from tqdm import std

    if _state["originals"] is not None:
        return
    originals = {name: std.tqdm.__dict__[name] for name in _METHODS}
    for name in _METHODS:
        setattr(std.tqdm, name, _WRAPPERS[name](originals[name]))
    _state["originals"] = originals


def _restore_if_idle() -> None:
    """Put the original methods back if no patch is active and no patched bar is open (caller holds ``_LOCK``)."""
    originals = _state["originals"]
    if originals is None or _state["depth"] or _live:
        return
    from tqdm import std

    for name, method in originals.items():
        setattr(std.tqdm, name, method)
    _state["originals"] = None


def active() -> bool:
    """Whether a patch is active (new bars in a run report to it)."""
    return bool(_state["depth"])


class Patch:
    """One active :func:`patch`; :meth:`unpatch` (or leaving the ``with`` block) undoes it."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = False

    def unpatch(self) -> None:
        """Undo this patch (idempotent); the last one restores tqdm once its patched bars have closed."""
        with _LOCK:
            if self._done:
                return
            self._done = True
            _state["depth"] -= 1
            _restore_if_idle()

    def __enter__(self) -> Patch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unpatch()


def patch() -> Patch:
    """Make every tqdm bar created in a run report to that run, until the returned patch is undone.

    Example:
        >>> import tqdm.auto
        >>> from joblogger import create_job_logger
        >>> from joblogger.tqdm import patch
        >>> with patch(), create_job_logger("run-1", "download") as job:
        ...     for chunk in tqdm.auto.tqdm(range(8), desc="Fetching", disable=True):
        ...         pass
        ...     (job.stage, job.current)
        ('Fetching', 8)
    """
    with _LOCK:
        _install()
        _state["depth"] += 1
    return Patch()
