"""Order points (`earning.py`): table-driven boundaries of the rule in its docstring, and a
property test of refunds through `orders.rules.decide_paid_order` and `decide_refund`, the path
`apply.py` uses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pointguard.ledger.keys import idempotency_key
from pointguard.program.document.schema import Program
from pointguard.program.document.validate import parse_program
from pointguard.program.events import (
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
)
from pointguard.program.intents import EarnIntent, TakeBackIntent
from pointguard.program.orders.earning import (
    Bonus,
    Buyer,
    LinePoints,
    OrderPoints,
    order_points,
    refund_points,
)
from pointguard.program.orders.rules import (
    OrderRecord,
    after_refund,
    decide_paid_order,
    decide_refund,
    order_bonus_key,
    order_earn_key,
)

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
S = datetime(2026, 11, 27, tzinfo=UTC)  # promotion start
E = datetime(2026, 11, 30, tzinfo=UTC)  # promotion end (exclusive)
DURING = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)

TIERS = {
    "levels": [
        {"name": "Bronze", "threshold": 0},
        {"name": "Silver", "threshold": 50000, "multiplier": "1.25"},
        {"name": "Gold", "threshold": 150000, "multiplier": "1.5"},
    ]
}


def program(earning: dict[str, Any] | None = None, **top: Any) -> Program:
    doc: dict[str, Any] = {
        "name": "Test",
        "currency": "EUR",
        "earning": {"points_per_major_unit": "1", **(earning or {})},
        "tiers": TIERS,
    }
    doc.update(top)
    return parse_program(doc)


def promo(**fields: Any) -> dict[str, Any]:
    return {"id": "bf", "name": "Black Friday", "starts_at": S, "ends_at": E, **fields}


def line(
    line_id: str,
    price: int,
    qty: int = 1,
    category: str = "misc",
    sku: str | None = None,
    discount: int = 0,
) -> OrderLine:
    return OrderLine(
        line_id=line_id,
        sku=sku or f"SKU-{line_id}",
        category=category,
        quantity=qty,
        unit_price_minor=price,
        discount_minor=discount,
    )


def order(
    *lines: OrderLine, at: datetime = T, shipping: int = 0, tax: int = 0, order_id: str = "o1"
) -> OrderPaid:
    return OrderPaid(
        event_id=f"paid-{order_id}",
        member_id="m1",
        occurred_at=at,
        order_id=order_id,
        currency="EUR",
        lines=list(lines),
        shipping_minor=shipping,
        tax_minor=tax,
    )


def by_line(points: OrderPoints) -> dict[str, int]:
    return {lp.line_id: lp.points for lp in points.lines}


# --- line points without promotions ----------------------------------------------------------


LINE_CASES = [
    # rounding: 1 point per EUR, the .5 cases
    pytest.param({"rounding": "floor"}, [line("a", 250)], {}, None, {"a": 2}, id="floor-2.50"),
    pytest.param({"rounding": "half_up"}, [line("a", 250)], {}, None, {"a": 3}, id="half_up-2.50"),
    pytest.param(
        {"rounding": "half_even"}, [line("a", 250)], {}, None, {"a": 2}, id="half_even-2.50"
    ),
    pytest.param(
        {"rounding": "half_even"}, [line("a", 350)], {}, None, {"a": 4}, id="half_even-3.50"
    ),
    pytest.param({"rounding": "half_up"}, [line("a", 249)], {}, None, {"a": 2}, id="half_up-2.49"),
    pytest.param(
        {"rounding": "half_even"}, [line("a", 251)], {}, None, {"a": 3}, id="half_even-2.51"
    ),
    pytest.param({"rounding": "floor"}, [line("a", 299)], {}, None, {"a": 2}, id="floor-2.99"),
    pytest.param({}, [line("a", 299)], {}, None, {"a": 2}, id="default-rounding-is-floor"),
    pytest.param(
        {"rounding": "half_up", "earning": {"category_multipliers": {"outlet": "0.5"}}},
        [line("a", 500, category="outlet")],
        {},
        None,
        {"a": 3},
        id="half_up-after-multiplier-2.5",
    ),
    pytest.param(
        {"rounding": "half_even", "earning": {"category_multipliers": {"outlet": "0.5"}}},
        [line("a", 500, category="outlet")],
        {},
        None,
        {"a": 2},
        id="half_even-after-multiplier-2.5",
    ),
    pytest.param(
        {"rounding": "half_up"},
        [line("a", 1000)],
        {},
        Buyer(tier="Silver"),
        {"a": 13},
        id="half_up-tier-12.5",
    ),
    pytest.param(
        {"rounding": "half_even"},
        [line("a", 1000)],
        {},
        Buyer(tier="Silver"),
        {"a": 12},
        id="half_even-tier-12.5",
    ),
    pytest.param(
        {"earning": {"points_per_major_unit": "0.1"}},
        [line("a", 1999)],
        {},
        None,
        {"a": 1},
        id="rate-0.1-floor",
    ),
    pytest.param(
        {"earning": {"points_per_major_unit": "1.1"}},
        [line("a", 1000)],
        {},
        None,
        {"a": 11},
        id="rate-1.1-exact-decimal",
    ),
    pytest.param(
        {
            "minor_units_per_major": 1,
            "currency": "JPY",
            "earning": {"points_per_major_unit": "0.01"},
        },
        [line("a", 250)],
        {},
        None,
        {"a": 2},
        id="zero-decimal-currency",
    ),
    # amounts and line discounts
    pytest.param({}, [line("a", 999, qty=3)], {}, None, {"a": 29}, id="quantity-times-price"),
    pytest.param({}, [line("a", 1000, qty=2, discount=500)], {}, None, {"a": 15}, id="discount"),
    pytest.param(
        {}, [line("a", 1000, qty=2, discount=1999)], {}, None, {"a": 0}, id="discount-leaves-1ct"
    ),
    pytest.param(
        {}, [line("a", 1000, qty=2, discount=2000)], {}, None, {"a": 0}, id="discount-whole-line"
    ),
    pytest.param(
        {},
        [line("a", 1000, discount=5000), line("b", 100)],
        {},
        None,
        {"a": 0, "b": 1},
        id="discount-over",
    ),
    pytest.param({}, [line("a", 0)], {}, None, {"a": 0}, id="free-line"),
    # exclusions
    pytest.param(
        {},
        [line("a", 1000), line("g", 5000, category="gift_card")],
        {},
        None,
        {"a": 10, "g": 0},
        id="gift-card-excluded-by-default",
    ),
    pytest.param(
        {"earning": {"excluded_categories": []}},
        [line("g", 5000, category="gift_card")],
        {},
        None,
        {"g": 50},
        id="gift-card-earns-when-not-excluded",
    ),
    pytest.param(
        {"earning": {"excluded_skus": ["DONATION"]}},
        [line("a", 1000), line("d", 500, sku="DONATION")],
        {},
        None,
        {"a": 10, "d": 0},
        id="excluded-sku",
    ),
    pytest.param(
        {"earning": {"excluded_categories": ["outlet"], "category_multipliers": {"outlet": "5"}}},
        [line("a", 1000, category="outlet")],
        {},
        None,
        {"a": 0},
        id="excluded-category-with-multiplier",
    ),
    # shipping and tax
    pytest.param(
        {}, [line("a", 1000)], {"shipping": 500, "tax": 200}, None, {"a": 10}, id="no-shipping-tax"
    ),
    pytest.param(
        {"earning": {"include_shipping": True}},
        [line("a", 1000)],
        {"shipping": 500, "tax": 200},
        None,
        {"a": 10, "shipping": 5},
        id="shipping-included",
    ),
    pytest.param(
        {"earning": {"include_tax": True}},
        [line("a", 1000)],
        {"shipping": 500, "tax": 200},
        None,
        {"a": 10, "tax": 2},
        id="tax-included",
    ),
    pytest.param(
        {"earning": {"include_shipping": True, "include_tax": True}},
        [line("a", 1000)],
        {"shipping": 500, "tax": 200},
        None,
        {"a": 10, "shipping": 5, "tax": 2},
        id="shipping-and-tax-included",
    ),
    pytest.param(
        {"earning": {"include_shipping": True, "include_tax": True}},
        [line("a", 1000)],
        {},
        None,
        {"a": 10},
        id="included-but-zero",
    ),
    pytest.param(
        {"earning": {"include_shipping": True, "excluded_categories": ["shipping"]}},
        [line("a", 1000)],
        {"shipping": 500},
        None,
        {"a": 10, "shipping": 0},
        id="shipping-excluded-as-category",
    ),
    pytest.param(
        {"earning": {"include_tax": True, "excluded_skus": ["tax"]}},
        [line("a", 1000)],
        {"tax": 200},
        None,
        {"a": 10, "tax": 0},
        id="tax-excluded-as-sku",
    ),
    # product and tier multipliers
    pytest.param(
        {"earning": {"category_multipliers": {"shoes": "2"}}},
        [line("a", 1000, category="shoes"), line("b", 1000, category="books")],
        {},
        None,
        {"a": 20, "b": 10},
        id="category-multiplier",
    ),
    pytest.param(
        {
            "earning": {
                "category_multipliers": {"shoes": "2"},
                "sku_multipliers": {"SOCK-RED": "3"},
            }
        },
        [line("a", 1000, category="shoes", sku="SOCK-RED")],
        {},
        None,
        {"a": 30},
        id="sku-overrides-category-upwards",
    ),
    pytest.param(
        {
            "earning": {
                "category_multipliers": {"shoes": "2"},
                "sku_multipliers": {"SOCK-RED": "0.5"},
            }
        },
        [line("a", 1000, category="shoes", sku="SOCK-RED")],
        {},
        None,
        {"a": 5},
        id="sku-overrides-category-downwards",
    ),
    pytest.param(
        {"earning": {"sku_multipliers": {"SOCK-RED": "0"}}},
        [line("a", 1000, sku="SOCK-RED")],
        {},
        None,
        {"a": 0},
        id="sku-multiplier-zero",
    ),
    pytest.param(
        {"earning": {"category_multipliers": {"outlet": "0.5"}}},
        [line("a", 999, category="outlet")],
        {},
        None,
        {"a": 4},
        id="half-multiplier-floors",
    ),
    pytest.param({}, [line("a", 1000)], {}, Buyer(tier="Gold"), {"a": 15}, id="tier-multiplier"),
    pytest.param({}, [line("a", 1000)], {}, Buyer(tier="Bronze"), {"a": 10}, id="tier-default-1"),
    pytest.param({}, [line("a", 1000)], {}, Buyer(tier="Diamond"), {"a": 10}, id="unknown-tier"),
    pytest.param(
        {"earning": {"category_multipliers": {"shoes": "2"}}},
        [line("a", 1000, category="shoes")],
        {},
        Buyer(tier="Silver"),
        {"a": 25},
        id="category-times-tier",
    ),
    pytest.param(
        {"earning": {"category_multipliers": {"shoes": "1.25"}}},
        [line("a", 1000, category="shoes")],
        {},
        Buyer(tier="Silver"),
        {"a": 15},  # 10 x 1.25 x 1.25 = 15.625: one rounding at the end, not 12 x 1.25 = 15
        id="one-rounding-at-the-end",
    ),
]


@pytest.mark.parametrize(("top", "lines", "extra", "buyer", "expected"), LINE_CASES)
def test_line_points(
    top: dict[str, Any],
    lines: list[OrderLine],
    extra: dict[str, Any],
    buyer: Buyer | None,
    expected: dict[str, int],
) -> None:
    top = dict(top)
    result = order_points(
        program(top.pop("earning", None), **top), order(*lines, **extra), buyer or Buyer()
    )
    assert by_line(result) == expected
    # every item line, in order, and after them the charges (shipping, tax) the program includes
    assert [lp.line_id for lp in result.lines if not lp.charge] == [x.line_id for x in lines]
    assert [(lp.line_id, lp.quantity) for lp in result.lines] == [
        *((x.line_id, x.quantity) for x in lines),
        *((lp.line_id, 1) for lp in result.lines if lp.charge),
    ]
    assert {lp.line_id for lp in result.lines if lp.charge} <= {"shipping", "tax"}
    assert result.bonuses == ()
    assert all(lp.promotion_id is None and lp.promotion_extra == 0 for lp in result.lines)
    assert result.total == result.line_total == sum(expected.values())


def test_shipping_line_carries_quantity_one() -> None:
    p = program({"include_shipping": True, "include_tax": True})
    result = order_points(p, order(line("a", 1000, qty=4), shipping=500, tax=300), Buyer())
    assert [(lp.line_id, lp.quantity, lp.charge) for lp in result.lines] == [
        ("a", 4, False),
        ("shipping", 1, True),
        ("tax", 1, True),
    ]


# --- promotions ------------------------------------------------------------------------------

PROMO_CASES = [
    # the window: start included, end excluded
    pytest.param(
        [promo(multiplier="2")], [line("a", 1000)], {"at": S}, None, {"a": 20}, id="at-start"
    ),
    pytest.param(
        [promo(multiplier="2")],
        [line("a", 1000)],
        {"at": S - US},
        None,
        {"a": 10},
        id="1us-before-start",
    ),
    pytest.param(
        [promo(multiplier="2")],
        [line("a", 1000)],
        {"at": E - US},
        None,
        {"a": 20},
        id="1us-before-end",
    ),
    pytest.param(
        [promo(multiplier="2")], [line("a", 1000)], {"at": E}, None, {"a": 10}, id="at-end"
    ),
    pytest.param(
        [promo(multiplier="2")],
        [line("a", 1000)],
        {"at": S.astimezone(timezone(timedelta(hours=-5)))},
        None,
        {"a": 20},
        id="at-start-other-zone",
    ),
    pytest.param(
        [promo(multiplier="2")],
        [line("a", 1000)],
        {"at": (S - US).astimezone(timezone(timedelta(hours=9)))},
        None,
        {"a": 10},
        id="before-start-other-zone",
    ),
    # minimum spend, on the eligible total
    pytest.param(
        [promo(multiplier="2", min_spend_minor=5000)],
        [line("a", 5000)],
        {},
        None,
        {"a": 100},
        id="min-spend-exact",
    ),
    pytest.param(
        [promo(multiplier="2", min_spend_minor=5000)],
        [line("a", 4999)],
        {},
        None,
        {"a": 49},
        id="min-spend-one-cent-short",
    ),
    pytest.param(
        [promo(multiplier="2", min_spend_minor=5000)],
        [line("a", 3000), line("b", 2000)],
        {},
        None,
        {"a": 60, "b": 40},
        id="min-spend-over-lines",
    ),
    pytest.param(
        [promo(multiplier="2", min_spend_minor=5000)],
        [line("a", 3000, qty=2, discount=1000)],
        {},
        None,
        {"a": 100},
        id="min-spend-after-discount-exact",
    ),
    pytest.param(
        [promo(multiplier="2", min_spend_minor=5000)],
        [line("a", 3000, qty=2, discount=1001)],
        {},
        None,
        {"a": 49},
        id="min-spend-after-discount-short",
    ),
    pytest.param(
        [promo(multiplier="2", min_spend_minor=5000)],
        [line("a", 4000), line("g", 2000, category="gift_card")],
        {},
        None,
        {"a": 40, "g": 0},
        id="min-spend-ignores-excluded",
    ),
    pytest.param(
        [promo(multiplier="2", min_spend_minor=5000)],
        [line("a", 4000)],
        {"earning": {"include_shipping": True}, "shipping": 1000, "tax": 1000},
        None,
        {"a": 80, "shipping": 20},
        id="min-spend-counts-included-shipping",
    ),
    pytest.param(
        [promo(multiplier="2", min_spend_minor=5000)],
        [line("a", 4000)],
        {"shipping": 1000, "tax": 1000},
        None,
        {"a": 40},
        id="min-spend-ignores-shipping-not-included",
    ),
    # tiers and categories
    pytest.param(
        [promo(multiplier="2", tiers=["Gold"])],
        [line("a", 1000)],
        {},
        Buyer(tier="Gold"),
        {"a": 30},
        id="tier-promo-gold",
    ),
    pytest.param(
        [promo(multiplier="2", tiers=["Gold"])],
        [line("a", 1000)],
        {},
        Buyer(tier="Silver"),
        {"a": 12},
        id="tier-promo-silver",
    ),
    pytest.param(
        [promo(multiplier="2", tiers=["Gold"])],
        [line("a", 1000)],
        {},
        None,
        {"a": 10},
        id="tier-promo-no-tier",
    ),
    pytest.param(
        [promo(multiplier="3", categories=["shoes"])],
        [line("a", 1000, category="shoes"), line("b", 1000, category="books")],
        {},
        None,
        {"a": 30, "b": 10},
        id="category-promo",
    ),
    # the highest multiplier wins, they do not stack
    pytest.param(
        [promo(multiplier="2"), promo(id="boots", multiplier="3", categories=["shoes"])],
        [line("a", 1000, category="shoes"), line("b", 1000, category="books")],
        {},
        None,
        {"a": 30, "b": 20},
        id="highest-wins",
    ),
    pytest.param(
        [promo(id="boots", multiplier="3", categories=["shoes"]), promo(multiplier="2")],
        [line("a", 1000, category="shoes"), line("b", 1000, category="books")],
        {},
        None,
        {"a": 30, "b": 20},
        id="highest-wins-listed-first",
    ),
    pytest.param(
        [promo(multiplier="2"), promo(id="vip", multiplier="5", min_spend_minor=100000)],
        [line("a", 1000)],
        {},
        None,
        {"a": 20},
        id="higher-but-unmet-min-spend",
    ),
    pytest.param(
        [promo(multiplier="2"), promo(id="gold", multiplier="4", tiers=["Gold"])],
        [line("a", 1000)],
        {},
        Buyer(tier="Silver"),
        {"a": 25},
        id="higher-but-other-tier",
    ),
    pytest.param(
        [promo(multiplier="2")],
        [line("a", 1000, category="shoes")],
        {"earning": {"category_multipliers": {"shoes": "2"}}},
        Buyer(tier="Gold"),
        {"a": 60},
        id="promo-times-product-times-tier",
    ),
    pytest.param(
        [promo(multiplier="1.5")],
        [line("a", 1100)],
        {"rounding": "half_up"},
        None,
        {"a": 17},  # 16.5 rounds up
        id="promo-rounds-once-half-up",
    ),
    pytest.param(
        [promo(multiplier="1.5")],
        [line("a", 1100)],
        {"rounding": "half_even"},
        None,
        {"a": 16},
        id="promo-rounds-once-half-even",
    ),
    # a cap per member, spent on lines in order
    pytest.param(
        [promo(multiplier="2", max_points_per_member=100)],
        [line("a", 1000)],
        {},
        Buyer(promotion_points={"bf": 100}),
        {"a": 10},
        id="cap-reached-exactly",
    ),
    pytest.param(
        [promo(multiplier="2", max_points_per_member=100)],
        [line("a", 1000)],
        {},
        Buyer(promotion_points={"bf": 150}),
        {"a": 10},
        id="cap-exceeded-before",
    ),
    pytest.param(
        [promo(multiplier="2", max_points_per_member=100)],
        [line("a", 1000)],
        {},
        Buyer(promotion_points={"bf": 95}),
        {"a": 15},
        id="cap-5-left",
    ),
    pytest.param(
        [promo(multiplier="2", max_points_per_member=100)],
        [line("a", 1000)],
        {},
        Buyer(promotion_points={"bf": 90}),
        {"a": 20},
        id="cap-exactly-enough-left",
    ),
    pytest.param(
        [promo(multiplier="2", max_points_per_member=100)],
        [line("a", 1000)],
        {},
        Buyer(promotion_points={"other": 100}),
        {"a": 20},
        id="cap-counts-only-its-promotion",
    ),
    pytest.param(
        [promo(multiplier="2", max_points_per_member=15)],
        [line("a", 1000), line("b", 1000), line("c", 1000)],
        {},
        None,
        {"a": 20, "b": 15, "c": 10},
        id="cap-spread-across-lines",
    ),
    pytest.param(
        [promo(multiplier="2", max_points_per_member=15)],
        [line("a", 1000), line("b", 1000)],
        {},
        Buyer(promotion_points={"bf": 10}),
        {"a": 15, "b": 10},
        id="cap-spread-after-earlier-orders",
    ),
]


@pytest.mark.parametrize(("promotions", "lines", "extra", "buyer", "expected"), PROMO_CASES)
def test_promotion_points(
    promotions: list[dict[str, Any]],
    lines: list[OrderLine],
    extra: dict[str, Any],
    buyer: Buyer | None,
    expected: dict[str, int],
) -> None:
    extra = dict(extra)
    at = extra.pop("at", DURING)
    earning = extra.pop("earning", None)
    charges = {k: extra.pop(k) for k in ("shipping", "tax") if k in extra}
    p = program(earning, promotions=promotions, **extra)
    result = order_points(p, order(*lines, at=at, **charges), buyer or Buyer())
    assert by_line(result) == expected
    assert result.bonuses == ()


def test_promotion_extra_is_recorded_per_line() -> None:
    p = program(promotions=[promo(multiplier="2", max_points_per_member=15)])
    result = order_points(
        p, order(line("a", 1000), line("b", 1000), line("c", 1000), at=DURING), Buyer()
    )
    assert result.lines == (
        LinePoints("a", 1, 20, "bf", 10),
        LinePoints("b", 1, 15, "bf", 5),
        LinePoints("c", 1, 10, "bf", 0),
    )


def test_line_outside_promotion_categories_has_no_promotion() -> None:
    p = program(promotions=[promo(multiplier="3", categories=["shoes"])])
    result = order_points(
        p, order(line("a", 1000, category="shoes"), line("b", 1000), at=DURING), Buyer()
    )
    assert result.lines == (LinePoints("a", 1, 30, "bf", 20), LinePoints("b", 1, 10))


# --- order bonuses ---------------------------------------------------------------------------

GOLD_WEEKEND = promo(id="gw", name="Gold weekend", bonus_points=200, tiers=["Gold"])
CROSS_SELL = {"cross_sell_bonus_points": 50, "cross_sell_description": "Try something new"}
CROSS_SELL_BONUS = Bonus(50, "earning:cross_sell", "Try something new")

BONUS_CASES = [
    pytest.param(
        [GOLD_WEEKEND],
        {},
        [line("a", 1000)],
        {},
        Buyer(tier="Gold"),
        [Bonus(200, "promotion:gw", "200 bonus points: Gold weekend")],
        id="fixed-bonus",
    ),
    pytest.param(
        [GOLD_WEEKEND], {}, [line("a", 1000)], {}, Buyer(tier="Silver"), [], id="bonus-other-tier"
    ),
    pytest.param(
        [GOLD_WEEKEND],
        {},
        [line("a", 1000)],
        {"at": E},
        Buyer(tier="Gold"),
        [],
        id="bonus-after-end",
    ),
    pytest.param(
        [promo(bonus_points=100, min_spend_minor=5000)],
        {},
        [line("a", 4999)],
        {},
        None,
        [],
        id="bonus-min-spend-short",
    ),
    pytest.param(
        [promo(bonus_points=100, min_spend_minor=5000)],
        {},
        [line("a", 5000)],
        {},
        None,
        [Bonus(100, "promotion:bf", "100 bonus points: Black Friday")],
        id="bonus-min-spend-exact",
    ),
    pytest.param(
        [promo(multiplier="2", bonus_points=100), promo(id="x", name="Extra", bonus_points=30)],
        {},
        [line("a", 1000)],
        {},
        None,
        [
            Bonus(100, "promotion:bf", "100 bonus points: Black Friday"),
            Bonus(30, "promotion:x", "30 bonus points: Extra"),
        ],
        id="bonuses-of-every-live-promotion",
    ),
    pytest.param(
        [],
        CROSS_SELL,
        [line("a", 1000, category="shoes")],
        {},
        Buyer(categories_bought=frozenset({"books"})),
        [CROSS_SELL_BONUS],
        id="cross-sell-returning-new-category",
    ),
    pytest.param(
        [],
        CROSS_SELL,
        [line("a", 1000, category="shoes")],
        {},
        Buyer(),
        [],
        id="cross-sell-not-first-order",
    ),
    pytest.param(
        [],
        CROSS_SELL,
        [line("a", 1000, category="shoes"), line("b", 1000, category="books")],
        {},
        Buyer(categories_bought=frozenset({"books", "shoes", "toys"})),
        [],
        id="cross-sell-not-known-categories",
    ),
    pytest.param(
        [],
        CROSS_SELL,
        [
            line("a", 1000, category="books"),
            line("b", 1000, category="shoes"),
            line("c", 1000, category="toys"),
        ],
        {},
        Buyer(categories_bought=frozenset({"books"})),
        [CROSS_SELL_BONUS],
        id="cross-sell-once-per-order",
    ),
    pytest.param(
        [],
        {"cross_sell_bonus_points": 0},
        [line("a", 1000, category="shoes")],
        {},
        Buyer(categories_bought=frozenset({"books"})),
        [],
        id="cross-sell-off",
    ),
    # fixed bonuses need an item line that earns; cross-sell counts only categories that earn
    pytest.param(
        [GOLD_WEEKEND],
        {},
        [line("g", 5000, category="gift_card")],
        {},
        Buyer(tier="Gold"),
        [],
        id="bonus-gift-cards-only",
    ),
    pytest.param(
        [GOLD_WEEKEND],
        {"include_shipping": True, "include_tax": True},
        [line("g", 5000, category="gift_card")],
        {"shipping": 500, "tax": 200},
        Buyer(tier="Gold"),
        [],
        id="bonus-gift-cards-and-earning-charges",
    ),
    pytest.param(
        [GOLD_WEEKEND],
        {},
        [line("a", 1000, discount=1000), line("b", 0)],
        {},
        Buyer(tier="Gold"),
        [],
        id="bonus-free-lines-only",
    ),
    pytest.param(
        [GOLD_WEEKEND],
        {},
        [line("g", 5000, category="gift_card"), line("a", 1000)],
        {},
        Buyer(tier="Gold"),
        [Bonus(200, "promotion:gw", "200 bonus points: Gold weekend")],
        id="bonus-gift-card-and-an-earning-item",
    ),
    pytest.param(
        [],
        CROSS_SELL,
        [line("a", 1000, category="books"), line("g", 5000, category="gift_card")],
        {},
        Buyer(categories_bought=frozenset({"books"})),
        [],
        id="cross-sell-not-for-a-gift-card",
    ),
    pytest.param(
        [],
        CROSS_SELL,
        [line("a", 1000, category="books"), line("b", 1000, category="shoes", discount=1000)],
        {},
        Buyer(categories_bought=frozenset({"books"})),
        [],
        id="cross-sell-not-for-a-free-line",
    ),
    pytest.param(
        [],
        CROSS_SELL,
        [line("g", 5000, category="gift_card"), line("b", 1000, category="shoes")],
        {},
        Buyer(categories_bought=frozenset({"gift_card"})),
        [CROSS_SELL_BONUS],
        id="cross-sell-with-a-gift-card-too",
    ),
]


@pytest.mark.parametrize(
    ("promotions", "earning", "lines", "extra", "buyer", "expected"), BONUS_CASES
)
def test_order_bonuses(
    promotions: list[dict[str, Any]],
    earning: dict[str, Any],
    lines: list[OrderLine],
    extra: dict[str, Any],
    buyer: Buyer | None,
    expected: list[Bonus],
) -> None:
    extra = {"at": DURING, **extra}
    p = program(earning, promotions=promotions)
    result = order_points(p, order(*lines, **extra), buyer or Buyer())
    assert list(result.bonuses) == expected
    assert result.total == result.line_total + sum(b.points for b in expected)


def test_fixed_bonus_does_not_change_line_points() -> None:
    p = program(promotions=[GOLD_WEEKEND])
    result = order_points(p, order(line("a", 1000), at=DURING), Buyer(tier="Gold"))
    assert result.lines == (LinePoints("a", 1, 15),)
    assert result.total == 215


@pytest.mark.parametrize("included", ["include_shipping", "include_tax"])
def test_cross_sell_ignores_shipping_and_tax_lines(included: str) -> None:
    """Shipping and tax are not categories one buys (the service never records them in
    `categories_bought`): they must not make a returning member's order a cross-sell."""
    p = program({**CROSS_SELL, included: True})
    buyer = Buyer(categories_bought=frozenset({"shoes"}))
    result = order_points(p, order(line("a", 1000, category="shoes"), shipping=500, tax=200), buyer)
    assert [lp.line_id for lp in result.lines if lp.charge] == [included.removeprefix("include_")]
    assert result.line_total > 10  # the charge earns
    assert result.bonuses == ()


