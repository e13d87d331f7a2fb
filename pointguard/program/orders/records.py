"""The program's record of paid orders (`program_orders`): a round's paid orders stored
together with what they taught about their buyers, an order loaded and updated for its refunds,
and the orders a tier or challenge review counts. The decisions are `orders/rules.py`'s."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import UnknownOrder
from pointguard.program.events import OrderCancelled, OrderRefunded
from pointguard.program.orders.earning import LinePoints
from pointguard.program.orders.rules import (
    KeptOrder,
    OrderRecord,
    PaidOrderDecision,
    kept_order,
)

INSERT_PAID_ORDERS = """
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

LOCK_PAID_ORDER = """
SELECT member_id, lines::text AS lines, bonus_keys::text AS bonus_keys,
       refunded::text AS refunded, cancelled, bonuses_returned
FROM program_orders WHERE merchant_id = $1 AND order_id = $2 FOR UPDATE
"""

UPDATE_ORDER_REFUNDS = """
UPDATE program_orders SET refunded = $3::jsonb, cancelled = $4, bonuses_returned = $5
WHERE merchant_id = $1 AND order_id = $2
"""

SELECT_ORDER_MEMBER = """
SELECT member_id FROM program_orders WHERE merchant_id = $1 AND order_id = $2
"""

SELECT_ORDERS_IN_WINDOW = """
SELECT paid_at, lines::text AS lines, qualifying::text AS qualifying,
       refunded::text AS refunded, bonus_keys::text AS bonus_keys, cancelled, bonuses_returned
FROM program_orders
WHERE merchant_id = $1 AND member_id = $2 AND paid_at > $3 AND paid_at <= $4 AND NOT cancelled
"""


class PaidOrderColumns(NamedTuple):
    """`INSERT_PAID_ORDERS`'s parameters, in `$n` order: a column each, a row per order."""

    merchant_id: str
    order_ids: list[str]
    member_ids: list[str]
    paid_at: list[datetime]
    lines: list[str]
    qualifying: list[str]
    bonus_keys: list[str]


async def record_orders(
    pg: PgConnection, merchant_id: str, orders: Sequence[PaidOrderDecision]
) -> list[bool]:
    """Store the decided paid orders and what they taught of their buyers (at most one order
    per member); for each, whether it was stored now. An order stored before (the same order
    announced again under another webhook id), or the second of two members claiming one order
    id at once, is not: it earned once already, so its decision must not be posted."""
    if not orders:
        return []
    first: dict[str, PaidOrderDecision] = {}
    for order in orders:
        first.setdefault(order.event.order_id, order)
    columns = PaidOrderColumns(
        merchant_id=merchant_id,
        order_ids=list(first),
        member_ids=[o.event.member_id for o in first.values()],
        paid_at=[o.event.occurred_at for o in first.values()],
        lines=[msgspec.json.encode(o.points.lines).decode() for o in first.values()],
        qualifying=[msgspec.json.encode(o.qualifying).decode() for o in first.values()],
        bonus_keys=[msgspec.json.encode(o.bonus_keys).decode() for o in first.values()],
    )
    inserted = {row["order_id"] for row in await pg.fetch(INSERT_PAID_ORDERS, *columns)}
    learned = [
        (o.event.member_id, update)
        for order_id, o in first.items()
        if order_id in inserted and (update := o.buyer_update) is not None
    ]
    if learned:
        await pg.execute(
            UPDATE_BUYERS,
            merchant_id,
            [member_id for member_id, _ in learned],
            [msgspec.json.encode(u.categories_bought).decode() for _, u in learned],
            [msgspec.json.encode(u.promotion_points).decode() for _, u in learned],
        )
    return [o.event.order_id in inserted and first[o.event.order_id] is o for o in orders]


async def load_order(
    pg: PgConnection, merchant_id: str, event: OrderRefunded | OrderCancelled
) -> OrderRecord:
    """The order's record, locked for its refund; `UnknownOrder` if the member paid no such
    order."""
    row = await pg.fetchrow(LOCK_PAID_ORDER, merchant_id, event.order_id)
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


async def store_refund(pg: PgConnection, merchant_id: str, order: OrderRecord) -> None:
    """Store the order's record as a refund or cancellation left it."""
    await pg.execute(
        UPDATE_ORDER_REFUNDS,
        merchant_id,
        order.order_id,
        msgspec.json.encode(order.refunded).decode(),
        order.cancelled,
        order.bonuses_returned,
    )


async def load_kept_orders(
    pg: PgConnection, merchant_id: str, member_id: str, start: datetime, end: datetime
) -> list[KeptOrder]:
    """The member's orders paid in (start, end], not cancelled, net of refunds."""
    return [
        kept_order(
            order_record(row),
            row["paid_at"],
            msgspec.json.decode(row["qualifying"], type=dict[str, int]),
        )
        for row in await pg.fetch(SELECT_ORDERS_IN_WINDOW, merchant_id, member_id, start, end)
    ]


async def member_of_order(pg: PgConnection, merchant_id: str, order_id: str) -> str | None:
    """Who paid the order, if the program recorded it: storefronts whose refunds do not name
    the customer (Shopify's) are mapped to the member through this."""
    member_id = await pg.fetchval(SELECT_ORDER_MEMBER, merchant_id, order_id)
    return None if member_id is None else str(member_id)
