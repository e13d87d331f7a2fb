"""The rewards catalogue at checkout, as pure rules: every reward type and every boundary."""

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pointguard.errors import InvalidAmount
from pointguard.program.document.validate import parse_program
from pointguard.program.rewards.catalogue import (
    Cart,
    Reason,
    RewardContext,
    describe,
    find_reward,
    money,
    price_points_plus_cash,
    quote,
    quote_reward,
)

PROGRAM = parse_program(
    """
name = "Shop"
currency = "EUR"
[earning]
points_per_major_unit = "1"
[[tiers.levels]]
name = "Silver"
threshold = 0
[[tiers.levels]]
name = "Gold"
threshold = 100000

[[rewards]]
type = "fixed_discount"
id = "five-off"
name = "5 EUR off"
cost_points = 500
amount_minor = 500

[[rewards]]
type = "percent_off"
id = "ten-pct"
name = "10% off"
cost_points = 300
percent = 10
max_discount_minor = 1000

[[rewards]]
type = "free_shipping"
id = "ship"
name = "Free shipping"
cost_points = 200

[[rewards]]
type = "free_product"
id = "tote"
name = "Free tote bag"
cost_points = 800
sku = "TOTE-1"
stock = 10
per_member_limit = 2

[[rewards]]
type = "points_plus_cash"
id = "ppc"
name = "Pay with points"
cost_points = 100
amount_minor = 100
min_points = 300
max_share_percent = 50

[[rewards]]
type = "fixed_discount"
id = "gold-only"
name = "Gold gift"
cost_points = 100
amount_minor = 1000
tiers = ["Gold"]
"""
)

RICH = RewardContext(available_points=1_000_000)


def option(reward_id, cart, context=RICH, points=None):
    reward = find_reward(PROGRAM, reward_id)
    assert reward is not None
    return quote_reward(PROGRAM, reward, cart, context, points=points)


def reasons(opt):
    return [r.reason for r in opt.refusals]


@pytest.mark.parametrize(
    ("reward_id", "cart", "points", "discount_minor", "refused"),
    [
        # fixed: min(amount, subtotal)
        ("five-off", Cart(subtotal_minor=10_000), 500, 500, []),
        ("five-off", Cart(subtotal_minor=300), 500, 300, []),
        ("five-off", Cart(subtotal_minor=0, shipping_minor=500), 500, 0, ["nothing_to_discount"]),
        # percent: floor(subtotal x 10%), capped at 10.00
        ("ten-pct", Cart(subtotal_minor=9_999), 300, 999, []),
        ("ten-pct", Cart(subtotal_minor=10_000), 300, 1000, []),  # the cap, reached exactly
        ("ten-pct", Cart(subtotal_minor=10_009), 300, 1000, []),
        ("ten-pct", Cart(subtotal_minor=50_000), 300, 1000, []),
        ("ten-pct", Cart(subtotal_minor=9), 300, 0, ["nothing_to_discount"]),
        # free shipping: the cart's shipping
        ("ship", Cart(subtotal_minor=1000, shipping_minor=495), 200, 495, []),
        ("ship", Cart(subtotal_minor=1000), 200, 0, ["nothing_to_discount"]),
    ],
)
def test_fixed_price_rewards(reward_id, cart, points, discount_minor, refused):
    opt = option(reward_id, cart)
    assert (opt.points, opt.discount_minor, reasons(opt)) == (points, discount_minor, refused)
    assert opt.redeemable is (not refused)


def test_free_shipping_and_free_product_say_what_they_give():
    ship = option("ship", Cart(subtotal_minor=0, shipping_minor=495))
    assert (ship.free_shipping, ship.free_sku, ship.type) == (True, None, "free_shipping")
    tote = option("tote", Cart(subtotal_minor=0))  # any cart: the storefront adds the SKU
    assert tote.redeemable
    assert (tote.points, tote.discount_minor, tote.free_sku, tote.free_shipping) == (
        800,
        0,
        "TOTE-1",
        False,
    )


