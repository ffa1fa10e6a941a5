"""Functions ``job.map()`` runs in worker processes in the unit tests (importable by spawn workers)."""

from __future__ import annotations

import os

from joblogger import current_job


def double(i: int) -> int:
    """Twice ``i``, recording one ``doubled`` outcome in the child run."""
    job = current_job()
    assert job is not None
    job.add_outcome("doubled")
    return 2 * i


def rows(i: int) -> int:
    """Count ``i`` rows in the child run (so the item does not count as 1)."""
    job = current_job()
    assert job is not None
    job.increment_progress(i)
    return i


def fail_on_seven(i: int) -> int:
    """``double``, but item 7 raises KeyError(7)."""
    if i == 7:
        raise KeyError(i)
    return double(i)


def die_on_three(i: int) -> int:
    """Item 3 kills its worker process (no exception, no report)."""
    if i == 3:
        os._exit(13)
    return i


def nap(i: int) -> int:
    """Sleep half a second, then return ``i`` (for interrupting a map half-way)."""
    import time

    time.sleep(0.5)
    return i
