"""Where a log call came from: the first stack frame outside joblogger's private modules.

Records must name the job's code (file, line, function) as their call site, not
the joblogger internals that turned a call into a ``logging`` record. The
private modules (``joblogger/_*.py``) are skipped whatever path led through
them (a direct ``job.info()``, ``track()``, ``with`` exit, the stage or summary
milestones); the public modules (``demo``, ``console``, ``cli``) count as callers.
"""

from __future__ import annotations

import contextlib
import os
import sys
from types import FrameType

_PRIVATE = os.path.join(os.path.dirname(__file__), "_")
_CONTEXTLIB = contextlib.__file__


def _internal(frame: FrameType) -> bool:
    """A frame of joblogger's private modules, or contextlib running one of their context managers."""
    filename = frame.f_code.co_filename
    if filename.startswith(_PRIVATE):
        return True
    caller = frame.f_back
    return filename == _CONTEXTLIB and caller is not None and caller.f_code.co_filename.startswith(_PRIVATE)


def caller(skip: int = 0) -> tuple[str, int, str]:
    """``(pathname, lineno, funcName)`` of the first frame outside joblogger's private modules, plus ``skip``."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_back is not None and _internal(frame):
        frame = frame.f_back
    for _ in range(skip):
        if frame is None or frame.f_back is None:
            break
        frame = frame.f_back
    if frame is None:  # pragma: no cover - there is always a frame
        return "(unknown file)", 0, "(unknown function)"
    code = frame.f_code
    return code.co_filename, frame.f_lineno, code.co_name
