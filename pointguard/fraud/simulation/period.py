"""The simulated period: `days` days from `start`, and the times of day people shop at (few at
night, most in the evening). Time is only ever this: the stream never reads a clock."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
DAY = timedelta(days=1)
# Relative activity by hour of day, UTC (the shop's customers are in Europe).
HOUR_WEIGHTS = (
    1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7, 6, 6, 7, 8, 9, 10, 10, 9, 6, 3,
)  # fmt: skip


@dataclass(frozen=True)
class Period:
    start: datetime
    days: int

    @property
    def end(self) -> datetime:
        return self.start + self.days * DAY

    def date_of(self, day: int) -> date:
        return (self.start + day * DAY).date()

    def moment(self, rng: random.Random, day: int) -> datetime:
        """A time on day `day` (0 is the first), at an hour people shop at."""
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        return self.start + day * DAY + timedelta(hours=hour, seconds=rng.randrange(3600))

    def day_of(self, at: datetime) -> int:
        return (at - self.start) // DAY

    def holds(self, at: datetime) -> bool:
        return self.start <= at < self.end
