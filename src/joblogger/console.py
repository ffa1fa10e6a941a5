"""Live terminal view of the jobs running in this process (extra ``joblogger[console]``).

The view never runs on the job's thread: log records are handed over through a
``logging.Handler`` that only appends to a bounded deque, and a background
thread redraws a few times a second from the loggers' read-only state. On a
terminal it draws a live panel per run (stage, progress bar with count,
percentage, rate and ETA or a spinner, latest log lines coloured by level,
outcomes) and prints the summary block when a run ends. When stdout is not a
terminal it falls back to plain lines: every log record as it comes, and a
progress line at most every ``plain_interval_s`` seconds per run.

Enable it explicitly, e.g. ``joblogger.otlp.configure(console=True)`` or
``ConsoleView().start()``; a library never prints on its own.

Example:
    >>> import io
    >>> from joblogger import create_job_logger
    >>> from joblogger.console import ConsoleView
    >>> out = io.StringIO()
    >>> view = ConsoleView(file=out, force_plain=True).start()
    >>> with create_job_logger("r1", "demo") as job:
    ...     job.set_stage("Scoring users")
    >>> view.stop()
    >>> "Completed in" in out.getvalue()
    True
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from . import _fork, _format, semconv
from ._levels import RESERVED_RECORD_KEYS
from ._logger import MILESTONE, JobLogger, active_runs, observe_runs

__all__ = ["ConsoleView"]

_LEVEL_STYLE = {
    semconv.LEVEL_DEBUG: "dim",
    semconv.LEVEL_INFO: "cyan",
    semconv.LEVEL_MILESTONE: "bold green",
    semconv.LEVEL_WARNING: "yellow",
    semconv.LEVEL_ERROR: "bold red",
}
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@dataclass
class _Line:
    run_id: str
    level: str
    text: str
    context: str


@dataclass
class _RunView:
    """What the view remembers of one run; only a weak reference to the run itself.

    A run that is dropped without ending must be released (its metrics count it as
    abandoned), so the view never keeps an active run alive. Ended runs are held
    strongly from their end until the next tick has drawn them.
    """

    ref: weakref.ref[JobLogger]
    lines: deque[_Line] = field(default_factory=lambda: deque(maxlen=8))
    last_plain: float = float("-inf")
    last_plain_text: str = ""


class _Handoff(logging.Handler):
    """Receives joblogger records on the job's thread and only queues them."""

    def __init__(self, sink: deque[logging.LogRecord], level: int) -> None:
        super().__init__(level)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.append(record)


#: Record attributes that are not the job's context: stdlib ones and joblogger's own extras.
_NOT_CONTEXT = RESERVED_RECORD_KEYS | {
    semconv.JOB_NAME,
    semconv.JOB_RUN_ID,
    semconv.JOB_STAGE,
    semconv.JOB_LOG_LEVEL,
    "joblogger.warning",
}


def _context_text(record: logging.LogRecord) -> str:
    pairs = [f"{k}: {v!r}" for k, v in record.__dict__.items() if k not in _NOT_CONTEXT]
    return "{ " + ", ".join(pairs) + " }" if pairs else ""


def _level_of(record: logging.LogRecord) -> str:
    level = getattr(record, semconv.JOB_LOG_LEVEL, None)
    if isinstance(level, str):
        return level
    if record.levelno >= logging.ERROR:
        return semconv.LEVEL_ERROR
    if record.levelno >= logging.WARNING:
        return semconv.LEVEL_WARNING
    if record.levelno >= MILESTONE:
        return semconv.LEVEL_MILESTONE
    return semconv.LEVEL_INFO if record.levelno >= logging.INFO else semconv.LEVEL_DEBUG


