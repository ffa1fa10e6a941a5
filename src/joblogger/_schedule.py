"""A job's declared schedule and expectations: when runs should start, how long they may take.

Pure values and functions: no clock is read here. Cron expressions are parsed and
iterated by `cronsim <https://pypi.org/project/cronsim/>`_ (the optional extra
``joblogger[schedule]``), the evaluator Healthchecks.io uses; time zones come from
:mod:`zoneinfo`, so daylight-saving changes move wall-clock schedules the way cron does.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["OVERLAP_POLICIES", "Schedule", "parse_duration"]

#: What a run that starts while another run of the job is active means: ``allow`` (nothing),
#: ``warn`` (a warning alert), ``forbid`` (a critical alert). Exported as 0, 1, 2.
OVERLAP_POLICIES: Final = ("allow", "warn", "forbid")
#: Grace period when none is given: a run may start this late before it counts as missed.
DEFAULT_GRACE_S: Final = 60.0

_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")

DurationLike = float | int | str | timedelta


def parse_duration(value: DurationLike, what: str = "duration") -> float:
    """Seconds in ``value``: a number of seconds, a :class:`~datetime.timedelta` or text like ``"1h30m"``.

    Units: ``s``, ``m``, ``h``, ``d``, ``w``. Raises ValueError for anything else or a negative value.

    Example:
        >>> parse_duration("1h30m"), parse_duration(90), parse_duration("10s")
        (5400.0, 90.0, 10.0)
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"{what}: expected seconds or text like '10m', got {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or _DURATION.sub("", text).strip():
                raise ValueError(f"{what}: cannot read {value!r} (expected e.g. '90', '10m', '1h30m')") from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"{what}: expected seconds or text like '10m', got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what}: must be a finite, non-negative duration, got {value!r}")
    return seconds


