"""The Schedule model (cron with time zone, interval, limits) and the per-job schedule gauges."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

import joblogger
from joblogger import Schedule, semconv
from joblogger._schedule import parse_duration
from joblogger.testing import Capture

NY = ZoneInfo("America/New_York")


def _ts(*args: int, tz: ZoneInfo = NY) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def test_durations_accept_numbers_text_and_timedelta() -> None:
    """Durations read seconds, timedeltas and unit text; anything else is a clear ValueError."""
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("2d") == 172800.0
    assert parse_duration(timedelta(minutes=2)) == 120.0
    assert parse_duration(" 45 ") == 45.0
    for bad in ("soon", "-5", "10x", True, float("nan"), "5m later"):
        with pytest.raises(ValueError):
            parse_duration(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_duration_text_adds_up(minutes: int, seconds: int) -> None:
    """'<m>m<s>s' is m*60+s seconds for any m and s."""
    assert parse_duration(f"{minutes}m{seconds}s") == minutes * 60 + seconds


def test_bad_schedules_raise_clear_errors_at_set_up() -> None:
    """A bad cron line, time zone, policy or combination raises ValueError when the Schedule is made."""
    for kwargs, text in (
        ({}, "exactly one"),
        ({"cron": "0 3 * * *", "every": "1h"}, "exactly one"),
        ({"cron": "61 3 * * *"}, "bad cron expression"),
        ({"cron": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every": "0s"}, "longer than 0"),
        ({"every": "1h", "overlap": "sometimes"}, "overlap must be one of"),
        ({"every": "1h", "min_runtime": "2h", "max_runtime": "1h"}, "min_runtime"),
    ):
        with pytest.raises(ValueError, match=text):
            Schedule(**kwargs)  # type: ignore[arg-type]


def test_schedule_is_an_immutable_value() -> None:
    """Schedules compare by value, hash, and cannot be changed."""
    a = Schedule(cron="0  3 * * *", grace="10m")
    assert a == Schedule(cron="0 3 * * *", grace=600) and hash(a) == hash(Schedule(cron="0 3 * * *", grace=600))
    assert a != Schedule(cron="0 3 * * *")
    with pytest.raises(AttributeError):
        a.grace_s = 1.0  # type: ignore[misc]
    assert "cron='0 3 * * *'" in repr(a)


def test_interval_schedule_counts_from_the_run_start() -> None:
    """every=10s: the next run is expected 10 s after each start; the interval is 10 s."""
    s = Schedule(every="10s", grace=5)
    assert s.next_for_run(1000.0) == 1010.0
    assert s.interval_at(1000.0) == 10.0


# The DST case of backends/prometheus/alerts.test.yml uses these exact values: a daily 09:00
# America/New_York job across the 1970-04-26 spring-forward (promtool's clock starts at 1970-01-01).
def test_cron_in_a_time_zone_follows_daylight_saving() -> None:
    """0 9 * * * in New York runs at 14:00 UTC before the 1970 spring-forward and 13:00 UTC after it."""
    s = Schedule(cron="0 9 * * *", tz="America/New_York", grace="10m")
    before = _ts(1970, 4, 25, 9)
    assert before == 114 * 86400 + 14 * 3600
    after = s.next_for_run(before + 30)
    assert after == _ts(1970, 4, 26, 9) == 115 * 86400 + 13 * 3600
    assert after - before == 23 * 3600  # the short day
    assert s.next_for_run(after + 30) - after == 24 * 3600
    # the autumn change (1970-10-25): a 25-hour day
    fall = _ts(1970, 10, 24, 9)
    assert s.next_for_run(fall) - fall == 25 * 3600


def test_cron_slot_rules_for_late_early_and_manual_runs() -> None:
    """A late (within grace) or slightly early run is its slot's run; a manual run leaves the next slot due."""
    s = Schedule(cron="0 * * * *", grace="5m")
    hour = 3600.0 * 100
    assert s.next_for_run(hour + 299) == hour + 3600  # late, within grace
    assert s.next_for_run(hour - 30) == hour + 3600  # early (clock skew)
    assert s.next_for_run(hour + 1800) == hour + 3600  # by hand: the next slot is still expected
    assert s.next_for_run(hour + 400) == hour + 3600  # beyond grace: missed slot, next one due
    assert s.interval_at(hour + 1) == 3600.0