class ConsoleView:
    """Draws every active run of this process on a terminal (or as plain lines).

    Args:
        file: Where to draw (default ``sys.stdout``).
        show_debug: Also show ``debug()`` lines.
        refresh_per_second: Redraws per second on a terminal.
        plain_interval_s: Seconds between progress lines per run in plain mode.
        force_plain: Plain lines even on a terminal.
        force_terminal: Live drawing even when ``file`` is not a terminal (tests, ``script``).
        clock: Seconds for throttling (monotonic).
    """

    def __init__(
        self,
        *,
        file: IO[str] | None = None,
        show_debug: bool = False,
        refresh_per_second: float = 8.0,
        plain_interval_s: float = 5.0,
        force_plain: bool = False,
        force_terminal: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = file or sys.stdout
        self._show_debug = show_debug
        self._period = 1.0 / max(0.5, refresh_per_second)
        self._plain_interval = plain_interval_s
        is_tty = bool(getattr(self._file, "isatty", lambda: False)())
        self._live_mode = (is_tty or force_terminal) and not force_plain
        self._clock = clock
        self._records: deque[logging.LogRecord] = deque(maxlen=10_000)
        self._handler = _Handoff(self._records, logging.DEBUG if show_debug else logging.INFO)
        self._runs: dict[int, _RunView] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._console: Any = None
        self._frame = 0
        self._previous_level: int | None = None
        self._started: deque[weakref.ref[JobLogger]] = deque()
        self._ended: deque[JobLogger] = deque()
        self._unobserve: Callable[[], None] | None = None
        _VIEWS.add(self)

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> ConsoleView:
        """Attach to the ``joblogger`` logger and start drawing in a background thread."""
        joblog = logging.getLogger("joblogger")
        joblog.addHandler(self._handler)
        self._unobserve = observe_runs(self._on_start, self._ended.append)
        wanted = logging.DEBUG if self._show_debug else logging.INFO
        if joblog.level == logging.NOTSET or joblog.level > wanted:
            self._previous_level = joblog.level
            joblog.setLevel(wanted)
        if self._live_mode:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self._file, force_terminal=True, highlight=False)
            self._live = Live(console=self._console, auto_refresh=False, transient=False)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="joblogger-console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Draw what is left (final states and summaries) and detach; idempotent."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        try:
            self._tick(final=True)
        finally:
            if self._live is not None:
                self._live.stop()
                self._live = None
            joblog = logging.getLogger("joblogger")
            joblog.removeHandler(self._handler)
            if self._unobserve is not None:
                self._unobserve()
            if self._previous_level is not None:
                joblog.setLevel(self._previous_level)

    def __enter__(self) -> ConsoleView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- drawing --------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self._tick(final=False)
            except Exception as exc:  # noqa: BLE001 - the view must never take the job down
                logging.getLogger("joblogger").debug("console view: %r", exc)

    def _on_start(self, job: JobLogger) -> None:
        self._started.append(weakref.ref(job))

    def _view_of(self, job: JobLogger) -> None:
        view = self._runs.get(id(job))
        if view is None or view.ref() is not job:
            self._runs[id(job)] = _RunView(weakref.ref(job))

    def _track_runs(self) -> list[tuple[_RunView, JobLogger]]:
        """Bring the views up to date; return every run to draw now, with its view."""
        while self._started:
            started = self._started.popleft()()
            if started is not None:
                self._view_of(started)
        for job in active_runs():
            self._view_of(job)
        ended = []  # strong references until this tick has drawn them
        while self._ended:
            ended.append(self._ended.popleft())
        for job in ended:
            self._view_of(job)
        drawn = []
        for key, view in list(self._runs.items()):
            alive = view.ref()
            if alive is None:
                del self._runs[key]  # dropped without ending: nothing left to draw
            else:
                drawn.append((view, alive))
        return drawn

    def _forget_in_child(self) -> None:
        """In a forked child: the view belongs to the parent process; detach it and drop its state."""
        self._thread = None
        self._live = None
        self._runs.clear()
        self._started.clear()
        self._ended.clear()
        self._records.clear()
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        logging.getLogger("joblogger").removeHandler(self._handler)

    def _tick(self, *, final: bool) -> None:
        self._frame += 1
        drawn = self._track_runs()
        records = []
        while self._records:
            records.append(self._records.popleft())
        by_run = {job.job_run_id: view for view, job in drawn}
        plain_out: list[str] = []
        for record in records:
            level = _level_of(record)
            if level == semconv.LEVEL_DEBUG and not self._show_debug:
                continue
            line = _Line(
                str(getattr(record, semconv.JOB_RUN_ID, "")), level, record.getMessage(), _context_text(record)
            )
            view = by_run.get(line.run_id)
            if view is not None:
                view.lines.append(line)
            if not self._live_mode:
                plain_out.append(self._plain_log(line, record))
        finished = [(view, job) for view, job in drawn if job.ended]
        if self._live_mode:
            self._draw_live(drawn, finished)
        else:
            now = self._clock()
            for view, job in drawn:
                if job.ended:
                    continue
                text = self._status_text(job)
                due = final or now - view.last_plain >= self._plain_interval
                if due and text != view.last_plain_text:
                    plain_out.append(f"[{job.job_name}] {text}")
                    view.last_plain, view.last_plain_text = now, text
            for _, job in finished:  # the summary line itself was already printed as a log line
                plain_out.extend(self._summary_lines(job)[:1])
            if plain_out:
                self._file.write("\n".join(plain_out) + "\n")
                self._file.flush()
        for _, job in finished:
            self._runs.pop(id(job), None)

    def _plain_log(self, line: _Line, record: logging.LogRecord) -> str:
        prefix = "" if line.run_id or getattr(record, semconv.JOB_NAME, None) else "joblogger: "
        context = f" {line.context}" if line.context else ""
        return f"  [{line.level.upper()}] {prefix}{line.text}{context}"

    def _status_text(self, job: JobLogger) -> str:
        text = f'Stage: "{job.stage or "-"}" | Progress: "{job.progress_text}"'
        pct = job.percent
        if pct is not None:
            text += f" - {pct:.0f}%"
        rate = job.rate
        if rate is not None:
            text += f" | {_format.format_count(round(rate, 1))}/s"
        eta = job.eta_seconds
        if eta is not None:
            text += f" | ETA {_format.format_duration(eta)}"
        return text

    def _summary_lines(self, job: JobLogger) -> list[str]:
        summary = job.summary
        if summary is None:
            return []
        parts = [f"Processed: {_format.format_count(summary.entities_processed)} {summary.entity_type or 'entities'}"]
        parts += [f"{_format.outcome_label(k)}: {_format.format_count(v)}" for k, v in summary.outcomes.items()]
        parts.append(f"Duration: {_format.format_duration(summary.duration_ms / 1000)}")
        return [f"[{job.job_name}] Outcome: {', '.join(parts)}", f"[{job.job_name}] {summary.line}"]

    def _panel(self, view: _RunView, job: JobLogger) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        rows: list[Any] = [Text.assemble(("Stage: ", "bold"), f'"{job.stage or "-"}"')]
        progress = Text.assemble(("Progress: ", "bold"), f'"{job.progress_text}"')
        pct = job.percent
        if pct is not None:
            progress.append(f" - {pct:.0f}%", style="bold")
        rows.append(progress)
        bar = Table.grid(padding=(0, 1))
        if job.total is not None and not job.ended:
            stats = [f"{_format.format_count(job.current)} / {_format.format_count(job.total)}"]
            rate, eta = job.rate, job.eta_seconds
            if rate is not None:
                stats.append(f"{_format.format_count(round(rate, 1))}/s")
            if eta is not None:
                stats.append(f"ETA {_format.format_duration(eta)}")
            stats.append(_format.format_duration(job.get_elapsed_ms() / 1000))
            bar.add_row(
                ProgressBar(total=max(job.total, 1), completed=min(job.current, job.total), width=40),
                Text(" · ".join(stats), style="cyan"),
            )
            rows.append(bar)
        elif not job.ended:
            spin = _SPINNER[self._frame % len(_SPINNER)]
            rate = job.rate
            extra = f" · {_format.format_count(round(rate, 1))}/s" if rate is not None else ""
            elapsed = _format.format_duration(job.get_elapsed_ms() / 1000)
            rows.append(Text(f"{spin} {_format.format_count(job.current)} processed{extra} · {elapsed}", style="cyan"))
        if view.lines:
            rows.append(Text("Live Logs:", style="bold"))
            for line in view.lines:
                text = Text("  ")
                text.append(f"[{line.level.upper()}] ", style=_LEVEL_STYLE.get(line.level, ""))
                text.append(line.text)
                if line.context:
                    text.append(f" {line.context}", style="dim")
                rows.append(text)
        if job.ended and job.summary is not None:
            outcome = self._summary_lines(job)[0].split("] ", 1)[1]
            rows.append(Text(outcome, style="bold"))
            rows.append(Text(job.summary.line, style="bold green" if job.summary.result == "success" else "bold red"))
        else:
            outcomes = dict(job.outcomes)
            if outcomes:
                parts = ", ".join(f"{_format.outcome_label(k)}: {_format.format_count(v)}" for k, v in outcomes.items())
                rows.append(Text.assemble(("Outcomes: ", "bold"), parts))
        title = f"{job.job_name} · run {job.job_run_id}"
        return Panel(Group(*rows), title=title, title_align="left", expand=True)

    def _draw_live(self, drawn: list[tuple[_RunView, JobLogger]], finished: list[tuple[_RunView, JobLogger]]) -> None:
        from rich.console import Group

        for view, job in finished:  # a finished run's final panel stays on screen above the live area
            self._live.console.print(self._panel(view, job))
        active = [self._panel(view, job) for view, job in drawn if not job.ended]
        self._live.update(Group(*active), refresh=True)


#: Every view of this process, so a forked child can detach them.
_VIEWS: weakref.WeakSet[ConsoleView] = weakref.WeakSet()


def _forget_views_in_child() -> None:
    """A terminal view belongs to the process that started it: a forked child draws nothing of it.

    Without this, a child would keep queueing its runs and records into a view whose
    drawing thread did not survive the fork, holding every run it ever started.
    """
    for view in list(_VIEWS):
        view._forget_in_child()


_fork.register(_forget_views_in_child)
