"""``job.map()``: items on a ``concurrent.futures`` pool, each item (or chunk) a child run.

Thread children are in-process children (``job.child()``): their counts roll up
live. Process children start from the parent's carrier in the worker and send a
:class:`_children.ChildReport` back with their results (on success) or on the
exception they raise (an attribute, carried through pickling in the exception's
``__dict__`` and removed before the exception reaches the caller). A worker that
dies fails every future it took down with ``BrokenProcessPool``: each of those
items is a failed child, and the map raises once every item is settled.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any, TypeVar

from . import _children, _sanitize, semconv
from ._state import pylog

if TYPE_CHECKING:
    from ._logger import JobLogger

__all__ = ["run_map"]

_T = TypeVar("_T")
_R = TypeVar("_R")
#: The attribute a process child's report rides on, on the exception it raises.
_REPORT_ATTR = "__joblogger_child_report__"
KINDS = ("thread", "process")


def _chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    chunk: list[_T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _run_items(child: JobLogger, fn: Callable[[_T], _R], chunk: list[_T]) -> list[_R]:
    """``fn`` over the chunk in the child; an item counts 1 unless ``fn`` counted progress itself."""
    results = []
    for item in chunk:
        before = child.processed_total
        results.append(fn(item))
        if child.processed_total == before:
            child.increment_progress()
    return results


def _report(child: JobLogger) -> _children.ChildReport:
    return _children.ChildReport(
        child.job_run_id, child.job_name, child.result or "failure", child.processed_total, child._recorded_outcomes()
    )


def _thread_child(parent: JobLogger, name: str, fn: Callable[[_T], _R], chunk: list[_T]) -> list[_R]:
    with parent.child(name) as child:
        return _run_items(child, fn, chunk)


def _process_child(carrier: str, name: str, fn: Callable[[_T], _R], chunk: list[_T]) -> tuple[list[_R], Any]:
    """In the worker process: one child run from the carrier; its report goes back with the results."""
    from ._logger import JobLogger

    child = JobLogger(name=name, parent=carrier)
    try:
        with child:
            results = _run_items(child, fn, chunk)
    except BaseException as exc:
        try:
            setattr(exc, _REPORT_ATTR, _report(child).to_dict())
        except Exception:  # noqa: BLE001, S110 - an exception without __dict__: the parent counts a failure
            pass
        raise
    return results, _report(child).to_dict()


def _init_worker(configure: bool, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
    """In each worker process: OpenTelemetry as the parent had it (from ``OTEL_*``), then the user's initializer."""
    if configure:
        try:
            from . import otlp

            otlp.configure()  # a forked worker inherited the parent's set-up: this returns it
        except Exception as exc:  # noqa: BLE001 - the work runs even if export cannot be set up
            pylog.warning("joblogger: map worker %d could not configure OpenTelemetry: %r", os.getpid(), exc)
    if initializer is not None:
        initializer(*initargs)


def _parent_configured() -> bool:
    otlp = sys.modules.get("joblogger.otlp")
    return otlp is not None and getattr(otlp, "_current", None) is not None


