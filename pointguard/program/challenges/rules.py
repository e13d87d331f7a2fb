"""Challenges and badges: progress toward goals within a window, and completion. Pure.

The rule, stated once: a challenge is completed, once per member, the first time its goal is
reached within its window — the `window_days` days up to and including the event that counts:
- `orders`: paid orders not cancelled; `spend_minor`: their eligible spend less refunds;
- `reviews`: rewarded `review.published` actions; `referrals`: successful referrals;
- `streak_weeks` / `streak_months`: `target` consecutive ISO weeks (or calendar months), ending
  with the current one, each with at least one order.
Completion pays `bonus_points` (available at once) and awards the badge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pointguard.program.document.schema import Challenge

ORDER_GOALS = frozenset({"orders", "spend_minor", "streak_weeks", "streak_months"})


@dataclass(frozen=True)
class Activity:
    """One thing a member did that challenges count: an order (with its spend) or a review."""

    at: datetime
    kind: str  # "order", "review" or "referral"
    amount_minor: int = 0


@dataclass(frozen=True)
class ChallengeProgress:
    challenge_id: str
    progress: int
    target: int

    @property
    def completed(self) -> bool:
        return self.progress >= self.target


def challenge_progress(
    challenge: Challenge, activity: Sequence[Activity], at: datetime
) -> ChallengeProgress:
    start = at - timedelta(days=challenge.window_days)
    recent = [a for a in activity if start < a.at <= at]
    goal = challenge.goal
    if goal == "orders":
        value = sum(1 for a in recent if a.kind == "order")
    elif goal == "spend_minor":
        value = sum(a.amount_minor for a in recent if a.kind == "order")
    elif goal == "reviews":
        value = sum(1 for a in recent if a.kind == "review")
    elif goal == "referrals":
        value = sum(1 for a in recent if a.kind == "referral")
    else:
        value = _streak(activity, at, weekly=goal == "streak_weeks")
    return ChallengeProgress(challenge.id, value, challenge.target)


def _streak(activity: Sequence[Activity], at: datetime, *, weekly: bool) -> int:
    """Consecutive periods, ending with the one `at` is in, that each hold an order."""

    def period(moment: datetime) -> int:
        if weekly:
            year, week, _ = moment.isocalendar()
            monday = datetime.fromisocalendar(year, week, 1)
            return (monday - datetime(1970, 1, 5)).days // 7  # 1970-01-05 was a Monday
        return moment.year * 12 + moment.month - 1

    with_orders = {period(a.at) for a in activity if a.kind == "order" and a.at <= at}
    streak, current = 0, period(at)
    while current - streak in with_orders:
        streak += 1
    return streak


def goals_touched(kind: str) -> frozenset[str]:
    """Which goals an activity of `kind` can move."""
    if kind == "order":
        return ORDER_GOALS
    return frozenset({"reviews"}) if kind == "review" else frozenset({"referrals"})
