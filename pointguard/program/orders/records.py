"""The program's record of paid orders: a round's paid orders recorded together (with what
they teach about their buyers: categories bought, promotion points gained), and an order loaded
and updated for its refunds. Refund rules read these records; tiers and challenges sum them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import UnknownOrder
from pointguard.program.document.schema import Program
from pointguard.program.events import OrderCancelled, OrderPaid, OrderRefunded
from pointguard.program.orders.earning import (
    Buyer,
    LinePoints,
    OrderPoints,
    order_points,
    qualifying_spend,
)
from pointguard.program.referrals.records import referral_intents
from pointguard.program.rules import (
    Intent,
    OrderRecord,
    after_refund,
    order_bonus_key,
    order_intents,
)

INSERT_ORDERS = """
INSERT INTO program_orders
    (merchant_id, order_id, member_id, paid_at, lines, qualifying, bonus_keys)
SELECT $1, o.order_id, o.member_id, o.paid_at, o.lines::jsonb, o.qualifying::jsonb,
       o.bonus_keys::jsonb
FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[])
     AS o(order_id, member_id, paid_at, lines, qualifying, bonus_keys)
ON CONFLICT (merchant_id, order_id) DO NOTHING
RETURNING order_id
"""

UPDATE_BUYERS = """
UPDATE program_members AS m
SET categories_bought = ARRAY(SELECT jsonb_array_elements_text(u.categories::jsonb)),
    promotion_points = u.promotion_points::jsonb
FROM unnest($2::text[], $3::text[], $4::text[]) AS u(member_id, categories, promotion_points)
WHERE m.merchant_id = $1 AND m.member_id = u.member_id
"""

LOAD_ORDER = """
SELECT member_id, lines::text AS lines, bonus_keys::text AS bonus_keys,
       refunded::text AS refunded, cancelled, bonuses_returned
FROM program_orders WHERE merchant_id = $1 AND order_id = $2 FOR UPDATE
"""

SELECT_ORDER_MEMBER = """
SELECT member_id FROM program_orders WHERE merchant_id = $1 AND order_id = $2
"""

UPDATE_ORDER = """
UPDATE program_orders SET refunded = $3::jsonb, cancelled = $4, bonuses_returned = $5
WHERE merchant_id = $1 AND order_id = $2
"""


@dataclass(frozen=True)
class PaidOrder:
    event: OrderPaid
    program: Program  # in force at the event's time
    member: Any  # the member's program row, locked


def _buyer(member: Any) -> Buyer:
    return Buyer(
        tier=member["tier"],
        categories_bought=frozenset(member["categories_bought"]),
        promotion_points=msgspec.json.decode(member["promotion_points"]),
    )


@dataclass(frozen=True)
class _PricedOrder:
    order: PaidOrder
    buyer: Buyer
    points: OrderPoints
    qualifying: dict[str, int]  # eligible spend per category, for tiers and referrals

    @property
    def event(self) -> OrderPaid:
        return self.order.event


def _price(order: PaidOrder) -> _PricedOrder:
    event, program = order.event, order.program
    buyer = _buyer(order.member)
    points = order_points(program, event, buyer)  # `evaluate` in two steps: computed once
    return _PricedOrder(order, buyer, points, dict(qualifying_spend(program, event)))


async def record_orders(
    pg: PgConnection, merchant_id: str, orders: Sequence[PaidOrder]
) -> list[list[Intent] | None]:
    """Price the paid orders (at most one per member), record them and what they taught us of
    their buyers; for each, its intents, or None for an order recorded before (the same order
    announced again under another webhook id), which earns nothing: it earned once already. So
    does the second of two members claiming one order id at once."""
    if not orders:
        return []
    priced = [_price(order) for order in orders]
    by_order_id: dict[str, _PricedOrder] = {}
    for p in priced:
        by_order_id.setdefault(p.event.order_id, p)
    first = list(by_order_id.values())
    rows = await pg.fetch(
        INSERT_ORDERS,
        merchant_id,
        [p.event.order_id for p in first],
        [p.event.member_id for p in first],
        [p.event.occurred_at for p in first],
        [msgspec.json.encode(p.points.lines).decode() for p in first],
        [msgspec.json.encode(p.qualifying).decode() for p in first],
        [msgspec.json.encode(_bonus_keys(p)).decode() for p in first],
    )
    inserted = {row["order_id"] for row in rows}
    recorded = {id(p) for p in first if p.event.order_id in inserted}
    learned = [
        (p.event.member_id, found)
        for p in first
        if id(p) in recorded and (found := _learned(p)) is not None
    ]
    if learned:
        await pg.execute(
            UPDATE_BUYERS,
            merchant_id,
            [member_id for member_id, _ in learned],
            [msgspec.json.encode(categories).decode() for _, (categories, _) in learned],
            [promotion_points for _, (_, promotion_points) in learned],
        )
    intents: list[list[Intent] | None] = []
    for p in priced:
        if id(p) not in recorded:
            intents.append(None)
            continue
        program = p.order.program
        intents.append(
            order_intents(p.event, p.points, program)
            + await referral_intents(
                pg,
                merchant_id,
                program,
                p.event,
                eligible_total_minor=sum(p.qualifying.values()),
            )
        )
    return intents


def _bonus_keys(order: _PricedOrder) -> dict[str, int]:
    """The ledger keys of the order's bonus earns, by which a refund finds them again."""
    order_id = order.event.order_id
    return {order_bonus_key(order_id, bonus.source): bonus.points for bonus in order.points.bonuses}


