"""The program in words (pure): each section says what the document says, promotions only
while they run, sections the program lacks are left out; and the account page's catalogue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pointguard.errors import ProgramInvalid
from pointguard.program.document.in_words import program_in_words
from pointguard.program.document.validate import parse_program
from pointguard.program.referrals.rules import referral_link
from pointguard.program.rewards.catalogue import RewardContext, catalogue
from tests.program.test_validation import EXAMPLE, base, promo

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
PROGRAM = parse_program(
    """
name = "Words"
currency = "EUR"
return_window_days = 14
expiry = { mode = "inactivity", months = 18, reminder_days = [7, 30] }
leaderboard = { enabled = true }

[earning]
points_per_major_unit = "2.50"
category_multipliers = { shoes = "2" }
include_shipping = true

[[actions]]
event = "review.published"
points = 25
description = "Thanks for your review"
per_day = 2

[[promotions]]
id = "bf"
name = "Black Friday"
starts_at = 2026-11-27T00:00:00Z
ends_at = 2026-11-30T00:00:00Z
multiplier = "2"
min_spend_minor = 5000
[[promotions]]
id = "xmas"
name = "Christmas"
starts_at = 2026-12-20T00:00:00Z
ends_at = 2026-12-26T00:00:00Z
bonus_points = 100

[referrals]
referee_points = 200
referrer_points = 500
min_first_order_minor = 3000
max_rewarded_per_month = 10
ladder = [{ referrals = 3, bonus_points = 500 }]
link_pattern = "https://shop.example/invite/{code}"

[[tiers.levels]]
name = "Bronze"
threshold = 0
[[tiers.levels]]
name = "Gold"
threshold = 150000
multiplier = "1.5"
free_shipping = true
perks = ["early access"]

[[rewards]]
type = "fixed_discount"
id = "five-off"
name = "5 EUR off"
cost_points = 500
amount_minor = 500
[[rewards]]
type = "free_product"
id = "tote"
name = "Tote bag"
cost_points = 1200
sku = "TOTE"
stock = 10
[[rewards]]
type = "points_plus_cash"
id = "pay"
name = "Pay with points"
cost_points = 100
amount_minor = 100
min_points = 250
max_share_percent = 50
[[rewards]]
type = "percent_off"
id = "gold-pct"
name = "Gold 20% off"
cost_points = 100
percent = 20
max_discount_minor = 1500
tiers = ["Gold"]
per_member_limit = 1

