"""`evaluate(event, state, program) -> intents`: the functional core of the program.

No I/O: the service loads `MemberState`, calls this, and posts the intents to the ledger. Every
intent carries an idempotency key derived from the event or the order, so an event applied
twice posts nothing twice.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from pointguard.ledger.keys import idempotency_key
from pointguard.program.actions.rules import ActionCounts, decide_action
from pointguard.program.document.schema import Program
from pointguard.program.events import (
    ActionPerformed,
    Event,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from pointguard.program.orders.earning import (
    Buyer,
    LinePoints,
    OrderPoints,
    order_points,
    refund_points,
)


@dataclass(frozen=True)
class EarnIntent:
    key: str
    points: int
    description: str
    source: str
    release_at: datetime | None  # pending until then; None: available at once
    expires_at: datetime | None
    member_id: str | None = None  # who earns, if not the event's member (a referrer)


@dataclass(frozen=True)
class TakeBackIntent:
    earn_key: str  # the earn to take from
    key: str
    points: int
    description: str
    source: str


Intent = EarnIntent | TakeBackIntent


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


@dataclass(frozen=True)
class MemberState:
    member_id: str
    buyer: Buyer = field(default_factory=Buyer)
    birthday: date | None = None
    action_counts: ActionCounts = field(default_factory=ActionCounts)  # for this action
    order: OrderRecord | None = None  # for refunds and cancellations: the order's record


def order_earn_key(order_id: str) -> str:
    """The ledger key of a paid order's line points."""
    return idempotency_key("order", order_id)


def order_bonus_key(order_id: str, bonus_source: str) -> str:
    """The ledger key of a paid order's bonus from `bonus_source` (a promotion, cross-sell)."""
    return idempotency_key("order-bonus", order_id, bonus_source)


def evaluate(event: Event, state: MemberState, program: Program) -> list[Intent]:
    if isinstance(event, OrderPaid):
        return order_intents(event, order_points(program, event, state.buyer), program)
    if isinstance(event, OrderRefunded):
        return _order_refunded(event, state)
    if isinstance(event, OrderCancelled):
        return _order_cancelled(event, state)
    if isinstance(event, ActionPerformed):
        return _action(event, state, program)
    raise TypeError(f"no rules for {type(event).__name__}")


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later, or the month's last day where it is shorter."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(
        year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1])
    )


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st: for descriptions customers read."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def lot_expiry(program: Program, earned_at: datetime) -> datetime | None:
    if program.expiry.mode != "lot":
        return None
    return add_months(earned_at, program.expiry.months)


def after_return_window(program: Program, at: datetime) -> datetime:
    """When points won by an order at `at` are released: once its return window has passed."""
    return at + timedelta(days=program.return_window_days)


def order_intents(event: OrderPaid, points: OrderPoints, program: Program) -> list[Intent]:
    """The earns for a paid order whose points are computed (`earning.order_points`)."""
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
            order_bonus_key(event.order_id, bonus.source),
            bonus.points,
            f"{bonus.description} (order #{event.order_id})",
            bonus.source,
            release_at,
            expires_at,
        )
        for bonus in points.bonuses
    )
    return intents


def _order_refunded(event: OrderRefunded, state: MemberState) -> list[Intent]:
    order = state.order
    if order is None or order.cancelled:
        return []
    updated = after_refund(order, event)
    taken = sum(
        refund_points(
            line,
            order.refunded_units(line),
            updated.refunded_units(line) - order.refunded_units(line),
        )
        for line in order.lines
    )
    intents: list[Intent] = []
    if taken:
        intents.append(
            TakeBackIntent(
                order_earn_key(order.order_id),
                idempotency_key("refund", event.event_id),
                taken,
                f"{taken} points back for the refund on order #{order.order_id}",
                "earning:refund",
            )
        )
    return intents + _bonuses_back(order, updated, event.event_id)


def _order_cancelled(event: OrderCancelled, state: MemberState) -> list[Intent]:
    order = state.order
    if order is None or order.cancelled:
        return []
    left = sum(
        refund_points(line, order.refunded_units(line), line.quantity) for line in order.lines
    )
    intents: list[Intent] = []
    if left:
        intents.append(
            TakeBackIntent(
                order_earn_key(order.order_id),
                idempotency_key("cancel", event.event_id),
                left,
                f"{left} points back: order #{order.order_id} was cancelled",
                "earning:cancel",
            )
        )
    return intents + _bonuses_back(order, after_refund(order, event), event.event_id)


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


def _action(event: ActionPerformed, state: MemberState, program: Program) -> list[Intent]:
    decision = decide_action(program, event, state.action_counts, event.birthday or state.birthday)
    if decision.action is None:
        return []
    return [
        EarnIntent(
            idempotency_key("action", event.event_id),
            decision.action.points,
            decision.action.description,
            f"action:{event.action}",
            None,
            lot_expiry(program, event.occurred_at),
        )
    ]
