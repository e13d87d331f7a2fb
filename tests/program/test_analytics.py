"""Program analytics over a small world built through the real service and ledger.

Ledger entries are dated by the database clock when they are posted, so the world's events are
placed in the past relative to now and the main period ends just after now: the events fall
where each test puts them, and every ledger entry falls inside the period.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from pointguard import db
from pointguard.errors import InvalidPeriod, ProgramNotFound
from pointguard.ledger import operations as ops
from pointguard.ledger.balances import outstanding_liability
from pointguard.program.apply import apply_event
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import (
    ActionPerformed,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
)
from pointguard.program.referrals.records import referral_code
from pointguard.program.reports.analytics import program_analytics

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)

PROGRAM = """
name = "Analytics"
currency = "EUR"
point_value_minor = "1.5"
return_window_days = 14
[earning]
points_per_major_unit = "1"
[[actions]]
event = "signup"
points = 100
description = "Welcome bonus"
lifetime = 1
[[actions]]
event = "review.published"
points = 20
description = "Thanks for your review"
[referrals]
referee_points = 0
referrer_points = 500
min_first_order_minor = 3000
[tiers]
levels = [{ name = "Silver", threshold = 20000 }]
[expiry]
months = 1
"""


def period_now():
    """A 30-day period ending an hour from now: now's ledger entries fall inside it."""
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    return end - 30 * DAY, end


def paid(member, order_id, at, *lines, code=None):
    return OrderPaid(
        event_id=f"paid-{order_id}",
        member_id=member,
        occurred_at=at,
        order_id=order_id,
        currency="EUR",
        referral_code=code,
        lines=[
            OrderLine(
                line_id=str(i),
                sku=f"SKU-{category}",
                category=category,
                quantity=quantity,
                unit_price_minor=price,
                discount_minor=discount,
            )
            for i, (category, quantity, price, discount) in enumerate(lines, start=1)
        ],
    )


def action(member, event_id, name, at, code=None):
    return ActionPerformed(
        event_id=event_id, member_id=member, occurred_at=at, action=name, referral_code=code
    )


async def save(run, merchant, start):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=start - 400 * DAY)


async def reserve(run, merchant, member, points, now):
    return await run(
        ops.reserve,
        merchant,
        member,
        points,
        key=f"checkout-{member}",
        description=f"{points} points off",
        source="test",
        now=now,
        timeout_s=3600,
    )


async def analytics(run, merchant, start, end):
    return await run(program_analytics, merchant, start=start, end=end)


