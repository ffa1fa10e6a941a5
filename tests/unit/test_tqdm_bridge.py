"""joblogger.tqdm: bars report to the run with the numbers they counted, and are plain tqdm outside a run."""

from __future__ import annotations

import contextvars
import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tqdm import std
from tqdm.auto import tqdm as auto_tqdm

from joblogger import semconv
from joblogger._bridge import OTelLogHandler
from joblogger._progress import ProgressMixin
from joblogger.console import ConsoleView
from joblogger.testing import Capture
from joblogger.tqdm import logging_redirect_tqdm, patch, tqdm, trange

from ._helpers import joblogger_warnings

QUIET: dict[str, Any] = {"file": io.StringIO()}  # draws somewhere harmless, counts as tqdm counts


def stage_spans(cap: Capture) -> dict[str, int]:
    """Finished stage spans: name -> job.progress.current recorded at their end."""
    return {
        s.name: int((s.attributes or {})[semconv.JOB_PROGRESS_CURRENT])
        for s in cap.spans()
        if (s.attributes or {}).get(semconv.JOB_STAGE) and semconv.JOB_SNAPSHOT_KIND not in (s.attributes or {})
    }


def test_iterable_bar_sets_stage_total_and_progress(cap: Capture):
    """`for x in tqdm(items, desc=...)`: desc is the stage, len the total, the count the progress."""
    with cap.job_logger("r", "j") as job:
        bar_items = tqdm(list(range(250)), desc="Scoring users", **QUIET)
        assert (job.stage, job.total, job.current) == ("Scoring users", 250, 0)
        assert sum(1 for _ in bar_items) == 250
        assert (job.current, job.processed_total) == (250, 250)
        assert job.progress_text == "Scoring users (250 / 250)"
    assert stage_spans(cap) == {"Scoring users": 250}


def test_update_n_total_none_and_unsized_iterables(cap: Capture):
    """update(n) with odd sizes, total=None and a generator: the run counts exactly what the bars counted."""
    with cap.job_logger("r", "j") as job:
        with tqdm(total=None, desc="Reading", mininterval=3600, **QUIET) as bar:
            for size in (3, 17, 1, 250, 4096):
                bar.update(size)
            assert job.total is None
        assert job.current == 3 + 17 + 1 + 250 + 4096
        gen = (i for i in range(77))
        assert sum(1 for _ in tqdm(gen, desc="Streaming", **QUIET)) == 77
        assert (job.stage, job.total, job.current) == ("Streaming", None, 77)
        assert job.processed_total == 4367 + 77


def test_nothing_is_reported_per_item(cap: Capture, monkeypatch: pytest.MonkeyPatch):
    """Between tqdm's redraws the bridge calls nothing: 100,000 items with mininterval=1h make at most 2 reports."""
    calls = []
    original = ProgressMixin.increment_progress

    def counting(self: Any, count: int = 1, message: str | None = None) -> None:
        calls.append(count)
        original(self, count, message)

    monkeypatch.setattr(ProgressMixin, "increment_progress", counting)
    with cap.job_logger("r", "j") as job:
        for _ in tqdm(range(100_000), mininterval=3600, **QUIET):
            pass
        with tqdm(total=100_000, mininterval=3600, **QUIET) as bar:
            for _ in range(100_000):
                bar.update(1)
        assert job.processed_total == 200_000
    assert len(calls) <= 4 and sum(calls) == 200_000


def test_refresh_reports_the_live_count(cap: Capture):
    """Where tqdm redraws (mininterval=0: every update), the run has the bar's count at once."""
    with cap.job_logger("r", "j") as job, tqdm(total=10, mininterval=0, miniters=1, **QUIET) as bar:
        for expected in range(1, 11):
            bar.update(1)
            assert job.current == expected


def test_reset_starts_a_new_phase_and_keeps_unreported_counts(cap: Capture):
    """reset() after counting (none of it redrawn yet) starts a new phase; processed keeps every count."""
    with cap.job_logger("r", "j") as job:
        bar = tqdm(total=100, desc="Epoch", mininterval=3600, **QUIET)
        for _ in range(100):
            bar.update(1)
        bar.reset(total=40)
        assert (job.current, job.total, job.processed_total) == (0, 40, 100)
        bar.update(15)
        bar.close()
        assert (job.current, job.total, job.processed_total) == (15, 40, 115)


def test_manual_n_writes_and_backwards_moves(cap: Capture):
    """bar.n writes show after refresh; moving back moves the phase count, never un-counts processed."""
    with cap.job_logger("r", "j") as job, tqdm(total=100, **QUIET) as bar:
        bar.n = 60
        bar.refresh()
        assert (job.current, job.processed_total) == (60, 60)
        bar.n = 20
        bar.refresh()
        assert (job.current, job.processed_total) == (20, 60)
        bar.update(-5)
        bar.refresh()
        assert job.current == 15
        bar.n = 90
    assert job.summary is not None and job.summary.entities_processed == 90


