"""The drop-in bar: ``joblogger.tqdm.tqdm``, a ``tqdm.std.tqdm`` that reports to the current run.

It adds nothing per item: ``update()`` and the iterator are tqdm's own; the bar
reports where tqdm redraws (``refresh``), at ``reset`` and at ``close``
(see ``_tqdm_bars``).
"""

from __future__ import annotations

from typing import Any

from tqdm import std

from . import _tqdm_bars as bars

__all__ = ["tqdm", "trange"]


class tqdm(std.tqdm):  # type: ignore[misc]
    """``tqdm.tqdm`` that reports to a run: ``desc`` -> stage, ``total`` -> total, its count -> progress.

    Outside a run (no ``job=`` and ``joblogger.current_job()`` is None) it is
    exactly ``tqdm.tqdm``. In a run it also counts when tqdm would not draw
    (``disable=True``, or off a terminal), without drawing; while joblogger's
    terminal view draws, no bar draws. ``job=`` names the run (for threads
    that do not inherit the context).

    Example:
        >>> from joblogger import create_job_logger
        >>> from joblogger.tqdm import tqdm
        >>> with create_job_logger("run-1", "resize") as job:
        ...     for image in tqdm(range(40), desc="Resizing", disable=True):
        ...         pass
        ...     (job.stage, job.current, job.total)
        ('Resizing', 40, 40)
    """

    _joblogger_bridged = True

    def __init__(self, *args: Any, job: object = None, **kwargs: Any) -> None:
        run = bars.resolve(job)
        if run is not None:
            args, kwargs = bars.prepare(args, kwargs)
        super().__init__(*args, **kwargs)
        if run is not None:
            bars.attach(self, run)

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> Any:
        """Redraw (tqdm's ``refresh``) and report the count to the run."""
        shown = super().refresh(nolock=nolock, lock_args=lock_args)
        bars.sync(self)
        return shown

    def reset(self, total: Any = None) -> None:
        """Start the bar's next pass (tqdm's ``reset``); in a run, a new phase."""
        with bars.resetting(self):
            super().reset(total=total)

    def close(self) -> None:
        """Close the bar (tqdm's ``close``) and report its final count."""
        try:
            super().close()
        finally:
            bars.finish(self)


def trange(*args: Any, **kwargs: Any) -> tqdm:
    """``tqdm(range(*args), **kwargs)``, like ``tqdm.trange``.

    Example:
        >>> from joblogger.tqdm import trange
        >>> sum(trange(4, disable=True))
        6
    """
    return tqdm(range(*args), **kwargs)
