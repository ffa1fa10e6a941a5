"""Dramatiq: one joblogger run per message processed (``pip install 'joblogger[dramatiq]'``).

Enable it for a whole broker with one line, in the module that defines the
broker (so producers and workers both load it)::

    from joblogger.integrations.dramatiq import JobLoggerMiddleware
    broker.add_middleware(JobLoggerMiddleware())

Each message processed is a run: run id = the message id, job name = the actor
name, ``job.queue`` = the queue, ``job.worker`` = ``host:pid``, ``job.attempt``
= the message's ``retries`` option + 1. Inside the actor,
``joblogger.current_job()`` is the run. Opt an actor out with
``@dramatiq.actor(joblogger=False)``; with ``JobLoggerMiddleware(all_actors=False)``
only actors declared with ``joblogger=True`` get a run.

At enqueue the middleware stores the producer's trace context in the
message's ``trace_context`` option (W3C ``traceparent``); the worker's run span
continues that trace (or is a child of the current span, if another
instrumentation made one current). In each worker process, at start-up
(``after_process_boot``), it calls :func:`joblogger.otlp.configure`.

Results: an exception is ``failure``, ``TimeLimitExceeded`` is ``timeout``,
``Shutdown`` (``ShutdownNotifications``) and other interrupts are
``cancellation``, a skipped message (``SkipMessage``, a message failed by a
middleware, a rate limit hit) is ``skip``. Dramatiq has no progress channel;
see docs/integrations.md.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import Middleware, Shutdown, TimeLimitExceeded
from dramatiq.middleware.threading import Interrupt
from dramatiq.rate_limits import RateLimitExceeded
from opentelemetry import metrics, propagate, trace

from .. import semconv
from .._logger import JobLogger
from ._common import start_task_run
from ._flush import flush_global_providers

__all__ = ["OPTION", "TRACE_OPTION", "JobLoggerMiddleware"]

_log = logging.getLogger("joblogger")

FRAMEWORK = "dramatiq"
#: Actor option that opts an actor in (True) or out (False).
OPTION = "joblogger"
#: Message option that carries the producer's trace context.
TRACE_OPTION = "trace_context"


def _result_of(exception: BaseException | None, message: Any) -> str | None:
    """The run's result for what ``after_process_message`` reports (None: as joblogger infers it)."""
    if exception is None:
        return semconv.RESULT_SKIP if getattr(message, "failed", False) else semconv.RESULT_SUCCESS
    if isinstance(exception, TimeLimitExceeded):
        return semconv.RESULT_TIMEOUT
    if isinstance(exception, (Shutdown, Interrupt)):
        return semconv.RESULT_CANCELLATION
    if isinstance(exception, RateLimitExceeded):
        return semconv.RESULT_SKIP
    return None


class JobLoggerMiddleware(Middleware):
    """Dramatiq middleware: a joblogger run per message, trace context carried from producer to worker.

    Args:
        all_actors: A run for every actor (default); False: only actors declared with ``joblogger=True``.
        configure_otlp: Call :func:`joblogger.otlp.configure` in each worker process when it boots
            (an application's own SDK providers are reused).
        tracer_provider, meter_provider: Providers for the runs (default: the global ones).

    Example:
        >>> import dramatiq
        >>> from dramatiq.brokers.stub import StubBroker
        >>> broker = StubBroker()
        >>> broker.add_middleware(JobLoggerMiddleware(configure_otlp=False))
        >>> "joblogger" in broker.actor_options
        True
    """

    def __init__(
        self,
        *,
        all_actors: bool = True,
        configure_otlp: bool = True,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.all_actors = bool(all_actors)
        self.configure_otlp = bool(configure_otlp)
        self._providers: dict[str, Any] = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[JobLogger, Any]] = {}
        self._worker = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def actor_options(self) -> set[str]:
        return {OPTION}

    # -- producer side -------------------------------------------------------------------
    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        """Carry the current trace context in the message (kept as is when the message is retried)."""
        try:
            if TRACE_OPTION not in message.options:
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                if carrier:
                    message.options[TRACE_OPTION] = carrier
        except Exception as exc:  # noqa: BLE001 - tracing must never stop an enqueue
            _log.warning("joblogger: could not add the trace context to a Dramatiq message: %r", exc)

    # -- worker side ---------------------------------------------------------------------
    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        """In each worker process, once it has started: set up OpenTelemetry for it."""
        self._worker = f"{socket.gethostname()}:{os.getpid()}"
        if not self.configure_otlp:
            return
        try:
            from .. import otlp

            # The dramatiq CLI's worker processes handle SIGTERM themselves (graceful stop).
            otlp.configure(handle_sigterm=False)
        except Exception as exc:  # noqa: BLE001 - no SDK: runs go to whatever providers exist
            _log.warning("joblogger: could not configure OpenTelemetry in the Dramatiq worker: %r", exc)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Export what is buffered before the process goes (an application's own providers too)."""
        flush_global_providers()

    def _enabled(self, broker: dramatiq.Broker, message: Any) -> bool:
        try:
            actor = broker.get_actor(message.actor_name)
            chosen = actor.options.get(OPTION)
        except Exception:  # noqa: BLE001 - unknown actor: Dramatiq reports it
            return False
        return self.all_actors if chosen is None else bool(chosen)

    def _start(self, message: Any) -> JobLogger | None:
        options = message.options
        parent = None
        if not trace.get_current_span().get_span_context().is_valid:
            carrier = options.get(TRACE_OPTION)
            parent = propagate.extract(carrier if isinstance(carrier, dict) else {})
        retries = options.get("retries", 0)
        try:
            return start_task_run(
                message.actor_name,
                message.message_id,
                framework=FRAMEWORK,
                queue=q_name(message.queue_name),
                worker=self._worker,
                attempt=(retries if isinstance(retries, int) else 0) + 1,
                parent=parent,
                **self._providers,
            )
        except Exception as exc:  # noqa: BLE001 - telemetry must never stop a message
            _log.warning("joblogger: could not start the run of message %s: %r", message.message_id, exc)
            return None

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Start the message's run and make it current in the worker thread."""
        if not self._enabled(broker, message):
            return
        run = self._start(message)
        if run is None:
            return
        run.__enter__()
        with self._lock:
            self._runs[message.message_id] = (run, None)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """End the message's run with the result its exception (or none) implies."""
        with self._lock:
            entry = self._runs.pop(message.message_id, None)
        if entry is None:
            return
        run = entry[0]
        run.end(result=_result_of(exception, message), error=exception)
        run.__exit__(None, None, None)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """A skipped message is a ``skip`` run (started here if a middleware before this one skipped it)."""
        with self._lock:
            entry = self._runs.pop(message.message_id, None)
        if entry is None:
            if not self._enabled(broker, message):
                return
            run = self._start(message)
            if run is None:
                return
            run.end(result=semconv.RESULT_SKIP)
            return
        entry[0].end(result=semconv.RESULT_SKIP)
        entry[0].__exit__(None, None, None)
