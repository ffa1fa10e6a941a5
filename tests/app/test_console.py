"""The terminal view: plain fallback, throttling, live drawing, and staying off the job's thread."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import re
import threading

import pytest

from joblogger import semconv
from joblogger.console import ConsoleView
from joblogger.testing import capture


class FakeClock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_mode_prints_logs_progress_and_outcome():
    """Without a terminal, log lines, a progress line and the outcome line are printed plainly."""
    out = io.StringIO()
    view = ConsoleView(file=out, plain_interval_s=0.0, refresh_per_second=100).start()
    with capture() as cap, cap.job_logger("r1", "match-scores") as job:
        job.set_total(10, "users")
        job.set_stage("Scoring users")
        job.increment_progress(5)
        job.warning("User 1234 has no quiz data, skipping", userId="1234")
        view._tick(final=False)
    view.stop()
    text = out.getvalue()
    assert "[MILESTONE] Starting: Scoring users" in text
    assert "[WARNING] User 1234 has no quiz data, skipping { userId: '1234' }" in text
    assert 'Progress: "Scoring users (5 / 10)" - 50%' in text
    assert text.count("Completed in") == 1
    assert "| Processed: 5 users | Warnings: 1" in text
    assert "\x1b[" not in text  # no escape codes in plain mode


def test_plain_mode_prints_one_summary_and_no_info_lines():
    """Piped output is compact: one summary line, milestones/warnings/errors, no info chatter unless asked."""
    for persist, info_expected in ((None, False), (logging.INFO, True)):
        out = io.StringIO()
        view = ConsoleView(file=out, plain_interval_s=3600, refresh_per_second=100, persist_level=persist).start()
        with capture() as cap, cap.job_logger("r1", "compact") as job:
            job.set_stage("Scoring users")
            for i in range(20):
                job.info(f"Batch {i} complete")
            job.error("Failed to process user 7")
        view.stop()
        text = out.getvalue()
        assert text.count("Completed in") == 1, text
        assert "Outcome:" not in text
        assert "[ERROR] Failed to process user 7" in text
        assert ("[INFO] Batch 3 complete" in text) is info_expected


def test_view_writes_to_stderr_by_default(capsys):
    """Like tqdm, the view leaves stdout to the job: its lines (warnings, errors, summary) go to stderr."""
    view = ConsoleView(force_plain=True, refresh_per_second=100).start()
    with capture() as cap, cap.job_logger("r1", "streams") as job:
        job.warning("careful")
        job.error("broken")
    view.stop()
    out, err = capsys.readouterr()
    assert out == ""
    assert "[WARNING] careful" in err and "[ERROR] broken" in err and "Completed in" in err


def test_summary_is_printed_before_the_with_block_returns():
    """The thread that ends a run waits until the view printed the summary, so it precedes the job's next output."""
    for force_terminal in (False, True):
        out = io.StringIO()
        view = ConsoleView(file=out, refresh_per_second=1, force_terminal=force_terminal).start()
        try:
            with capture() as cap, cap.job_logger("r1", "ordered") as job:
                job.increment_progress()
            assert "Completed in" in out.getvalue()
        finally:
            view.stop()


def test_plain_mode_throttles_progress_lines():
    """Plain mode prints at most one progress line per interval, however often it ticks."""
    out = io.StringIO()
    clock = FakeClock()
    view = ConsoleView(file=out, plain_interval_s=5.0, clock=clock, refresh_per_second=0.5)
    view.start()
    try:
        with capture() as cap:
            job = cap.job_logger("r1", "throttle")
            job.set_total(1000)
            for step in range(100):
                job.increment_progress(10)
                clock.now = step * 0.1  # 10 s in total
                view._tick(final=False)
            job.log_summary()
    finally:
        view.stop()
    progress_lines = [line for line in out.getvalue().splitlines() if "Progress:" in line]
    assert 2 <= len(progress_lines) <= 3, progress_lines


def test_debug_lines_hidden_unless_asked():
    """Debug lines are hidden by default and shown with show_debug=True."""
    for show, expected in ((False, False), (True, True)):
        out = io.StringIO()
        view = ConsoleView(file=out, show_debug=show).start()
        with capture() as cap, cap.job_logger("r", "dbg") as job:
            job.debug("fetching user data", userId=1)
        view.stop()
        assert ("[DEBUG] fetching user data" in out.getvalue()) is expected


def test_live_mode_draws_panel_with_bar_and_logs():
    """On a terminal the view draws a panel with stage, progress bar, rate, ETA and coloured log lines."""
    out = io.StringIO()
    view = ConsoleView(file=out, force_terminal=True, refresh_per_second=50).start()
    with capture() as cap:
        job = cap.job_logger("r9", "match-scores")
        job.set_total(5000, "users")
        job.set_stage("Scoring users")
        job.increment_progress(1250)
        job.error("Failed to process user 5678", userId="5678")
        view._tick(final=False)
        drawn = out.getvalue()
        job.log_summary()
    view.stop()
    assert "\x1b[1;31m" in drawn  # errors in bold red
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    assert "match-scores · run r9" in drawn
    assert 'Progress: "Scoring users (1,250 / 5,000)" - 25%' in drawn
    assert "━" in drawn  # the bar
    assert "[ERROR] Failed to process user 5678" in drawn
    assert "Completed in" in out.getvalue()


