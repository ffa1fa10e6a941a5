"""The reference match-scores job on generated data: what ``joblogger demo`` runs.

It follows the reference guide's complete example: stages Initializing,
Fetching users, Scoring users and Finalizing; an info log every 100 users;
about 3% of users skipped with a warning; two users failing with an error; and
the final summary. The default 5,000 users take about 25 s at ``speed=1``.

Example:
    >>> from joblogger.demo import run_match_scores
    >>> from joblogger.testing import capture
    >>> with capture() as cap:
    ...     summary = run_match_scores(users=200, speed=0, meter_provider=cap.meter_provider,
    ...                                tracer_provider=cap.tracer_provider)
    >>> summary.to_dict()["entitiesProcessed"]
    200
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from ._logger import create_job_logger
from ._summary import Summary

__all__ = ["run_match_scores"]

#: Seconds of simulated work per user at speed 1 (5,000 users -> about 25 s).
PAUSE_PER_USER_S = 0.005


class ScoringError(RuntimeError):
    """A user whose scores could not be saved (simulated)."""


def run_match_scores(
    users: int = 5_000,
    *,
    speed: float = 1.0,
    seed: int = 7,
    job_run_id: str | None = None,
    fail: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    **logger_options: Any,
) -> Summary:
    """Run the demo job and return its summary.

    Args:
        users: How many users to score.
        speed: Pacing multiplier: 2 runs twice as fast, 0 runs without pauses.
        seed: Seed of the generated data (same seed, same outcomes).
        job_run_id: Run id (a random one by default).
        fail: Raise in the middle of scoring, to see a failed run.
        sleep: How to pause (injectable for tests).
        **logger_options: Passed to ``create_job_logger`` (providers, clock, ...).
    """
    rng = random.Random(seed)
    pause = 0.0 if speed <= 0 else PAUSE_PER_USER_S / speed
    run_id = job_run_id or f"demo-{uuid.uuid4().hex[:8]}"
    failing = {users // 3, (2 * users) // 3} if users >= 10 else set()
    skipping = set(rng.sample(sorted(set(range(users)) - failing), (users * 3) // 100))

    with create_job_logger(run_id, "match-scores", **logger_options) as job:
        job.set_stage("Initializing", "Loading configuration")
        sleep(10 * pause)
        config = {"algorithmVersion": "v1", "weights": {"skills": 0.6, "interests": 0.4}, "userBatchSize": 500}
        job.info("Configuration loaded", config)

        job.set_stage("Fetching users", "Fetching from database")
        fetched: list[int] = []
        for start in range(0, users, 500):
            fetched.extend(range(start, min(users, start + 500)))
            sleep(2 * pause)
        job.set_total(len(fetched), "users")
        job.milestone(f"Loaded {len(fetched):,} users to process")

        job.set_stage("Scoring users")
        total_scores = 0
        skipped = 0
        for i, user_id in enumerate(fetched):
            try:
                if user_id in failing:
                    raise ScoringError(f"deadlock detected while saving scores for user {user_id}")
                if user_id in skipping:
                    skipped += 1
                    job.warning(f"No valid candidates for user {user_id}", {"userId": str(user_id)})
                    job.add_outcome("skipped")
                else:
                    scores = rng.randint(30, 64)
                    total_scores += scores
                    job.add_outcome("updates", scores)
            except ScoringError as err:
                job.error(f"Failed to process user {user_id}", {"userId": str(user_id), "error": str(err)})
                job.add_outcome("errors")
            job.increment_progress()
            if (i + 1) % 100 == 0:
                job.info(
                    f"Batch {i + 1:,}/{len(fetched):,} complete",
                    {"avgScoresPerUser": round(total_scores / (i + 1), 1), "skippedCount": skipped},
                )
            if fail and i == len(fetched) // 2:
                raise RuntimeError("demo failure requested with --fail")
            if pause:
                sleep(pause)

        job.set_stage("Finalizing", "Saving results")
        sleep(20 * pause)
        job.milestone(
            "All users processed",
            {"totalUsers": len(fetched), "totalScores": total_scores, "totalSkipped": skipped},
        )
    assert job.summary is not None
    return job.summary
