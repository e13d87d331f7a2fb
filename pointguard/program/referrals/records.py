"""Referrals: codes, the referee's welcome, the referrer's reward, caps and the ladder.

The rule, stated once:
- Every member can have an unguessable referral code (64 random bits); the storefront builds
  the link from it. A code arrives with the new member's `signup` or first `order.paid`.
- A code attaches the referral once, to a member with no earlier paid order. A member's own
  code is refused outright (`refused_self`); an unknown code is ignored.
- The referee gets `referee_points` on signup or on their first order (`referee_reward_on`);
  on an order they wait out its return window like the order's points.
- The referrer gets `referrer_points` for the referee's first paid order if its eligible total
  reaches `min_first_order_minor` (else `too_small`) and the referrer has had fewer than
  `max_rewarded_per_month` rewards this calendar month (else `capped`). The reward waits out
  that order's return window (and, once it exists, the fraud guard) before it is available.
  On the Nth successful referral a ladder step pays its bonus too.
- If the first order is fully refunded or cancelled, the referrer's and the referee's order
  rewards go back (`reversed`); ladder bonuses already won stay.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from pointguard.db import PgConnection
from pointguard.ledger.keys import idempotency_key
from pointguard.program.document.schema import Program
from pointguard.program.events import ActionPerformed, Event, OrderPaid
from pointguard.program.rules import (
    EarnIntent,
    Intent,
    OrderRecord,
    TakeBackIntent,
    after_return_window,
    lot_expiry,
    ordinal,
)

CODE_BYTES = 8

ENSURE_MEMBER = """
INSERT INTO program_members (merchant_id, member_id) VALUES ($1, $2)
ON CONFLICT (merchant_id, member_id) DO NOTHING
"""

SET_CODE = """
UPDATE program_members SET referral_code = coalesce(referral_code, $3)
WHERE merchant_id = $1 AND member_id = $2
RETURNING referral_code
"""

MEMBER_BY_CODE = """
SELECT member_id FROM program_members WHERE merchant_id = $1 AND referral_code = $2
"""

EARLIER_ORDERS = """
SELECT count(*) FROM program_orders
WHERE merchant_id = $1 AND member_id = $2 AND order_id <> $3
"""

ATTACH = """
INSERT INTO program_referrals (merchant_id, referee_id, referrer_id, status, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (merchant_id, referee_id) DO NOTHING
"""

REFERRAL_OF = """
SELECT referrer_id, status, referee_rewarded, first_order_id FROM program_referrals
WHERE merchant_id = $1 AND referee_id = $2 FOR UPDATE
"""

UPDATE_REFERRAL = """
UPDATE program_referrals
SET status = $3, referee_rewarded = $4, first_order_id = $5, rewarded_at = $6
WHERE merchant_id = $1 AND referee_id = $2
"""

LOCK_REFERRER = """
SELECT member_id FROM program_members WHERE merchant_id = $1 AND member_id = $2 FOR UPDATE
"""

REFERRER_COUNTS = """
SELECT count(*) FILTER (WHERE rewarded_at >= $3) AS this_month, count(*) AS successful
FROM program_referrals
WHERE merchant_id = $1 AND referrer_id = $2 AND status = 'rewarded'
"""


def referee_key(referee_id: str) -> str:
    """The ledger key of the referee's welcome reward."""
    return idempotency_key("referee", referee_id)


def referrer_key(referee_id: str) -> str:
    """The ledger key of the referrer's reward for bringing `referee_id`."""
    return idempotency_key("referrer", referee_id)


async def referral_code(pg: PgConnection, merchant_id: str, member_id: str) -> str:
    """The member's referral code, made on first request."""
    await pg.execute(ENSURE_MEMBER, merchant_id, member_id)
    code = secrets.token_urlsafe(CODE_BYTES)
    return str(await pg.fetchval(SET_CODE, merchant_id, member_id, code))


async def referral_intents(
    pg: PgConnection,
    merchant_id: str,
    program: Program,
    event: Event,
    *,
    eligible_total_minor: int = 0,
) -> list[Intent]:
    """What a signup or a paid order does for referrals (call it after the order is recorded)."""
    rules = program.referrals
    if rules is None or not isinstance(event, ActionPerformed | OrderPaid):
        return []
    signup = isinstance(event, ActionPerformed)
    if isinstance(event, ActionPerformed) and event.action != "signup":
        return []
    referee = event.member_id
    if event.referral_code:
        await _attach(pg, merchant_id, event, event.referral_code)
    referral = await pg.fetchrow(REFERRAL_OF, merchant_id, referee)
    if referral is None or referral["status"] == "refused_self":
        return []
    release_at = None if signup else after_return_window(program, event.occurred_at)
    intents: list[Intent] = []
    referee_rewarded = referral["referee_rewarded"]
    if (
        not referee_rewarded
        and rules.referee_points
        and ((rules.referee_reward_on == "signup") == signup)
    ):
        referee_rewarded = True
        intents.append(
            EarnIntent(
                referee_key(referee),
                rules.referee_points,
                f"{rules.referee_points} points welcome gift: you joined through a friend",
                "referral:referee",
                release_at,
                lot_expiry(program, release_at or event.occurred_at),
            )
        )
    status, first_order, rewarded_at = referral["status"], referral["first_order_id"], None
    if isinstance(event, OrderPaid) and status == "attached":
        first_order = event.order_id
        status, referrer_intents = await _reward_referrer(
            pg, merchant_id, program, event, referral["referrer_id"], eligible_total_minor
        )
        intents += referrer_intents
        rewarded_at = event.occurred_at if status == "rewarded" else None
    await pg.execute(
        UPDATE_REFERRAL, merchant_id, referee, status, referee_rewarded, first_order, rewarded_at
    )
    return intents


async def reversal_intents(
    pg: PgConnection,
    merchant_id: str,
    program: Program,
    member_id: str,
    order: OrderRecord,
) -> list[Intent]:
    """Take the rewards back when the referee's first order stops keeping anything."""
    if program.referrals is None or not order.bonuses_returned:
        return []
    referral = await pg.fetchrow(REFERRAL_OF, merchant_id, member_id)
    if referral is None or referral["first_order_id"] != order.order_id:
        return []
    if referral["status"] != "rewarded":
        return []
    await pg.execute(
        UPDATE_REFERRAL,
        merchant_id,
        member_id,
        "reversed",
        referral["referee_rewarded"],
        order.order_id,
        None,
    )
    rules = program.referrals
    back: list[Intent] = [
        TakeBackIntent(
            referrer_key(member_id),
            idempotency_key("referral-reversed", referrer_key(member_id)),
            rules.referrer_points,
            f"{rules.referrer_points} referral points back: your friend's first order was returned",
            "referral:reversed",
        )
    ]
    if rules.referee_reward_on == "first_order" and rules.referee_points:
        back.append(
            TakeBackIntent(
                referee_key(member_id),
                idempotency_key("referral-reversed", referee_key(member_id)),
                rules.referee_points,
                f"{rules.referee_points} welcome points back: your first order was returned",
                "referral:reversed",
            )
        )
    return back


async def _attach(pg: PgConnection, merchant_id: str, event: Event, code: str) -> None:
    referrer = await pg.fetchval(MEMBER_BY_CODE, merchant_id, code)
    if referrer is None:
        return
    order_id = event.order_id if isinstance(event, OrderPaid) else ""
    if await pg.fetchval(EARLIER_ORDERS, merchant_id, event.member_id, order_id):
        return  # not a new customer
    status = "refused_self" if referrer == event.member_id else "attached"
    await pg.execute(ATTACH, merchant_id, event.member_id, referrer, status, event.occurred_at)


async def _reward_referrer(
    pg: PgConnection,
    merchant_id: str,
    program: Program,
    order: OrderPaid,
    referrer: str,
    eligible_total_minor: int,
) -> tuple[str, list[Intent]]:
    rules = program.referrals
    assert rules is not None
    if eligible_total_minor < rules.min_first_order_minor:
        return "too_small", []
    await pg.fetchval(LOCK_REFERRER, merchant_id, referrer)  # caps count one order at a time
    at = order.occurred_at.astimezone(UTC)
    month_start = datetime(at.year, at.month, 1, tzinfo=UTC)
    counts = await pg.fetchrow(REFERRER_COUNTS, merchant_id, referrer, month_start)
    cap = rules.max_rewarded_per_month
    if cap is not None and counts["this_month"] >= cap:
        return "capped", []
    release_at = after_return_window(program, order.occurred_at)
    expires_at = lot_expiry(program, release_at)
    intents: list[Intent] = [
        EarnIntent(
            referrer_key(order.member_id),
            rules.referrer_points,
            f"{rules.referrer_points} points for referring a friend",
            "referral:referrer",
            release_at,
            expires_at,
            member_id=referrer,
        )
    ]
    nth = counts["successful"] + 1
    intents += [
        EarnIntent(
            idempotency_key("referral-ladder", referrer, step.referrals),
            step.bonus_points,
            f"{step.bonus_points} bonus points for your {ordinal(nth)} successful referral",
            "referral:ladder",
            release_at,
            expires_at,
            member_id=referrer,
        )
        for step in rules.ladder
        if step.referrals == nth and step.bonus_points
    ]
    return "rewarded", intents