def test_utc_cron_on_a_nonexistent_local_time() -> None:
    """02:30 Europe/Berlin on the spring-forward day runs at 03:00 local (cron's rule), then 02:30 again."""
    s = Schedule(cron="30 2 * * *", tz="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, 12, tzinfo=berlin).timestamp()
    first = s.next_after(start)
    assert datetime.fromtimestamp(first, berlin).hour == 3
    assert datetime.fromtimestamp(s.next_after(first), berlin).strftime("%H:%M") == "02:30"


def _gauges(cap: Capture, job: str) -> dict[str, float]:
    return {
        p.name: p.value
        for p in cap.metrics()
        if p.name.startswith("job.schedule.") and p.attributes == {"job.name": job}
    }


def test_scheduled_run_exports_bounded_per_job_gauges(cap: Capture) -> None:
    """A scheduled run exports the job's schedule gauges labelled with job.name only, the same after 50 runs."""
    schedule = Schedule(every="10m", grace="1m", max_runtime="1h", min_runtime="5s", overlap="forbid")
    with cap.job_logger("r0", "sync", schedule=schedule) as job:
        live = _gauges(cap, "sync")
        assert live[semconv.METRIC_SCHEDULE_ACTIVE_SINCE] == live[semconv.METRIC_SCHEDULE_LAST_START] > 0
        assert live[semconv.METRIC_SCHEDULE_NEXT_EXPECTED] == live[semconv.METRIC_SCHEDULE_LAST_START] + 600
        assert semconv.METRIC_SCHEDULE_LAST_END not in live
        job.increment_progress(7)
        cap.clock.advance(3)  # type: ignore[union-attr]
    ended = _gauges(cap, "sync")
    assert ended[semconv.METRIC_SCHEDULE_ACTIVE_SINCE] == 0
    assert ended[semconv.METRIC_SCHEDULE_LAST_DURATION] == 3
    assert ended[semconv.METRIC_SCHEDULE_LAST_PROCESSED] == 7
    assert ended[semconv.METRIC_SCHEDULE_LAST_END] == ended[semconv.METRIC_SCHEDULE_LAST_START] + 3
    assert ended[semconv.METRIC_SCHEDULE_LAST_SUCCESS] == ended[semconv.METRIC_SCHEDULE_LAST_END]
    assert (ended[semconv.METRIC_SCHEDULE_INTERVAL], ended[semconv.METRIC_SCHEDULE_GRACE]) == (600, 60)
    assert (ended[semconv.METRIC_SCHEDULE_MAX_RUNTIME], ended[semconv.METRIC_SCHEDULE_MIN_RUNTIME]) == (3600, 5)
    assert ended[semconv.METRIC_SCHEDULE_OVERLAP_POLICY] == 2
    for i in range(50):
        with cap.job_logger(f"r{i + 1}", "sync", schedule=schedule):
            pass
    points = [p for p in cap.metrics() if p.name.startswith("job.schedule.")]
    assert len(points) == 12 and {tuple(p.attributes) for p in points} == {("job.name",)}


def test_failed_run_keeps_the_last_success(cap: Capture) -> None:
    """A failed run moves last_end but not last_success; an unscheduled job exports no schedule gauges."""
    schedule = Schedule(every="1h")
    with cap.job_logger("ok", "nightly", schedule=schedule):
        pass
    success = _gauges(cap, "nightly")[semconv.METRIC_SCHEDULE_LAST_SUCCESS]
    cap.clock.advance(5)  # type: ignore[union-attr]
    with pytest.raises(RuntimeError), cap.job_logger("bad", "nightly", schedule=schedule):
        raise RuntimeError("boom")
    after = _gauges(cap, "nightly")
    assert after[semconv.METRIC_SCHEDULE_LAST_SUCCESS] == success
    assert after[semconv.METRIC_SCHEDULE_LAST_END] >= success
    with cap.job_logger("x", "unscheduled"):
        pass
    assert _gauges(cap, "unscheduled") == {}


def test_overlapping_run_warns_when_the_policy_says_so(cap: Capture) -> None:
    """A second active run of a job with overlap='warn' logs a warning; with 'allow' it does not."""
    for policy, warned in (("warn", True), ("allow", False)):
        schedule = Schedule(every="1h", overlap=policy)
        name = f"job-{policy}"
        with cap.job_logger("a", name, schedule=schedule), cap.job_logger("b", name, schedule=schedule):
            assert _gauges(cap, name)[semconv.METRIC_SCHEDULE_ACTIVE_SINCE] > 0
        events = [e for e in cap.events("warning") if e.span == name and "overlaps 1 other active run" in e.name]
        assert bool(events) is warned, (policy, cap.events("warning"))


def test_bad_schedule_argument_warns_and_is_ignored(cap: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """schedule= that is not a Schedule logs one warning; the run works and exports no schedule gauges."""
    with (
        caplog.at_level(logging.WARNING, logger="joblogger"),
        cap.job_logger(
            "r",
            "typo",
            schedule="0 3 * * *",  # type: ignore[arg-type]
        ) as job,
    ):
        job.increment_progress()
    assert job.result == "success"
    assert _gauges(cap, "typo") == {}
    assert [r for r in caplog.records if "schedule= expects a joblogger.Schedule" in r.getMessage()]


def test_declare_schedule_exports_the_first_expected_start(cap: Capture) -> None:
    """declare_schedule exports next_expected before any run (last_start 0); bad input only warns."""
    joblogger.declare_schedule("fresh", Schedule(every="5m"), meter_provider=cap.meter_provider)
    declared = _gauges(cap, "fresh")
    assert declared[semconv.METRIC_SCHEDULE_LAST_START] == 0
    assert declared[semconv.METRIC_SCHEDULE_ACTIVE_SINCE] == 0
    now = datetime.now(timezone.utc).timestamp()
    assert now < declared[semconv.METRIC_SCHEDULE_NEXT_EXPECTED] <= now + 300
    joblogger.declare_schedule("fresh", "every 5m", meter_provider=cap.meter_provider)  # type: ignore[arg-type]


def test_runs_of_a_declared_job_without_a_schedule_of_their_own_report_to_it(cap: Capture) -> None:
    """A run of a declared job made without schedule= (a framework's run) takes the declared schedule."""
    declared = Schedule(every="10m", grace="1m", overlap="warn")
    joblogger.declare_schedule("refresh", declared, meter_provider=cap.meter_provider)
    with cap.job_logger("f1", "refresh") as first:  # what an integration (APScheduler, Celery beat) starts
        assert first.schedule == declared
        with cap.job_logger("f2", "refresh") as second:
            assert _gauges(cap, "refresh")[semconv.METRIC_SCHEDULE_ACTIVE_SINCE] > 0
    gauges = _gauges(cap, "refresh")
    assert gauges[semconv.METRIC_SCHEDULE_LAST_START] > 0
    assert gauges[semconv.METRIC_SCHEDULE_LAST_SUCCESS] >= gauges[semconv.METRIC_SCHEDULE_LAST_START]
    assert gauges[semconv.METRIC_SCHEDULE_NEXT_EXPECTED] >= gauges[semconv.METRIC_SCHEDULE_LAST_START] + 599
    assert second.schedule == declared
    own = Schedule(every="1h")
    with cap.job_logger("f3", "refresh", schedule=own) as third:  # a run's own schedule wins
        assert third.schedule == own
    with cap.job_logger("o1", "other") as other:  # undeclared jobs stay unscheduled
        assert other.schedule is None
    assert _gauges(cap, "other") == {}


def test_schedule_board_is_thread_safe(cap: Capture) -> None:
    """Concurrent scheduled runs of one job end with no active run left and one series per gauge."""
    schedule = Schedule(every="1m")

    def work() -> None:
        for i in range(50):
            with cap.job_logger(f"{threading.get_ident()}-{i}", "busy", schedule=schedule) as job:
                job.increment_progress()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gauges = _gauges(cap, "busy")
    assert gauges[semconv.METRIC_SCHEDULE_ACTIVE_SINCE] == 0 and gauges[semconv.METRIC_SCHEDULE_LAST_PROCESSED] == 1


def _docs_check_in_example() -> str:
    """The check-in hook example of docs/schedules.md."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "schedules.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "MONITORS" in b]
    return block


def test_docs_check_in_hooks_mirror_runs_to_a_monitor(cap: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented observe_runs hooks ping <url>/start, then <url> on success and <url>/fail on failure."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    paths: list[str] = []
    hit = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            hit.set()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    removers = []
    real = joblogger.observe_runs
    monkeypatch.setattr(joblogger, "observe_runs", lambda *a: removers.append(real(*a)))
    try:
        source = _docs_check_in_example().replace(
            "https://hc-ping.com/your-uuid-here", f"http://127.0.0.1:{server.server_port}/ping/abc"
        )
        exec(compile(source, "docs/schedules.md", "exec"), {})
        with cap.job_logger("r1", "nightly-import", schedule=Schedule(every="1d")):
            pass
        with pytest.raises(ValueError), cap.job_logger("r2", "nightly-import"):
            raise ValueError("bad input")
        with cap.job_logger("r3", "other-job"):
            pass
        deadline = time.monotonic() + 5
        while paths.count("/ping/abc/start") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for remove in removers:
            remove()
        server.shutdown()
    assert sorted(paths) == ["/ping/abc", "/ping/abc/fail", "/ping/abc/start", "/ping/abc/start"]
    assert paths.index("/ping/abc") < paths.index("/ping/abc/fail")  # end pings are synchronous, in order


def test_job_decorator_passes_the_schedule(cap: Capture) -> None:
    """@job(name, schedule=...) runs every call as a scheduled run of the job."""

    @joblogger.job("decorated", schedule=Schedule(every="15m", grace="1m"), meter_provider=cap.meter_provider,
                   tracer_provider=cap.tracer_provider)  # fmt: skip
    def work() -> str | None:
        run = joblogger.current_job()
        return None if run is None or run.schedule is None else run.schedule.overlap

    assert work() == "allow"
    gauges = _gauges(cap, "decorated")
    assert gauges[semconv.METRIC_SCHEDULE_NEXT_EXPECTED] - gauges[semconv.METRIC_SCHEDULE_LAST_START] == 900


def test_schedule_board_can_be_reentered_by_a_signal_handler(cap: Capture) -> None:
    """A run ended from a signal handler while its thread is inside the board (lock held) does not deadlock."""
    schedule = Schedule(every="1m")
    first = cap.job_logger("r1", "signalled", schedule=schedule)
    board = first._hub.schedules
    done = threading.Event()

    def interrupted_start() -> None:
        with board._lock:  # where a handler would interrupt start(): the same thread holds the lock
            first.end()  # what joblogger's SIGTERM handling does to the active runs
        done.set()

    worker = threading.Thread(target=interrupted_start, daemon=True)
    worker.start()
    assert done.wait(5), "ending a run re-entered the schedule board's lock and deadlocked"
    assert _gauges(cap, "signalled")[semconv.METRIC_SCHEDULE_ACTIVE_SINCE] == 0
