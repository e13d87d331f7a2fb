"""Referrals through the service: codes, rewards on both sides, caps, the ladder, self-referral,
and reversal when the first order goes back."""

from datetime import UTC, datetime, timedelta

import pytest

from pointguard import db
from pointguard.ledger import member_balances
from pointguard.ledger import operations as ops
from pointguard.program.apply import apply_event, apply_events
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import (
    ActionPerformed,
    OrderCancelled,
    OrderLine,
    OrderPaid,
)
from pointguard.program.referrals.records import referral_code

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
DAY = timedelta(days=1)

PROGRAM = """
name = "Referrals"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "0"
[referrals]
referee_points = {referee_points}
referee_reward_on = "{reward_on}"
referrer_points = 500
min_first_order_minor = 3000
max_rewarded_per_month = 2
ladder = [{{ referrals = 3, bonus_points = 1000 }}]
"""


@pytest.fixture
async def shop(run, merchant):
    program = parse_program(PROGRAM.format(referee_points=200, reward_on="first_order"))
    await run(save_program, merchant, program, effective_from=T0 - 100 * DAY)
    return merchant


def order(member, n, at, amount_minor=5000, code=None):
    return OrderPaid(
        event_id=f"w-{member}-{n}",
        member_id=member,
        occurred_at=at,
        order_id=f"{member}-{n}",
        currency="EUR",
        referral_code=code,
        lines=[
            OrderLine(line_id="1", sku="S", category="c", quantity=1, unit_price_minor=amount_minor)
        ],
    )


async def points(run, merchant, member):
    b = await run(member_balances, merchant, member)
    return b.available_points, b.pending_points


async def status(engine, merchant, referee):
    async with db.connection(engine) as pg:
        return await pg.fetchval(
            "SELECT status FROM program_referrals WHERE merchant_id = $1 AND referee_id = $2",
            merchant,
            referee,
        )


async def test_codes_are_unguessable_and_stable(run, shop):
    first = await run(referral_code, shop, "ann")
    assert await run(referral_code, shop, "ann") == first
    others = {await run(referral_code, shop, f"m{i}") for i in range(20)}
    assert first not in others and len(others) == 20
    assert len(first) >= 11  # 64 random bits, URL-safe


async def test_a_code_the_storefront_gave_before_keeps_working(engine, run, shop):
    """`customer.created` may bring the member's code from a previous loyalty app: it becomes
    theirs when unused, so the links already handed out still refer."""

    def signup(member, at, *, own=None, code=None):
        return ActionPerformed(
            event_id=f"w-{member}-signup",
            member_id=member,
            occurred_at=at,
            action="signup",
            own_referral_code=own,
            referral_code=code,
        )

    await run(apply_event, shop, signup("ann", T0 - DAY, own="ANN-2019"))
    assert await run(referral_code, shop, "ann") == "ANN-2019"
    await run(apply_event, shop, signup("bob", T0, code="ANN-2019"))
    await run(apply_event, shop, order("bob", 1, T0 + DAY))
    assert await status(engine, shop, "bob") == "rewarded"
    assert await points(run, shop, "ann") == (0, 500)
    # Taken already: another member bringing the same code keeps a code of their own.
    await run(apply_event, shop, signup("eve", T0, own="ANN-2019"))
    assert await run(referral_code, shop, "eve") != "ANN-2019"


@pytest.mark.parametrize("referee", ["amy", "zoe"])  # sorting before and after the referrer
async def test_a_code_registered_in_the_same_batch_refers(engine, run, shop, referee):
    """A referee whose signup comes in one batch with the signup that registers the code."""
    batch = [
        ActionPerformed(
            event_id="w-mia-signup",
            member_id="mia",
            occurred_at=T0,
            action="signup",
            own_referral_code="CODE-MIA",
        ),
        ActionPerformed(
            event_id=f"w-{referee}-signup",
            member_id=referee,
            occurred_at=T0 + DAY,
            action="signup",
            referral_code="CODE-MIA",
        ),
    ]
    await run(apply_events, shop, batch)
    assert await status(engine, shop, referee) == "attached"


