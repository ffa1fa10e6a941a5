"""tqdm bars that report to the current run (extra ``joblogger[tqdm]``).

Code full of ``tqdm(...)`` reports through joblogger without rewriting loops:

- ``from joblogger.tqdm import tqdm, trange``: a drop-in ``tqdm.tqdm``. In a run
  a bar's ``desc`` becomes the stage, its ``total`` the total, its count the
  progress; an inner bar (opened while another is open) shows as the run's
  message. Outside a run it is plain tqdm.
- :func:`patch`: every tqdm bar (``tqdm.tqdm``, ``tqdm.auto``, libraries' own
  subclasses, whenever they were imported) does the same while the patch is on.
- :func:`logging_redirect_tqdm`: like ``tqdm.contrib.logging``'s, and records
  logged in a run become the run's log calls, each seen once.

Nothing is added per item: tqdm counts, and a bar reports to the run only where
tqdm redraws (at most every ``mininterval``, 0.1 s by default), at ``reset()``
and at ``close()``. The full model is in docs/integrations.md, "tqdm".

Example:
    >>> from joblogger import create_job_logger
    >>> from joblogger.tqdm import tqdm
    >>> with create_job_logger("run-1", "resize") as job:
    ...     for image in tqdm(["a.png", "b.png"], desc="Resizing", disable=True):
    ...         pass
    ...     job.progress_text
    'Resizing (2 / 2)'
"""

from __future__ import annotations

try:
    import tqdm as _tqdm_package  # noqa: F401 - fail early with the extra's name
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("joblogger.tqdm needs tqdm: pip install 'joblogger[tqdm]'") from exc

from ._tqdm_dropin import tqdm, trange
from ._tqdm_logging import logging_redirect_tqdm
from ._tqdm_patch import Patch, patch

__all__ = ["Patch", "logging_redirect_tqdm", "patch", "tqdm", "trange"]
