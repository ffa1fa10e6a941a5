"""Is the exception that ``sys.exc_info()`` shows still propagating, or has an ``except`` clause handled it?

``log_summary()`` without a ``with`` block learns about a failure only from
``sys.exc_info()``, which reports the exception both in a ``finally:`` block
that it passes through and in an ``except`` clause that caught it. Python
gives no run-time flag for the difference, so this module reads the code: the
frame that holds the exception is the first frame of its traceback, and the
line it is at now lies in a ``finally:`` body or in an ``except`` clause of the
``try`` statement whose body raised it.

The rule (documented in docs/telemetry.md):

- in an ``except`` clause with no ``raise`` statement: handled, the run does not fail;
- in an ``except`` clause that contains a ``raise`` statement, in a ``finally:``
  body, or anywhere else: propagating, the run fails;
- when the source is not available (no file, ``exec``), or cannot be parsed:
  propagating, as before.

``JobLogger.end(result=..., error=...)`` states the result explicitly instead.
"""

from __future__ import annotations

import ast
import functools
import linecache
from dataclasses import dataclass
from types import FrameType

__all__ = ["is_propagating"]


@dataclass(frozen=True, slots=True)
class _Try:
    start: int
    end: int
    #: first and last line of the try body and of the else body (where caught exceptions come from)
    guarded: tuple[tuple[int, int], ...]
    #: (first line, last line, contains a raise statement) per except clause
    handlers: tuple[tuple[int, int, bool], ...]
    final: tuple[int, int] | None


def _span(nodes: list[ast.stmt]) -> tuple[int, int] | None:
    if not nodes:
        return None
    return nodes[0].lineno, nodes[-1].end_lineno or nodes[-1].lineno


@functools.lru_cache(maxsize=32)
def _tries(source: str) -> tuple[_Try, ...]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ()
    found = []
    try_types = tuple(t for t in (getattr(ast, "Try", None), getattr(ast, "TryStar", None)) if t is not None)
    for node in ast.walk(tree):
        if not isinstance(node, try_types):
            continue
        body, orelse = _span(node.body), _span(node.orelse)  # type: ignore[attr-defined]
        handlers = []
        for handler in node.handlers:  # type: ignore[attr-defined]
            raises = any(isinstance(inner, ast.Raise) for stmt in handler.body for inner in ast.walk(stmt))
            handlers.append((handler.lineno, handler.end_lineno or handler.lineno, raises))
        found.append(
            _Try(
                start=node.lineno,
                end=node.end_lineno or node.lineno,
                guarded=tuple(s for s in (body, orelse) if s is not None),
                handlers=tuple(handlers),
                final=_span(node.finalbody),  # type: ignore[attr-defined]
            )
        )
    return tuple(found)


def _verdict(tries: tuple[_Try, ...], raised_at: int, now_at: int) -> bool | None:
    """True/False for the innermost ``try`` that explains the two lines, None when none does."""
    best: tuple[int, bool] | None = None
    for t in tries:
        if not (t.start <= raised_at <= t.end and t.start <= now_at <= t.end):
            continue
        from_body = any(a <= raised_at <= b for a, b in t.guarded[:1])
        verdict: bool | None = None
        if t.final is not None and t.final[0] <= now_at <= t.final[1] and not (t.final[0] <= raised_at <= t.final[1]):
            verdict = True
        elif from_body:
            for first, last, raises in t.handlers:
                if first <= now_at <= last:
                    verdict = raises
        if verdict is not None and (best is None or t.end - t.start < best[0]):
            best = (t.end - t.start, verdict)
    return None if best is None else best[1]


def is_propagating(exc: BaseException) -> bool:
    """Whether ``exc`` (from ``sys.exc_info()``) is passing through, rather than handled where it was caught.

    Example:
        >>> import sys
        >>> try:
        ...     raise ValueError("x")
        ... except ValueError:
        ...     is_propagating(sys.exc_info()[1])
        False
        >>> try:
        ...     try:
        ...         raise ValueError("x")
        ...     finally:
        ...         print(is_propagating(sys.exc_info()[1]))
        ... except ValueError:
        ...     pass
        True
    """
    tb = exc.__traceback__
    if tb is None:
        return True
    frame: FrameType = tb.tb_frame
    try:
        lines = linecache.getlines(frame.f_code.co_filename, frame.f_globals)
        if not lines:
            return True
        verdict = _verdict(_tries("".join(lines)), tb.tb_lineno, frame.f_lineno)
    except Exception:  # noqa: BLE001 - reading code is best effort; fall back to the old rule
        return True
    return True if verdict is None else verdict
