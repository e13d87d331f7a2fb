"""A member's standing: the tier they hold and the challenges they complete, read from what the
program recorded of their orders and actions. Called by `service.apply_event` after each event,
and by the upkeep's daily tier review."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from pointguard.db import PgConnection
from pointguard.ledger.keys import idempotency_key
from pointguard.program.challenges.rules import (
    Activity,
    ChallengeProgress,
    challenge_progress,
    goals_touched,
)
from pointguard.program.document.schema import Challenge, Program
from pointguard.program.document.versions import program_in_force
from pointguard.program.orders.records import order_record
from pointguard.program.outbox import write_events
from pointguard.program.rules import (
    EarnIntent,
    Intent,
    TakeBackIntent,
    after_return_window,
    lot_expiry,
)
from pointguard.program.tiers.rules import (
    TierDecision,
    TierStatus,
    decide_tier,
    qualification_window,
)

MAX_TIER_REVIEWS = 500

LOCK_MEMBER_TIER = """
SELECT tier, tier_review_at FROM program_members
WHERE merchant_id = $1 AND member_id = $2 FOR UPDATE
"""

SET_TIER = """
UPDATE program_members SET tier = $3, tier_review_at = $4 WHERE merchant_id = $1 AND member_id = $2
"""

ORDERS_IN_WINDOW = """
SELECT paid_at, lines::text AS lines, qualifying::text AS qualifying,
       refunded::text AS refunded, bonus_keys::text AS bonus_keys, cancelled, bonuses_returned
FROM program_orders
WHERE merchant_id = $1 AND member_id = $2 AND paid_at > $3 AND paid_at <= $4 AND NOT cancelled
"""

ACTION_POINTS_IN_WINDOW = """
SELECT coalesce(sum(points), 0)::bigint FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND occurred_at > $3 AND occurred_at <= $4
"""

REVIEWS_IN_WINDOW = """
SELECT occurred_at FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND action = 'review.published'
  AND occurred_at > $3 AND occurred_at <= $4
"""

REFERRALS_IN_WINDOW = """
SELECT rewarded_at FROM program_referrals
WHERE merchant_id = $1 AND referrer_id = $2 AND status = 'rewarded'
  AND rewarded_at > $3 AND rewarded_at <= $4