def test_unit_scale_floats_and_initial(cap: Capture):
    """Numeric unit_scale scales as the bar shows it; float updates floor; initial= is the start, not work done."""
    with cap.job_logger("r", "j") as job:
        with tqdm(total=10, unit_scale=1024, unit="B", **QUIET) as bar:
            for _ in range(10):
                bar.update(1)
        assert (job.current, job.total, job.entity_type) == (10 * 1024, 10 * 1024, "B")
        with tqdm(total=4, unit_scale=True, **QUIET) as bar:
            for _ in range(8):
                bar.update(0.5)
        assert (job.current, job.total) == (4, 4)
        with tqdm(total=100, initial=30, desc="Resumed download", **QUIET) as bar:
            assert job.current == 30
            bar.update(70)
        assert job.current == 100
        assert job.processed_total == 10 * 1024 + 4 + 70


def test_nested_bars_outer_is_the_stage_inner_is_the_message(cap: Capture):
    """Outer bar = stage and progress; inner bars (leave=False) only show as the run's message."""
    seen = []
    with cap.job_logger("r", "j") as job:
        for _epoch in trange(3, desc="Epochs", **QUIET):
            for _ in tqdm(range(5), desc="batches", leave=False, mininterval=0, miniters=1, **QUIET):
                seen.append(job.message)
            assert job.message is None  # cleared when the inner bar closed
        assert (job.stage, job.current, job.total, job.processed_total) == ("Epochs", 3, 3, 3)
    assert "batches: 4/5" in seen
    assert stage_spans(cap) == {"Epochs": 3}


def test_sequential_bars_and_repeated_desc(cap: Capture):
    """Bars one after another: one stage per desc, a repeated desc keeps its stage and starts a new phase."""
    with cap.job_logger("r", "j") as job:
        for _ in tqdm(range(10), desc="Load", **QUIET):
            pass
        for _ in range(2):
            for _ in tqdm(range(7), desc="Score", **QUIET):
                pass
            assert (job.stage, job.current, job.total) == ("Score", 7, 7)
        assert job.processed_total == 24
    assert stage_spans(cap) == {"Load": 10, "Score": 14}


def test_set_description_is_the_message(cap: Capture):
    """A later set_description() changes the run's message, not its stage."""
    with cap.job_logger("r", "j") as job, tqdm(range(3), desc="Files", **QUIET) as bar:
        for name in bar:
            bar.set_description(f"file {name}")
            assert (job.stage, job.message) == ("Files", f"file {name}")


def test_one_bar_per_thread_on_a_shared_run(cap: Capture):
    """Eight threads with a bar each (job=), open at once on one run: totals and counts add up exactly."""
    with cap.job_logger("r", "j") as job:
        start, opened = threading.Barrier(8), threading.Barrier(8)

        def work(i: int) -> None:
            start.wait()
            with tqdm(total=500, desc="Workers", position=i, job=job, **QUIET) as bar:
                opened.wait()
                for _ in range(500):
                    bar.update(1)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (job.current, job.processed_total, job.total) == (4000, 4000, 4000)


