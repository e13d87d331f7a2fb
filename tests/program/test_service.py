"""The program service end to end: events in, ledger entries out, on the real database."""

from datetime import UTC, date, datetime, timedelta

import pytest

from pointguard import db
from pointguard.errors import ProgramNotFound, UnknownOrder
from pointguard.ledger import member_balances, member_history
from pointguard.ledger import operations as ops
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

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
DAY = timedelta(days=1)

PROGRAM = """
name = "Test Rewards"
currency = "EUR"
return_window_days = 14
[earning]
points_per_major_unit = "1"
[earning.category_multipliers]
shoes = "2"
[[promotions]]
id = "bf"
name = "Black Friday double points"
starts_at = 2026-11-27T00:00:00Z
ends_at = 2026-11-30T00:00:00Z
multiplier = "2"
[[promotions]]
id = "dec-bonus"
name = "December bonus"
starts_at = 2026-12-01T00:00:00Z
ends_at = 2027-01-01T00:00:00Z
bonus_points = 50
[[actions]]
event = "signup"
points = 100
description = "Welcome bonus"
lifetime = 1
[[actions]]
event = "review.published"
points = 20
description = "Thanks for your review"
per_day = 2
[[actions]]
event = "birthday"
points = 250
description = "Happy birthday"
[expiry]
months = 12
"""


@pytest.fixture
async def program(run, merchant):
    await run(save_program, merchant, parse_program(PROGRAM), effective_from=T0 - 365 * DAY)
    return merchant


def order(event_id, order_id, at, *lines, member="ann"):
    return OrderPaid(
        event_id=event_id,
        member_id=member,
        occurred_at=at,
        order_id=order_id,
        currency="EUR",
        lines=list(lines),
    )


def line(line_id, category, quantity, unit_price_minor, sku="SKU"):
    return OrderLine(
        line_id=line_id,
        sku=sku,
        category=category,
        quantity=quantity,
        unit_price_minor=unit_price_minor,
    )


async def balances(run, merchant, member="ann"):
    b = await run(member_balances, merchant, member)
    return b.available_points, b.pending_points


async def test_order_earns_pending_points_released_after_the_window(run, program):
    paid = order("wh-1", "1001", T0, line("a", "shoes", 2, 2550), line("b", "socks", 1, 999))
    applied = await run(apply_event, program, paid)
    # shoes: 51.00 EUR x 2 = 102; socks: 9.99 EUR -> 9 (rounded down)
    assert [e.description for e in applied.entries] == ["111 points for order #1001"]
    assert await balances(run, program) == (0, 111)
    again = await run(apply_event, program, paid)
    assert again.already_applied and again.entries == []
    assert await balances(run, program) == (0, 111)
    assert await run(ops.release_due, program, now=T0 + 14 * DAY - timedelta(seconds=1)) == []
    assert len(await run(ops.release_due, program, now=T0 + 14 * DAY)) == 1
    assert await balances(run, program) == (111, 0)


async def test_partial_refunds_take_back_exactly_the_refunded_lines(run, program):
    paid = order("wh-1", "1001", T0, line("a", "shoes", 3, 1000), line("b", "socks", 1, 500))
    await run(apply_event, program, paid)  # 60 + 5
    refund = OrderRefunded(
        event_id="wh-2",
        member_id="ann",
        occurred_at=T0 + DAY,
        order_id="1001",
        lines=[RefundedLine(line_id="a", quantity=1)],
    )
    applied = await run(apply_event, program, refund)
    assert [e.kind for e in applied.entries] == ["reversal"]
    assert await balances(run, program) == (0, 45)
    await run(ops.release_due, program, now=T0 + 14 * DAY)
    rest = OrderRefunded(
        event_id="wh-3",
        member_id="ann",
        occurred_at=T0 + 20 * DAY,
        order_id="1001",
        lines=[RefundedLine(line_id="a", quantity=5)],
    )
    applied = await run(apply_event, program, rest)  # clamped to the 2 units left
    assert [e.kind for e in applied.entries] == ["clawback"]
    assert await balances(run, program) == (5, 0)
    cancel = OrderCancelled(
        event_id="wh-4", member_id="ann", occurred_at=T0 + 21 * DAY, order_id="1001"
    )
    await run(apply_event, program, cancel)
    assert await balances(run, program) == (0, 0)


async def test_the_program_version_in_force_at_the_event_time_applies(run, program):
    doubled = PROGRAM.replace('points_per_major_unit = "1"', 'points_per_major_unit = "2"')
    await run(save_program, program, parse_program(doubled), effective_from=T0 + DAY)
    before = await run(apply_event, program, order("wh-1", "1", T0, line("a", "x", 1, 1000)))
    after = await run(apply_event, program, order("wh-2", "2", T0 + DAY, line("a", "x", 1, 1000)))
    assert (before.program_version, after.program_version) == (1, 2)
    assert [e.description for e in before.entries + after.entries] == [
        "10 points for order #1",
        "20 points for order #2",
    ]


async def test_promotion_is_named_in_the_customers_history(run, program):
    bf = datetime(2026, 11, 28, 12, tzinfo=UTC)
    await run(apply_event, program, order("wh-1", "1042", bf, line("a", "bags", 1, 6000)))
    page = await run(member_history, program, "ann")
    assert [e.description for e in page.entries] == [
        "120 points for order #1042 (Black Friday double points)"
    ]