[[challenges]]
id = "three"
name = "Three orders"
goal = "orders"
target = 3
window_days = 30
bonus_points = 300
badge = "Regular"
"""
)


def sections(program=PROGRAM, now=NOW) -> dict[str, tuple[str, ...]]:
    return {s.title: s.lines for s in program_in_words(program, now)}


def test_every_section_says_what_the_document_says():
    words = sections()
    assert list(words) == [
        "Earning points",
        "When your points are yours",
        "Tiers",
        "Rewards",
        "Referring friends",
        "Challenges",
        "Leaderboard",
    ]
    assert words["Earning points"] == (
        "2.5 points for every 1 EUR you spend.",
        "2 times the points on shoes.",
        "Shipping earns points too.",
        "No points on gift_card.",
        "25 points: Thanks for your review (at most 2 a day).",
        "Now, Black Friday: 2 times the points (on orders of 50 EUR or more),"
        " until 2026-11-30 00:00 UTC.",
    )
    assert words["When your points are yours"] == (
        "Points for an order are pending for 14 days, the return window, then yours to spend;"
        " points for what you return are taken back.",
        "Your points expire after 18 months without an order or other activity.",
        "We remind you 30 and 7 days before points expire.",
    )
    assert words["Tiers"] == (
        "Bronze: from the start.",
        "Gold: 1500 EUR spent in the last 12 months; 1.5 times the points, free shipping,"
        " early access.",
        "A tier is yours as soon as you qualify and is reviewed a year later; if you no longer"
        " qualify then, you keep it 30 more days.",
    )
    assert words["Rewards"] == (
        "5 EUR off: 500 points for 5 EUR off your order.",
        "Tote bag: 1200 points for the product, added to your order for free (while stock lasts).",
        "Pay with points: every 100 points pay 1 EUR of your order, up to 50% of it,"
        " from 300 points.",
        "Gold 20% off: 100 points for 20% off your order, at most 15 EUR"
        " (Gold members only, 1 per member).",
    )
    assert words["Referring friends"] == (
        "A friend who joins with your link gets 200 points on their first order.",
        "You get 500 points when their first order of 30 EUR or more is paid, once its return"
        " window has passed.",
        "At most 10 referrals are rewarded a month.",
        "500 bonus points for your 3rd successful referral.",
    )
    assert words["Challenges"] == (
        "Three orders: 3 orders within 30 days for 300 bonus points and the Regular badge.",
    )


@pytest.mark.parametrize(
    ("now", "promotion"),
    [
        pytest.param(datetime(2026, 11, 26, 23, 59, tzinfo=UTC), None, id="before-it-starts"),
        pytest.param(datetime(2026, 11, 27, tzinfo=UTC), "Black Friday", id="from-its-start"),
        pytest.param(datetime(2026, 11, 30, tzinfo=UTC), None, id="its-end-is-excluded"),
        pytest.param(datetime(2026, 12, 20, tzinfo=UTC), "Christmas", id="the-next-one"),
    ],
)
def test_only_the_promotions_running_now_are_told(now, promotion):
    told = [line for line in sections(now=now)["Earning points"] if line.startswith("Now, ")]
    assert [line.removeprefix("Now, ").split(":")[0] for line in told] == (
        [promotion] if promotion else []
    )


def test_the_christmas_bonus_is_told_with_its_points():
    [line] = [
        line
        for line in sections(now=datetime(2026, 12, 24, tzinfo=UTC))["Earning points"]
        if line.startswith("Now, ")
    ]
    assert line == "Now, Christmas: 100 bonus points an order, until 2026-12-26 00:00 UTC."


def test_a_small_program_leaves_out_what_it_does_not_have():
    words = sections(parse_program(base(tiers={"levels": []}, expiry={"mode": "never"})))
    assert words == {
        "Earning points": ("1 points for every 1 EUR you spend.", "No points on gift_card."),
        "When your points are yours": (
            "Points for an order are pending for 30 days, the return window, then yours to"
            " spend; points for what you return are taken back.",
            "Your points never expire.",
        ),
    }


def test_the_example_program_reads_in_full():
    words = program_in_words(parse_program(EXAMPLE.read_text()), NOW)
    assert all(section.lines for section in words)
    assert all(line.endswith(".") for section in words for line in section.lines)


def test_the_account_catalogue_says_what_each_reward_gives_and_what_is_missing():
    context = RewardContext(available_points=250, tier="Bronze", stock_left={"tote": 0})
    entries = {e.reward.id: e for e in catalogue(PROGRAM, context)}
    assert list(entries) == ["five-off", "tote", "pay", "gold-pct"]
    five = entries["five-off"]
    assert (five.type, five.affordable, five.points_short, five.needs_checkout) == (
        "fixed_discount",
        False,
        250,
        True,
    )
    tote = entries["tote"]
    assert (tote.needs_checkout, [r.reason.value for r in tote.refusals]) == (
        False,
        ["out_of_stock"],
    )
    # Points plus cash starts at its minimum rounded up to whole steps: 3 x 100 points.
    assert (entries["pay"].least_points, entries["pay"].points_short) == (300, 50)
    gold = entries["gold-pct"]
    assert (gold.tier_gated, gold.affordable) == (True, True)
    assert [r.reason.value for r in gold.refusals] == ["tier_gated"]


@pytest.mark.parametrize(
    ("code", "link"),
    [
        ("AbC-123_x", "https://shop.example/invite/AbC-123_x"),
        ("ANN 2019/x", "https://shop.example/invite/ANN%202019%2Fx"),
    ],
)
def test_the_referral_link_puts_the_code_in_the_pattern(code, link):
    assert referral_link(PROGRAM, code) == link


def test_without_a_pattern_there_is_no_link():
    assert referral_link(parse_program(base(referrals=_referrals())), "abc") is None
    assert referral_link(parse_program(base()), "abc") is None


@pytest.mark.parametrize(
    "pattern",
    ["http://shop.example/{code}", "https://shop.example/invite", "https://x/{code}/{code}"],
)
def test_a_link_pattern_is_https_with_the_code_once(pattern):
    with pytest.raises(ProgramInvalid, match=r"\$\.referrals\.link_pattern"):
        parse_program(base(referrals=_referrals(link_pattern=pattern)))


def _referrals(**fields: object) -> dict[str, object]:
    return {"referee_points": 100, "referrer_points": 100, **fields}


def test_a_promotions_end_is_told_in_utc():
    paris = timezone(timedelta(hours=1))
    promotion = promo(multiplier="2", ends_at=datetime(2026, 6, 8, 1, tzinfo=paris))
    words = sections(parse_program(base(promotions=[promotion])), datetime(2026, 6, 2, tzinfo=UTC))
    assert (
        words["Earning points"][-1] == "Now, Promo: 2 times the points, until 2026-06-08 00:00 UTC."
    )