def test_threads_in_a_copied_context_are_siblings_not_children(cap: Capture):
    """Threads running in a copy of the run's context find the run without job=; each bar counts."""
    with cap.job_logger("r", "j") as job:

        def work() -> None:
            for _ in tqdm(range(300), **QUIET):
                pass

        threads = [threading.Thread(target=contextvars.copy_context().run, args=(work,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert job.processed_total == 1200


def test_bars_that_would_not_draw_still_count(cap: Capture):
    """disable=True, or disable=None off a terminal: tqdm would count nothing; in a run they count, drawing nothing."""
    out = io.StringIO()
    with cap.job_logger("r", "j") as job:
        for _ in tqdm(range(20), disable=True, file=out):
            pass
        for _ in tqdm(range(30), disable=None, file=out):
            pass
        assert job.processed_total == 50
    assert out.getvalue() == ""


def test_bars_do_not_draw_while_the_terminal_view_draws(cap: Capture):
    """While joblogger's console view draws the run, bars count without drawing (no fight over the terminal)."""
    out, view_out = io.StringIO(), io.StringIO()
    view = ConsoleView(file=view_out, force_plain=True).start()
    try:
        with cap.job_logger("r", "j") as job:
            for _ in tqdm(range(40), desc="Quiet", file=out):
                pass
            assert job.current == 40
    finally:
        view.stop()
    assert out.getvalue() == ""
    with cap.job_logger("r2", "j"):
        for _ in tqdm(range(3), file=out):
            pass
    assert "3/3" in out.getvalue()  # the view stopped: bars draw again


def _draw(cls: Any, **kwargs: Any) -> str:
    out = io.StringIO()
    fmt = "{desc}|{n_fmt}/{total_fmt}|{postfix}"
    kwargs = {"file": out, "mininterval": 0, "miniters": 1, "bar_format": fmt} | kwargs
    with cls(total=5, desc="same", **kwargs) as bar:
        for i in range(5):
            bar.update(1)
            bar.set_postfix(i=i)
        bar.reset(total=3)
        bar.update(2)
    for _ in cls(range(4), **kwargs):
        pass
    for _ in cls(range(4), disable=True, **kwargs):
        pass
    return out.getvalue()


def test_outside_a_run_it_is_plain_tqdm(cap: Capture):
    """Outside a run the drop-in draws exactly what tqdm draws, disabled bars included."""
    plain = _draw(std.tqdm)
    assert _draw(tqdm) == plain
    assert "same|5/5|, i=4" in plain
    with tqdm(range(3), disable=True) as bar:
        assert list(bar) == [0, 1, 2] and bar.n == 0  # tqdm's disabled bar counts nothing; neither does ours
    assert isinstance(tqdm(disable=True), std.tqdm)


def test_bad_input_never_raises_into_the_job(cap: Capture, caplog: pytest.LogCaptureFixture):
    """Junk in job=, bar.n, bar.total, unit_scale: reported once and ignored; a bar outliving its run is left alone.

    (tqdm itself raises on junk it has to draw; a bar that never drew, ``delay=``, hands it to joblogger untouched.)
    """
    caplog.set_level(logging.WARNING, logger="joblogger")
    with cap.job_logger("r", "j") as job:
        bar = tqdm(total=10, job="not a run", **QUIET)
        bar.update(4)
        bar.close()
        assert job.current == 4
        for n, total, scale in (("junk", 10, False), (float("nan"), 10, False), (3, "ten", False), (3, 10, "x")):
            odd = tqdm(total=5, delay=3600, **QUIET)
            odd.n, odd.total, odd.unit_scale = n, total, scale
            odd.close()
        late = tqdm(total=5, **QUIET)
    late.update(5)
    late.close()  # the run ended: nothing reported, no "call ignored" warning
    kinds = joblogger_warnings(caplog.records)
    assert "job-type" in kinds and "value" in kinds
    assert "ended" not in kinds
    assert job.summary is not None and job.processed_total == 4 + 3 + 3


@pytest.fixture
def unpatched() -> Iterator[None]:
    """Every test leaves tqdm's methods as it found them."""
    before = {name: std.tqdm.__dict__[name] for name in ("__init__", "refresh", "reset", "close")}
    yield
    after = {name: std.tqdm.__dict__[name] for name in before}
    assert after == before


def test_patch_reaches_bars_of_code_that_imported_tqdm_before(cap: Capture, unpatched: None):
    """Under patch(), tqdm.auto bars imported long before (as libraries do) report; after unpatch they do not."""
    with cap.job_logger("r", "j") as job:
        with patch():
            for _ in auto_tqdm(range(12), desc="Library download", **QUIET):
                pass
            assert (job.stage, job.current) == ("Library download", 12)
        for _ in auto_tqdm(range(5), desc="Unpatched", **QUIET):
            pass
        assert (job.stage, job.processed_total) == ("Library download", 12)


def test_patch_and_drop_in_together_count_once(cap: Capture, unpatched: None):
    """A drop-in bar under an active patch reports once, to the run it names."""
    with cap.job_logger("a", "j") as current, cap.job_logger("b", "j") as named, patch():
        for _ in tqdm(range(9), job=named, **QUIET):
            pass
        assert (named.processed_total, current.processed_total) == (9, 0)


def test_unpatch_with_a_bar_still_open_keeps_its_numbers(cap: Capture, unpatched: None):
    """A bar made under the patch reports to its end even if the patch is undone first; then tqdm is restored."""
    with cap.job_logger("r", "j") as job:
        handle = patch()
        bar = std.tqdm(total=50, mininterval=3600, **QUIET)
        bar.update(20)
        handle.unpatch()
        handle.unpatch()  # idempotent
        assert std.tqdm.__dict__["close"] is not None
        bar.update(30)
        bar.close()
        assert job.current == 50


def test_patch_is_safe_with_threads(cap: Capture, unpatched: None):
    """Threads patching, counting and unpatching at once: every run's count is right, tqdm is restored."""
    errors = []

    def work(i: int) -> None:
        try:
            with cap.job_logger(f"r{i}", "j") as job, patch():
                for _ in range(3):
                    with std.tqdm(total=100, **QUIET) as bar:
                        for _ in range(100):
                            bar.update(1)
                assert job.processed_total == 300, job.processed_total
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


class _Collect:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def emit(self, record: Any) -> None:
        self.records.append(record)


def test_logging_redirect_routes_records_once(cap: Capture, capsys: pytest.CaptureFixture[str]):
    """In a run, each record is one run log call, printed once, once in a file handler, exported once."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    console = logging.StreamHandler()  # stderr, as basicConfig makes it
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    file_like = io.StringIO()
    file_handler = logging.StreamHandler(file_like)
    otel = _Collect()
    otel_handler = OTelLogHandler(otel)  # type: ignore[arg-type]
    root.handlers = [console, file_handler, otel_handler]
    root.setLevel(logging.INFO)
    log = logging.getLogger("thumbnailer")
    try:
        with cap.job_logger("r", "j") as job, logging_redirect_tqdm():
            for i in tqdm(range(3), desc="Resizing", disable=True):
                log.info("batch %d resized", i, extra={"batch": i})
            log.warning("one was tiny")
            assert root.handlers[-1].__class__.__name__ == "RunLogHandler"
            assert dict(job.log_counts)["info"] == 3 and dict(job.log_counts)["warning"] == 1
        log.info("after the run")
        assert root.handlers == [console, file_handler, otel_handler]
    finally:
        root.handlers, level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    for line in ("INFO thumbnailer: batch 0 resized", "WARNING thumbnailer: one was tiny"):
        assert err.count(line) == 1, err
    assert err.count("after the run") == 1
    assert file_like.getvalue().count("batch 1 resized") == 1
    assert file_like.getvalue().count("one was tiny") == 1
    exported = [r for r in otel.records if "resized" in str(r.body) or "tiny" in str(r.body)]
    assert len(exported) == 4
    assert all((r.attributes or {}).get(semconv.JOB_RUN_ID) == "r" for r in exported)
    assert [(r.attributes or {}).get("batch") for r in exported[:3]] == [0, 1, 2]
    events = [e.name for e in cap.events() if e.name.startswith(("batch", "one was"))]
    assert events == ["batch 0 resized", "batch 1 resized", "batch 2 resized", "one was tiny"]
    warning = next(r for r in exported if "tiny" in str(r.body))
    assert (warning.attributes or {})["code.function.name"] == "test_logging_redirect_routes_records_once"


def test_public_surface():
    """joblogger.tqdm exports the drop-in, the patch and the logging redirect, and nothing else."""
    import joblogger.tqdm

    assert sorted(joblogger.tqdm.__all__) == ["Patch", "logging_redirect_tqdm", "patch", "tqdm", "trange"]
    assert issubclass(joblogger.tqdm.tqdm, std.tqdm)


def test_patched_asyncio_bars_report(cap: Capture, unpatched: None):
    """`async for` over tqdm.asyncio bars (as tqdm.auto gives them) reports under patch()."""
    import asyncio

    from tqdm.asyncio import tqdm as async_tqdm

    async def rows() -> Any:
        for i in range(25):
            yield i

    async def job_body() -> int:
        with cap.job_logger("r", "j") as job, patch():
            async for _ in async_tqdm(rows(), desc="Async rows", **QUIET):
                pass
            assert (job.stage, job.total) == ("Async rows", None)
            return job.processed_total

    assert asyncio.run(job_body()) == 25


def test_the_bridge_keeps_no_run_alive(cap: Capture):
    """After its bars closed, a run is freed when the job drops it (the bridge holds no strong reference)."""
    import gc
    import weakref

    def one_run() -> weakref.ref[Any]:
        job = cap.job_logger("r", "j")
        with job:
            for _ in trange(3, desc="Outer", **QUIET):
                for _ in trange(2, leave=False, **QUIET):
                    pass
            with tqdm(total=4, job=job, **QUIET) as bar:
                bar.update(4)
        return weakref.ref(job)

    ref = one_run()
    gc.collect()
    assert ref() is None


def test_logging_redirect_under_the_terminal_view_shows_each_line_once(
    cap: Capture, capsys: pytest.CaptureFixture[str]
):
    """While joblogger's view draws, a routed record is shown by the view only, once; nothing else prints it."""
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers = [logging.StreamHandler()]
    view_out = io.StringIO()
    view = ConsoleView(file=view_out, force_plain=True).start()
    log = logging.getLogger("thumbnailer")
    try:
        with cap.job_logger("r", "j"), logging_redirect_tqdm():
            log.warning("disk almost full")
    finally:
        view.stop()
        root.handlers = saved
    assert view_out.getvalue().count("disk almost full") == 1, view_out.getvalue()
    assert "disk almost full" not in capsys.readouterr().err
