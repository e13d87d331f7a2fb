"""Redeeming rewards end to end on the real database: quote, reserve, capture or void, stock
and per-member limits under concurrency, timeouts, replays, and refusals that change nothing."""

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.errors import (
    InsufficientPoints,
    InvalidAmount,
    InvalidReference,
    NotFound,
    RewardUnavailable,
)
from pointguard.ledger import AccountKind, member_balances, member_history, system_balances
from pointguard.ledger import operations as ops
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.rewards.catalogue import Cart
from pointguard.program.rewards.redemption import (
    cancel_redemption,
    checkout_quote,
    complete_redemption,
    redeem,
)

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
CART = Cart(subtotal_minor=10_000, shipping_minor=495, skus=("SHOE-1",))

PROGRAM = """
name = "Checkout"
currency = "EUR"
earning = { points_per_major_unit = "2" }
tiers.levels = [{ name = "Silver", threshold = 0 }, { name = "Gold", threshold = 50000 }]

[[rewards]]
type = "fixed_discount"
id = "five-off"
name = "5 EUR off"
cost_points = 500
amount_minor = 500

[[rewards]]
type = "free_product"
id = "tote"
name = "Free tote bag"
cost_points = 800
sku = "TOTE-1"
stock = 1

[[rewards]]
type = "free_shipping"
id = "ship"
name = "Free shipping"
cost_points = 200
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
type = "percent_off"
id = "gold-pct"
name = "Gold 20% off"
cost_points = 100
percent = 20
max_discount_minor = 1500
tiers = ["Gold"]
"""


@pytest.fixture
async def shop(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - timedelta(1))
    return merchant


async def earn(run, merchant, member, points):
    await run(
        ops.earn,
        merchant,
        member,
        points,
        key=f"earn:{member}:{points}",
        description=f"{points} points welcome gift",
        source="test",
    )


async def balances(run, merchant, member="ann"):
    b = await run(member_balances, merchant, member)
    return b.available_points, b.reserved_points


async def test_redeem_then_complete_spends_the_points(engine, run, shop):
    await earn(run, shop, "ann", 1000)
    options = {o.reward_id: o for o in await run(checkout_quote, shop, "ann", CART, T0)}
    assert (options["five-off"].points, options["five-off"].discount_minor) == (500, 500)
    assert options["five-off"].redeemable
    assert [r.reason for r in options["gold-pct"].refusals] == ["tier_gated"]

    r = await run(redeem, shop, "ann", "five-off", CART, key="checkout-1", now=T0)
    assert (r.points, r.discount_minor, r.free_shipping, r.free_sku) == (500, 500, False, None)
    assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", r.code)
    assert (r.status, r.expires_at) == ("open", T0 + timedelta(seconds=900))
    assert await balances(run, shop) == (500, 500)

    done = await run(complete_redemption, shop, r.redemption_id)
    assert done.status == "captured"
    assert await balances(run, shop) == (500, 0)
    assert (await run(system_balances, shop))[AccountKind.REDEEMED] == 500
    again = await run(complete_redemption, shop, r.redemption_id)  # paid webhook retried
    assert again == done
    with pytest.raises(InvalidReference, match="cannot be cancelled"):
        await run(cancel_redemption, shop, r.redemption_id)
    assert (await run(system_balances, shop))[AccountKind.REDEEMED] == 500

    page = await run(member_history, shop, "ann")
    assert [e.description for e in page.entries] == [
        "Redeemed: 500 points for 5 EUR off",
        "500 points for 5 EUR off",
        "1000 points welcome gift",
    ]
    async with db.connection(engine) as pg:
        events = await pg.fetch(
            "SELECT event_type, payload->>'points' AS points FROM outbox WHERE merchant_id = $1",
            shop,
        )
    assert [(e["event_type"], e["points"]) for e in events] == [("reward.redeemed", "500")]