class Schedule:
    """When a job should run and what a healthy run looks like.

    Give exactly one of ``cron`` (five fields, evaluated in ``tz``) or ``every``
    (an interval, counted from each run's start). Durations accept seconds,
    :class:`~datetime.timedelta` or text (``"10m"``, ``"1h30m"``). Construction is
    set-up code: bad values raise ValueError with a clear message.

    Args:
        cron: A cron expression, e.g. ``"0 3 * * *"`` (needs ``joblogger[schedule]``).
        every: The interval between starts, e.g. ``"10m"``.
        tz: IANA time zone of the cron expression (default ``UTC``).
        grace: How late a run may start before it counts as missed (default 60 s).
        max_runtime: A run still going after this long is overdue.
        min_runtime: A run that ends sooner than this is too short.
        overlap: ``allow``, ``warn`` or ``forbid`` a run starting while another one is active.

    Example:
        >>> from joblogger import Schedule
        >>> nightly = Schedule(cron="0 3 * * *", tz="Europe/Berlin", grace="10m", max_runtime="2h")
        >>> nightly.grace_s, nightly.max_runtime_s
        (600.0, 7200.0)
        >>> Schedule(every="10s").next_after(100.0)
        110.0
    """

    __slots__ = ("_zone", "cron", "every_s", "grace_s", "max_runtime_s", "min_runtime_s", "overlap", "tz")

    cron: str | None
    every_s: float | None
    tz: str
    grace_s: float
    max_runtime_s: float | None
    min_runtime_s: float | None
    overlap: str
    _zone: ZoneInfo | timezone

    def __init__(
        self,
        cron: str | None = None,
        *,
        every: DurationLike | None = None,
        tz: str = "UTC",
        grace: DurationLike = DEFAULT_GRACE_S,
        max_runtime: DurationLike | None = None,
        min_runtime: DurationLike | None = None,
        overlap: str = "allow",
    ) -> None:
        if (cron is None) == (every is None):
            raise ValueError("Schedule: give exactly one of cron='...' or every='...'")
        every_s = None if every is None else parse_duration(every, "every")
        if every_s is not None and every_s <= 0:
            raise ValueError("Schedule: every must be longer than 0 s")
        try:
            zone: ZoneInfo | timezone = timezone.utc if tz in ("UTC", "Etc/UTC") else ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"Schedule: unknown time zone {tz!r} (expected an IANA name like 'Europe/Berlin')"
            ) from None
        if cron is not None:
            if not isinstance(cron, str):
                raise ValueError(f"Schedule: cron must be text, got {type(cron).__name__}")
            cron = " ".join(cron.split())
            _cronsim(cron, datetime.now(timezone.utc))  # raises ValueError for a bad expression
        if overlap not in OVERLAP_POLICIES:
            raise ValueError(f"Schedule: overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {overlap!r}")
        max_s = None if max_runtime is None else parse_duration(max_runtime, "max_runtime")
        min_s = None if min_runtime is None else parse_duration(min_runtime, "min_runtime")
        if max_s is not None and min_s is not None and min_s > max_s:
            raise ValueError("Schedule: min_runtime is longer than max_runtime")
        for name, value in (
            ("cron", cron),
            ("every_s", every_s),
            ("tz", tz),
            ("grace_s", parse_duration(grace, "grace")),
            ("max_runtime_s", max_s),
            ("min_runtime_s", min_s),
            ("overlap", overlap),
            ("_zone", zone),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Schedule is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        return (self.cron, self.every_s, self.tz, self.grace_s, self.max_runtime_s, self.min_runtime_s, self.overlap)

    def __repr__(self) -> str:
        when = f"cron={self.cron!r}, tz={self.tz!r}" if self.cron is not None else f"every={self.every_s!r}"
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (("max_runtime", self.max_runtime_s), ("min_runtime", self.min_runtime_s))
            if value is not None
        )
        return f"Schedule({when}, grace={self.grace_s!r}{extra}, overlap={self.overlap!r})"

    @property
    def overlap_level(self) -> int:
        """The overlap policy as exported: 0 allow, 1 warn, 2 forbid."""
        return OVERLAP_POLICIES.index(self.overlap)

    def next_after(self, t: float) -> float:
        """Unix time of the first expected start strictly after ``t`` (unix seconds).

        For ``every``, the next start is counted from ``t`` (the last run's start).
        """
        if self.every_s is not None:
            return t + self.every_s
        assert self.cron is not None
        start = datetime.fromtimestamp(t, self._zone)
        found: datetime = next(_cronsim(self.cron, start))
        return found.timestamp()

    def next_for_run(self, started: float) -> float:
        """When the run after one that started at ``started`` is expected.

        A run that starts up to ``grace`` late (or up to a minute early, for clock skew)
        is taken as the run of its slot, so the next one is expected at the slot after
        it; a run started by hand between slots leaves the next slot expected.

        Example:
            >>> from joblogger import Schedule
            >>> hourly = Schedule(cron="0 * * * *", grace="5m")
            >>> hourly.next_for_run(3600 + 120) - 3600   # started 2 min late: next slot
            3600.0
            >>> hourly.next_for_run(3600 - 10) - 3600    # 10 s early: still its slot's run
            3600.0
            >>> hourly.next_for_run(3600 + 1800) - 3600  # by hand, mid-hour: the next slot is still due
            3600.0
        """
        if self.every_s is not None:
            return started + self.every_s
        slot = self.next_after(started - self.grace_s)
        if slot <= started + min(60.0, self.grace_s or 60.0):
            return self.next_after(slot)
        return slot

    def interval_at(self, t: float) -> float:
        """Seconds between the two expected starts after ``t`` (the interval in force then)."""
        if self.every_s is not None:
            return self.every_s
        first = self.next_after(t)
        return self.next_after(first) - first


def _cronsim(expr: str, start: datetime):  # type: ignore[no-untyped-def]
    """A cronsim iterator over the times after ``start`` (ValueError for a bad expression)."""
    try:
        from cronsim import CronSim, CronSimError
    except ImportError:
        raise ValueError("Schedule(cron=...) needs the cron evaluator: pip install 'joblogger[schedule]'") from None
    try:
        return CronSim(expr, start)
    except CronSimError as exc:
        raise ValueError(f"Schedule: bad cron expression {expr!r}: {exc}") from None
