"""Live terminal view of the jobs running in this process (extra ``joblogger[console]``).

The view never draws on the job's thread: log records are handed over through a
``logging.Handler`` that only appends to a bounded deque, and a background
thread redraws a few times a second from the loggers' read-only state.

Like tqdm, the view writes to **stderr** (``file=`` to change it), so a job's
own output on stdout stays clean. What it prints is the same in both modes:

- *persistent lines*, kept in the scrollback: milestones (stage starts, the
  run's one summary line), warnings and errors; info lines too with
  ``persist_level=logging.INFO`` (``--verbose``), everything with ``show_debug``;
- on a terminal, below them, a live panel per active run (stage, progress bar
  with count, percentage, rate and ETA or a spinner, the latest log lines of
  every level, outcomes), redrawn in place and removed when the run ends;
- when the file is not a terminal (piped, a log file), instead of the panel a
  progress line per run at most every ``plain_interval_s`` seconds.

When a run ends, the thread that ended it waits (at most a second) until the
view has printed the summary, so it appears before anything the job prints
afterwards.

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
from ._console_lines import (
    LEVEL_STYLE,
    SPINNER,
    Handoff,
    Line,
    PropagateAbove,
    context_text,
    level_of,
    persist_style,
)
from ._logger import MILESTONE, JobLogger, active_runs, observe_runs

__all__ = ["ConsoleView"]


@dataclass
class _RunView:
    """What the view remembers of one run; only a weak reference to the run itself.

    A run that is dropped without ending must be released (its metrics count it as
    abandoned), so the view never keeps an active run alive. (A run's summary
    reaches the view as a log record, so an ended run needs nothing more.)
    """

    ref: weakref.ref[JobLogger]
    lines: deque[Line] = field(default_factory=lambda: deque(maxlen=8))
    last_plain: float = float("-inf")
    last_plain_text: str = ""


class ConsoleView:
    """Draws every active run of this process on a terminal (or as plain lines).

    Args:
        file: Where to draw (default ``sys.stderr``, like tqdm).
        show_debug: Also show ``debug()`` lines (and keep every line: ``persist_level`` DEBUG).
        refresh_per_second: Redraws per second on a terminal.
        plain_interval_s: Seconds between progress lines per run in plain mode.
        force_plain: Plain lines even on a terminal.
        force_terminal: Live drawing even when ``file`` is not a terminal (tests, ``script``).
        clock: Seconds for throttling (monotonic).
        persist_level: Records from this level up are printed as lines that stay (above the
            live panel, or as plain lines); lower ones only show in the panel. Default
            ``MILESTONE`` (milestones, the summary, warnings, errors); DEBUG with ``show_debug``.
        summary_wait_s: How long the thread that ends a run waits for its summary to be printed.
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
        persist_level: int | None = None,
        summary_wait_s: float = 1.0,
    ) -> None:
        self._file = file or sys.stderr
        self._show_debug = show_debug
        if persist_level is None:
            persist_level = logging.DEBUG if show_debug else MILESTONE
        self._persist_level = persist_level
        self._summary_wait_s = summary_wait_s
        self._period = 1.0 / max(0.5, refresh_per_second)
        self._plain_interval = plain_interval_s
        is_tty = bool(getattr(self._file, "isatty", lambda: False)())
        self._live_mode = (is_tty or force_terminal) and not force_plain
        self._clock = clock
        self._records: deque[logging.LogRecord] = deque(maxlen=10_000)
        self._handler = Handoff(self._records, logging.DEBUG if show_debug else logging.INFO, self._on_milestone)
        self._runs: dict[int, _RunView] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: ticks started / finished by the view thread, for waiting until a summary is drawn.
        self._drawn = threading.Condition()
        self._ticks_started = 0
        self._ticks_finished = 0
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._console: Any = None
        self._frame = 0
        self._previous_level: int | None = None
        self._propagate: PropagateAbove | None = None
        self._started: deque[weakref.ref[JobLogger]] = deque()
        self._unobserve: Callable[[], None] | None = None
        _VIEWS.add(self)

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> ConsoleView:
        """Attach to the ``joblogger`` logger and start drawing in a background thread."""
        joblog = logging.getLogger("joblogger")
        joblog.addHandler(self._handler)
        self._unobserve = observe_runs(self._on_start)
        wanted = logging.DEBUG if self._show_debug else logging.INFO
        if joblog.level == logging.NOTSET or joblog.level > wanted:
            # The view needs the records below the application's level; the application's own handlers
            # must not get them: only what its configuration enabled goes on up the logger tree.
            self._previous_level = joblog.level
            self._propagate = PropagateAbove(joblog.getEffectiveLevel(), joblog.propagate)
            joblog.addHandler(self._propagate)
            joblog.propagate = False
            joblog.setLevel(wanted)
        if self._live_mode:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self._file, force_terminal=True, highlight=False)
            # Drawing on stderr while stdout is the same terminal: the job's prints go above the panel.
            on_stderr = self._file is sys.stderr
            redirect_stdout = not on_stderr or bool(getattr(sys.stdout, "isatty", lambda: False)())
            self._live = Live(
                console=self._console, auto_refresh=False, transient=False, redirect_stdout=redirect_stdout
            )
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="joblogger-console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Draw what is left (final states and summaries) and detach; idempotent."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
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
                self._previous_level = None
            if self._propagate is not None:
                joblog.removeHandler(self._propagate)
                joblog.propagate = self._propagate.propagate
                self._propagate = None

    def __enter__(self) -> ConsoleView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- drawing --------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._period)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._drawn:
                self._ticks_started += 1
            try:
                self._tick(final=False)
            except Exception as exc:  # noqa: BLE001 - the view must never take the job down
                logging.getLogger("joblogger").debug("console view: %r", exc)
            finally:
                with self._drawn:
                    self._ticks_finished += 1
                    self._drawn.notify_all()

    def _on_milestone(self, record: logging.LogRecord) -> None:
        """On the job's thread: if ``record`` is a run's summary, wait until the view has printed it."""
        thread = self._thread
        if thread is None or threading.current_thread() is thread or self._stop.is_set():
            return
        run_id = getattr(record, semconv.JOB_RUN_ID, None)
        if run_id is None or not any(job.ended and job.job_run_id == run_id for job in active_runs()):
            return  # not a summary: the summary is the only record logged after a run ended
        with self._drawn:
            wanted = self._ticks_started + 1  # a tick that starts after the record was queued
            self._wake.set()
            self._drawn.wait_for(lambda: self._ticks_finished >= wanted or self._stop.is_set(), self._summary_wait_s)

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
        self._thread = None  # did not survive the fork; nothing may wait for its ticks
        self._drawn = threading.Condition()  # the parent's view thread may have held it
        self._wake = threading.Event()
        self._live = None
        self._runs.clear()
        self._started.clear()
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
        kept: list[tuple[Line, logging.LogRecord]] = []
        for record in records:
            level = level_of(record)
            if level == semconv.LEVEL_DEBUG and not self._show_debug:
                continue
            line = Line(str(getattr(record, semconv.JOB_RUN_ID, "")), level, record.getMessage(), context_text(record))
            view = by_run.get(line.run_id)
            if view is not None:
                view.lines.append(line)
            if record.levelno >= self._persist_level:
                kept.append((line, record))
                if not self._live_mode:
                    plain_out.append(self._plain_log(line, record))
        finished = [(view, job) for view, job in drawn if job.ended]
        if self._live_mode:
            self._draw_live(drawn, kept)
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
            if plain_out:
                self._file.write("\n".join(plain_out) + "\n")
                self._file.flush()
        for _, job in finished:
            self._runs.pop(id(job), None)

    def _plain_log(self, line: Line, record: logging.LogRecord) -> str:
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
            spin = SPINNER[self._frame % len(SPINNER)]
            rate = job.rate
            extra = f" · {_format.format_count(round(rate, 1))}/s" if rate is not None else ""
            elapsed = _format.format_duration(job.get_elapsed_ms() / 1000)
            rows.append(Text(f"{spin} {_format.format_count(job.current)} processed{extra} · {elapsed}", style="cyan"))
        if view.lines:
            rows.append(Text("Live Logs:", style="bold"))
            for line in view.lines:
                text = Text("  ")
                text.append(f"[{line.level.upper()}] ", style=LEVEL_STYLE.get(line.level, ""))
                text.append(line.text)
                if line.context:
                    text.append(f" {line.context}", style="dim")
                rows.append(text)
        outcomes = dict(job.outcomes)
        if outcomes:
            parts = ", ".join(f"{_format.outcome_label(k)}: {_format.format_count(v)}" for k, v in outcomes.items())
            rows.append(Text.assemble(("Outcomes: ", "bold"), parts))
        title = f"{job.job_name} · run {job.job_run_id}"
        return Panel(Group(*rows), title=title, title_align="left", expand=True)

    def _draw_live(self, drawn: list[tuple[_RunView, JobLogger]], kept: list[tuple[Line, logging.LogRecord]]) -> None:
        from rich.console import Group
        from rich.text import Text

        for line, record in kept:  # persistent lines go above the live area and stay in the scrollback
            text = Text(no_wrap=False)
            text.append(self._plain_log(line, record), style=persist_style(line, record))
            self._live.console.print(text, soft_wrap=True)
        active = [self._panel(view, job) for view, job in drawn if not job.ended]
        self._live.update(Group(*active), refresh=True)


#: Every view of this process, so a forked child can detach them.
_VIEWS: weakref.WeakSet[ConsoleView] = weakref.WeakSet()


def drawing() -> bool:
    """Whether a view of this process is drawing now (``joblogger.tqdm`` then hides its own bars)."""
    return any(view._thread is not None for view in list(_VIEWS))


def _forget_views_in_child() -> None:
    """A terminal view belongs to the process that started it: a forked child draws nothing of it.

    Without this, a child would keep queueing its runs and records into a view whose
    drawing thread did not survive the fork, holding every run it ever started.
    """
    for view in list(_VIEWS):
        view._forget_in_child()


_fork.register(_forget_views_in_child)
