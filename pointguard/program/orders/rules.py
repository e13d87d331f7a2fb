"""Orders, decided: what a paid order earns and teaches about its buyer, and what a refund or a
cancellation takes back. Pure: `orders/records.py` loads and stores, `apply.py` drives.

The points of each line are `earning.py`'s; this module turns them into ledger intents under
keys a refund can find again, and keeps the order's record (units refunded, bonuses returned)
from which refunds, tiers and challenges read what the order still counts for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from pointguard.ledger.keys import idempotency_key
from pointguard.program.dates import after_return_window, lot_expiry
from pointguard.program.document.schema import Program
from pointguard.program.events import OrderCancelled, OrderPaid, OrderRefunded
from pointguard.program.intents import EarnIntent, Intent, TakeBackIntent
from pointguard.program.orders.earning import (
    Buyer,
    LinePoints,
    OrderPoints,
    order_points,
    refund_points,
)


@dataclass(frozen=True)
class OrderRecord:
    """What an earlier `order.paid` earned, and what has been refunded of it since."""

    order_id: str
    lines: tuple[LinePoints, ...]  # every item line (and earning shipping and tax)
    bonus_keys: Mapping[str, int]  # bonus earn key -> points
    refunded: Mapping[str, int] = field(default_factory=dict)  # line id -> units
    cancelled: bool = False
    bonuses_returned: bool = False

    def refunded_units(self, line: LinePoints) -> int:
        """Refunds name items; shipping and tax go back only with a cancellation."""
        return 0 if line.charge else self.refunded.get(line.line_id, 0)

    def units_kept(self, line: LinePoints) -> int:
        return line.quantity - self.refunded_units(line)

    def items_kept(self) -> int:
        return sum(self.units_kept(line) for line in self.lines if not line.charge)

    def points_kept(self) -> int:
        """Line points not taken back, and the bonuses unless they went back."""
        lines = sum(
            line.points * self.units_kept(line) // line.quantity
            for line in self.lines
            if line.quantity
        )
        return lines + (0 if self.bonuses_returned else sum(self.bonus_keys.values()))


@dataclass(frozen=True)
class BuyerUpdate:
    """What an order taught about its buyer: every category bought, and the extra points each
    promotion has given them (for promotions' per-member caps)."""

    categories_bought: tuple[str, ...]
    promotion_points: Mapping[str, int]


@dataclass(frozen=True)
class PaidOrderDecision:
    event: OrderPaid
    points: OrderPoints
    intents: list[Intent]
    qualifying: Mapping[str, int]  # eligible spend per earning item line: tiers and referrals
    bonus_keys: Mapping[str, int]  # the bonus earns' ledger keys, by which a refund finds them
    buyer_update: BuyerUpdate | None  # None: the order taught nothing new

    @property
    def eligible_total_minor(self) -> int:
        return sum(self.qualifying.values())


@dataclass(frozen=True)
class RefundDecision:
    intents: list[Intent]
    order: OrderRecord  # the order's record once the refund or cancellation is applied


def order_earn_key(order_id: str) -> str:
    """The ledger key of a paid order's line points."""
    return idempotency_key("order", order_id)


def order_bonus_key(order_id: str, bonus_source: str) -> str:
    """The ledger key of a paid order's bonus from `bonus_source` (a promotion, cross-sell)."""
    return idempotency_key("order-bonus", order_id, bonus_source)


def decide_paid_order(event: OrderPaid, program: Program, buyer: Buyer) -> PaidOrderDecision:
    """What `event` earns for a buyer who stands as `buyer` before it."""
    points = order_points(program, event, buyer)
    bonus_keys = [order_bonus_key(event.order_id, bonus.source) for bonus in points.bonuses]
    return PaidOrderDecision(
        event=event,
        points=points,
        intents=_order_earns(event, points, program, bonus_keys),
        qualifying=points.qualifying,
        bonus_keys={key: b.points for key, b in zip(bonus_keys, points.bonuses, strict=True)},
        buyer_update=_buyer_update(event, points, buyer),
    )


def _order_earns(
    event: OrderPaid, points: OrderPoints, program: Program, bonus_keys: list[str]
) -> list[Intent]:
    """The earns for a paid order whose points are computed, its bonuses under `bonus_keys`."""
    release_at = after_return_window(program, event.occurred_at)
    expires_at = lot_expiry(program, release_at)
    promotion_names = {p.id: p.name for p in program.promotions}
    applied = sorted(
        {
            promotion_names[line.promotion_id]
            for line in points.lines
            if line.promotion_id and line.promotion_extra
        }
    )
    intents: list[Intent] = []
    if points.line_total:
        suffix = f" ({', '.join(applied)})" if applied else ""
        intents.append(
            EarnIntent(
                order_earn_key(event.order_id),
                points.line_total,
                f"{points.line_total} points for order #{event.order_id}{suffix}",
                "earning:order",
                release_at,
                expires_at,
            )
        )
    intents.extend(
        EarnIntent(
            key,
            bonus.points,
            f"{bonus.description} (order #{event.order_id})",
            bonus.source,
            release_at,
            expires_at,
        )
        for key, bonus in zip(bonus_keys, points.bonuses, strict=True)
    )
    return intents


def _buyer_update(event: OrderPaid, points: OrderPoints, buyer: Buyer) -> BuyerUpdate | None:
    promotion_points = dict(buyer.promotion_points or {})
    for line in points.lines:
        if line.promotion_id and line.promotion_extra > 0:
            promotion_points[line.promotion_id] = (
                promotion_points.get(line.promotion_id, 0) + line.promotion_extra
            )
    categories = buyer.categories_bought | {line.category for line in event.lines}
    if categories == buyer.categories_bought and promotion_points == (buyer.promotion_points or {}):
        return None
    return BuyerUpdate(tuple(sorted(categories)), promotion_points)


def after_refund(order: OrderRecord, event: OrderRefunded | OrderCancelled) -> OrderRecord:
    """The order's record once `event` is applied (refunds clamp to the units bought)."""
    refunded = dict(order.refunded)
    if isinstance(event, OrderRefunded):
        quantities = {line.line_id: line.quantity for line in order.lines if not line.charge}
        for line in event.lines:
            if line.line_id in quantities:
                refunded[line.line_id] = min(
                    quantities[line.line_id],
                    refunded.get(line.line_id, 0) + max(0, line.quantity),
                )
    cancelled = order.cancelled or isinstance(event, OrderCancelled)
    updated = replace(order, refunded=refunded, cancelled=cancelled)
    return replace(updated, bonuses_returned=cancelled or updated.items_kept() == 0)


def decide_refund(event: OrderRefunded | OrderCancelled, order: OrderRecord) -> RefundDecision:
    """What a refund or a cancellation of `order` takes back (nothing once it is cancelled)."""
    updated = after_refund(order, event)
    if order.cancelled:
        return RefundDecision([], updated)
    if isinstance(event, OrderRefunded):
        taken = sum(
            refund_points(
                line,
                order.refunded_units(line),
                updated.refunded_units(line) - order.refunded_units(line),
            )
            for line in order.lines
        )
        key, source = idempotency_key("refund", event.event_id), "earning:refund"
        description = f"{taken} points back for the refund on order #{order.order_id}"
    else:
        taken = sum(
            refund_points(line, order.refunded_units(line), line.quantity) for line in order.lines
        )
        key, source = idempotency_key("cancel", event.event_id), "earning:cancel"
        description = f"{taken} points back: order #{order.order_id} was cancelled"
    intents: list[Intent] = []
    if taken:
        intents.append(
            TakeBackIntent(order_earn_key(order.order_id), key, taken, description, source)
        )
    return RefundDecision(intents + _bonuses_back(order, updated, event.event_id), updated)


def _bonuses_back(before: OrderRecord, after: OrderRecord, event_id: str) -> list[Intent]:
    """The order's bonuses, taken back the one time the order stops keeping anything (by the
    refund or cancellation `event_id`)."""
    if before.bonuses_returned or not after.bonuses_returned:
        return []
    return [
        TakeBackIntent(
            bonus_key,
            idempotency_key("bonus-back", event_id, bonus_key),
            points,
            f"{points} bonus points back: order #{before.order_id} fully returned",
            "earning:refund",
        )
        for bonus_key, points in before.bonus_keys.items()
    ]


@dataclass(frozen=True)
class KeptOrder:
    """What an order still counts for tiers and challenges, net of refunds."""

    paid_at: datetime
    spend_minor: int  # eligible spend of the items still kept
    points: int  # points still kept, bonuses included unless they went back
    returned: bool  # every item sent back: it no longer counts as an order


def kept_order(record: OrderRecord, paid_at: datetime, spend: Mapping[str, int]) -> KeptOrder:
    """`record`'s order as it counts now; `spend` is its eligible spend per line as paid."""
    return KeptOrder(
        paid_at,
        sum(
            amount * record.units_kept(line) // line.quantity
            for line in record.lines
            if (amount := spend.get(line.line_id))
        ),
        record.points_kept(),
        record.items_kept() == 0,
    )
