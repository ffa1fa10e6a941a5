"""Per-run token buckets that limit debug and info records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from . import _sanitize, semconv
from ._levels import LOW_LEVELS

#: Records per second and burst allowed per level before further records are suppressed.
#: Only debug and info can be limited; warnings, errors and milestones never are.
DEFAULT_LOG_RATE_LIMITS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {semconv.LEVEL_DEBUG: (20.0, 200.0), semconv.LEVEL_INFO: (20.0, 200.0)}
)


class TokenBucket:
    """Allows ``rate`` records per second with bursts of ``burst``; counts what it suppresses."""

    __slots__ = ("burst", "clock", "last", "rate", "suppressed", "tokens")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.last = clock()
        self.suppressed = 0

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.suppressed += 1
        return False


def rate_limits(limits: Mapping[str, tuple[float, float]], warn: _sanitize.Warner) -> Mapping[str, tuple[float, float]]:
    """The valid ``(per_second, burst)`` of each limited level; a run makes its buckets on first use."""
    if limits is DEFAULT_LOG_RATE_LIMITS:
        return DEFAULT_LOG_RATE_LIMITS  # valid by construction: nothing to check for most runs
    specs: dict[str, tuple[float, float]] = {}
    for level, spec in dict(limits).items():
        if level not in LOW_LEVELS:
            warn("rate-limit-level", "log rate limits apply to debug and info only; %r ignored", level)
            continue
        if spec is None:
            continue
        try:
            rate, burst = float(spec[0]), float(spec[1])
        except (TypeError, ValueError, IndexError):
            warn("rate-limit-spec", "log rate limit for %s should be (per_second, burst); ignored", level)
            continue
        if rate > 0 and burst >= 1:
            specs[level] = (rate, burst)
    return specs