# --- refunds: kept(n) = floor(points x n / Q) ------------------------------------------------


def kept(points: int, quantity: int, units: int) -> int:
    return points * units // quantity


@pytest.mark.parametrize(
    ("quantity", "points", "steps", "expected"),
    [
        # kept(3..0) of 10 points over 3 units: 10, 6, 3, 0
        pytest.param(3, 10, [1, 2], [4, 6], id="3u-10p-1-then-2"),
        pytest.param(3, 10, [2, 1], [7, 3], id="3u-10p-2-then-1"),
        pytest.param(3, 10, [1, 1, 1], [4, 3, 3], id="3u-10p-one-by-one"),
        pytest.param(3, 10, [3], [10], id="3u-10p-all"),
        pytest.param(3, 10, [5], [10], id="3u-10p-more-than-bought"),
        pytest.param(3, 10, [2, 5], [7, 3], id="3u-10p-more-than-remaining"),
        pytest.param(3, 10, [3, 1], [10, 0], id="3u-10p-after-everything"),
        pytest.param(3, 10, [0, 1], [0, 4], id="3u-10p-zero-units"),
        # kept(4..0) of 10 points over 4 units: 10, 7, 5, 2, 0
        pytest.param(4, 10, [1, 1, 1, 1], [3, 2, 3, 2], id="4u-10p-one-by-one"),
        pytest.param(4, 10, [2, 2], [5, 5], id="4u-10p-halves"),
        # kept(7..0) of 3 points over 7 units: 3, 2, 2, 1, 1, 0, 0, 0
        pytest.param(7, 3, [1] * 7, [1, 0, 1, 0, 1, 0, 0], id="7u-3p-one-by-one"),
        pytest.param(1, 0, [1], [0], id="zero-point-line"),
        # kept(5..0) of 1 point over 5 units: 1, 0, 0, 0, 0, 0
        pytest.param(5, 1, [1, 4], [1, 0], id="first-refunded-unit-takes-the-point"),
    ],
)
def test_refund_steps(quantity: int, points: int, steps: list[int], expected: list[int]) -> None:
    lp = LinePoints("a", quantity, points)
    before = 0
    taken = []
    for step in steps:
        taken.append(refund_points(lp, before, step))
        before = min(quantity, before + step)
        assert points - sum(taken) == kept(points, quantity, quantity - before)
    assert taken == expected


