"""Program use cases: apply one event, inside the caller's transaction.

The one place where the program meets the database: it marks the event applied (a second
application does nothing), locks the member's program row (events of one member apply one at a
time), loads what the rules need, calls the pure `rules.evaluate`, posts the intents to the
ledger, records the order or action, and writes outbox events for the storefront, all in the
caller's transaction, so that all of it happens exactly once or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import UnknownOrder
from pointguard.ledger import PostedEntry, post_entries
from pointguard.ledger import operations as ops
from pointguard.ledger.reading import load_entries_by_key
from pointguard.program.actions import ActionCounts
from pointguard.program.chance import ScratchCard, campaigns_granted_on, grant_scratch_card
from pointguard.program.document import Program
from pointguard.program.earning import (
    Buyer,
    LinePoints,
    OrderPoints,
    order_points,
    qualifying_spend,
)
from pointguard.program.events import (
    ActionPerformed,
    Event,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from pointguard.program.outbox import write_entry_events
from pointguard.program.referrals import referral_intents, reversal_intents
from pointguard.program.rules import (
    EarnIntent,
    Intent,
    MemberState,
    OrderRecord,
    TakeBackIntent,
    after_refund,
    evaluate,
    order_earn_key,
    order_intents,
)
from pointguard.program.standing import complete_challenges, refresh_tier
from pointguard.program.store import program_in_force
from pointguard.program.tiers import TierStatus

EVENT_TYPES: dict[type[Event], str] = {
    OrderPaid: "order.paid",
    OrderRefunded: "order.refunded",
    OrderCancelled: "order.cancelled",
    ActionPerformed: "action.performed",
}

MARK_APPLIED = """
INSERT INTO program_applied_events (merchant_id, event_id, event_type, member_id, occurred_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (merchant_id, event_id) DO NOTHING
RETURNING event_id
"""

LOCK_MEMBER = """
INSERT INTO program_members AS m (merchant_id, member_id) VALUES ($1, $2)
ON CONFLICT (merchant_id, member_id) DO UPDATE SET member_id = m.member_id
RETURNING tier, tier_review_at, birthday, categories_bought,
          promotion_points::text AS promotion_points
"""

UPDATE_BUYER = """
UPDATE program_members SET categories_bought = $3, promotion_points = $4::jsonb
WHERE merchant_id = $1 AND member_id = $2
"""

SET_BIRTHDAY = "UPDATE program_members SET birthday = $3 WHERE merchant_id = $1 AND member_id = $2"

LOAD_ORDER = """
SELECT member_id, lines::text AS lines, bonus_keys::text AS bonus_keys,
       refunded::text AS refunded, cancelled, bonuses_returned
FROM program_orders WHERE merchant_id = $1 AND order_id = $2 FOR UPDATE
"""

INSERT_ORDER = """
INSERT INTO program_orders
    (merchant_id, order_id, member_id, paid_at, lines, qualifying, bonus_keys)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb)
ON CONFLICT (merchant_id, order_id) DO NOTHING
RETURNING order_id
"""

UPDATE_ORDER = """
UPDATE program_orders SET refunded = $3::jsonb, cancelled = $4, bonuses_returned = $5
WHERE merchant_id = $1 AND order_id = $2
"""

ACTION_COUNTS = """
SELECT count(*) FILTER (WHERE occurred_at >= $4) AS today,
       count(*) FILTER (WHERE occurred_at >= $5) AS this_month,
       count(*) FILTER (WHERE occurred_at >= $6) AS this_year,
       count(*) AS lifetime