async def test_first_order_rewards_both_sides_after_the_return_window(engine, run, shop):
    code = await run(referral_code, shop, "ann")
    await run(apply_event, shop, order("bob", 1, T0, code=code))
    assert await points(run, shop, "bob") == (0, 200)  # the welcome gift, pending
    assert await points(run, shop, "ann") == (0, 500)  # the referrer's, pending
    assert await status(engine, shop, "bob") == "rewarded"
    await run(ops.release_due, shop, now=T0 + 14 * DAY)
    assert await points(run, shop, "ann") == (500, 0)
    await run(apply_event, shop, order("bob", 2, T0 + DAY, code=code))  # once only
    assert await points(run, shop, "ann") == (500, 0)


async def test_self_referral_is_refused(engine, run, shop):
    code = await run(referral_code, shop, "ann")
    await run(apply_event, shop, order("ann", 1, T0, code=code))
    assert await points(run, shop, "ann") == (0, 0)
    assert await status(engine, shop, "ann") == "refused_self"


async def test_small_first_orders_and_existing_customers_earn_the_referrer_nothing(
    engine, run, shop
):
    code = await run(referral_code, shop, "ann")
    await run(apply_event, shop, order("bob", 1, T0, amount_minor=2999, code=code))
    assert await status(engine, shop, "bob") == "too_small"
    await run(apply_event, shop, order("cat", 1, T0))
    await run(apply_event, shop, order("cat", 2, T0 + DAY, code=code))  # not a new customer
    assert await status(engine, shop, "cat") is None
    assert await points(run, shop, "ann") == (0, 0)


async def test_monthly_cap_and_ladder(engine, run, shop):
    code = await run(referral_code, shop, "ann")
    for i, day in enumerate([0, 1, 2]):  # March: the third is over the cap of 2
        await run(apply_event, shop, order(f"r{i}", 1, T0 + day * DAY, code=code))
    assert [await status(engine, shop, f"r{i}") for i in range(3)] == [
        "rewarded",
        "rewarded",
        "capped",
    ]
    april = datetime(2026, 4, 1, 9, tzinfo=UTC)
    third = await run(apply_event, shop, order("r3", 1, april, code=code))
    assert [e.description for e in third.entries if e.description.startswith(("500", "1000"))] == [
        "500 points for referring a friend",
        "1000 bonus points for your 3rd successful referral",
    ]
    assert await points(run, shop, "ann") == (0, 3 * 500 + 1000)


async def test_returned_first_order_takes_the_rewards_back(engine, run, shop):
    code = await run(referral_code, shop, "ann")
    await run(apply_event, shop, order("bob", 1, T0, code=code))
    await run(
        apply_event,
        shop,
        OrderCancelled(
            event_id="w-cancel", member_id="bob", occurred_at=T0 + DAY, order_id="bob-1"
        ),
    )
    assert await points(run, shop, "ann") == (0, 0)
    assert await points(run, shop, "bob") == (0, 0)
    assert await status(engine, shop, "bob") == "reversed"


async def test_welcome_on_signup(run, merchant):
    program = parse_program(PROGRAM.format(referee_points=150, reward_on="signup"))
    await run(save_program, merchant, program, effective_from=T0 - DAY)
    code = await run(referral_code, merchant, "ann")
    await run(
        apply_event,
        merchant,
        ActionPerformed(
            event_id="w-signup",
            member_id="bob",
            occurred_at=T0,
            action="signup",
            referral_code=code,
        ),
    )
    assert await points(run, merchant, "bob") == (150, 0)  # at once
    await run(apply_event, merchant, order("bob", 1, T0 + DAY))  # the code came at signup
    assert await points(run, merchant, "ann") == (0, 500)
    assert await points(run, merchant, "bob") == (150, 0)  # no second welcome


async def test_successful_referrals_complete_the_referrers_challenge(engine, run, merchant):
    program = (
        PROGRAM.format(referee_points=0, reward_on="first_order")
        + """
[[challenges]]
id = "connector"
name = "Refer two friends"
goal = "referrals"
target = 2
window_days = 60
bonus_points = 400
badge = "Connector"
"""
    )
    await run(save_program, merchant, parse_program(program), effective_from=T0 - DAY)
    code = await run(referral_code, merchant, "ann")
    await run(apply_event, merchant, order("bob", 1, T0, code=code))
    second = await run(apply_event, merchant, order("cat", 1, T0 + DAY, code=code))
    assert "400 bonus points: 'Refer two friends' completed, badge 'Connector'" in [
        e.description for e in second.entries
    ]
    assert await points(run, merchant, "ann") == (0, 2 * 500 + 400)  # all wait for the window
    assert await points(run, merchant, "cat") == (0, 0)
