"""``joblogger run --schedule ...``: the schedule options, carried to the command in ``JOBLOGGER_SCHEDULE``.

``joblogger run`` checks the options (a usage error exits 2) and passes them as JSON
in one environment variable; the command's bootstrap (``configure_from_env``) makes it
the process's default schedule: every run of that process that has none of its own
(and no ``declare_schedule()`` for its job) gets it.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

from ._schedule import OVERLAP_POLICIES, Schedule
from ._state import pylog

__all__ = [
    "ENV_VAR",
    "add_options",
    "apply_args",
    "apply_env",
    "default_schedule",
    "env_value",
    "from_spec",
    "schedule_of",
]

ENV_VAR = "JOBLOGGER_SCHEDULE"
_default: Schedule | None = None


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--schedule``, ``--tz``, ``--grace``, ``--max-runtime``, ``--min-runtime``, ``--overlap``."""
    group = parser.add_argument_group("schedule (docs/schedules.md)")
    group.add_argument(
        "--schedule", metavar="SPEC", help="when runs are expected: a cron expression ('0 3 * * *') or 'every 10m'"
    )
    group.add_argument("--tz", default=None, help="time zone of the cron expression (default: UTC)")
    group.add_argument("--grace", default=None, help="how late a run may start before it is missed (default: 60s)")
    group.add_argument("--max-runtime", default=None, help="a run still going after this long is overdue")
    group.add_argument("--min-runtime", default=None, help="a run that ends sooner than this is too short")
    group.add_argument("--overlap", choices=OVERLAP_POLICIES, default="allow", help="overlapping runs (default: allow)")


def from_spec(spec: Mapping[str, Any]) -> Schedule:
    """The Schedule of option values (ValueError when they do not make one)."""
    when = str(spec.get("schedule") or "").strip()
    if not when:
        raise ValueError("--schedule is required with --tz, --grace, --max-runtime, --min-runtime or --overlap")
    every = when[len("every") :].strip() if when.lower().startswith("every") else None
    extra: dict[str, Any] = {k: spec[k] for k in ("grace", "max_runtime", "min_runtime") if spec.get(k) is not None}
    return Schedule(
        None if every is not None else when,
        every=every,
        tz=str(spec.get("tz") or "UTC"),
        overlap=str(spec.get("overlap") or "allow"),
        **extra,
    )


def env_value(args: argparse.Namespace) -> str | None:
    """The ``JOBLOGGER_SCHEDULE`` value for parsed options, None without ``--schedule`` (ValueError if bad)."""
    spec = {k: getattr(args, k, None) for k in ("schedule", "tz", "grace", "max_runtime", "min_runtime", "overlap")}
    others = (spec["tz"], spec["grace"], spec["max_runtime"], spec["min_runtime"])
    if spec["schedule"] is None and all(v is None for v in others) and spec["overlap"] in (None, "allow"):
        return None
    from_spec(spec)  # check now, in the parent: a usage error, not a warning in the job
    return json.dumps(spec)


def apply_env(environ: Mapping[str, str] = os.environ) -> None:
    """Make the schedule in ``JOBLOGGER_SCHEDULE`` (if any) this process's default; a bad one only warns."""
    global _default
    raw = environ.get(ENV_VAR)
    if not raw:
        return
    try:
        _default = from_spec(json.loads(raw))
    except (ValueError, TypeError, AttributeError) as exc:
        pylog.warning("joblogger: ignoring %s=%r: %s", ENV_VAR, raw, exc)


def schedule_of(args: argparse.Namespace) -> Schedule | None:
    """The Schedule of parsed options, None without ``--schedule`` (ValueError if bad)."""
    value = env_value(args)
    return None if value is None else from_spec(json.loads(value))


def apply_args(args: argparse.Namespace) -> None:
    """Make the schedule of parsed options this process's default (``joblogger demo --schedule``)."""
    global _default
    schedule = schedule_of(args)
    if schedule is not None:
        _default = schedule


def default_schedule() -> Schedule | None:
    """The schedule of runs that declare none (set by ``joblogger run --schedule``), or None."""
    return _default