FROM program_actions
WHERE merchant_id = $1 AND member_id = $2 AND action = $3 AND occurred_at < $7
"""

INSERT_ACTION = """
INSERT INTO program_actions (merchant_id, event_id, member_id, action, occurred_at, points)
VALUES ($1, $2, $3, $4, $5, $6)
"""


@dataclass(frozen=True)
class Applied:
    event_id: str
    program_version: int | None
    entries: list[PostedEntry] = field(default_factory=list)
    already_applied: bool = False
    scratch_cards: list[ScratchCard] = field(default_factory=list)


async def apply_event(pg: PgConnection, merchant_id: str, event: Event) -> Applied:
    """Apply `event` to its member under the program in force at the event's time."""
    if (
        await pg.fetchval(
            MARK_APPLIED,
            merchant_id,
            event.event_id,
            EVENT_TYPES[type(event)],
            event.member_id,
            event.occurred_at,
        )
        is None
    ):
        return Applied(event.event_id, None, already_applied=True)
    version = await program_in_force(pg, merchant_id, event.occurred_at)
    program = version.program
    member = await pg.fetchrow(LOCK_MEMBER, merchant_id, event.member_id)
    buyer = Buyer(
        tier=member["tier"],
        categories_bought=frozenset(member["categories_bought"]),
        promotion_points=msgspec.json.decode(member["promotion_points"]),
    )

    if isinstance(event, OrderPaid):
        points = order_points(program, event, buyer)  # `evaluate` in two steps: computed once
        intents = order_intents(event, points, program)
        if not await _record_order(pg, merchant_id, event, buyer, points, program):
            # The same order paid again under another webhook id (a sender that re-announces
            # status changes): it earned once already.
            return Applied(event.event_id, version.version)
        intents += await referral_intents(
            pg,
            merchant_id,
            program,
            event,
            eligible_total_minor=sum(qualifying_spend(program, event).values()),
        )
    elif isinstance(event, OrderRefunded | OrderCancelled):
        order = await _load_order(pg, merchant_id, event)
        intents = evaluate(event, MemberState(event.member_id, order=order), program)
        updated = await _record_refund(pg, merchant_id, event, order)
        intents += await reversal_intents(pg, merchant_id, program, event.member_id, updated)
    elif isinstance(event, ActionPerformed):
        if event.birthday is not None:
            await pg.execute(SET_BIRTHDAY, merchant_id, event.member_id, event.birthday)
        counts = await _action_counts(pg, merchant_id, event)
        intents = evaluate(
            event,
            MemberState(event.member_id, birthday=member["birthday"], action_counts=counts),
            program,
        )
        for intent in intents:
            await pg.execute(
                INSERT_ACTION,
                merchant_id,
                event.event_id,
                event.member_id,
                event.action,
                event.occurred_at,
                intent.points,
            )
        intents += await referral_intents(pg, merchant_id, program, event)
    else:
        raise TypeError(f"no service for {type(event).__name__}")

    kind = _activity_kind(event, intents)
    if kind is not None:
        intents += await complete_challenges(
            pg, merchant_id, event.member_id, program, kind, event.occurred_at
        )
    for referrer in {i.member_id for i in intents if isinstance(i, EarnIntent) and i.member_id}:
        if referrer != event.member_id:  # a referral was rewarded: the referrer's challenges
            intents += await complete_challenges(
                pg, merchant_id, referrer, program, "referral", event.occurred_at
            )
    entries = await _post(pg, merchant_id, event.member_id, intents)
    await write_entry_events(pg, merchant_id, entries)
    current = TierStatus(member["tier"], member["tier_review_at"])
    await refresh_tier(pg, merchant_id, event.member_id, program, current, event.occurred_at)
    cards = [
        await grant_scratch_card(
            pg,
            merchant_id,
            event.member_id,
            campaign.id,
            key=f"{event.event_id}:{campaign.id}",
            now=event.occurred_at,
        )
        for campaign in campaigns_granted_on(program, EVENT_TYPES[type(event)])
    ]
    return Applied(event.event_id, version.version, entries, scratch_cards=cards)


def _activity_kind(event: Event, intents: list[Intent]) -> str | None:
    """What the event counts as for challenges: a paid order, a rewarded review, or nothing."""
    if isinstance(event, OrderPaid):
        return "order"
    if isinstance(event, ActionPerformed) and event.action == "review.published" and intents:
        return "review"
    return None


