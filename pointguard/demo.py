"""`pointguard demo`: one member's first months in the example program, printed the way the
customer would read them.

It runs on the same database and code paths as the server: the example program from
`docs/examples/program.toml` is saved for the `demo-shop` merchant, storefront events go
through the program service, time moves on through the upkeep, and the checkout redeems a
reward. A fresh member each run; a simulated clock lets weeks pass in a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.ledger import (
    AccountKind,
    PostedEntry,
    member_balances,
    member_history,
    outstanding_liability,
)
from pointguard.ledger.verify import verify_merchant
from pointguard.program.events import (
    ActionPerformed,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
)
from pointguard.program.redemption import MEMBER_TIER, complete_redemption, redeem
from pointguard.program.rewards import Cart
from pointguard.program.service import apply_event
from pointguard.program.standing import member_challenges
from pointguard.program.store import save_program
from pointguard.program.validation import parse_program
from pointguard.upkeep import upkeep_pass

MERCHANT = "demo-shop"
EXAMPLE_PROGRAM = Path(__file__).resolve().parent.parent / "docs" / "examples" / "program.toml"
DAY = timedelta(days=1)


async def run_demo(engine: AsyncEngine, echo: Callable[[str], object]) -> None:
    member = f"ada-{int(time.time() * 1000)}"
    start = datetime.now(UTC)
    program = parse_program(EXAMPLE_PROGRAM.read_text())
    await db.run_in_transaction(engine, save_program, MERCHANT, program, effective_from=start - DAY)

    def order(n: int, day: int, *lines: tuple[str, str, int, int]) -> OrderPaid:
        return OrderPaid(
            event_id=f"{member}-order-{n}",
            member_id=member,
            occurred_at=start + day * DAY,
            order_id=f"{n}",
            currency="EUR",
            lines=[
                OrderLine(
                    line_id=str(i),
                    sku=sku,
                    category=category,
                    quantity=quantity,
                    unit_price_minor=price,
                )
                for i, (sku, category, quantity, price) in enumerate(lines)
            ],
        )

    events = [
        ActionPerformed(
            event_id=f"{member}-signup", member_id=member, occurred_at=start, action="signup"
        ),
        order(1001, 1, ("BOOT-7", "shoes", 1, 12000), ("SOCK-RED", "socks", 2, 1000)),
        order(1002, 9, ("COAT-3", "coats", 1, 30000)),
        order(1003, 15, ("BAG-1", "bags", 1, 5000), ("GIFT-50", "gift_card", 1, 5000)),
        OrderRefunded(
            event_id=f"{member}-refund-1",
            member_id=member,
            occurred_at=start + 20 * DAY,
            order_id="1001",
            lines=[RefundedLine(line_id="1", quantity=1)],
        ),
    ]
    for event in events:
        await db.run_in_transaction(engine, apply_event, MERCHANT, event)
    # every return window has ended (the demo's merchant only: the clock is simulated)
    await upkeep_pass(engine, now=start + 50 * DAY, merchant_id=MERCHANT)
    cart = Cart(subtotal_minor=6000, shipping_minor=495)
    redemption = await db.run_in_transaction(
        engine,
        redeem,
        MERCHANT,
        member,
        "five-off",
        cart,
        key=f"{member}-checkout",
        now=start + 51 * DAY,
    )
    await db.run_in_transaction(engine, complete_redemption, MERCHANT, redemption.redemption_id)

    balances = await db.run_in_transaction(engine, member_balances, MERCHANT, member)
    page = await db.run_in_transaction(engine, member_history, MERCHANT, member, limit=50)
    challenges = await db.run_in_transaction(
        engine, member_challenges, MERCHANT, member, start + 51 * DAY
    )
    liability = await db.run_in_transaction(engine, outstanding_liability, MERCHANT)
    async with db.connection(engine) as pg:
        tier = await pg.fetchval(MEMBER_TIER, MERCHANT, member)
        report = await verify_merchant(pg, MERCHANT)

    echo(f"{program.name} at {MERCHANT}: member {member}, seven simulated weeks\n")
    echo(f"{'entry':>7}  {'kind':<9} {'available':>9} {'pending':>8}  description")
    for entry in reversed(page.entries):
        echo(
            f"{entry.entry_id:>7}  {entry.kind:<9} {_change(entry, AccountKind.AVAILABLE):>9}"
            f" {_change(entry, AccountKind.PENDING):>8}  {entry.description}"
        )
    echo(
        f"\nBalance: {balances.available_points} available, {balances.pending_points} pending,"
        f" {balances.reserved_points} reserved. Tier: {tier}."
    )
    badges = [p.challenge_id for p, done in challenges if done is not None]
    echo(f"Challenges completed: {', '.join(badges) or 'none'}.")
    echo(f"Checkout code {redemption.code}: {redemption.description}.")
    echo(f"Merchant: outstanding liability {liability} points.")
    verdict = "all checks pass" if report.ok else "BROKEN: " + "; ".join(report.problems)
    echo(f"ledger verify: {report.entries_sealed} entries sealed, {verdict}")


def _change(entry: PostedEntry, kind: AccountKind) -> str:
    amount = sum(p.amount_points for p in entry.postings if p.account.kind == kind)
    return f"{amount:+d}" if amount else ""