def test_refund_of_a_multiplied_line() -> None:
    """3 units of 1.75 EUR in a 2x category: 10.5 points, floored to 10; then refunds 1 and 2."""
    p = program({"category_multipliers": {"shoes": "2"}})
    [lp] = order_points(p, order(line("a", 175, qty=3, category="shoes")), Buyer()).lines
    assert lp == LinePoints("a", 3, 10)
    assert refund_points(lp, 0, 1) == 4  # kept(3) - kept(2) = 10 - 6
    assert refund_points(lp, 1, 2) == 6  # kept(2) - kept(0) = 6 - 0


def test_refund_of_a_promoted_line_takes_back_the_promotion_points_too() -> None:
    p = program(promotions=[promo(multiplier="3")])
    [lp] = order_points(p, order(line("a", 1000, qty=4), at=DURING), Buyer()).lines
    assert lp == LinePoints("a", 4, 120, "bf", 80)
    assert [refund_points(lp, n, 1) for n in range(4)] == [30, 30, 30, 30]


# --- property: refunds through the order decisions -------------------------------------------

CATEGORIES = ["shoes", "outlet", "books", "toys", "gift_card"]
SKUS = ["S0", "S1", "S2", "DONATION"]
MULTIPLIERS = ["0", "0.5", "0.333", "1", "1.25", "1.5", "2", "3"]
ORACLE_TIERS = {"Silver": Fraction("1.25"), "Gold": Fraction("1.5")}


