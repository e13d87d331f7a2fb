"""The one place PointGuard reads the wall clock.

Business time is an input: rules, promotions, tiers, releases, expiry and the upkeep take `now`
from their caller, and the callers that run for real (the server's loops, the CLI) take it from
a `Clock`, by default `wall_clock`. The demo, the tests and backtests pass a simulated one, so
they tell the same story on any date. A test (`tests/test_clock.py`) keeps every other module
from reading the wall clock itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)