async def test_actions_pay_within_their_caps(run, program):
    def action(event_id, name, at, **extra):
        return ActionPerformed(
            event_id=event_id, member_id="ann", occurred_at=at, action=name, **extra
        )

    paid = [
        bool((await run(apply_event, program, event)).entries)
        for event in [
            action("s1", "signup", T0),
            action("s2", "signup", T0 + DAY),  # lifetime cap 1
            action("r1", "review.published", T0),
            action("r2", "review.published", T0 + timedelta(hours=1)),
            action("r3", "review.published", T0 + timedelta(hours=2)),  # per-day cap 2
            action("r4", "review.published", T0 + DAY),  # a new day
            action("b1", "birthday", T0, birthday=date(1990, 11, 20)),
            action("b2", "birthday", T0 + 5 * DAY),  # once a year
            action("b3", "birthday", T0 + 365 * DAY),  # the next year's
            action("q1", "quiz.completed", T0),  # not in this program
        ]
    ]
    assert paid == [True, False, True, True, False, True, True, False, True, False]
    assert await balances(run, program) == (100 + 3 * 20 + 2 * 250, 0)


async def test_refund_of_an_unknown_order_is_refused_and_changes_nothing(run, program):
    await run(apply_event, program, order("wh-1", "1", T0, line("a", "x", 1, 1000)))
    refund = OrderRefunded(
        event_id="wh-2",
        member_id="ann",
        occurred_at=T0,
        order_id="nope",
        lines=[RefundedLine(line_id="a", quantity=1)],
    )
    with pytest.raises(UnknownOrder, match="no paid order 'nope'"):
        await run(apply_event, program, refund)
    assert await balances(run, program) == (0, 10)


async def test_no_program_in_force_is_an_error(run, merchant):
    with pytest.raises(ProgramNotFound):
        await run(apply_event, merchant, order("wh-1", "1", T0, line("a", "x", 1, 1000)))


async def test_outbox_gets_one_event_per_new_entry(engine, run, program):
    await run(apply_event, program, order("wh-1", "1", T0, line("a", "x", 1, 1000)))
    await run(apply_event, program, order("wh-1", "1", T0, line("a", "x", 1, 1000)))
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT event_type, payload->>'points' AS points FROM outbox WHERE merchant_id = $1",
            program,
        )
    assert [(r["event_type"], r["points"]) for r in rows] == [("points.pending", "10")]


async def test_order_bonus_is_taken_back_once_when_nothing_is_kept(run, program):
    dec = datetime(2026, 12, 3, 9, tzinfo=UTC)
    paid = order("wh-1", "77", dec, line("a", "bags", 2, 1000), line("g", "gift_card", 1, 5000))
    applied = await run(apply_event, program, paid)
    assert [e.description for e in applied.entries] == [
        "20 points for order #77",
        "50 bonus points: December bonus (order #77)",
    ]
    bags_back = OrderRefunded(
        event_id="wh-2",
        member_id="ann",
        occurred_at=dec + DAY,
        order_id="77",
        lines=[RefundedLine(line_id="a", quantity=2)],
    )
    await run(apply_event, program, bags_back)
    assert await balances(run, program) == (0, 50)  # the gift card is kept: so is the bonus
    card_back = OrderRefunded(
        event_id="wh-3",
        member_id="ann",
        occurred_at=dec + DAY,
        order_id="77",
        lines=[RefundedLine(line_id="g", quantity=1)],
    )
    await run(apply_event, program, card_back)
    assert await balances(run, program) == (0, 0)
    cancel = OrderCancelled(
        event_id="wh-4", member_id="ann", occurred_at=dec + 2 * DAY, order_id="77"
    )
    assert (await run(apply_event, program, cancel)).entries == []
    assert await balances(run, program) == (0, 0)


async def test_orders_grant_the_programs_scratch_cards(run, merchant):
    scratch = (
        PROGRAM
        + """
[[chance.scratch_cards]]
id = "order-card"
name = "Scratch & win"
granted_on = "order.paid"
budget_points = 70
prizes = [{ points = 50, weight = 1 }]
"""
    )
    await run(save_program, merchant, parse_program(scratch), effective_from=T0 - DAY)
    first = await run(apply_event, merchant, order("wh-1", "1", T0, line("a", "x", 1, 1000)))
    second = await run(apply_event, merchant, order("wh-2", "2", T0, line("a", "x", 1, 1000)))
    assert [(c.prize_points, c.paid_points) for c in first.scratch_cards] == [(50, 50)]
    assert [(c.prize_points, c.paid_points) for c in second.scratch_cards] == [(50, 0)]  # budget
    assert await balances(run, merchant) == (50, 20)


async def test_an_order_paid_again_under_another_webhook_id_earns_once(run, program):
    first = await run(apply_event, program, order("wh-1", "77", T0, line("a", "x", 1, 1000)))
    again = await run(apply_event, program, order("wh-2", "77", T0, line("a", "x", 1, 1000)))
    assert (len(first.entries), again.entries, again.already_applied) == (1, [], False)
    assert await balances(run, program) == (0, 10)
