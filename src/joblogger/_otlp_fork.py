"""What the OpenTelemetry SDK providers need in a forked child (part of ``joblogger[otlp]``).

The SDK restarts its export threads in a forked child (its own
``os.register_at_fork`` hooks) and empties the span and log queues, but the
meter provider's storage - the cumulative sums and histograms of every
synchronous instrument - is inherited. Exported again under the child's own
``service.instance.id``, the parent's counts would be counted twice (a child
that did one run reported ``job.runs`` 2 and ``job.outcomes`` 1,007). So:

- for the providers :func:`joblogger.otlp.configure` created, the child's copy
  of that storage is emptied right after the fork (:func:`reset_metric_storage`);
- for an application's own providers (drop-in), :func:`after_fork` does the same
  when the application calls it in its post-fork hook;
- ``multiprocessing`` children end with ``os._exit()``, which skips ``atexit``, or
  are SIGTERMed by ``Pool.terminate()`` (what leaving ``with Pool()`` does):
  :func:`flush_at_multiprocessing_exit` exports each run when it ends and shuts
  the providers down from ``multiprocessing``'s own exit hook.

The storage is SDK-private (``opentelemetry.sdk.metrics._internal``); its layout
is checked on every use and, if it ever changes, the child warns once and keeps
the inherited counts rather than failing. ``tests/app/test_fork_sdk.py`` pins it
for every SDK version the project supports.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any

from . import _fork
from ._bounded import call_bounded

__all__ = [
    "after_fork",
    "child_instance_id",
    "flush_at_multiprocessing_exit",
    "in_multiprocessing_child",
    "own",
    "reset_metric_storage",
    "sigterm_handler_installed",
]

_log = logging.getLogger("joblogger")
#: Meter provider that joblogger.otlp.configure() created in this process (or an ancestor).
_owned: list[Any] = []
#: service.instance.id of a forked child, by pid.
_child_ids: dict[int, str] = {}
#: The SIGTERM handler configure() installed, if it did.
_sigterm: list[Any] = []
#: Whether this (forked) process runs with SIGTERM at its default until it is ready for the handler.
_sigterm_parked = [False]
#: Whether the forking thread blocked SIGTERM for this fork (undone in the parent and in the child).
_sigterm_blocked = [False]


def reset_metric_storage(meter_provider: Any) -> bool:
    """Forget everything ``meter_provider`` aggregated before this process forked.

    Replaces the storage's locks too (another thread of the parent may have held
    one at the fork). Returns False, with one warning, when the SDK's storage does
    not look as expected; nothing is changed then.
    """
    try:
        consumer = meter_provider._measurement_consumer
        storages = dict(consumer._reader_storages)
        matches = [
            match
            for storage in storages.values()
            for per_instrument in list(storage._instrument_view_instrument_matches.values())
            for match in per_instrument
        ]
        if not all(isinstance(getattr(m, "_attributes_aggregation", None), dict) for m in matches):
            raise TypeError("unexpected _ViewInstrumentMatch layout")
    except Exception as exc:  # noqa: BLE001 - an unknown SDK layout must not break the child
        _log.warning(
            "joblogger: could not reset the metric storage inherited from the parent process (%r); "
            "this process may re-export the parent's counts",
            exc,
        )
        return False
    consumer._lock = threading.Lock()
    for reader, storage in storages.items():
        storage._lock = threading.RLock()
        for name in ("_export_lock", "_lock"):  # held while the reader collects or exports
            held = getattr(reader, name, None)
            if held is not None:
                setattr(reader, name, threading.RLock() if "RLock" in type(held).__name__ else threading.Lock())
    for match in matches:
        match._lock = threading.Lock()
        match._attributes_aggregation = {}
        if hasattr(match, "_previous_collection_start_nanos"):
            match._previous_collection_start_nanos = None
    return True


def child_instance_id() -> str:
    """The ``service.instance.id`` of this (forked) process.

    The SDK's own per-process id where the SDK has one (recent SDKs give every
    forked child a new id on all its providers' resources), so the child's
    metrics, spans and logs agree; a new UUID v4 otherwise.
    """
    pid = os.getpid()
    found = _child_ids.get(pid)
    if found is None:
        try:
            from opentelemetry.sdk.resources import ServiceInstanceIdResourceDetector  # type: ignore[attr-defined]

            found = str(ServiceInstanceIdResourceDetector().detect().attributes["service.instance.id"])
        except Exception:  # noqa: BLE001 - older SDKs have no such detector
            found = str(uuid.uuid4())
        _child_ids[pid] = found
    return found


def after_fork(meter_provider: Any = None) -> bool:
    """Make an application's own SDK meter provider safe to use in a forked worker.

    Call it first thing in the worker, e.g. in Celery's ``worker_process_init``
    or gunicorn's ``post_fork`` hook; ``meter_provider`` defaults to the global
    one. The providers that :func:`joblogger.otlp.configure` created need no
    call: joblogger resets them itself. Returns True when the inherited storage
    was reset (False, with a warning, when it could not be; nothing to do for a
    provider that is not the SDK's).

    Example:
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> from joblogger import otlp
        >>> otlp.after_fork(MeterProvider())
        True
    """
    if meter_provider is None:
        from opentelemetry import metrics

        meter_provider = metrics.get_meter_provider()
    if not hasattr(meter_provider, "_measurement_consumer"):
        return False
    return reset_metric_storage(meter_provider)


def own(meter_provider: Any) -> None:
    """Reset ``meter_provider`` in every child forked from now on (providers joblogger created)."""
    _owned[:] = [meter_provider]


def _reset_owned_in_child() -> None:
    _child_ids.clear()
    for provider in _owned:
        reset_metric_storage(provider)


_fork.register(_reset_owned_in_child)


def in_multiprocessing_child() -> bool:
    """Whether this process is a ``multiprocessing`` child (any start method)."""
    mp = sys.modules.get("multiprocessing")
    return mp is not None and mp.parent_process() is not None


def flush_at_multiprocessing_exit(telemetry: Any) -> None:
    """Make ``multiprocessing`` children (this one, and any forked later) lose nothing they ended.

    ``multiprocessing`` ends its children with ``os._exit()`` (fork and forkserver),
    which skips ``atexit``, and ``Pool.terminate()`` kills them with SIGTERM
    whatever they are doing (its contract: no exit handlers run). So in such a
    child every run is exported when it ends (:func:`_flush_when_runs_end`), and
    the providers are shut down from ``multiprocessing``'s own exit hook
    (``Finalize``) when the child ends normally (``pool.close()``, ``maxtasksperchild``).
    """
    for util in _process_pool_utils():

        def in_child(owner: Any, util: Any = util) -> None:
            util.Finalize(None, owner.shutdown, exitpriority=_EXIT_PRIORITY)
            _flush_when_runs_end(owner)

        # Runs in each child that the pool package forks, after it cleared the parent's finalizers.
        util.register_after_fork(telemetry, in_child)
    if in_multiprocessing_child():
        import multiprocessing.util

        multiprocessing.util.Finalize(None, telemetry.shutdown, exitpriority=_EXIT_PRIORITY)
        _flush_when_runs_end(telemetry)


def _process_pool_utils() -> list[Any]:
    """``multiprocessing.util`` and, where installed, billiard's copy of it (Celery's prefork pool)."""
    import importlib.util
    import multiprocessing.util

    utils: list[Any] = [multiprocessing.util]
    if importlib.util.find_spec("billiard") is not None:
        try:
            import billiard.util  # type: ignore[import-untyped, import-not-found, unused-ignore]

            utils.append(billiard.util)
        except Exception:  # noqa: BLE001, S110 - a broken billiard is no reason to fail configure()
            pass
    return utils


#: Priority of the exit flush among multiprocessing's Finalize callbacks (higher runs first).
_EXIT_PRIORITY = 100
#: Longest a run's end waits for its export in a multiprocessing child.
RUN_END_FLUSH_TIMEOUT_S = 2.0


def _flush_when_runs_end(telemetry: Any) -> None:
    """Export everything a run produced when it ends (:class:`RunEndFlush`)."""
    from . import _registry

    def started(_run: Any) -> None:
        pass

    _registry.observe_runs(started, RunEndFlush(telemetry))


class RunEndFlush:
    """Flush at each run's end in a ``multiprocessing`` child, waiting at most ``RUN_END_FLUSH_TIMEOUT_S``.

    A few milliseconds per run against a healthy collector (three exports). When
    a flush misses its bound (the collector is slow or away), later run ends do
    not wait: they start a flush in the background, unless one is still at work,
    and waiting resumes once a flush finishes in time. Before this, a pool worker
    waited the whole bound at every run's end while the collector was down (12
    one-item runs on 2 forked workers: 24 s instead of 1 s). What a run leaves
    unflushed then goes with the batch processors' own exports and the exit flush.
    """

    __slots__ = ("_behind", "_busy", "_telemetry", "_timeout_s")

    def __init__(self, telemetry: Any) -> None:
        self._telemetry = telemetry
        self._timeout_s = min(RUN_END_FLUSH_TIMEOUT_S, float(telemetry.export_timeout_s))
        self._behind = False
        self._busy = threading.Event()

    def __call__(self, _run: Any) -> None:
        """A run ended: flush, waiting for it only while flushes finish in time."""
        if self._busy.is_set():
            return
        self._busy.set()
        call_bounded(self._flush, 0.0 if self._behind else self._timeout_s, "joblogger-run-end-flush")

    def _flush(self) -> None:
        started = time.monotonic()
        try:
            self._telemetry.force_flush(self._timeout_s)
        finally:
            self._behind = time.monotonic() - started >= self._timeout_s
            self._busy.clear()


# --- SIGTERM in forked children -----------------------------------------------------------
# configure() turns SIGTERM into SystemExit. A child inherits that handler, but during the
# fork hooks (the SDK's re-detect resources, start threads) an exception is only printed
# ("Exception ignored in ...") and lost: a SIGTERM there was swallowed and the child went on.
# So a child runs the fork hooks with SIGTERM at its default (a child that has done nothing
# yet has nothing to lose) and gets the handler back after the last fork hook.
# multiprocessing children never get it back: Pool.terminate() SIGTERMs workers that may be
# blocked on the pool's queue lock while a thread of theirs (the SDK's) takes the signal, so
# the Python-level handler never ran and the pool's parent waited for them for ever. There the
# default (the process ends at once, as multiprocessing documents) is right, and each run is
# exported when it ends instead.
# SIGTERM is also *blocked* from just before fork() until the last fork hook: a SIGTERM that
# reached the child after fork() but before the first hook parked the handler was recorded by
# the interpreter for the Python handler, then dropped when the handler had become SIG_DFL
# (CPython skips a recorded signal whose handler is the default), and the pool worker lived on,
# waiting on the pool's queue, while its parent waited for it to exit. Blocked, the signal stays
# pending and is delivered when the hooks are done: to the default (the child ends) or to the
# restored handler (SystemExit once the child runs Python again).


def sigterm_handler_installed(handler: Any) -> None:
    """configure() installed ``handler`` for SIGTERM: manage it in forked children from now on."""
    if not _sigterm:
        _fork.register_late(_restore_sigterm_unless_multiprocessing)
        _fork.register_around(_block_sigterm_before_fork, _unblock_sigterm)
    _sigterm[:] = [handler]


def _block_sigterm_before_fork() -> None:
    _sigterm_blocked[0] = False
    if _sigterm and signal.getsignal(signal.SIGTERM) is _sigterm[0]:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        _sigterm_blocked[0] = True


def _unblock_sigterm() -> None:
    if _sigterm_blocked[0]:
        _sigterm_blocked[0] = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _park_sigterm_in_child() -> None:
    _sigterm_parked[0] = False
    if _sigterm and signal.getsignal(signal.SIGTERM) is _sigterm[0]:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _sigterm_parked[0] = True


_fork.register(_park_sigterm_in_child)


def _multiprocessing_fork() -> bool:
    frame: Any = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        in_pool_package = f"{os.sep}multiprocessing{os.sep}" in path or f"{os.sep}billiard{os.sep}" in path
        if in_pool_package and path.endswith(("popen_fork.py", "forkserver.py")):
            return True
        frame = frame.f_back
    return False


def _sigterm_pending() -> bool:
    return _sigterm_blocked[0] and signal.SIGTERM in signal.sigpending()


def _restore_sigterm_unless_multiprocessing() -> None:
    parked, _sigterm_parked[0] = _sigterm_parked[0], False
    try:
        # A SIGTERM that came during the fork hooks gets the default action (the child has done
        # nothing yet): delivered to the handler now, its SystemExit would be raised inside this
        # hook, where the interpreter prints and drops it.
        restore = parked and not _multiprocessing_fork() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        if restore and not _sigterm_pending():
            signal.signal(signal.SIGTERM, _sigterm[0])
            if _sigterm_pending():  # arrived meanwhile, still blocked
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
    finally:
        _unblock_sigterm()  # a SIGTERM that arrived during the fork hooks is delivered now