@pytest.mark.parametrize(
    ("subtotal_minor", "available_points", "points", "discount_minor", "refused"),
    [
        (10_000, 1_000_000, 5000, 5000, []),  # max share: 50% of 100.00
        (10_099, 1_000_000, 5000, 5000, []),  # 50.49 of share buys 50 whole units
        (10_000, 1234, 1200, 1200, []),  # what the member holds, whole units
        (600, 1_000_000, 300, 300, []),  # the share allows the minimum exactly
        (599, 1_000_000, 300, 300, ["cart_too_small"]),  # one minor unit short
        (10_000, 300, 300, 300, []),  # the member holds the minimum exactly
        (10_000, 299, 300, 300, ["not_enough_points"]),  # one point short
        (0, 0, 300, 300, ["cart_too_small", "not_enough_points"]),
    ],
)
def test_points_plus_cash_best_use(
    subtotal_minor, available_points, points, discount_minor, refused
):
    opt = option(
        "ppc", Cart(subtotal_minor=subtotal_minor), RewardContext(available_points=available_points)
    )
    assert (opt.points, opt.discount_minor, reasons(opt)) == (points, discount_minor, refused)


@pytest.mark.parametrize(
    ("points", "available_points", "discount_minor", "refused"),
    [
        (300, 10_000, 300, []),  # the minimum exactly
        (200, 10_000, 200, ["below_min_points"]),
        (350, 10_000, 300, ["not_whole_units"]),
        (0, 10_000, 0, ["not_whole_units"]),
        (-100, 10_000, 0, ["not_whole_units"]),
        (5000, 10_000, 5000, []),  # the maximum share exactly
        (5100, 10_000, 5100, ["above_max_share"]),
        (1000, 999, 1000, ["not_enough_points"]),
    ],
)
def test_points_plus_cash_priced_for_requested_points(
    points, available_points, discount_minor, refused
):
    reward = find_reward(PROGRAM, "ppc")
    opt = price_points_plus_cash(
        PROGRAM, reward, Cart(subtotal_minor=10_000), points, available_points
    )
    assert (opt.points, opt.discount_minor, reasons(opt)) == (points, discount_minor, refused)


def test_refusals_explain_themselves():
    reward = find_reward(PROGRAM, "ppc")
    cart = Cart(subtotal_minor=10_000)
    too_many = price_points_plus_cash(PROGRAM, reward, cart, 5100, 10_000)
    assert too_many.refusals[0].message == (
        "At most 50% of this cart (50 EUR, 5000 points) can be paid with points"
    )
    short = option("five-off", cart, RewardContext(available_points=499))
    assert short.refusals[0].message == "You need 500 points and have 499: 1 more to go"


@pytest.mark.parametrize(
    ("reward_id", "context", "refused"),
    [
        ("gold-only", RewardContext(available_points=1000, tier="Gold"), []),
        ("gold-only", RewardContext(available_points=1000, tier="Silver"), ["tier_gated"]),
        ("gold-only", RewardContext(available_points=1000), ["tier_gated"]),
        ("tote", RewardContext(available_points=1000), []),  # full stock, never redeemed
        ("tote", RewardContext(available_points=1000, stock_left={"tote": 1}), []),
        ("tote", RewardContext(available_points=1000, stock_left={"tote": 0}), ["out_of_stock"]),
        ("tote", RewardContext(available_points=1000, redeemed_by_reward={"tote": 1}), []),
        (
            "tote",
            RewardContext(available_points=1000, redeemed_by_reward={"tote": 2}),
            ["per_member_limit_reached"],
        ),
        ("five-off", RewardContext(available_points=500), []),
        ("five-off", RewardContext(available_points=499), ["not_enough_points"]),
        (
            "tote",
            RewardContext(
                available_points=0, stock_left={"tote": 0}, redeemed_by_reward={"tote": 2}
            ),
            ["out_of_stock", "per_member_limit_reached", "not_enough_points"],
        ),
        (
            "gold-only",
            RewardContext(available_points=0),
            ["tier_gated", "not_enough_points"],
        ),
    ],
)
def test_eligibility(reward_id, context, refused):
    assert reasons(option(reward_id, Cart(subtotal_minor=10_000), context)) == refused


def test_not_enough_points_is_listed_last():
    opt = option("ship", Cart(subtotal_minor=100), RewardContext(available_points=0))
    assert reasons(opt) == [Reason.NOTHING_TO_DISCOUNT, Reason.NOT_ENOUGH_POINTS]


