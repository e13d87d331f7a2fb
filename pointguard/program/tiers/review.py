"""A member's tier, reviewed: the qualifying amounts loaded from what the program recorded of
their orders and actions, the decision of `tiers/rules.py`, and the tier stored. After each
event (`apply.py`) and in the upkeep's daily review of members whose review is due
(`review_tiers`, where members who buy nothing move down)."""

from __future__ import annotations

from datetime import datetime

from pointguard.db import PgConnection
from pointguard.program.document.schema import Program
from pointguard.program.document.versions import program_in_force
from pointguard.program.intents import OutboxEvent
from pointguard.program.orders.records import load_kept_orders
from pointguard.program.outbox import write_events
from pointguard.program.tiers.rules import (
    TierProgress,
    TierStatus,
    decide_tier,
    next_review,
    qualification_window,
    tier_events,
    tier_progress,
)

MAX_TIER_REVIEWS = 500

LOCK_MEMBER_TIER = """
SELECT tier, tier_review_at FROM program_members
WHERE merchant_id = $1 AND member_id = $2 FOR UPDATE
"""

SELECT_MEMBER_TIER_STATUS = """
SELECT tier, tier_review_at FROM program_members WHERE merchant_id = $1 AND member_id = $2
"""

UPDATE_MEMBER_TIER = """
UPDATE program_members SET tier = $3, tier_review_at = $4 WHERE merchant_id = $1 AND member_id = $2
"""

SUM_ACTION_POINTS_IN_WINDOW = """
SELECT coalesce(sum(points), 0)::bigint FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND occurred_at > $3 AND occurred_at <= $4
"""

SELECT_TIER_REVIEWS_DUE = """
SELECT member_id FROM program_members
WHERE merchant_id = $1 AND tier_review_at <= $2 ORDER BY tier_review_at LIMIT $3
"""

# The due probe of `review_tiers`, for the upkeep (see `ledger.operations.HAS_DUE_RELEASES`).
HAS_DUE_TIER_REVIEWS = """EXISTS (
    SELECT 1 FROM program_members pm
    WHERE pm.merchant_id = upkeep.merchant_id AND pm.tier_review_at <= upkeep.now)"""


async def review_tier(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    program: Program,
    status: TierStatus,
    at: datetime,
) -> list[OutboxEvent]:
    """Re-decide the member's tier at `at` (the member is locked) and store it; return the
    event for the storefront if it changed."""
    if not program.tiers.levels:
        return []  # a program without tiers: nothing to read or decide
    tiers = program.tiers
    now_amount = await qualifying_amount(
        pg, merchant_id, member_id, program, *qualification_window(tiers, at)
    )
    period_amount = 0
    if status.review_at is not None and at >= status.review_at:  # the review is due
        period_amount = await qualifying_amount(
            pg, merchant_id, member_id, program, *qualification_window(tiers, status.review_at)
        )
    decision = decide_tier(
        program, status, now_amount=now_amount, period_amount=period_amount, at=at
    )
    if decision.status != status:
        await pg.execute(
            UPDATE_MEMBER_TIER,
            merchant_id,
            member_id,
            decision.status.tier,
            decision.status.review_at,
        )
    return tier_events(member_id, decision, at)


async def member_tier_progress(
    pg: PgConnection, merchant_id: str, member_id: str, program: Program, now: datetime
) -> TierProgress:
    """Where the member stands: their tier, the next one and how much is left to reach it in
    the current window, and when the tier is next reviewed (the window's end for a member
    without a review date yet)."""
    row = await pg.fetchrow(SELECT_MEMBER_TIER_STATUS, merchant_id, member_id)
    status = TierStatus(row["tier"], row["tier_review_at"]) if row else TierStatus()
    if status.review_at is None:
        status = TierStatus(status.tier, next_review(program.tiers, now))
    start, end = qualification_window(program.tiers, now)
    amount = await qualifying_amount(pg, merchant_id, member_id, program, start, end)
    return tier_progress(program, status, amount)


async def qualifying_amount(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    program: Program,
    start: datetime,
    end: datetime,
) -> int:
    """What the member's orders (and, for points, actions) in (start, end] count toward tiers."""
    orders = await load_kept_orders(pg, merchant_id, member_id, start, end)
    if program.tiers.basis == "spend":
        return sum(order.spend_minor for order in orders)
    actions = await pg.fetchval(SUM_ACTION_POINTS_IN_WINDOW, merchant_id, member_id, start, end)
    return sum(order.points for order in orders) + int(actions)


async def review_tiers(pg: PgConnection, merchant_id: str, *, now: datetime) -> int:
    """Review members whose tier review is due (downgrades happen here for members who buy
    nothing); returns how many changed tier. Run it daily."""
    rows = await pg.fetch(SELECT_TIER_REVIEWS_DUE, merchant_id, now, MAX_TIER_REVIEWS)
    if not rows:
        return 0
    program = (await program_in_force(pg, merchant_id, now)).program
    events: list[OutboxEvent] = []
    for row in rows:
        member = await pg.fetchrow(LOCK_MEMBER_TIER, merchant_id, row["member_id"])
        status = TierStatus(member["tier"], member["tier_review_at"])
        events += await review_tier(pg, merchant_id, row["member_id"], program, status, now)
    await write_events(pg, merchant_id, events)
    return len(events)
