"""Bounded flush of the global OpenTelemetry providers, for worker processes that end with ``os._exit()``.

RQ's work horses (one forked process per job) and some worker pools leave with
``os._exit()``, which skips ``atexit`` and so the SDK's final export. An
integration calls :func:`flush_global_providers` when a run has ended in such a
process. It works for :func:`joblogger.otlp.configure`'s providers and for an
application's own (drop-in) SDK providers alike; providers without
``force_flush`` (the API's no-op ones) are skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import metrics, trace

from .._bounded import call_bounded

__all__ = ["DEFAULT_FLUSH_TIMEOUT_S", "flush_global_providers"]

_log = logging.getLogger("joblogger")

#: Longest a run's end waits for the flush (the flush itself goes on in the background).
DEFAULT_FLUSH_TIMEOUT_S = 2.0


def _providers() -> list[Any]:
    found: list[Any] = [trace.get_tracer_provider(), metrics.get_meter_provider()]
    try:
        from opentelemetry._logs import get_logger_provider

        found.append(get_logger_provider())
    except Exception:  # noqa: BLE001, S110 - no logs API: nothing to flush there
        pass
    return found


def _flush_all(timeout_millis: int) -> None:
    for provider in _providers():
        flush = getattr(provider, "force_flush", None)
        if not callable(flush):
            continue
        try:
            flush(timeout_millis=timeout_millis)
        except TypeError:
            try:
                flush()
            except Exception as exc:  # noqa: BLE001 - flushing must never break the worker
                _log.warning("joblogger: flush of %s failed: %r", type(provider).__name__, exc)
        except Exception as exc:  # noqa: BLE001
            _log.warning("joblogger: flush of %s failed: %r", type(provider).__name__, exc)


def flush_global_providers(timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S) -> bool:
    """Export what the global providers hold (spans, then metrics, then logs); wait at most ``timeout_s``.

    Runs on its own daemon thread: the SDK's ``force_flush`` can outlive its
    timeout against a hung collector, and a caller in a signal handler must not
    wait for a lock the interrupted code holds. Returns whether it finished in time.

    Example:
        >>> flush_global_providers(0.5)
        True
    """
    millis = max(1, int(timeout_s * 1000))
    return call_bounded(lambda: _flush_all(millis), timeout_s, "joblogger-flush")
