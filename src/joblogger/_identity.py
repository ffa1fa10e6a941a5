"""A run's identity from the positional and keyword forms of ``create_job_logger``'s arguments."""

from __future__ import annotations

import re
import uuid

from . import _sanitize

_ID_LIKE = re.compile(
    r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|[0-9a-f]{16,}|[0-9]{6,}", re.IGNORECASE
)


def looks_like_an_id(text: str) -> bool:
    """A UUID, a long hex string or a long decimal number: what run ids look like, not job names."""
    return _ID_LIKE.fullmatch(text.strip()) is not None


def identity(
    job_run_id: object, job_name: object, run_id: object, name: object, warn: _sanitize.Warner
) -> tuple[object, object]:
    """Resolve the positional and keyword forms of the run id and job name."""
    if run_id is not None:
        if job_run_id is not None and job_run_id is not run_id:
            warn("run_id-twice", "both job_run_id and run_id given; using run_id=%r", run_id)
        job_run_id = run_id
    if name is not None:
        if job_name is not None and job_name is not name:
            warn("job_name-twice", "both job_name and name given; using name=%r", name)
        job_name = name
    if job_run_id is None:
        job_run_id = uuid.uuid4().hex
    if job_name is None:
        warn("job_name-missing", "no job name given; using 'job'")
        job_name = "job"
    return job_run_id, job_name