def _learned(order: _PricedOrder) -> tuple[list[str], str] | None:
    """The buyer's categories and promotion points after this order; None if unchanged."""
    buyer = order.buyer
    promotion_points = dict(buyer.promotion_points or {})
    for line in order.points.lines:
        if line.promotion_id and line.promotion_extra > 0:
            promotion_points[line.promotion_id] = (
                promotion_points.get(line.promotion_id, 0) + line.promotion_extra
            )
    categories = buyer.categories_bought | {line.category for line in order.event.lines}
    if categories == buyer.categories_bought and promotion_points == (buyer.promotion_points or {}):
        return None
    return sorted(categories), msgspec.json.encode(promotion_points).decode()


async def load_order(
    pg: PgConnection, merchant_id: str, event: OrderRefunded | OrderCancelled
) -> OrderRecord:
    """The order's record, locked for its refund; `UnknownOrder` if the member paid no such
    order."""
    row = await pg.fetchrow(LOAD_ORDER, merchant_id, event.order_id)
    if row is None or row["member_id"] != event.member_id:
        raise UnknownOrder(
            f"merchant {merchant_id!r} has no paid order {event.order_id!r}"
            f" of member {event.member_id!r}"
        )
    return order_record(row, event.order_id)


def order_record(row: Any, order_id: str = "") -> OrderRecord:
    """An order's record from its `program_orders` row (`lines`, `bonus_keys` and `refunded`
    as JSON text, `cancelled`, `bonuses_returned`)."""
    return OrderRecord(
        order_id=order_id,
        lines=tuple(msgspec.json.decode(row["lines"], type=list[LinePoints])),
        bonus_keys=msgspec.json.decode(row["bonus_keys"], type=dict[str, int]),
        refunded=msgspec.json.decode(row["refunded"], type=dict[str, int]),
        cancelled=row["cancelled"],
        bonuses_returned=row["bonuses_returned"],
    )


async def record_refund(
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


async def member_of_order(pg: PgConnection, merchant_id: str, order_id: str) -> str | None:
    """Who paid the order, if the program recorded it: storefronts whose refunds do not name
    the customer (Shopify's) are mapped to the member through this."""
    member_id = await pg.fetchval(SELECT_ORDER_MEMBER, merchant_id, order_id)
    return None if member_id is None else str(member_id)
