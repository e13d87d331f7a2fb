"""`pointguard demo --story`: one member's first weeks in the example program, printed the way
the customer would read them (the tour, `pointguard demo`, is `tour.py`).

It runs on the same database and code paths as the server: a fresh demo merchant is created
with the example program from `docs/examples/program.toml`, storefront events go through the
program service, time moves on through the upkeep, and the checkout redeems a reward.

The story runs on a simulated calendar that starts at `start` (by default `DEMO_START`, a week
before the example program's Black Friday) and never reads the wall clock, so it is the same
story on any day, and a new merchant each run makes it repeatable on one database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant
from pointguard.plugin.merchants import create_merchant
from pointguard.program.apply import apply_event
from pointguard.program.challenges.completions import member_challenges
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from pointguard.program.events import (
    ActionPerformed,
    Event,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
    order_lines,
)
from pointguard.program.members import member_tier
from pointguard.program.rewards.catalogue import Cart
from pointguard.program.rewards.redemption import complete_redemption, redeem
from pointguard.upkeep import upkeep_pass

MERCHANT_NAME = "Demo shop"
MEMBER = "ada"
EXAMPLE_PROGRAM = Path(__file__).resolve().parent.parent / "docs" / "examples" / "program.toml"
DAY = timedelta(days=1)
# The example program's dates are written for late 2026: from here the story meets its Black
# Friday promotion (order #1002) and leaves the winter one for another day.
DEMO_START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
RELEASE_DAY = 50  # every order's return window (30 days) has ended by then
CHECKOUT_DAY = 51


@dataclass(frozen=True)
class Step:
    """One thing that happens on the simulated calendar, in the customer's words."""

    day: int
    says: str
    event: Event | None = None


async def run_demo(
    engine: AsyncEngine,
    echo: Callable[[str], object],
    *,
    secret_key: bytes,
    start: datetime = DEMO_START,
) -> str:
    """Tell the story on the calendar that starts at `start`; return the demo merchant's id."""
    program = parse_program(EXAMPLE_PROGRAM.read_text())
    merchant = await db.run_in_transaction(engine, create_merchant, secret_key, MERCHANT_NAME)
    merchant_id = merchant.merchant_id
    await db.run_in_transaction(
        engine, save_program, merchant_id, program, effective_from=start - DAY
    )

    def at(day: int) -> datetime:
        return start + day * DAY

    steps = _story(at)
    for step in steps:
        if step.event is not None:
            await db.run_in_transaction(engine, apply_event, merchant_id, step.event)
    await upkeep_pass(engine, now=at(RELEASE_DAY), merchant_id=merchant_id)
    cart = Cart(subtotal_minor=6000, shipping_minor=495)
    redemption = await db.run_in_transaction(
        engine,
        redeem,
        merchant_id,
        MEMBER,
        "five-off",
        cart,
        key=f"{MEMBER}-checkout",
        now=at(CHECKOUT_DAY),
    )
    await db.run_in_transaction(engine, complete_redemption, merchant_id, redemption.redemption_id)

    balances = await db.run_in_transaction(engine, member_balances, merchant_id, MEMBER)
    page = await db.run_in_transaction(engine, member_history, merchant_id, MEMBER, limit=50)
    challenges = await db.run_in_transaction(
        engine, member_challenges, merchant_id, MEMBER, at(CHECKOUT_DAY)
    )
    liability = await db.run_in_transaction(engine, outstanding_liability, merchant_id)
    await db.run_in_transaction(engine, seal, merchant_id)  # the checkout's entries too
    async with db.connection(engine) as pg:
        tier = await member_tier(pg, merchant_id, MEMBER)
        report = await verify_merchant(pg, merchant_id)

    echo(f"{program.name} at {MERCHANT_NAME} (merchant {merchant_id}), member {MEMBER}")
    echo(
        f"Simulated calendar: {_date(at(0))} to {_date(at(CHECKOUT_DAY))}"
        " (the wall clock is not read; --start moves it)\n"
    )
    timeline = [
        *steps,
        Step(RELEASE_DAY, "return windows over: the upkeep releases pending points"),
        Step(CHECKOUT_DAY, "checkout redeems the 'five-off' reward"),
    ]
    for step in timeline:
        echo(f"  {_date(at(step.day))}  {step.says}")
    entries = list(reversed(page.entries))
    echo(f"\nLedger: {len(entries)} entries for {MEMBER}, oldest first")
    echo(f"{'entry':>7}  {'kind':<9} {'available':>9} {'pending':>8} {'reserved':>8}  description")
    for entry in entries:
        echo(
            f"{entry.entry_id:>7}  {entry.kind:<9} {_change(entry, AccountKind.AVAILABLE):>9}"
            f" {_change(entry, AccountKind.PENDING):>8} {_change(entry, AccountKind.RESERVED):>8}"
            f"  {entry.description}"
        )
    echo(
        f"\nBalance: {balances.available_points} available, {balances.pending_points} pending,"
        f" {balances.reserved_points} reserved. Tier: {tier}."
    )
    badges = [c.challenge.id for c in challenges if c.completed_at is not None]
    echo(f"Challenges completed: {', '.join(badges) or 'none'}.")
    echo(f"Checkout code {redemption.code}: {redemption.description}.")
    echo(f"Merchant: outstanding liability {liability} points.")
    verdict = "all checks pass" if report.ok else "BROKEN: " + "; ".join(report.problems)
    echo(f"ledger verify: {report.entries_sealed} entries sealed, {verdict}")
    return merchant_id


def _story(at: Callable[[int], datetime]) -> list[Step]:
    """The storefront's side of the story: what the member does, and when."""

    def order(n: int, day: int, *lines: tuple[str, str, int, int]) -> OrderPaid:
        return OrderPaid(
            event_id=f"order-{n}",
            member_id=MEMBER,
            occurred_at=at(day),
            order_id=f"{n}",
            currency="EUR",
            lines=order_lines(*lines),
        )

    return [
        Step(
            0,
            "signs up",
            ActionPerformed(
                event_id="signup", member_id=MEMBER, occurred_at=at(0), action="signup"
            ),
        ),
        Step(
            1,
            "order #1001: boots (120 EUR) and two pairs of red socks (10 EUR each)",
            order(1001, 1, ("BOOT-7", "shoes", 1, 12000), ("SOCK-RED", "socks", 2, 1000)),
        ),
        Step(9, "order #1002: a coat (300 EUR)", order(1002, 9, ("COAT-3", "coats", 1, 30000))),
        Step(
            15,
            "order #1003: a bag (50 EUR) and a 50 EUR gift card",
            order(1003, 15, ("BAG-1", "bags", 1, 5000), ("GIFT-50", "gift_card", 1, 5000)),
        ),
        Step(
            20,
            "returns one pair of socks from order #1001",
            OrderRefunded(
                event_id="refund-1",
                member_id=MEMBER,
                occurred_at=at(20),
                order_id="1001",
                lines=[RefundedLine(line_id="1", quantity=1)],
            ),
        ),
    ]


def _date(moment: datetime) -> str:
    return moment.date().isoformat()


def _change(entry: PostedEntry, kind: AccountKind) -> str:
    amount = entry.member_delta(kind)
    return f"{amount:+d}" if amount else ""
