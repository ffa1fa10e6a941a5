"""Run a call that may hang (an export against a collector that never answers) for at most a bound.

Used where joblogger flushes telemetry on a path the job waits on: a run's end
in a ``multiprocessing`` child (:mod:`joblogger._otlp_fork`) and the job
frameworks' workers that leave with ``os._exit()``
(:mod:`joblogger.integrations._flush`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["call_bounded"]


def call_bounded(target: Callable[[], object], timeout_s: float, name: str) -> bool:
    """Call ``target`` on a daemon thread and wait at most ``timeout_s``; return whether it finished.

    A daemon thread, so a hung call neither blocks the caller past its bound nor
    the interpreter's exit, and a caller in a signal handler never waits for a
    lock the interrupted code holds. The call goes on in the background.

    Example:
        >>> call_bounded(lambda: None, 1.0, "example")
        True
    """
    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join(max(0.0, float(timeout_s)))
    return not worker.is_alive()
