"""Retry backoff: one capped exponential schedule for everything the plugin tries again.

The inbox worker (a webhook the database failed to apply) and the outbox dispatcher (a
delivery the merchant's endpoint did not accept) wait `first_s` after the first failed
attempt, twice as long after each further one, never longer than `max_s`. Each keeps its own
settings; the formula is this one, so the two cannot drift apart (an uncapped copy, or one whose
exponent grows without bound, is what this replaces). A `jitter` of 0.2 spreads each delay
uniformly over ±20%, so that a recovering endpoint is not hit by every retry at once; the
random source is a parameter, so a test can pin it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

# The exponent is bounded before the power is taken, so that a large attempt count cannot build
# a huge integer (nor a float overflow): 2**32 times any first delay is far past any cap.
MAX_DOUBLINGS = 32


@dataclass(frozen=True)
class RetryPolicy:
    """Wait `first_s` after the first failed attempt, doubling per attempt, at most `max_s`,
    times a uniform factor in [1 - jitter, 1 + jitter]."""

    first_s: float
    max_s: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(f"need 0 < first_s <= max_s, got {self.first_s}, {self.max_s}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def delay_s(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (counted from 1)."""
        if attempts < 1:
            raise ValueError(f"attempts counts from 1, got {attempts}")
        base_s = min(self.first_s * 2 ** min(attempts - 1, MAX_DOUBLINGS), self.max_s)
        if not self.jitter:
            return float(base_s)
        return float(base_s) * (rng or random).uniform(1 - self.jitter, 1 + self.jitter)

    def next_attempt_at(
        self, now: datetime, attempts: int, rng: random.Random | None = None
    ) -> datetime:
        """When to try again after the `attempts`-th failed attempt at `now`."""
        return now + timedelta(seconds=self.delay_s(attempts, rng))