def _executor(
    parent: JobLogger,
    *,
    kind: str,
    workers: object,
    mp_context: BaseContext | str | None,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> Executor:
    """The pool; odd ``workers`` / ``mp_context`` are reported once and replaced by the defaults."""
    count = None if workers is None else _sanitize.as_count(workers, "workers", parent._warn, allow_zero=False)
    if initializer is not None and not callable(initializer):
        parent._warn("map-initializer", "map(initializer=%r) is not callable; ignored", initializer)
        initializer = None
    if kind == "thread":
        return ThreadPoolExecutor(count, "joblogger-map", initializer, tuple(initargs))
    context: BaseContext | None = None
    if isinstance(mp_context, str):
        try:
            context = multiprocessing.get_context(mp_context)
        except ValueError:
            parent._warn("map-context", "map(mp_context=%r): unknown start method; using the default", mp_context)
    elif isinstance(mp_context, BaseContext):
        context = mp_context
    elif mp_context is not None:
        parent._warn(
            "map-context", "map(mp_context=%r) is not a start method or context; using the default", mp_context
        )
    return ProcessPoolExecutor(count, context, _init_worker, (_parent_configured(), initializer, tuple(initargs)))


def _settle(
    parent: JobLogger, future: Future[Any], kind: str, name: str
) -> tuple[list[Any], BaseException | None, bool]:
    """Results of one chunk, its failure (the report counted either way) and whether its child was lost."""
    error = future.exception()
    if error is None:
        value = future.result()
        if kind == "thread":
            return value, None, False
        results, report = value
        parent.add_child_report(report)
        return results, None, False
    lost = False
    if kind == "process":
        report = error.__dict__.pop(_REPORT_ATTR, None) if hasattr(error, "__dict__") else None
        if report is None:  # the worker died, or the result could not come back
            lost = True
            report = _children.ChildReport("", name, semconv.RESULT_ERROR).to_dict()
        parent.add_child_report(report)
    return [], error, lost


def _interrupt(parent: JobLogger, pool: Executor, futures: list[Future[Any]], kind: str, name: str) -> None:
    """The map was interrupted: items not started never start, worker processes are terminated.

    Chunks that had returned are counted as usual; a chunk that had not (waiting, or running
    in a terminated worker process) is a cancelled child. A thread child still running ends
    by itself (a thread cannot be stopped) and counts its own result.
    """
    try:
        pool.shutdown(wait=False, cancel_futures=True)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        for future in futures:
            if future.done() and not future.cancelled():
                _settle(parent, future, kind, name)
            elif kind == "process" or future.cancelled():
                parent.add_child_report(_children.ChildReport("", name, semconv.RESULT_CANCELLATION).to_dict())
        for process in processes:
            process.join(1.0)
    except Exception as exc:  # noqa: BLE001 - the interruption, not this, is what reaches the job
        parent._internal_error("map", exc)


def run_map(
    parent: JobLogger,
    fn: Callable[[_T], _R],
    items: Iterable[_T],
    *,
    workers: int | None,
    kind: str,
    name: str | None,
    chunksize: int,
    mp_context: BaseContext | str | None,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> list[_R]:
    """The body of ``JobLogger.map``."""
    if not callable(fn):
        parent._warn("map-fn", "map(fn=%r): not callable; nothing ran", fn)
        return []
    try:
        items = list(items)
    except Exception as exc:  # noqa: BLE001 - bad input never raises into a job
        parent._warn("map-items", "map(items=...) could not be iterated (%r); nothing ran", exc)
        return []
    if kind not in KINDS:
        parent._warn("map-kind", "map(kind=%r): expected 'thread' or 'process'; using 'thread'", kind)
        kind = "thread"
    size = _sanitize.as_count(chunksize, "chunksize", parent._warn) or 1
    child_name = name or getattr(fn, "__name__", None) or "map"
    if parent.total is None and items:  # an empty map sets no total of 0 (the next map's work would show 100 %)
        parent.set_total(len(items))
    pool = _executor(
        parent, kind=kind, workers=workers, mp_context=mp_context, initializer=initializer, initargs=initargs
    )
    futures: list[Future[Any]] = []
    try:
        carrier = parent.child_carrier() if kind == "process" else ""
        for chunk in _chunks(items, size):
            if kind == "thread":
                futures.append(pool.submit(_thread_child, parent, child_name, fn, chunk))
            else:
                futures.append(pool.submit(_process_child, carrier, child_name, fn, chunk))
        wait(futures)
    except BaseException:  # Ctrl-C, SystemExit from SIGTERM, a signal handler's exception
        _interrupt(parent, pool, futures, kind, child_name)
        raise
    pool.shutdown(wait=True)
    results: list[_R] = []
    first: BaseException | None = None
    lost: list[BaseException] = []
    for future in futures:
        values, error, gone = _settle(parent, future, kind, child_name)
        results.extend(values)
        if gone and error is not None:
            lost.append(error)
        if error is not None and first is None:
            first = error
    if lost:
        parent.warning(
            f"{len(lost)} {child_name} child run(s) never reported back: {type(lost[0]).__name__}: {lost[0]}",
            lost_children=len(lost),
        )
    if first is not None:
        raise first
    return results