@dataclass
class Scenario:
    program: Program
    doc: dict[str, Any]
    paid: OrderPaid
    buyer: Buyer
    refunds: list[tuple[str, int]]  # (line id: an item's, a charge's or unknown; units)
    cancel: bool  # in the end the order is cancelled, else every item line is refunded


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    rounding = draw(st.sampled_from(["floor", "half_up", "half_even"]))
    rate = draw(st.sampled_from(["0.1", "1", "1.5", "2", "10"]))
    cat_mults = draw(
        st.dictionaries(st.sampled_from(CATEGORIES[:-1]), st.sampled_from(MULTIPLIERS), max_size=4)
    )
    sku_mults = draw(
        st.dictionaries(st.sampled_from(SKUS[:-1]), st.sampled_from(MULTIPLIERS), max_size=2)
    )
    promotions = []
    if draw(st.booleans()):
        promotions.append(
            promo(
                multiplier=draw(st.sampled_from(MULTIPLIERS)),
                bonus_points=draw(st.sampled_from([0, 100])),
                categories=draw(st.lists(st.sampled_from(CATEGORIES), unique=True, max_size=2)),
                min_spend_minor=draw(st.sampled_from([0, 0, 5000, 50000])),
                ends_at=draw(st.sampled_from([E, E, DURING])),  # DURING: ended at the order's time
            )
        )
    doc = {
        "rounding": rounding,
        "earning": {
            "points_per_major_unit": rate,
            "category_multipliers": cat_mults,
            "sku_multipliers": sku_mults,
            "excluded_skus": ["DONATION"],
            "include_shipping": draw(st.booleans()),
            "include_tax": draw(st.booleans()),
            "cross_sell_bonus_points": draw(st.sampled_from([0, 50])),
        },
        "promotions": promotions,
    }
    top = {k: v for k, v in doc.items() if k != "earning"}
    prog = program(doc["earning"], **top)
    n = draw(st.integers(1, 10))
    lines = [
        OrderLine(
            line_id=f"l{i}",
            sku=draw(st.sampled_from(SKUS)),
            category=draw(st.sampled_from(CATEGORIES)),
            quantity=draw(st.integers(1, 5)),
            unit_price_minor=draw(st.integers(0, 50000) | st.integers(1000, 50000)),
            discount_minor=draw(st.sampled_from([0, 0, 0, 1, 250, 100000])),
        )
        for i in range(n)
    ]
    charges = st.sampled_from([0, 0, 1, 499, 5000])
    buyer = Buyer(
        tier=draw(st.sampled_from([None, "Bronze", "Silver", "Gold"])),
        categories_bought=frozenset(draw(st.lists(st.sampled_from(CATEGORIES), max_size=2))),
    )
    item_ids = [x.line_id for x in lines]
    refund_ids = st.sampled_from([*item_ids, *item_ids, "shipping", "tax", "zz"])
    refunds = draw(st.lists(st.tuples(refund_ids, st.integers(-2, 6)), max_size=12))
    paid = order(*lines, at=DURING, shipping=draw(charges), tax=draw(charges))
    return Scenario(prog, doc, paid, buyer, refunds, draw(st.booleans()))


