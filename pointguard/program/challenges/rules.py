"""Challenges, decided: progress toward goals within a window, completion and revocation.
Pure: `challenges/completions.py` loads and stores, `apply.py` drives.

The rule, stated once: a challenge is completed, once per member, the first time its goal is
reached within its window — the `window_days` days up to and including the event that counts:
- `orders`: paid orders not cancelled; `spend_minor`: their eligible spend less refunds;
- `reviews`: rewarded `review.published` actions; `referrals`: successful referrals;
- `streak_weeks` / `streak_months`: `target` consecutive ISO weeks (or calendar months), ending
  with the current one, each with at least one order.
Completion pays `bonus_points` and awards the badge. A bonus won by an order (or a referee's
order) waits out that order's return window; one won by a review is available at once. After a
return, a completed order challenge that the orders still kept no longer complete (as of when it
was completed) is revoked and its bonus taken back: otherwise buying to finish a challenge and
returning the goods would keep the bonus. It may then be completed again, with a bonus of its
own (a new `generation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pointguard.ledger.keys import idempotency_key
from pointguard.program.dates import add_months, after_return_window, lot_expiry
from pointguard.program.document.schema import Challenge, Program
from pointguard.program.intents import EarnIntent, Intent, OutboxEvent, TakeBackIntent

ActivityKind = Literal["order", "review", "referral"]

WINDOW_GOAL_KINDS: dict[str, ActivityKind] = {
    "orders": "order",
    "spend_minor": "order",
    "reviews": "review",
    "referrals": "referral",
}
ORDER_GOALS = frozenset({"orders", "spend_minor", "streak_weeks", "streak_months"})


@dataclass(frozen=True)
class Activity:
    """One thing a member did that challenges count: an order (with its spend) or a review."""

    at: datetime
    kind: ActivityKind
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


def progress_lapses_at(
    challenge: Challenge, activity: Sequence[Activity], at: datetime
) -> datetime | None:
    """When the progress counted at `at` starts to fall unless the challenge is completed
    first: a window goal's oldest counted activity leaves the window; a streak breaks at the end
    of the next week or month without an order. None when nothing counts yet or it is done."""
    progress = challenge_progress(challenge, activity, at)
    if progress.progress == 0 or progress.completed:
        return None
    if challenge.goal == "streak_weeks":
        year, week, _ = at.isocalendar()
        monday = datetime.fromisocalendar(year, week, 1).replace(tzinfo=at.tzinfo)
        return monday + timedelta(weeks=2)
    if challenge.goal == "streak_months":
        return add_months(at.replace(day=1, hour=0, minute=0, second=0, microsecond=0), 2)
    kind = WINDOW_GOAL_KINDS[challenge.goal]
    start = at - timedelta(days=challenge.window_days)
    oldest = min(
        a.at
        for a in activity
        if a.kind == kind
        and start < a.at <= at
        and (challenge.goal != "spend_minor" or a.amount_minor)
    )
    return oldest + timedelta(days=challenge.window_days)


def goals_touched(kind: ActivityKind) -> frozenset[str]:
    """Which goals an activity of `kind` can move."""
    if kind == "order":
        return ORDER_GOALS
    return frozenset({"reviews"}) if kind == "review" else frozenset({"referrals"})


@dataclass(frozen=True)
class Completion:
    """A member's stored completion of a challenge (revoked ones too: the next completion of
    the same challenge is the next generation)."""

    challenge_id: str
    completed_at: datetime
    generation: int
    revoked: bool = False


@dataclass(frozen=True)
class ChallengeDecision:
    completed: list[tuple[Challenge, int]] = field(default_factory=list)  # with generation
    revoked: list[Challenge] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)
    events: list[OutboxEvent] = field(default_factory=list)


def challenge_bonus_key(challenge_id: str, member_id: str, generation: int) -> str:
    """The ledger key of a completion's bonus; completions after a revocation get their own."""
    return idempotency_key("challenge", challenge_id, member_id, generation)


def lookback_days(challenges: Sequence[Challenge]) -> int:
    """History that the challenges can look at: their windows, and whole streaks."""
    longest_streak = max(
        (
            c.target * (7 if c.goal == "streak_weeks" else 31)
            for c in challenges
            if c.goal.startswith("streak")
        ),
        default=0,
    )
    return max(max(c.window_days for c in challenges), longest_streak) + 1


