"""Tiers, decided: which tier a member holds, when it is reviewed, and how far the next one is.
Pure: `tiers/review.py` loads the amounts and stores the tier, `apply.py` and the upkeep drive.

The rule, stated once:
- A member qualifies for the highest tier whose threshold their qualifying amount reaches:
  spend (the eligible amount of item lines, in minor units, less refunded units) or points
  (order and action points earned, less points taken back), over the program's window — the
  12 months before now (`rolling_12_months`) or the calendar year so far (`calendar_year`).
- Upgrades happen at once, and the tier is then reviewed a period later (12 months, or at the
  start of the next calendar year). An order earns with the tier held before it.
- At a review the member keeps the tier if the period that just ended, or the window up to now,
  qualifies them for it; the next review is a period on. Otherwise they keep it through
  `grace_days`, and after that they move down to the highest tier either amount qualifies for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pointguard.program.dates import add_months
from pointguard.program.document.schema import Program, Tier, Tiers
from pointguard.program.intents import OutboxEvent

ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class TierStatus:
    tier: str | None = None
    review_at: datetime | None = None


@dataclass(frozen=True)
class TierDecision:
    status: TierStatus
    changed_from: str | None = None  # set when the tier changed
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.reason in ("upgrade", "downgrade")


@dataclass(frozen=True)
class TierProgress:
    tier: str | None
    next_tier: str | None
    amount_left: int  # in the basis' unit (minor units of spend, or points); 0 at the top
    review_at: datetime | None
    benefits: Tier | None


def qualification_window(tiers: Tiers, end: datetime) -> tuple[datetime, datetime]:
    """The window (start excluded, end included) whose qualifying amount counts at `end`: an
    order at the very moment a tier is decided counts, and the order that won a tier 12 months
    before a review belongs to the period before, not to the one under review."""
    if tiers.window == "rolling_12_months":
        return add_months(end, -12), end
    last_instant = end - ONE_MICROSECOND
    return datetime(last_instant.year, 1, 1, tzinfo=UTC) - ONE_MICROSECOND, end


def next_review(tiers: Tiers, after: datetime) -> datetime:
    if tiers.window == "rolling_12_months":
        return add_months(after, 12)
    return datetime(after.year + 1, 1, 1, tzinfo=UTC)


def tier_for(program: Program, qualifying: int) -> str | None:
    reached = [t.name for t in program.tiers.levels if qualifying >= t.threshold]
    return reached[-1] if reached else None


def rank(program: Program, tier: str | None) -> int:
    names = [t.name for t in program.tiers.levels]
    return names.index(tier) if tier in names else -1


def decide_tier(
    program: Program, status: TierStatus, *, now_amount: int, period_amount: int, at: datetime
) -> TierDecision:
    """The member's tier at `at`. `now_amount` is the window up to `at`; `period_amount` the
    window that ended at the pending review (only read once that review is due)."""
    tiers = program.tiers
    if not tiers.levels:
        return TierDecision(status)
    current = status.tier
    earned_now = tier_for(program, now_amount)
    if rank(program, earned_now) > rank(program, current):
        return TierDecision(TierStatus(earned_now, next_review(tiers, at)), current, "upgrade")
    if status.review_at is None or at < status.review_at:
        return TierDecision(status)
    best = max(earned_now, tier_for(program, period_amount), key=lambda t: rank(program, t))
    if rank(program, best) >= rank(program, current):
        return TierDecision(
            TierStatus(current, next_review(tiers, status.review_at)), reason="requalified"
        )
    if at < status.review_at + timedelta(days=tiers.grace_days):
        return TierDecision(status, reason="grace")
    return TierDecision(TierStatus(best, next_review(tiers, at)), current, "downgrade")


def tier_events(member_id: str, decision: TierDecision, at: datetime) -> list[OutboxEvent]:
    """`tier.changed` for the storefront when the decision moved the member."""
    if not decision.changed:
        return []
    return [
        OutboxEvent(
            "tier.changed",
            {
                "member_id": member_id,
                "from": decision.changed_from,
                "to": decision.status.tier,
                "reason": decision.reason,
                "review_at": decision.status.review_at,
                "at": at,
            },
        )
    ]


def tier_progress(program: Program, status: TierStatus, now_amount: int) -> TierProgress:
    levels = program.tiers.levels
    position = rank(program, status.tier)
    following = levels[position + 1] if position + 1 < len(levels) else None
    return TierProgress(
        tier=status.tier,
        next_tier=following.name if following else None,
        amount_left=max(0, following.threshold - now_amount) if following else 0,
        review_at=status.review_at,
        benefits=levels[position] if position >= 0 else None,
    )