async def _post(
    pg: PgConnection, merchant_id: str, member_id: str, intents: list[Intent]
) -> list[PostedEntry]:
    earns = [
        ops.earn_entry(
            merchant_id,
            i.member_id or member_id,
            i.points,
            key=i.key,
            description=i.description,
            source=i.source,
            release_at=i.release_at,
            expires_at=i.expires_at,
        )
        for i in intents
        if isinstance(i, EarnIntent)
    ]
    entries = await post_entries(pg, earns) if earns else []
    for intent in intents:
        if not isinstance(intent, TakeBackIntent):
            continue
        earned = (await load_entries_by_key(pg, merchant_id, [intent.earn_key])).get(
            intent.earn_key
        )
        if earned is not None:
            entries += await ops.take_back(
                pg,
                merchant_id,
                earned.entry_id,
                intent.points,
                key=intent.key,
                description=intent.description,
                source=intent.source,
            )
    return entries


async def _record_order(
    pg: PgConnection,
    merchant_id: str,
    event: OrderPaid,
    buyer: Buyer,
    points: OrderPoints,
    program: Program,
) -> bool:
    """Record the order and what it taught us of the buyer; False if it was recorded before."""
    bonus_keys = {f"{order_earn_key(event.order_id)}:{b.source}": b.points for b in points.bonuses}
    inserted = await pg.fetchval(
        INSERT_ORDER,
        merchant_id,
        event.order_id,
        event.member_id,
        event.occurred_at,
        msgspec.json.encode(points.lines).decode(),
        msgspec.json.encode(qualifying_spend(program, event)).decode(),
        msgspec.json.encode(bonus_keys).decode(),
    )
    if inserted is None:
        return False
    promotion_points = dict(buyer.promotion_points or {})
    for line in points.lines:
        if line.promotion_id and line.promotion_extra > 0:
            promotion_points[line.promotion_id] = (
                promotion_points.get(line.promotion_id, 0) + line.promotion_extra
            )
    categories = sorted(buyer.categories_bought | {line.category for line in event.lines})
    await pg.execute(
        UPDATE_BUYER,
        merchant_id,
        event.member_id,
        categories,
        msgspec.json.encode(promotion_points).decode(),
    )
    return True


async def _load_order(
    pg: PgConnection, merchant_id: str, event: OrderRefunded | OrderCancelled
) -> OrderRecord:
    row = await pg.fetchrow(LOAD_ORDER, merchant_id, event.order_id)
    if row is None or row["member_id"] != event.member_id:
        raise UnknownOrder(
            f"merchant {merchant_id!r} has no paid order {event.order_id!r}"
            f" of member {event.member_id!r}"
        )
    return OrderRecord(
        order_id=event.order_id,
        lines=tuple(msgspec.json.decode(row["lines"], type=list[LinePoints])),
        bonus_keys=msgspec.json.decode(row["bonus_keys"], type=dict[str, int]),
        refunded=msgspec.json.decode(row["refunded"], type=dict[str, int]),
        cancelled=row["cancelled"],
        bonuses_returned=row["bonuses_returned"],
    )


async def _record_refund(
    pg: PgConnection,
    merchant_id: str,
    event: OrderRefunded | OrderCancelled,
    order: OrderRecord,
) -> OrderRecord:
    """Store the order's refunds and return its record as it now stands."""
    updated = after_refund(order, event)
    await pg.execute(
        UPDATE_ORDER,
        merchant_id,
        event.order_id,
        msgspec.json.encode(updated.refunded).decode(),
        updated.cancelled,
        updated.bonuses_returned,
    )
    return updated


async def _action_counts(
    pg: PgConnection, merchant_id: str, event: ActionPerformed
) -> ActionCounts:
    at = event.occurred_at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    row = await pg.fetchrow(
        ACTION_COUNTS,
        merchant_id,
        event.member_id,
        event.action,
        day,
        day.replace(day=1),
        day.replace(month=1, day=1),
        at,
    )
    return ActionCounts(row["today"], row["this_month"], row["this_year"], row["lifetime"])
