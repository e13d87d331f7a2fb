"""Order points: pure functions from an order, a member and a program to points per line.

The rule, stated once:
- A line's eligible amount is quantity x unit price - line discount, in minor units; lines in
  excluded categories or SKUs earn nothing; shipping and tax earn only if the program says so
  (as lines of their own, `shipping` and `tax`).
- line points = round(eligible_minor / minor_units_per_major x points_per_major_unit
                      x product multiplier x promotion multiplier x tier multiplier)
  with the program's rounding (default: down), computed with exact decimals. The product
  multiplier is the SKU's if set, else the category's, else 1. Of the promotions live at the
  order's time that the member's tier and the line's category qualify for (and whose minimum
  spend the order's eligible total meets), the highest multiplier applies; they do not stack.
- A promotion's `max_points_per_member` caps the extra points it gives across the member's
  orders; the cap is spent on lines in order.
- Fixed bonuses (promotion `bonus_points`, the cross-sell bonus for a first purchase in a
  category new to a returning member) belong to the whole order, and need an item line that
  earns (gift cards alone earn no bonus; shipping and tax are not categories one buys).
- A refund of k of a line's Q units takes back kept(Q - earlier) - kept(Q - earlier - k), where
  kept(n) = floor(line points x n / Q): refunding every unit, in any steps, takes back exactly
  the line's points, and what stays is exactly the points of the units kept. Order bonuses are
  taken back, once, when no item of the order is kept (items that earned nothing, such as gift
  cards, count as kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from msgspec import Struct

from pointguard.program.document.schema import Program, Promotion
from pointguard.program.events import OrderLine, OrderPaid

ROUNDING_MODES = {"floor": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}
ONE = Decimal(1)


class LinePoints(Struct, frozen=True):
    """Points one order line earned (a Struct: built ten times per order, and stored)."""

    line_id: str
    quantity: int
    points: int
    promotion_id: str | None = None  # the promotion whose multiplier applied
    promotion_extra: int = 0  # points the promotion added (counted against its cap)
    charge: bool = False  # shipping or tax, not an item: refunds and "kept" count items only


class Bonus(Struct, frozen=True):
    points: int
    source: str
    description: str


class OrderPoints(Struct, frozen=True):
    lines: tuple[LinePoints, ...]
    bonuses: tuple[Bonus, ...]
    qualifying: dict[str, int]  # per item line that earns, its eligible amount: for tiers

    @property
    def line_total(self) -> int:
        return sum(line.points for line in self.lines)

    @property
    def total(self) -> int:
        return self.line_total + sum(b.points for b in self.bonuses)


@dataclass(frozen=True)
class Buyer:
    """What the order rules need to know about the member."""

    tier: str | None = None
    categories_bought: frozenset[str] = frozenset()
    promotion_points: Mapping[str, int] | None = None  # extra points gained per promotion


def live_promotions(program: Program, at: datetime, tier: str | None) -> list[Promotion]:
    """Promotions running at `at` (start inclusive, end exclusive) open to `tier`."""
    return [
        p
        for p in program.promotions
        if p.starts_at <= at < p.ends_at and (not p.tiers or tier in p.tiers)
    ]


def order_points(program: Program, order: OrderPaid, buyer: Buyer) -> OrderPoints:
    """Points for every item line of the order (zero for lines that earn nothing, so that the
    order's record knows every unit a refund may name), for shipping and tax lines where the
    program includes them, and the order's bonuses."""
    earning = program.earning
    items = [(line, _amount(line) if _earns(program, line) else -1, False) for line in order.lines]
    qualifying = {line.line_id: amount for line, amount, _ in items if amount >= 0}
    items = [(line, max(amount, 0), charge) for line, amount, charge in items]
    charges = [
        (line, _amount(line) if _earns(program, line) else 0, True)
        for line in _charge_lines(program, order)
    ]
    eligible_total = sum(amount for _, amount, _ in items + charges)
    promotions = [
        p
        for p in live_promotions(program, order.occurred_at, buyer.tier)
        if eligible_total >= p.min_spend_minor
    ]
    # Highest multiplier first: the first that covers a line's category is the one it gets.
    multiplying = sorted(
        (p for p in promotions if p.multiplier != ONE), key=lambda p: p.multiplier, reverse=True
    )
    rate = (
        earning.points_per_major_unit
        / Decimal(program.minor_units_per_major)
        * _tier_multiplier(program, buyer.tier)
    )
    rounding = ROUNDING_MODES[program.rounding]
    used = buyer.promotion_points or {}
    cap_left = {
        p.id: None
        if p.max_points_per_member is None
        else max(0, p.max_points_per_member - used.get(p.id, 0))
        for p in multiplying
    }

    promotion_of: dict[str, Promotion | None] = {}  # by category
    results = []
    for line, amount, charge in items + charges:
        if not amount:
            results.append(LinePoints(line.line_id, line.quantity, 0, charge=charge))
            continue
        base = amount * rate * _product_multiplier(program, line)
        plain = int(base.quantize(ONE, rounding=rounding))
        if line.category in promotion_of:
            promotion = promotion_of[line.category]
        else:
            promotion = promotion_of[line.category] = next(
                (p for p in multiplying if not p.categories or line.category in p.categories),
                None,
            )
        if promotion is None:
            results.append(LinePoints(line.line_id, line.quantity, plain, charge=charge))
            continue
        extra = int((base * promotion.multiplier).quantize(ONE, rounding=rounding)) - plain
        left = cap_left[promotion.id]
        if left is not None:
            extra = min(extra, left)
            cap_left[promotion.id] = left - max(extra, 0)
        results.append(
            LinePoints(line.line_id, line.quantity, plain + extra, promotion.id, extra, charge)
        )

    # Bonuses need an item that earns points: buying only gift cards earns no bonus either.
    earning_items = any(lp.points > 0 for lp in results if not lp.charge)
    bonuses = [
        Bonus(p.bonus_points, f"promotion:{p.id}", f"{p.bonus_points} bonus points: {p.name}")
        for p in promotions
        if p.bonus_points and earning_items
    ]
    earned = {lp.line_id for lp in results if lp.points > 0 and not lp.charge}
    new_categories = {line.category for line, _, _ in items if line.line_id in earned}
    new_categories -= buyer.categories_bought
    if earning.cross_sell_bonus_points and buyer.categories_bought and new_categories:
        bonuses.append(
            Bonus(
                earning.cross_sell_bonus_points,
                "earning:cross_sell",
                earning.cross_sell_description,
            )
        )
    return OrderPoints(tuple(results), tuple(bonuses), qualifying)


def refund_points(line: LinePoints, refunded_before: int, refunded_now: int) -> int:
    """Points to take back when `refunded_now` more units of `line` are refunded."""
    refunded_now = max(0, min(refunded_now, line.quantity - refunded_before))
    return _kept(line, line.quantity - refunded_before) - _kept(
        line, line.quantity - refunded_before - refunded_now
    )


def _kept(line: LinePoints, units: int) -> int:
    return line.points * units // line.quantity if line.quantity else 0


def _charge_lines(program: Program, order: OrderPaid) -> list[OrderLine]:
    """Shipping and tax as lines of their own, where the program lets them earn."""
    charges = (
        ("shipping", program.earning.include_shipping, order.shipping_minor),
        ("tax", program.earning.include_tax, order.tax_minor),
    )
    return [
        OrderLine(line_id=name, sku=name, category=name, quantity=1, unit_price_minor=amount)
        for name, included, amount in charges
        if included and amount > 0
    ]


def _earns(program: Program, line: OrderLine) -> bool:
    earning = program.earning
    return line.category not in earning.excluded_categories and (
        line.sku not in earning.excluded_skus
    )


def _amount(line: OrderLine) -> int:
    return max(0, line.quantity * line.unit_price_minor - line.discount_minor)


def _product_multiplier(program: Program, line: OrderLine) -> Decimal:
    earning = program.earning
    if line.sku in earning.sku_multipliers:
        return earning.sku_multipliers[line.sku]
    return earning.category_multipliers.get(line.category, ONE)


def _tier_multiplier(program: Program, tier: str | None) -> Decimal:
    return next((t.multiplier for t in program.tiers.levels if t.name == tier), ONE)
