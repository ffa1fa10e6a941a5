"""Fixtures for the unit tests: a fake clock and in-memory providers that use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from joblogger.testing import Capture, capture

from ._helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at t=1000s."""
    return FakeClock()


@pytest.fixture
def cap(clock: FakeClock) -> Iterator[Capture]:
    """In-memory providers whose loggers use the fake clock."""
    with capture(clock=clock) as c:
        yield c
