"""The parent side of child runs: ``child()``, ``map()``, carriers and children's reports.

The model is in docs/children.md; the carrier and the roll-up in ``_children``;
the pool in ``_map``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from multiprocessing.context import BaseContext
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _children, _sanitize, semconv
from ._state import RunState, guarded

if TYPE_CHECKING:
    from ._logger import JobLogger

_T = TypeVar("_T")
_R = TypeVar("_R")


class ChildrenMixin(RunState):
    """Child runs of a run and their roll-up into it."""

    __slots__ = ()

    def child_carrier(self, *, link: bool = False) -> str:
        """This run as a parent, for a child in another process or host: a short JSON string.

        Pass it as ``JobLogger(parent=carrier)``, in the ``JOBLOGGER_PARENT`` environment
        variable (:meth:`child_env`), a task header or a message field. It holds the run
        span's W3C ``traceparent`` (and ``tracestate``), the run id and the job name. The
        child's run span is a child of this run's span; with ``link=True`` it starts a new
        trace linked to this one instead (children that start after this run ended, or
        fan-outs too large for one trace). See docs/children.md.

        Example:
            >>> from joblogger import create_job_logger
            >>> job = create_job_logger("r-1", "fan-out")
            >>> import json
            >>> json.loads(job.child_carrier())["run_id"]
            'r-1'
        """
        try:
            return _children.encode(self, link=bool(link))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - never raise into the job
            self._internal_error("child_carrier", exc)
            return ""

    def child_env(self, *, link: bool = False) -> dict[str, str]:
        """``{"JOBLOGGER_PARENT": carrier}``: add it to a child process's environment.

        Example:
            >>> from joblogger import create_job_logger
            >>> list(create_job_logger("r-1", "fan-out").child_env())
            ['JOBLOGGER_PARENT']
        """
        return {semconv.ENV_PARENT: self.child_carrier(link=link)}

    def child(
        self,
        name: object,
        *,
        total: int | None = None,
        entity_type: str | None = None,
        run_id: object = None,
        attributes: Mapping[str, object] | None = None,
    ) -> JobLogger:
        """Start a child run in this process (a thread, an asyncio task, or inline).

        The child is a :class:`JobLogger` of its own (use it as ``with job.child("shard-3") as c:``)
        whose span is a child of this run's span. Its processed entities and outcomes count in
        this run's progress and summary live, and its result in the ``Children:`` part of the
        summary. On the metrics each entity is counted once, by the run that processed it.

        Example:
            >>> from joblogger import create_job_logger
            >>> with create_job_logger("r-1", "fan-out", clock=lambda: 0.0) as job:
            ...     with job.child("shard") as shard:
            ...         shard.increment_progress(3); shard.add_outcome("updates", 3)
            ...     job.current
            3
            >>> job.summary.line
            'Completed in 0ms | Processed: 3 entities | Updates: 3 | Children: 1 ok'
        """
        from ._logger import JobLogger

        child = JobLogger(
            run_id=run_id,
            name=name,
            parent=self,
            tracer_provider=self._tracer_provider,
            meter_provider=self._meter_provider,
            clock=self._clock,
            snapshots=self._snapshots,
            attributes=attributes,
        )
        if total is not None:
            child.set_total(total, entity_type)
        return child

    @guarded
    def add_child_report(self, report: _children.ChildReport | Mapping[str, Any]) -> None:
        """Count a child that ran elsewhere and sent its report back (``job.map()`` does this itself).

        ``report`` is a :class:`joblogger.ChildReport` or its ``to_dict()``; the child's processed
        entities and outcomes are added to this run's, its result to the children's counts.
        """
        if self._ended_call():
            return
        if isinstance(report, Mapping):
            try:
                report = _children.ChildReport(**report)
            except TypeError as exc:
                self._warn("child-report", "not a child report (%s); ignored", exc)
                return
        if not isinstance(report, _children.ChildReport):
            self._warn("child-report", "not a child report (%s); ignored", type(report).__name__)
            return
        self._board().absorb(self._clean_report(report))

    @property
    def children(self) -> Mapping[str, int]:
        """Children by state so far: ``ok``, ``failed``, ``cancelled``, ``running`` (read-only)."""
        board = self._children
        counts = board.counts() if board is not None else dict.fromkeys(_children.STATES, 0)
        return MappingProxyType(counts)

    def map(
        self,
        fn: Callable[[_T], _R],
        items: Iterable[_T],
        *,
        workers: int | None = None,
        kind: str = "thread",
        name: str | None = None,
        chunksize: int = 1,
        mp_context: BaseContext | str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> list[_R]:
        """``[fn(item) for item in items]`` on a pool, each item (or chunk) a child run; see docs/children.md.

        ``kind="thread"`` (``ThreadPoolExecutor``) or ``"process"`` (``ProcessPoolExecutor``, any
        start method: ``mp_context`` is a context or ``"fork"``, ``"forkserver"``, ``"spawn"``).
        Every item runs; then the results come back in order, or the first failure in item order
        is raised (the exception ``fn`` raised, as ``concurrent.futures`` delivers it). A worker
        process that dies is a failed child (``BrokenProcessPool``), never a hang. Each child
        counts one processed entity per item unless ``fn`` counted progress itself
        (``current_job()`` is the child inside ``fn``). The child's job name is ``name``, else
        ``fn``'s name.
        """
        from ._map import run_map

        return run_map(
            self,  # type: ignore[arg-type]
            fn,
            items,
            workers=workers,
            kind=kind,
            name=name,
            chunksize=chunksize,
            mp_context=mp_context,
            initializer=initializer,
            initargs=initargs,
        )

    # --- internal ---------------------------------------------------------------------
    def _clean_report(self, report: _children.ChildReport) -> _children.ChildReport:
        """The report with its counts coerced like ``increment_progress``'s and outcome keys like ``add_outcome``'s."""
        processed = _sanitize.as_count(report.processed, "child report processed", self._warn) or 0
        outcomes: dict[str, int] = {}
        items = report.outcomes.items() if isinstance(report.outcomes, Mapping) else None
        if items is None:
            self._warn("child-report-outcomes", "child report outcomes should be a mapping; ignored")
            items = {}.items()
        for key, value in items:
            count = _sanitize.as_count(value, "child report outcome count", self._warn)
            text = _sanitize.as_text(key, "child report outcome key", self._warn, limit=_sanitize.MAX_LABEL_CHARS)
            name = _sanitize.outcome_key(text) or semconv.OUTCOME_OTHER
            if count:
                outcomes[name] = outcomes.get(name, 0) + count
        result = report.result if isinstance(report.result, str) else semconv.RESULT_ERROR
        return _children.ChildReport(str(report.run_id), str(report.job), result, processed, outcomes)

    def _board(self) -> _children.Children:
        board = self._children
        if board is None:
            with self._lock:
                board = self._children
                if board is None:
                    board = self._children = _children.Children()
        return board

    def _children_processed(self) -> int:
        board = self._children
        return 0 if board is None else board.processed()

    def _child_ended(self, child: JobLogger, result: str) -> None:
        board = self._children
        if board is not None:
            board.ended(child, result)