def _lines_outside_panels(raw: str) -> list[str]:
    """Lines drawn with no panel border: what stays in the scrollback above the live area."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", raw)
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("│", "╭", "╰"))]


def test_live_mode_keeps_warnings_errors_and_one_summary_above_the_panel():
    """On a terminal, warnings, errors and the summary are printed once above the panel (not only inside it)."""
    out = io.StringIO()
    view = ConsoleView(file=out, force_terminal=True, refresh_per_second=0.5).start()
    with capture() as cap:
        job = cap.job_logger("r9", "match-scores")
        job.set_stage("Scoring users")
        job.error("Failed to process user 5678", userId="5678")
        job.warning("No valid candidates for user 33")
        for i in range(20):  # far more than the panel's window of 8 lines
            job.info(f"Batch {i} complete")
            view._tick(final=False)
        job.log_summary()
    view.stop()
    kept = _lines_outside_panels(out.getvalue())
    assert any("[ERROR] Failed to process user 5678 { userId: '5678' }" in line for line in kept), kept
    assert any("[WARNING] No valid candidates for user 33" in line for line in kept), kept
    assert not any("[INFO] Batch" in line for line in kept), kept
    assert out.getvalue().count("Completed in") == 1


def test_view_never_draws_on_the_job_thread():
    """Log calls only queue records; drawing happens on the view's own thread."""
    threads: set[str] = set()

    class Spy(io.StringIO):
        def write(self, s: str) -> int:
            threads.add(threading.current_thread().name)
            return super().write(s)

    out = Spy()
    view = ConsoleView(file=out, refresh_per_second=50, plain_interval_s=0).start()
    with capture() as cap, cap.job_logger("r", "threads") as job:
        for i in range(50):
            job.info(f"line {i}")
        threading.Event().wait(0.1)
        while_running = set(threads)
    view.stop()  # stop() draws the final frame on the caller's thread, which is fine
    assert while_running == {"joblogger-console"}


def test_stop_restores_logger_level():
    """Stopping the view detaches its handler and restores the joblogger logger's level."""
    joblog = logging.getLogger("joblogger")
    before_level, before_handlers = joblog.level, list(joblog.handlers)
    view = ConsoleView(file=io.StringIO()).start()
    view.stop()
    assert joblog.level == before_level
    assert joblog.handlers == before_handlers


def test_runs_dropped_without_ending_are_released():
    """The view holds no active run alive: 50 runs dropped without ending count as abandoned, none stay active."""
    out = io.StringIO()
    view = ConsoleView(file=out, force_plain=True, refresh_per_second=0.5).start()
    try:
        with capture() as cap:
            for i in range(50):
                cap.job_logger(f"dropped-{i}", "dropped").increment_progress(3)
            view._tick(final=False)
            gc.collect()
            view._tick(final=False)
            assert cap.metric_value(semconv.METRIC_RUNS_ACTIVE) == 0
            assert cap.metric_value(semconv.METRIC_ENTITIES_PROCESSED) == 150
            assert view._runs == {}
    finally:
        view.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_holds_none_of_the_parents_runs_and_pins_none_of_its_own():
    """In a forked child the view is detached: it holds no inherited run and none of the child's 2,000 runs."""
    view = ConsoleView(file=io.StringIO(), force_plain=True, refresh_per_second=0.5).start()
    try:
        with capture() as cap:
            parent_runs = [cap.job_logger(f"parent-{i}", "pinned") for i in range(20)]
            view._tick(final=False)
            assert len(view._runs) == 20
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    inherited = len(view._runs)
                    for i in range(2_000):
                        cap.job_logger(f"child-{i}", "pinned").increment_progress()
                    gc.collect()
                    held = len(view._runs) + len(view._started)
                    active = cap.metric_value(semconv.METRIC_RUNS_ACTIVE)
                    os.write(write_fd, json.dumps([inherited, held, active]).encode())
                finally:
                    os._exit(0)
            os.close(write_fd)
            os.waitpid(pid, 0)
            with os.fdopen(read_fd, "rb") as pipe:
                assert json.loads(pipe.read()) == [0, 0, 0]
            for job in parent_runs:
                job.log_summary()
    finally:
        view.stop()


def test_the_view_does_not_send_job_info_records_to_the_applications_root_handlers():
    """With the view on, the app's root handlers still get only what its own levels enabled (no INFO flood)."""
    root = logging.getLogger()
    joblog = logging.getLogger("joblogger")
    app_out = io.StringIO()
    app_handler = logging.StreamHandler(app_out)  # level NOTSET, as basicConfig makes it
    old_root_level, old_job_level, old_propagate = root.level, joblog.level, joblog.propagate
    root.addHandler(app_handler)
    root.setLevel(logging.WARNING)
    joblog.setLevel(logging.NOTSET)
    view_out = io.StringIO()
    try:
        view = ConsoleView(file=view_out, force_plain=True, persist_level=logging.INFO).start()
        with capture() as cap, cap.job_logger("r-root", "quiet-app") as job:
            job.info("an info line for the view only")
            job.warning("a warning the app wants")
        view.stop()
        assert joblog.level == logging.NOTSET and joblog.propagate is old_propagate  # restored
        with capture() as cap2, cap2.job_logger("r-after", "quiet-app") as job2:
            job2.warning("after the view")
    finally:
        root.removeHandler(app_handler)
        root.setLevel(old_root_level)
        joblog.setLevel(old_job_level)
        joblog.propagate = old_propagate
    seen_by_app = app_out.getvalue()
    assert "a warning the app wants" in seen_by_app
    assert "after the view" in seen_by_app
    assert "an info line for the view only" not in seen_by_app, seen_by_app
    assert "an info line for the view only" in view_out.getvalue()
