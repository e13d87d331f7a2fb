"""A per-caller rate limit for `/graphql`: a token bucket per credential (an API key, or one
customer of one merchant), in this process. It keeps one caller, a buggy frontend's retry loop
or a scraper with a stolen token, from taking the server from everyone else; it is not a
quota. Customers and API keys have a rate each (settings); a bucket holds two seconds of it.
With `serve --workers N` each process has its own buckets, so a caller gets up to N times the
rate; the limit is set per process for that reason.

A refused request learns when to come back (`RateLimited.retry_after_s`, sent as
`Retry-After`)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from pointguard.errors import RateLimited

MAX_TRACKED_CALLERS = 100_000  # the least recently seen are forgotten (they start full again)


BURST_SECONDS = 2


class RateLimiter:
    def __init__(self, rate_per_s: float) -> None:
        self._rate = rate_per_s
        self._burst = rate_per_s * BURST_SECONDS
        # caller → (tokens left, when last refilled), least recently seen first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def spend(self, caller: str, now_s: float | None = None) -> None:
        """Take one request from `caller`'s bucket, or raise `RateLimited`."""
        now_s = time.monotonic() if now_s is None else now_s
        tokens, at = self._buckets.pop(caller, (self._burst, now_s))
        tokens = min(self._burst, tokens + (now_s - at) * self._rate)
        if tokens < 1:
            self._buckets[caller] = (tokens, now_s)
            wait_s = math.ceil((1 - tokens) / self._rate)
            raise RateLimited(
                f"too many requests from this credential: at most {self._rate:g} a second"
                f" (bursts of {self._burst:g}); retry in {wait_s} s",
                retry_after_s=wait_s,
            )
        self._buckets[caller] = (tokens - 1, now_s)
        if len(self._buckets) > MAX_TRACKED_CALLERS:
            self._buckets.popitem(last=False)
