"""A member's journey on the example program, end to end through the ledger: they sign up,
earn, reach a tier, complete challenges, redeem at checkout, get a refund, and read it all in
their history in words they understand."""

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pointguard import db
from pointguard.ledger import member_balances, member_history
from pointguard.ledger.verify import verify_merchant
from pointguard.program.apply import apply_event
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import (
    ActionPerformed,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
    order_lines,
)
from pointguard.program.rewards.catalogue import Cart
from pointguard.program.rewards.redemption import checkout_quote, complete_redemption, redeem
from pointguard.upkeep import upkeep_pass

pytestmark = pytest.mark.calendar  # .ci/run runs it again under shifted wall clocks

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "program.toml"
NOV = datetime(2026, 11, 1, 9, tzinfo=UTC)
DAY = timedelta(days=1)


def paid(n, day, *lines):
    return OrderPaid(
        event_id=f"wh-order-{n}",
        member_id="ada",
        occurred_at=NOV + day * DAY,
        order_id=str(n),
        currency="EUR",
        lines=order_lines(*lines),
    )


async def tier_of(engine, merchant):
    async with db.connection(engine) as pg:
        return await pg.fetchval(
            "SELECT tier FROM program_members WHERE merchant_id = $1 AND member_id = 'ada'",
            merchant,
        )


async def test_a_members_journey(engine, run, merchant):
    document = tomllib.loads(EXAMPLE.read_text())
    document["chance"]["scratch_cards"] = []  # their prizes are random: not in this journey
    await run(save_program, merchant, parse_program(document), effective_from=NOV - 30 * DAY)
    await run(
        apply_event,
        merchant,
        ActionPerformed(event_id="wh-signup", member_id="ada", occurred_at=NOV, action="signup"),
    )
    await run(
        apply_event,
        merchant,
        paid(1001, 11, ("BOOT", "shoes", 2, 12000), ("SOCK-RED", "socks", 1, 1000)),
    )
    assert await tier_of(engine, merchant) == "Bronze"
    second = await run(apply_event, merchant, paid(1002, 19, ("COAT", "coats", 1, 30000)))
    assert await tier_of(engine, merchant) == "Silver"  # 550 EUR in 12 months
    assert [e.description for e in second.entries] == [
        "300 points for order #1002",
        "50 bonus points for trying a new category (order #1002)",
        "1000 bonus points: 'Spend 500 EUR in a quarter' completed, badge 'Big spender'",
    ]
    third = await run(apply_event, merchant, paid(1003, 24, ("BAG", "bags", 1, 5000)))
    assert [e.description for e in third.entries] == [
        "62 points for order #1003",  # 50 EUR at Silver's 1.25, rounded down
        "50 bonus points for trying a new category (order #1003)",
        "300 bonus points: 'Three orders in a month' completed, badge 'Regular'",
    ]
    balances = await run(member_balances, merchant, "ada")
    # available: the welcome 100; pending until the return windows end: the three orders
    # (510, 300 + 50 cross-sell, 62 + 50 cross-sell) and the challenges they won (1000, 300)
    assert (balances.available_points, balances.pending_points) == (100, 2272)

    await upkeep_pass(engine, now=NOV + 55 * DAY)  # every return window has ended
    balances = await run(member_balances, merchant, "ada")
    assert (balances.available_points, balances.pending_points) == (2372, 0)

    checkout = NOV + 56 * DAY
    cart = Cart(subtotal_minor=4000, shipping_minor=495)
    quote = {q.reward_id: q for q in await run(checkout_quote, merchant, "ada", cart, checkout)}
    assert quote["five-off"].redeemable and quote["five-off"].discount_minor == 500
    assert not quote["gold-twenty"].redeemable  # Gold and Platinum only
    redemption = await run(
        redeem, merchant, "ada", "five-off", cart, key="checkout-1", now=checkout
    )
    assert redemption.discount_minor == 500 and redemption.code
    await run(complete_redemption, merchant, redemption.redemption_id)

    await run(
        apply_event,
        merchant,
        OrderRefunded(
            event_id="wh-refund-1",
            member_id="ada",
            occurred_at=checkout + DAY,
            order_id="1002",
            lines=[RefundedLine(line_id="0", quantity=1)],
        ),
    )
    balances = await run(member_balances, merchant, "ada")
    # the coats were all of order 1002: its 300 points and its cross-sell bonus go back, and
    # with two orders and 300 EUR kept, so do the bonuses of the challenges it completed
    assert (balances.available_points, balances.pending_points) == (
        2372 - 500 - 350 - 300 - 1000,
        0,
    )

    history = await run(member_history, merchant, "ada", limit=50)
    lines = [(e.kind.value, e.description) for e in history.entries]
    assert lines[:6] == [
        (
            "clawback",
            "300 bonus points back: 'Three orders in a month' is no longer completed"
            " after a return",
        ),
        (
            "clawback",
            "1000 bonus points back: 'Spend 500 EUR in a quarter' is no longer completed"
            " after a return",
        ),
        ("clawback", "50 bonus points back: order #1002 fully returned"),
        ("clawback", "300 points back for the refund on order #1002"),
        ("capture", "Redeemed: 500 points for 5 EUR off"),
        ("reserve", "500 points for 5 EUR off"),
    ]
    assert lines[-1] == ("earn", "Welcome to Acme Rewards")
    assert ("earn", "510 points for order #1001") in lines
    assert ("release", "Now available: 510 points for order #1001") in lines
    # signup, 7 earns and their 7 releases, spend, and the refund's 4 take-backs
    assert len(lines) == 1 + 7 + 7 + 2 + 4
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, merchant)
    assert report.ok, report.problems
