"""joblogger: live, trustworthy feedback for background jobs, on OpenTelemetry.

Stages, progress (with rate and ETA), levelled logs, outcome counters and a
final summary, exported as spans, span events, log records and metrics.

Example:
    >>> from joblogger import create_job_logger
    >>> with create_job_logger("run-1", "match-scores") as job:
    ...     job.set_stage("Scoring users")
    ...     for user in job.track(range(3)):
    ...         job.add_outcome("updates")
    >>> job.summary.to_dict()["outcomeSummary"]
    {'updates': 3}
"""

from ._children import ChildReport
from ._current import current_job
from ._declare import declare_schedule
from ._decorator import job
from ._format import format_count, format_duration
from ._logger import MILESTONE, JobLogger, create_job_logger, observe_runs
from ._results import SignalExit
from ._schedule import Schedule
from ._summary import Summary
from ._version import __version__

__all__ = [
    "MILESTONE",
    "ChildReport",
    "JobLogger",
    "Schedule",
    "SignalExit",
    "Summary",
    "__version__",
    "create_job_logger",
    "current_job",
    "declare_schedule",
    "format_count",
    "format_duration",
    "job",
    "observe_runs",
]