async def test_a_small_world_by_hand(engine, run, merchant):
    start, end = period_now()
    await save(run, merchant, start)
    s = start
    # ann: signed up long before the period; one order before it, two in it (one partly refunded)
    await run(apply_event, merchant, action("ann", "ann-signup", "signup", s - 40 * DAY))  # 100
    code = await run(referral_code, merchant, "ann")
    await run(apply_event, merchant, paid("ann", "a1", s - 5 * DAY, ("shoes", 2, 5000, 0)))  # 100
    # a2: 3 x 10.00 less 0.01 (29 points) and 40.00 (40 points)
    a2 = paid("ann", "a2", s + DAY, ("shoes", 3, 1000, 1), ("socks", 1, 4000, 0))
    await run(apply_event, merchant, a2)
    refund = OrderRefunded(
        event_id="refund-a2",
        member_id="ann",
        occurred_at=s + 2 * DAY,
        order_id="a2",
        lines=[RefundedLine(line_id="1", quantity=1)],
    )
    await run(apply_event, merchant, refund)  # 10 points back (29 - 29 * 2 // 3)
    # a3: the gift card neither earns nor counts toward the order's value
    a3 = paid("ann", "a3", s + 10 * DAY, ("bags", 1, 5000, 0), ("gift_card", 1, 10000, 0))
    await run(apply_event, merchant, a3)  # 50
    # bob: referred by ann, one order kept (ann's referral pays 500) and one cancelled
    await run(apply_event, merchant, paid("bob", "b1", s + 2 * DAY, ("c", 1, 4000, 0), code=code))
    await run(apply_event, merchant, paid("bob", "b2", s + 3 * DAY, ("c", 1, 3000, 0)))  # 30
    cancel = OrderCancelled(
        event_id="cancel-b2", member_id="bob", occurred_at=s + 4 * DAY, order_id="b2"
    )
    await run(apply_event, merchant, cancel)  # 30 back
    # cat: a review and an order (referred by ann: 500) just before the period; in the period
    # only an action the program does not reward, so cat is not active
    await run(apply_event, merchant, action("cat", "cat-review", "review.published", s - 2 * DAY))
    c1 = paid("cat", "c1", s - MICROSECOND, ("c", 1, 7000, 0), code=code)
    await run(apply_event, merchant, c1)  # 70
    await run(apply_event, merchant, action("cat", "cat-quiz", "quiz.completed", s + 5 * DAY))
    # dan: one order at the very start of the period
    await run(apply_event, merchant, paid("dan", "d1", s, ("c", 1, 2003, 0)))  # 20
    # eve: signs up with ann's code in the period and never orders
    await run(apply_event, merchant, action("eve", "eve-signup", "signup", s + 4 * DAY, code))

    await run(ops.release_due, merchant, now=end + 30 * DAY)  # every return window is over
    # lots expire a month after they are earned: ann's signup (100) and cat's review (20) have
    # by `end`; eve's signup, a month after s + 4 days, has not; orders' lots are much later
    assert await run(ops.expire_due, merchant, now=end) == 120
    hold = await reserve(run, merchant, "ann", 300, end)
    await run(ops.capture, merchant, hold.entry_id, description="Redeemed 300 points")
    await reserve(run, merchant, "bob", 10, end)  # still open: reserved points are still owed

    result = await analytics(run, merchant, start, end)

    assert (result.members, result.new_members) == (5, 3)  # bob, dan and eve joined in it
    assert (result.active_members, result.active_rate) == (4, Decimal("0.8"))  # not cat
    # purchasers: ann (a2, a3), bob (b1; b2 cancelled), dan (d1); cat's c1 is before the period
    assert (result.purchasers, result.repeat_purchasers) == (3, 1)
    assert result.repeat_purchase_rate == Decimal("0.3333")
    # a2 = 2999 * 2 // 3 + 4000 = 5999; a3 = 5000; b1 = 4000; d1 = 2003
    assert (result.orders, result.order_value_minor) == (4, 17002)
    assert result.average_order_value_minor == 4251  # 4250.5, rounded half up
    # to date: ann 10000 + 5999 + 5000 = 20999, bob 4000, cat 7000, dan 2003
    assert result.lifetime_purchasers == 4
    assert result.lifetime_value_minor == 8501  # 34002 / 4 = 8500.5
    # ann's first order was 35 days before `end`; bob's (28 days), cat's (30 days and 1 µs)
    # and dan's (30 days) are under a month (365 / 12 days), so they count as one month
    projected = (Fraction(20999 * 365, 35) + 12 * (4000 + 7000 + 2003)) / 4
    assert result.projected_annual_value_minor == round(projected) == 93756

    # issued: signups 100 + 100, review 20, orders 100 + 69 + 50 + 40 + 30 + 70 + 20,
    # referrals 500 + 500
    assert result.issued_points == 1599
    assert result.taken_back_points == 40  # a2's refunded unit and the cancelled b2
    assert (result.redeemed_points, result.expired_points, result.forfeited_points) == (
        300,
        120,
        0,
    )
    assert result.redemption_rate == Decimal("0.1876")  # 300 / 1599 = 0.18762
    assert result.breakage_rate == Decimal("0.0750")  # 120 / 1599 = 0.07505
    assert result.liability_points == 1599 - 40 - 300 - 120 == 1139
    async with db.connection(engine) as pg:
        assert await outstanding_liability(pg, merchant) == 1139
    assert result.liability_minor == 1709  # 1139 x 1.5 = 1708.5, rounded half up
    assert (result.currency, result.point_value_minor) == ("EUR", Decimal("1.5"))
    # attached in the period: bob's (rewarded) and eve's (no order yet); cat's was before it
    assert (result.referrals, result.referrals_rewarded) == (2, 1)
    assert result.referral_conversion_rate == Decimal("0.5")
    assert result.members_by_tier == {"Silver": 1, None: 4}

    # the same world, over a period that ended before any entry was posted: the program's
    # records are dated by their events, the ledger's flows by their posting
    earlier = await analytics(run, merchant, start - 10 * DAY, start)
    assert (earlier.members, earlier.new_members, earlier.active_members) == (2, 1, 2)
    assert (earlier.purchasers, earlier.orders, earlier.order_value_minor) == (2, 2, 17000)
    assert earlier.lifetime_value_minor == 8500  # ann's a1 and cat's c1
    assert (earlier.referrals, earlier.referrals_rewarded) == (1, 1)  # cat's, at s - 1 µs
    assert (earlier.issued_points, earlier.liability_points, earlier.liability_minor) == (0, 0, 0)
    assert earlier.redemption_rate is None and earlier.breakage_rate is None


async def test_the_period_is_half_open(run, merchant):
    start, end = period_now()
    await save(run, merchant, start)
    await run(apply_event, merchant, paid("ann", "1", end - 2 * DAY, ("c", 1, 1000, 0)))
    await run(apply_event, merchant, paid("ann", "2", end - DAY, ("c", 1, 3000, 0)))
    at = end - DAY
    before = await analytics(run, merchant, at - DAY, at)  # ends at order 2: excludes it
    assert (before.orders, before.average_order_value_minor, before.members) == (1, 1000, 1)
    assert before.repeat_purchase_rate == Decimal(0)
    assert before.lifetime_value_minor == 1000
    from_it = await analytics(run, merchant, at, at + DAY)  # starts at order 2: includes it
    assert (from_it.orders, from_it.average_order_value_minor, from_it.new_members) == (1, 3000, 0)
    assert from_it.lifetime_value_minor == 4000
    both = await analytics(run, merchant, at - DAY, at + DAY)
    assert (both.orders, both.repeat_purchasers, both.repeat_purchase_rate) == (2, 1, Decimal(1))


async def test_zero_denominators_are_none(run, merchant):
    start, end = period_now()
    await save(run, merchant, start)
    result = await analytics(run, merchant, start, end)
    assert (result.members, result.active_members, result.orders, result.issued_points) == (
        0,
        0,
        0,
        0,
    )
    assert result.active_rate is None
    assert result.repeat_purchase_rate is None
    assert result.average_order_value_minor is None
    assert result.lifetime_value_minor is None
    assert result.projected_annual_value_minor is None
    assert result.redemption_rate is None
    assert result.breakage_rate is None
    assert result.referral_conversion_rate is None
    assert (result.liability_points, result.liability_minor) == (0, 0)
    assert result.members_by_tier == {}


async def test_bad_periods_and_missing_programs_are_refused(run, merchant):
    start, end = period_now()
    with pytest.raises(InvalidPeriod, match="must start before it ends"):
        await analytics(run, merchant, end, start)
    with pytest.raises(InvalidPeriod, match="timezone-aware"):
        await analytics(run, merchant, start.replace(tzinfo=None), end)
    with pytest.raises(ProgramNotFound):
        await analytics(run, merchant, start, end)