async def test_cancel_gives_the_points_back(run, shop):
    await earn(run, shop, "ann", 1000)
    r = await run(redeem, shop, "ann", "ship", CART, key="c1", now=T0)
    assert (r.points, r.discount_minor, r.free_shipping) == (200, 495, True)
    assert r.description == "200 points for free shipping"
    assert await balances(run, shop) == (800, 200)
    cancelled = await run(cancel_redemption, shop, r.redemption_id)
    assert cancelled.status == "voided"
    assert await balances(run, shop) == (1000, 0)
    assert (await run(cancel_redemption, shop, r.redemption_id)).status == "voided"
    with pytest.raises(NotFound, match="no redemption 424242"):
        await run(complete_redemption, shop, 424242)
    assert (await run(system_balances, shop))[AccountKind.REDEEMED] == 0
    # paid after all (the customer had the discount): charged from available again
    assert (await run(complete_redemption, shop, r.redemption_id)).status == "captured"
    assert await balances(run, shop) == (800, 0)


async def test_stock_of_one_goes_to_exactly_one_of_five_racing_members(run, shop):
    members = [f"m{i}" for i in range(5)]
    for member in members:
        await earn(run, shop, member, 1000)
    results = await asyncio.gather(
        *(
            run(redeem, shop, member, "tote", CART, key=f"tote:{member}", now=T0)
            for member in members
        ),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and won[0].free_sku == "TOTE-1"
    assert len(lost) == 4
    assert all(isinstance(e, RewardUnavailable) and e.reason == "out_of_stock" for e in lost)
    reserved = [(await balances(run, shop, m))[1] for m in members]
    assert sorted(reserved) == [0, 0, 0, 0, 800]


async def test_per_member_limit_counts_live_redemptions(run, shop):
    await earn(run, shop, "ann", 1000)
    first = await run(redeem, shop, "ann", "ship", CART, key="s1", now=T0)
    await run(redeem, shop, "ann", "ship", CART, key="s2", now=T0)
    with pytest.raises(RewardUnavailable) as refused:
        await run(redeem, shop, "ann", "ship", CART, key="s3", now=T0)
    assert refused.value.reason == "per_member_limit_reached"
    assert refused.value.code == "reward_unavailable"
    options = {o.reward_id: o for o in await run(checkout_quote, shop, "ann", CART, T0)}
    assert not options["ship"].redeemable
    await earn(run, shop, "bob", 1000)
    await run(redeem, shop, "bob", "ship", CART, key="b1", now=T0)  # a limit per member

    await run(cancel_redemption, shop, first.redemption_id)  # gives one back
    third = await run(redeem, shop, "ann", "ship", CART, key="s3", now=T0)
    assert third.status == "open"
    assert await balances(run, shop) == (600, 400)


async def test_a_timed_out_hold_gives_its_stock_back(run, shop):
    await earn(run, shop, "ann", 1000)
    await earn(run, shop, "bob", 1000)
    ann = await run(redeem, shop, "ann", "tote", CART, key="a", now=T0, timeout_s=60)
    with pytest.raises(RewardUnavailable, match="out of stock"):
        await run(redeem, shop, "bob", "tote", CART, key="b", now=T0 + timedelta(seconds=30))
    voided_at = T0 + timedelta(seconds=60 + ops.CAPTURE_GRACE_S)  # timeout, then the grace
    assert await run(ops.void_timed_out, shop, now=voided_at - timedelta(seconds=1)) == 0
    assert await run(ops.void_timed_out, shop, now=voided_at) == 1
    assert await balances(run, shop, "ann") == (1000, 0)
    bob = await run(redeem, shop, "bob", "tote", CART, key="b", now=voided_at)
    assert bob.redemption_id != ann.redemption_id
    assert await balances(run, shop, "bob") == (200, 800)


async def test_a_repeated_key_returns_the_same_redemption_and_reserves_once(run, shop):
    await earn(run, shop, "ann", 2000)
    first = await run(redeem, shop, "ann", "five-off", CART, key="k1", now=T0)
    assert await run(redeem, shop, "ann", "five-off", CART, key="k1", now=T0) == first
    racing = await asyncio.gather(
        *(run(redeem, shop, "ann", "tote", CART, key="k2", now=T0) for _ in range(4))
    )
    assert len({r.redemption_id for r in racing}) == 1
    assert len({r.code for r in racing}) == 1
    assert await balances(run, shop) == (700, 1300)  # 500 + 800, each reserved once
    with pytest.raises(RewardUnavailable) as reused:
        await run(redeem, shop, "ann", "ship", CART, key="k1", now=T0)
    assert reused.value.reason == "idempotency_key_reused"
    with pytest.raises(RewardUnavailable):
        await run(redeem, shop, "bob", "five-off", CART, key="k1", now=T0)


async def test_points_plus_cash_and_tier_gated_rewards(engine, run, shop):
    await earn(run, shop, "ann", 1000)
    best = await run(redeem, shop, "ann", "ppc", CART, key="p1", now=T0)
    assert (best.points, best.discount_minor) == (1000, 1000)  # all she has; 50% allows 5000
    assert best.description == "1000 points for 10 EUR off"
    await run(cancel_redemption, shop, best.redemption_id)
    chosen = await run(redeem, shop, "ann", "ppc", CART, key="p2", now=T0, points=300)
    assert (chosen.points, chosen.discount_minor) == (300, 300)
    with pytest.raises(RewardUnavailable, match="at least 300 points") as below:
        await run(redeem, shop, "ann", "ppc", CART, key="p3", now=T0, points=200)
    assert below.value.reason == "below_min_points"

    with pytest.raises(RewardUnavailable, match="Gold members only"):
        await run(redeem, shop, "ann", "gold-pct", CART, key="g1", now=T0)
    async with db.connection(engine) as pg:
        await pg.execute(
            "INSERT INTO program_members (merchant_id, member_id, tier) VALUES ($1, 'ann', 'Gold')",
            shop,
        )
    gold = await run(redeem, shop, "ann", "gold-pct", CART, key="g1", now=T0)
    assert (gold.points, gold.discount_minor) == (100, 1500)  # 20% of 100 EUR, capped at 15
    assert gold.description == "100 points for 20% off (15 EUR)"


@pytest.mark.parametrize(
    ("reward_id", "cart", "extra", "error", "reason"),
    [
        ("nope", CART, {}, RewardUnavailable, "unknown_reward"),
        ("tote", Cart(subtotal_minor=100), {}, InsufficientPoints, None),  # 799 < 800
        ("ship", Cart(subtotal_minor=100), {}, RewardUnavailable, "nothing_to_discount"),
        ("gold-pct", CART, {}, RewardUnavailable, "tier_gated"),
        ("ppc", CART, {"points": 350}, RewardUnavailable, "not_whole_units"),
        ("ppc", CART, {"points": 5100}, RewardUnavailable, "above_max_share"),
        ("five-off", CART, {"points": 500}, RewardUnavailable, "points_not_adjustable"),
        ("five-off", CART, {"timeout_s": 0}, InvalidAmount, None),
    ],
)
async def test_refusals_leave_the_ledger_unchanged(
    engine, run, shop, reward_id, cart, extra, error, reason
):
    await earn(run, shop, "ann", 799)
    with pytest.raises(error) as refused:
        await run(redeem, shop, "ann", reward_id, cart, key="bad", now=T0, **extra)
    assert getattr(refused.value, "reason", None) == reason
    assert await balances(run, shop) == (799, 0)
    assert [e.kind for e in (await run(member_history, shop, "ann")).entries] == ["earn"]
    async with db.connection(engine) as pg:
        count = await pg.fetchval(
            "SELECT count(*) FROM program_redemptions WHERE merchant_id = $1", shop
        )
    assert count == 0