def oracle_round(value: Fraction, rounding: str) -> int:
    if rounding == "floor":
        return math.floor(value)
    if rounding == "half_up":
        return math.floor(value + Fraction(1, 2))
    return round(value)  # Fraction rounds half to even


@dataclass
class Oracle:
    lines: list[tuple[str, int, int, bool]]  # (line id, quantity, points, charge), in order
    bonuses: dict[str, int]  # bonus source -> points


def oracle(s: Scenario) -> Oracle:
    """The docstring's rule, independently, in exact fractions (no promotion caps here): every
    item line (zero points if it earns nothing), then the included shipping and tax, and the
    order's bonuses."""
    earning = s.doc["earning"]

    def amount(x: OrderLine) -> int:
        return max(0, x.quantity * x.unit_price_minor - x.discount_minor)

    def eligible(x: OrderLine) -> int:
        return 0 if x.category == "gift_card" or x.sku == "DONATION" else amount(x)

    items = [(x, eligible(x), False) for x in s.paid.lines]
    charges = [
        (
            OrderLine(line_id=name, sku=name, category=name, quantity=1, unit_price_minor=minor),
            minor,
            True,
        )
        for name, minor in (("shipping", s.paid.shipping_minor), ("tax", s.paid.tax_minor))
        if earning[f"include_{name}"] and minor > 0
    ]
    total = sum(a for _, a, _ in items + charges)
    live = [
        p
        for p in s.doc["promotions"]
        if p["starts_at"] <= s.paid.occurred_at < p["ends_at"] and total >= p["min_spend_minor"]
    ]
    tier = ORACLE_TIERS.get(s.buyer.tier or "", Fraction(1))
    lines = []
    for x, a, charge in items + charges:
        product = Fraction(
            earning["sku_multipliers"].get(
                x.sku, earning["category_multipliers"].get(x.category, "1")
            )
        )
        multipliers = [
            Fraction(p["multiplier"])
            for p in live
            if not p["categories"] or x.category in p["categories"]
        ]
        promotion = max(multipliers, default=Fraction(1))
        value = Fraction(a, 100) * Fraction(earning["points_per_major_unit"]) * product * tier
        lines.append(
            (x.line_id, x.quantity, oracle_round(value * promotion, s.doc["rounding"]), charge)
        )

    # Fixed bonuses need an item that earns points; cross-sell looks at those items' categories.
    earning_categories = {
        x.category
        for (x, _, charge), (_, _, points, _) in zip(items + charges, lines, strict=True)
        if not charge and points > 0
    }
    bonuses = {
        f"promotion:{p['id']}": p["bonus_points"]
        for p in live
        if p["bonus_points"] and earning_categories
    }
    cross_sell = earning["cross_sell_bonus_points"]
    if cross_sell and s.buyer.categories_bought and earning_categories - s.buyer.categories_bought:
        bonuses["earning:cross_sell"] = cross_sell
    return Oracle(lines, bonuses)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_refund_sequences_take_back_exactly_what_is_not_kept(s: Scenario) -> None:
    intents = decide_paid_order(s.paid, s.program, s.buyer).intents
    assert all(isinstance(i, EarnIntent) for i in intents)
    points = order_points(s.program, s.paid, s.buyer)
    expected = oracle(s)
    assert [(lp.line_id, lp.quantity, lp.points, lp.charge) for lp in points.lines] == (
        expected.lines
    )
    assert {b.source: b.points for b in points.bonuses} == expected.bonuses
    earned = sum(i.points for i in intents if i.key == order_earn_key("o1"))
    assert earned == points.line_total
    bonus_keys = {i.key: i.points for i in intents if i.key != order_earn_key("o1")}
    assert bonus_keys == {
        order_bonus_key("o1", source): p for source, p in expected.bonuses.items()
    }

    items = {lp.line_id: lp for lp in points.lines if not lp.charge}
    charges = [lp for lp in points.lines if lp.charge]
    event(f"item lines with points: {min(3, sum(1 for lp in items.values() if lp.points))}")
    event(f"charges with points: {sum(1 for lp in charges if lp.points)}")
    event(f"promotion applied: {any(lp.promotion_extra for lp in points.lines)}")
    event(f"bonuses: {len(bonus_keys)}")
    event(f"ends with: {'cancel' if s.cancel else 'refunds'}")
    refunded = dict.fromkeys(items, 0)
    taken = dict.fromkeys(items, 0)
    bonus_taken: dict[str, int] = {}
    returned = False  # the bonuses went back: they never go back again
    events = 0

    def items_kept() -> int:
        return sum(lp.quantity - refunded[lp.line_id] for lp in items.values())

    def record() -> OrderRecord:
        return OrderRecord(
            "o1", points.lines, bonus_keys, refunded=dict(refunded), bonuses_returned=returned
        )

    def refund(line_id: str, units: int) -> None:
        nonlocal events, returned
        events += 1
        before_record = record()
        refund_event = OrderRefunded(
            event_id=f"r{events}",
            member_id="m1",
            occurred_at=DURING + timedelta(days=1),
            order_id="o1",
            lines=[RefundedLine(line_id=line_id, quantity=units)],
        )
        out = decide_refund(refund_event, before_record).intents
        assert all(isinstance(i, TakeBackIntent) for i in out)
        assert all(i.points > 0 for i in out)  # (b): never negative, never an empty intent
        line_back = [i for i in out if i.key == idempotency_key("refund", f"r{events}")]
        lp = items.get(line_id)
        if lp is not None:
            before = refunded[line_id]
            now = max(0, min(units, lp.quantity - before))  # below zero counts as zero
            expected = kept(lp.points, lp.quantity, lp.quantity - before) - kept(
                lp.points, lp.quantity, lp.quantity - before - now
            )
            assert sum(i.points for i in line_back) == expected
            assert all(i.earn_key == order_earn_key("o1") for i in line_back)
            taken[line_id] += expected
            refunded[line_id] = before + now
            # (a): never more than the line's points; what stays is kept(units kept)
            assert 0 <= taken[line_id] <= lp.points
            assert lp.points - taken[line_id] == kept(
                lp.points, lp.quantity, lp.quantity - refunded[line_id]
            )
        else:
            assert line_back == []  # unknown lines, and shipping and tax, are not refunded
        bonus_back = {}
        for i in out:
            if i not in line_back:
                assert i.earn_key in bonus_keys and i.key == idempotency_key(
                    "bonus-back", f"r{events}", i.earn_key
                )
                bonus_back[i.earn_key] = bonus_back.get(i.earn_key, 0) + i.points
                bonus_taken[i.earn_key] = bonus_taken.get(i.earn_key, 0) + i.points
        # bonuses go back once, with the refund after which no item of the order is kept
        assert bonus_back == (bonus_keys if not returned and items_kept() == 0 else {})
        assert bonus_taken == (bonus_keys if items_kept() == 0 else {})
        returned = returned or items_kept() == 0
        # the record `apply.py` stores for the next event is the model's
        after = after_refund(before_record, refund_event)
        assert {k: v for k, v in after.refunded.items() if v} == {
            k: v for k, v in refunded.items() if v
        }
        assert (after.bonuses_returned, after.cancelled) == (returned, False)
        assert after.items_kept() == items_kept()
        # (d): order level; shipping and tax stay earned
        net_kept = sum(
            kept(lp.points, lp.quantity, lp.quantity - refunded.get(lp.line_id, 0))
            for lp in points.lines
        )
        assert earned - sum(taken.values()) == net_kept >= 0

    for line_id, units in s.refunds:
        refund(line_id, units)

    if s.cancel:
        before_record = record()
        cancel_event = OrderCancelled(
            event_id="c1", member_id="m1", occurred_at=DURING + timedelta(days=2), order_id="o1"
        )
        out = decide_refund(cancel_event, before_record).intents
        left = earned - sum(taken.values())  # what is kept of the items, and shipping and tax
        assert out == [
            *(
                [
                    TakeBackIntent(
                        order_earn_key("o1"),
                        idempotency_key("cancel", "c1"),
                        left,
                        f"{left} points back: order #o1 was cancelled",
                        "earning:cancel",
                    )
                ]
                if left
                else []
            ),
            *(
                TakeBackIntent(
                    key,
                    idempotency_key("bonus-back", "c1", key),
                    p,
                    f"{p} bonus points back: order #o1 fully returned",
                    "earning:refund",
                )
                for key, p in bonus_keys.items()
                if not returned
            ),
        ]
        after = after_refund(before_record, cancel_event)
        assert (after.cancelled, after.bonuses_returned) == (True, True)
        # (c): after a cancellation, further refunds and cancellations take back nothing
        cancel_again = OrderCancelled(
            event_id="c2", member_id="m1", occurred_at=DURING + timedelta(days=3), order_id="o1"
        )
        assert decide_refund(cancel_again, after).intents == []
        for line_id in [*items, "shipping", "tax"]:
            refund_event = OrderRefunded(
                event_id=f"late-{line_id}",
                member_id="m1",
                occurred_at=DURING + timedelta(days=3),
                order_id="o1",
                lines=[RefundedLine(line_id=line_id, quantity=9)],
            )
            assert decide_refund(refund_event, after).intents == []
        return

    for line_id, lp in items.items():
        if refunded[line_id] < lp.quantity:
            refund(line_id, lp.quantity)  # at least what remains: clamped
    # (c): every item unit refunded, every item line's points taken back exactly, the bonuses
    # once; shipping and tax are not items: their points stay
    assert taken == {line_id: lp.points for line_id, lp in items.items()}
    assert bonus_taken == bonus_keys
    assert earned - sum(taken.values()) == sum(lp.points for lp in charges)
    # and nothing more afterwards, whatever a later refund names
    for line_id in [*items, "shipping", "tax"]:
        refund(line_id, 1)
    assert bonus_taken == bonus_keys