def challenges_moved_by(program: Program, kind: ActivityKind) -> list[Challenge]:
    """The program's challenges whose goal an activity of `kind` can move."""
    touched = goals_touched(kind)
    return [c for c in program.challenges if c.goal in touched]


def open_challenges(
    program: Program, kind: ActivityKind, completions: Mapping[str, Completion]
) -> list[Challenge]:
    """The challenges an activity of `kind` can move that the member has not completed."""
    return [
        c
        for c in challenges_moved_by(program, kind)
        if c.id not in completions or completions[c.id].revoked
    ]


def decide_completions(
    program: Program,
    member_id: str,
    kind: ActivityKind,
    completions: Mapping[str, Completion],
    activity: Sequence[Activity],
    at: datetime,
) -> ChallengeDecision:
    """The challenges an activity of `kind` at `at` completes (given the member's activity over
    `lookback_days` of the open challenges), with their bonuses and events."""
    # A bonus won by an order (or a referee's order) waits out that order's return window.
    release_at = after_return_window(program, at) if kind in ("order", "referral") else None
    decision = ChallengeDecision()
    for challenge in open_challenges(program, kind, completions):
        if not challenge_progress(challenge, activity, at).completed:
            continue
        earlier = completions.get(challenge.id)
        generation = 0 if earlier is None else earlier.generation + 1
        decision.completed.append((challenge, generation))
        decision.events.append(
            OutboxEvent(
                "challenge.completed",
                {
                    "member_id": member_id,
                    "challenge_id": challenge.id,
                    "badge": challenge.badge,
                    "bonus_points": challenge.bonus_points,
                    "at": at,
                },
            )
        )
        if challenge.bonus_points:
            decision.intents.append(
                EarnIntent(
                    challenge_bonus_key(challenge.id, member_id, generation),
                    challenge.bonus_points,
                    f"{challenge.bonus_points} bonus points: '{challenge.name}' completed,"
                    f" badge {challenge.badge!r}",
                    f"challenge:{challenge.id}",
                    release_at,
                    lot_expiry(program, release_at or at),
                    member_id=member_id,
                )
            )
    return decision


def order_completions(
    program: Program, completions: Mapping[str, Completion]
) -> list[tuple[Challenge, Completion]]:
    """The member's live completions of order challenges, in the order they were completed:
    what a return may revoke."""
    moved = {c.id: c for c in challenges_moved_by(program, "order")}
    live = [
        done for done in completions.values() if done.challenge_id in moved and not done.revoked
    ]
    live.sort(key=lambda done: (done.completed_at, done.challenge_id))
    return [(moved[done.challenge_id], done) for done in live]


def completion_window(still_open: Sequence[Challenge], at: datetime) -> tuple[datetime, datetime]:
    """The activity that can complete the open challenges at `at`."""
    return at - timedelta(days=lookback_days(still_open)), at


def revocation_window(
    completed: Sequence[tuple[Challenge, Completion]],
) -> tuple[datetime, datetime]:
    """The activity every completion's check reads: from the earliest lookback to the latest
    completion."""
    return (
        min(done.completed_at - timedelta(days=lookback_days([c])) for c, done in completed),
        max(done.completed_at for _, done in completed),
    )


def decide_revocations(
    member_id: str,
    completed: Sequence[tuple[Challenge, Completion]],
    activity: Sequence[Activity],
    at: datetime,
) -> ChallengeDecision:
    """After a return at `at`: the completed order challenges (`order_completions`) that the
    activity still kept no longer completes as of their completion, with their bonuses back."""
    decision = ChallengeDecision()
    for challenge, done in completed:
        if challenge_progress(challenge, activity, done.completed_at).completed:
            continue
        decision.revoked.append(challenge)
        decision.events.append(
            OutboxEvent(
                "challenge.revoked",
                {"member_id": member_id, "challenge_id": challenge.id, "at": at},
            )
        )
        if challenge.bonus_points:
            earned = challenge_bonus_key(challenge.id, member_id, done.generation)
            decision.intents.append(
                TakeBackIntent(
                    earned,
                    idempotency_key("challenge-revoked", earned),
                    challenge.bonus_points,
                    f"{challenge.bonus_points} bonus points back: '{challenge.name}'"
                    " is no longer completed after a return",
                    f"challenge:{challenge.id}",
                )
            )
    return decision
