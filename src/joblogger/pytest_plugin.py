"""pytest plugin: the ``joblogger_capture`` fixture (registered through the ``pytest11`` entry point)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import Capture


@pytest.fixture
def joblogger_capture() -> Iterator[Capture]:
    """In-memory providers for a test; create loggers with ``joblogger_capture.job_logger(...)``."""
    from .testing import capture  # imported lazily: needs opentelemetry-sdk

    with capture() as cap:
        yield cap
