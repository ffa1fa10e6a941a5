"""What every framework integration shares: task attributes, task runs and the native-progress publisher.

A framework integration turns one task execution into one run::

    job = start_task_run("send-emails", task_id, framework="celery", queue="default",
                         worker="celery@host", attempt=1, parent=ctx)

and may mirror the run's progress into the framework's own progress channel
(Celery's ``update_state``, RQ's ``job.meta``) with :func:`publish_progress`:
one daemon thread per process reads each subscribed run at most once per
interval and calls the sink only when something changed. The job's own calls
(``increment_progress`` and friends) never wait for the sink.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry import context as otel_context

from .. import _fork, semconv
from .._logger import JobLogger, create_job_logger

__all__ = [
    "DEFAULT_PROGRESS_INTERVAL_S",
    "mark_untracked",
    "no_progress",
    "progress_meta",
    "publish_progress",
    "start_task_run",
]

_log = logging.getLogger("joblogger")

#: How often the native progress channel is written at most (seconds).
DEFAULT_PROGRESS_INTERVAL_S = 1.0

ProgressSink = Callable[[dict[str, Any]], None]
_F = TypeVar("_F", bound=Callable[..., Any])


def start_task_run(
    name: str,
    run_id: str,
    *,
    framework: str,
    queue: str | None = None,
    worker: str | None = None,
    attempt: int | None = None,
    parent: otel_context.Context | None = None,
    attributes: Mapping[str, object] | None = None,
    parent_run: object = None,
    **options: Any,
) -> JobLogger:
    """Start the run of one task execution, as a child of ``parent`` (else of the current span).

    ``attempt`` is 1 for the first execution, 2 for the first retry and so on.
    ``parent_run`` is the carrier of the run that sent the task (``job.child_carrier()``, from a
    task header or message field): the task's run is then its child run (docs/children.md).
    ``options`` go to :func:`joblogger.create_job_logger`.

    Example:
        >>> job = start_task_run("send-emails", "t-1", framework="celery", queue="mail", attempt=2)
        >>> job.job_run_id, job.job_name
        ('t-1', 'send-emails')
        >>> _ = job.end()
    """
    attrs: dict[str, object] = {semconv.JOB_FRAMEWORK: framework}
    if queue:
        attrs[semconv.JOB_QUEUE] = queue
    if worker:
        attrs[semconv.JOB_WORKER] = worker
    if attempt is not None:
        attrs[semconv.JOB_ATTEMPT] = attempt
    if attributes:
        attrs.update(attributes)
    token = otel_context.attach(parent) if parent is not None else None
    try:
        return create_job_logger(run_id=run_id, name=name, attributes=attrs, parent=parent_run, **options)
    finally:
        if token is not None:
            otel_context.detach(token)


def mark_untracked(func: _F, mark: str) -> _F:
    """Set ``func.<mark> = "untracked"`` (an integration leaves such functions out); warn once if it cannot.

    Example:
        >>> def heartbeat(): ...
        >>> mark_untracked(heartbeat, "__joblogger_example__").__joblogger_example__
        'untracked'
    """
    try:
        setattr(func, mark, "untracked")
    except (AttributeError, TypeError):
        _log.warning("joblogger: untracked(%r): cannot mark this object; it stays tracked", func)
    return func


def progress_meta(job: JobLogger) -> dict[str, Any]:
    """The run's progress as a JSON-ready dict, for a framework's progress channel.

    Example:
        >>> from joblogger import create_job_logger
        >>> job = create_job_logger("r-1", "import", clock=lambda: 0.0)
        >>> job.set_total(4, "rows"); job.set_stage("Loading"); job.increment_progress()
        >>> job.add_outcome("inserts")
        >>> meta = progress_meta(job)
        >>> meta["stage"], meta["current"], meta["total"], meta["percent"], meta["outcomes"]
        ('Loading', 1, 4, 25.0, {'inserts': 1})
        >>> _ = job.end()
    """
    percent = job.percent
    rate = job.rate
    eta = job.eta_seconds
    return {
        "job": job.job_name,
        "run_id": job.job_run_id,
        "stage": job.stage,
        "message": job.message,
        "current": job.current,
        "total": job.total,
        "entity_type": job.entity_type,
        "percent": None if percent is None else round(percent, 2),
        "rate": None if rate is None else round(rate, 3),
        "eta_seconds": None if eta is None else round(eta, 1),
        "elapsed_seconds": round(job.get_elapsed_ms() / 1000.0, 3),
        "outcomes": dict(job.outcomes),
        "text": job.progress_text,
    }


class _Publisher:
    """One daemon thread per process that feeds subscribed runs' progress to their sinks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._subs: dict[int, tuple[weakref.ref[JobLogger], ProgressSink, float]] = {}
        self._last: dict[int, tuple[float, dict[str, Any] | None]] = {}
        self._next_id = 0
        self._thread: threading.Thread | None = None
        self._failed: set[int] = set()
        #: When the loop wakes up next on its own (monotonic; inf: only when told).
        self._next_wake = math.inf

    def subscribe(
        self, job: JobLogger, sink: ProgressSink, interval_s: float, first_after_s: float = 0.0
    ) -> Callable[[], None]:
        every = max(0.05, float(interval_s))
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._subs[key] = (weakref.ref(job), sink, every)
            # Due once first_after_s has passed (at once by default).
            self._last[key] = (time.monotonic() + max(0.0, float(first_after_s)) - every, None)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="joblogger-native-progress", daemon=True)
                self._thread.start()
            due = self._last[key][0] + every
            wake = due < self._next_wake  # the loop sleeps past this subscription's first write
        if wake:
            self._wake.set()

        def stop(final: bool = True) -> None:
            with self._lock:
                entry = self._subs.pop(key, None)
                self._last.pop(key, None)
            if final and entry is not None:
                run = entry[0]()
                if run is not None:
                    self._deliver(key, sink, run)
            self._failed.discard(key)

        return stop

    def _loop(self) -> None:
        """Sleep until the next subscription is due (for ever while there is none), then deliver."""
        while True:
            with self._lock:
                now = time.monotonic()
                dues = [self._last.get(key, (now, None))[0] + every for key, (_, _, every) in self._subs.items()]
                self._next_wake = min(dues, default=math.inf)
            timeout = None if self._next_wake == math.inf else max(0.0, self._next_wake - now)
            self._wake.wait(timeout=timeout)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                due = [
                    (key, ref, sink)
                    for key, (ref, sink, every) in self._subs.items()
                    if now - self._last.get(key, (0.0, None))[0] >= every
                ]
            for key, ref, sink in due:
                run = ref()
                if run is None:
                    with self._lock:
                        self._subs.pop(key, None)
                        self._last.pop(key, None)
                    continue
                self._deliver(key, sink, run, now)

    def _deliver(self, key: int, sink: ProgressSink, run: JobLogger, now: float | None = None) -> None:
        """Send the run's progress unless it equals what was sent last (``now`` None: the final send, always)."""
        meta = progress_meta(run)
        if now is not None:
            with self._lock:
                if key not in self._last:  # unsubscribed meanwhile: the final send is stop()'s
                    return
                sent = self._last[key][1]
                # Elapsed time, rate and ETA change on every read: send only when progress itself moved.
                changed = sent is None or not _same_progress(meta, sent)
                self._last[key] = (now, meta if changed else sent)
            if not changed:
                return
        try:
            sink(meta)
        except Exception as exc:  # noqa: BLE001 - a broken progress channel must not break the job
            if key not in self._failed:
                self._failed.add(key)
                _log.warning("joblogger: writing progress of run %r to its framework failed: %r", run.job_run_id, exc)

    def after_fork(self) -> None:
        """In a forked child: no thread, no subscriptions (the parent's runs are not ours)."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._subs = {}
        self._last = {}
        self._failed = set()
        self._thread = None
        self._next_wake = math.inf


_VOLATILE = ("elapsed_seconds", "rate", "eta_seconds")


def no_progress(meta: Mapping[str, Any]) -> bool:
    """Whether a :func:`progress_meta` dict shows nothing the run reported (count, total, stage, message, outcome)."""
    return not (meta["current"] or meta["total"] is not None or meta["stage"] or meta["message"] or meta["outcomes"])


def _same_progress(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a[k] == b[k] for k in a if k not in _VOLATILE)


_PUBLISHER = _Publisher()
_fork.register(_PUBLISHER.after_fork)


def publish_progress(
    job: JobLogger,
    sink: ProgressSink,
    interval_s: float = DEFAULT_PROGRESS_INTERVAL_S,
    first_after_s: float = 0.0,
) -> Callable[..., None]:
    """Call ``sink(progress_meta(job))`` when the run's progress changed, at most once per ``interval_s``.

    The first call comes once the run has been subscribed for ``first_after_s``
    (at once by default), so runs that end sooner cost the sink nothing.

    Returns ``stop(final=True)``: unsubscribe, and with ``final`` deliver the last
    progress (always: the framework's final state may overwrite it anyway). A sink that raises is
    reported once through the ``joblogger`` logger and keeps being called.

    Example:
        >>> import time
        >>> from joblogger import create_job_logger
        >>> seen = []
        >>> job = create_job_logger("r-2", "import")
        >>> stop = publish_progress(job, seen.append, interval_s=0.05)
        >>> job.set_progress(3)
        >>> stop()
        >>> seen[-1]["current"]
        3
        >>> _ = job.end()
    """
    return _PUBLISHER.subscribe(job, sink, interval_s, first_after_s)