"""

COMPLETED_CHALLENGES = """
SELECT challenge_id, badge, completed_at, generation FROM program_challenge_completions
WHERE merchant_id = $1 AND member_id = $2 AND revoked_at IS NULL
ORDER BY completed_at, challenge_id
"""

# A completion after a revocation is the next generation: its bonus gets a key of its own.
COMPLETE_CHALLENGE = """
INSERT INTO program_challenge_completions AS c
    (merchant_id, member_id, challenge_id, badge, completed_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (merchant_id, member_id, challenge_id) DO UPDATE
SET badge = excluded.badge, completed_at = excluded.completed_at,
    generation = c.generation + 1, revoked_at = NULL
WHERE c.revoked_at IS NOT NULL
RETURNING generation
"""

REVOKE_CHALLENGE = """
UPDATE program_challenge_completions SET revoked_at = $4
WHERE merchant_id = $1 AND member_id = $2 AND challenge_id = $3 AND revoked_at IS NULL
"""

TIERS_DUE = """
SELECT member_id FROM program_members
WHERE merchant_id = $1 AND tier_review_at <= $2 ORDER BY tier_review_at LIMIT $3
"""

# The due probe of `review_tiers`, for the upkeep (see `ledger.operations.HAS_DUE_RELEASES`).
HAS_DUE_TIER_REVIEWS = """EXISTS (
    SELECT 1 FROM program_members pm
    WHERE pm.merchant_id = upkeep.merchant_id AND pm.tier_review_at <= upkeep.now)"""


async def refresh_tier(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    program: Program,
    status: TierStatus,
    at: datetime,
) -> TierDecision:
    """Re-decide the member's tier at `at`; store it, and tell the storefront if it changed."""
    if not program.tiers.levels:
        return TierDecision(status)  # a program without tiers: nothing to read or decide
    tiers = program.tiers
    now_amount = await qualifying_amount(
        pg, merchant_id, member_id, program, *qualification_window(tiers, at)
    )
    review_at = status.review_at
    period_amount = 0
    if review_at is not None and at >= review_at:  # the review is due
        period_amount = await qualifying_amount(
            pg, merchant_id, member_id, program, *qualification_window(tiers, review_at)
        )
    decision = decide_tier(
        program, status, now_amount=now_amount, period_amount=period_amount, at=at
    )
    if decision.status != status:
        await pg.execute(
            SET_TIER, merchant_id, member_id, decision.status.tier, decision.status.review_at
        )
    if decision.changed:
        await write_events(
            pg,
            merchant_id,
            [
                (
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
            ],
        )
    return decision


@dataclass(frozen=True)
class KeptOrder:
    paid_at: datetime
    spend_minor: int  # eligible spend of the items still kept
    points: int  # points still kept, bonuses included unless they went back
    returned: bool  # every item sent back: it no longer counts as an order


async def kept_orders(
    pg: PgConnection, merchant_id: str, member_id: str, start: datetime, end: datetime
) -> list[KeptOrder]:
    """The member's orders paid in (start, end], not cancelled, net of refunds."""
    kept = []
    for row in await pg.fetch(ORDERS_IN_WINDOW, merchant_id, member_id, start, end):
        record = order_record(row)
        spend = msgspec.json.decode(row["qualifying"], type=dict[str, int])
        kept.append(
            KeptOrder(
                row["paid_at"],
                sum(
                    amount * record.units_kept(line) // line.quantity
                    for line in record.lines
                    if (amount := spend.get(line.line_id))
                ),
                record.points_kept(),
                record.items_kept() == 0,
            )
        )
    return kept


async def qualifying_amount(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    program: Program,
    start: datetime,
    end: datetime,
) -> int:
    """What the member's orders (and, for points, actions) in (start, end] count toward tiers."""
    orders = await kept_orders(pg, merchant_id, member_id, start, end)
    if program.tiers.basis == "spend":
        return sum(order.spend_minor for order in orders)
    actions = await pg.fetchval(ACTION_POINTS_IN_WINDOW, merchant_id, member_id, start, end)
    return sum(order.points for order in orders) + int(actions)


async def member_activity(
    pg: PgConnection, merchant_id: str, member_id: str, start: datetime, end: datetime
) -> list[Activity]:
    """What challenges count for the member in (start, end]: orders, reviews, referrals."""
    orders = await kept_orders(pg, merchant_id, member_id, start, end)
    reviews = await pg.fetch(REVIEWS_IN_WINDOW, merchant_id, member_id, start, end)
    referrals = await pg.fetch(REFERRALS_IN_WINDOW, merchant_id, member_id, start, end)
    return (
        [Activity(o.paid_at, "order", o.spend_minor) for o in orders if not o.returned]
        + [Activity(r["occurred_at"], "review") for r in reviews]
        + [Activity(r["rewarded_at"], "referral") for r in referrals]
    )


async def complete_challenges(
    pg: PgConnection,
    merchant_id: str,
    member_id: str,
    program: Program,
    kind: str,
    at: datetime,
) -> list[Intent]:
    """Complete the challenges that an activity of `kind` at `at` finishes: record the badge,
    tell the storefront, and return the bonus earns."""
    touched = [c for c in program.challenges if c.goal in goals_touched(kind)]
    if not touched:
        return []
    done = {r["challenge_id"] for r in await pg.fetch(COMPLETED_CHALLENGES, merchant_id, member_id)}
    open_challenges = [c for c in touched if c.id not in done]
    if not open_challenges:
        return []
    activity = await member_activity(
        pg, merchant_id, member_id, at - timedelta(days=_lookback_days(open_challenges)), at
    )
    # A bonus won by an order (or a referee's order) waits out that order's return window.
    waits = kind in ("order", "referral")
    release_at = after_return_window(program, at) if waits else None
    intents: list[Intent] = []
    events: list[tuple[str, dict[str, object]]] = []
    for challenge in open_challenges:
        if not challenge_progress(challenge, activity, at).completed:
            continue
        generation = await pg.fetchval(
            COMPLETE_CHALLENGE, merchant_id, member_id, challenge.id, challenge.badge, at
        )
        events.append(
            (
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
            intents.append(
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
    await write_events(pg, merchant_id, events)
    return intents


def challenge_bonus_key(challenge_id: str, member_id: str, generation: int) -> str:
    """The ledger key of a completion's bonus; completions after a revocation get their own."""
    return idempotency_key("challenge", challenge_id, member_id, generation)


async def revoke_challenges(
    pg: PgConnection, merchant_id: str, member_id: str, program: Program, at: datetime
) -> list[Intent]:
    """After a return: revoke the member's completed order challenges that the orders still
    kept no longer complete (as of when they were completed), and take their bonuses back.
    Otherwise buying to finish a challenge and returning the goods would keep the bonus."""
    order_goals = goals_touched("order")
    challenges = {c.id: c for c in program.challenges if c.goal in order_goals}
    if not challenges:
        return []
    completed = [
        row
        for row in await pg.fetch(COMPLETED_CHALLENGES, merchant_id, member_id)
        if row["challenge_id"] in challenges
    ]
    if not completed:
        return []
    # One read covering every completion's history: progress only counts activity up to `at`.
    activity = await member_activity(
        pg,
        merchant_id,
        member_id,
        min(
            row["completed_at"] - timedelta(days=_lookback_days([challenges[row["challenge_id"]]]))
            for row in completed
        ),
        max(row["completed_at"] for row in completed),
    )
    intents: list[Intent] = []
    events: list[tuple[str, dict[str, object]]] = []
    for row in completed:
        challenge, completed_at = challenges[row["challenge_id"]], row["completed_at"]
        if challenge_progress(challenge, activity, completed_at).completed:
            continue
        await pg.execute(REVOKE_CHALLENGE, merchant_id, member_id, challenge.id, at)
        events.append(
            ("challenge.revoked", {"member_id": member_id, "challenge_id": challenge.id, "at": at})
        )
        if challenge.bonus_points:
            earned = challenge_bonus_key(challenge.id, member_id, row["generation"])
            intents.append(
                TakeBackIntent(
                    earned,
                    idempotency_key("challenge-revoked", earned),
                    challenge.bonus_points,
                    f"{challenge.bonus_points} bonus points back: '{challenge.name}'"
                    " is no longer completed after a return",
                    f"challenge:{challenge.id}",
                )
            )
    await write_events(pg, merchant_id, events)
    return intents


def _lookback_days(challenges: list[Challenge]) -> int:
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


async def member_challenges(
    pg: PgConnection, merchant_id: str, member_id: str, at: datetime
) -> list[tuple[ChallengeProgress, datetime | None]]:
    """Each challenge of the program in force, with the member's progress and completion."""
    program = (await program_in_force(pg, merchant_id, at)).program
    if not program.challenges:
        return []
    done = {
        r["challenge_id"]: r["completed_at"]
        for r in await pg.fetch(COMPLETED_CHALLENGES, merchant_id, member_id)
    }
    activity = await member_activity(
        pg, merchant_id, member_id, at - timedelta(days=_lookback_days(program.challenges)), at
    )
    return [(challenge_progress(c, activity, at), done.get(c.id)) for c in program.challenges]


async def review_tiers(pg: PgConnection, merchant_id: str, *, now: datetime) -> int:
    """Review members whose tier review is due (downgrades happen here for members who buy
    nothing); returns how many changed tier. Run it daily."""
    rows = await pg.fetch(TIERS_DUE, merchant_id, now, MAX_TIER_REVIEWS)
    if not rows:
        return 0
    program = (await program_in_force(pg, merchant_id, now)).program
    changed = 0
    for row in rows:
        member = await pg.fetchrow(LOCK_MEMBER_TIER, merchant_id, row["member_id"])
        status = TierStatus(member["tier"], member["tier_review_at"])
        decision = await refresh_tier(pg, merchant_id, row["member_id"], program, status, now)
        changed += decision.changed
    return changed