def test_points_can_only_be_chosen_for_points_plus_cash():
    assert reasons(option("five-off", Cart(subtotal_minor=10_000), points=500)) == [
        "points_not_adjustable"
    ]


def test_quote_covers_the_whole_catalogue_in_order():
    cart = Cart(subtotal_minor=10_000, shipping_minor=495, skus=("SHOE-1",))
    options = quote(PROGRAM, cart, RewardContext(available_points=600, tier="Silver"))
    assert [(o.reward_id, o.points, o.discount_minor, o.redeemable) for o in options] == [
        ("five-off", 500, 500, True),
        ("ten-pct", 300, 1000, True),
        ("ship", 200, 495, True),
        ("tote", 800, 0, False),
        ("ppc", 600, 600, True),
        ("gold-only", 100, 1000, False),
    ]


@pytest.mark.parametrize(
    "data",
    [{"subtotal_minor": -1}, {"subtotal_minor": 100, "shipping_minor": -5}],
)
def test_a_cart_with_negative_amounts_is_refused(data):
    with pytest.raises(InvalidAmount, match="must be a whole number >= 0"):
        msgspec.convert(data, Cart)


@pytest.mark.parametrize(
    ("reward_id", "cart", "points", "description"),
    [
        ("five-off", Cart(subtotal_minor=10_000), None, "500 points for 5 EUR off"),
        ("five-off", Cart(subtotal_minor=250), None, "500 points for 2.50 EUR off"),
        ("ten-pct", Cart(subtotal_minor=4_550), None, "300 points for 10% off (4.55 EUR)"),
        ("ship", Cart(subtotal_minor=0, shipping_minor=495), None, "200 points for free shipping"),
        ("tote", Cart(subtotal_minor=0), None, "800 points for Free tote bag"),
        ("ppc", Cart(subtotal_minor=10_000), 700, "700 points for 7 EUR off"),
    ],
)
def test_descriptions_say_what_the_customer_got(reward_id, cart, points, description):
    opt = option(reward_id, cart, points=points)
    assert describe(PROGRAM, find_reward(PROGRAM, reward_id), opt) == description


def test_money_is_written_without_floats():
    assert money(500, "EUR", 100) == "5 EUR"
    assert money(550, "EUR", 100) == "5.50 EUR"
    assert money(5, "EUR", 100) == "0.05 EUR"
    assert money(1234, "BHD", 1000) == "1.234 BHD"
    assert money(500, "JPY", 1) == "500 JPY"


@given(
    subtotal_minor=st.integers(0, 10**9),
    available_points=st.integers(0, 10**9),
    cost_points=st.integers(1, 1000),
    amount_minor=st.integers(1, 1000),
    min_points=st.integers(0, 5000),
    share=st.integers(1, 100),
)
def test_points_plus_cash_best_use_stays_within_every_limit(
    subtotal_minor, available_points, cost_points, amount_minor, min_points, share
):
    program = parse_program(
        {
            "name": "P",
            "currency": "EUR",
            "earning": {"points_per_major_unit": "1"},
            "rewards": [
                {
                    "type": "points_plus_cash",
                    "id": "ppc",
                    "name": "Pay with points",
                    "cost_points": cost_points,
                    "amount_minor": amount_minor,
                    "min_points": min_points,
                    "max_share_percent": share,
                }
            ],
        }
    )
    cart = Cart(subtotal_minor=subtotal_minor)
    (opt,) = quote(program, cart, RewardContext(available_points=available_points))
    assert opt.points % cost_points == 0
    assert opt.discount_minor == opt.points // cost_points * amount_minor
    if opt.redeemable:
        assert min_points <= opt.points <= available_points
        assert opt.discount_minor <= subtotal_minor * share // 100
        # The best use: one more unit would break a limit.
        more = price_points_plus_cash(
            program, program.rewards[0], cart, opt.points + cost_points, available_points
        )
        assert not more.redeemable
        # The quoted price is one the pricing function accepts.
        priced = price_points_plus_cash(
            program, program.rewards[0], cart, opt.points, available_points
        )
        assert priced.redeemable
