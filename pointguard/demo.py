"""`pointguard demo`: one member's year in the ledger, printed the way a customer reads it.

It runs on the same database and code paths as the server, for a fresh demo member each time,
with a simulated clock so that a year passes in a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.ledger import (
    AccountKind,
    PostedEntry,
    member_balances,
    member_history,
    outstanding_liability,
    system_balances,
)
from pointguard.ledger import operations as ops
from pointguard.ledger.maintenance import maintain_merchant
from pointguard.ledger.verify import verify_merchant

MERCHANT = "demo-shop"
DAY = timedelta(days=1)


async def run_demo(engine: AsyncEngine, echo: Callable[[str], object]) -> None:
    member = f"ada-{int(time.time() * 1000)}"
    start = datetime.now(UTC)

    async def earn(points: int, key: str, description: str, **when: datetime) -> PostedEntry:
        return await db.run_in_transaction(
            engine,
            ops.earn,
            MERCHANT,
            member,
            points,
            key=f"{member}:{key}",
            description=description,
            source=f"demo.{key}",
            **when,
        )

    await earn(50, "signup", "50 points welcome bonus", expires_at=start + 365 * DAY)
    await earn(
        120,
        "order-1001",
        "120 points for order #1001",
        release_at=start + 30 * DAY,
        expires_at=start + 730 * DAY,
    )
    refunded = await earn(
        80,
        "order-1002",
        "80 points for order #1002",
        release_at=start + 30 * DAY,
        expires_at=start + 730 * DAY,
    )
    await db.run_in_transaction(
        engine,
        ops.take_back,
        MERCHANT,
        refunded.entry_id,
        80,
        key=f"{member}:refund-1002",
        description="Order #1002 refunded: 80 points taken back",
        source="demo.refund",
    )
    await maintain_merchant(engine, MERCHANT, start + 31 * DAY)  # the return window has passed
    hold = await db.run_in_transaction(
        engine,
        ops.reserve,
        MERCHANT,
        member,
        100,
        key=f"{member}:checkout-1003",
        description="100 points held at checkout #1003",
        source="demo.checkout",
        now=start + 40 * DAY,
        timeout_s=900,
    )
    await db.run_in_transaction(
        engine, ops.capture, MERCHANT, hold.entry_id, description="100 points redeemed on #1003"
    )
    await earn(25, "review", "25 points for your review", expires_at=start + 130 * DAY)
    await maintain_merchant(engine, MERCHANT, start + 366 * DAY)  # a year later: expiry

    balances = await db.run_in_transaction(engine, member_balances, MERCHANT, member)
    page = await db.run_in_transaction(engine, member_history, MERCHANT, member, limit=20)
    liability = await db.run_in_transaction(engine, outstanding_liability, MERCHANT)
    system = await db.run_in_transaction(engine, system_balances, MERCHANT)
    async with db.connection(engine) as pg:
        report = await verify_merchant(pg, MERCHANT)

    echo(f"Merchant {MERCHANT}, member {member}: one simulated year\n")
    echo(f"{'entry':>7}  {'kind':<9} {'available':>9} {'pending':>8}  description")
    for entry in page.entries:
        echo(
            f"{entry.entry_id:>7}  {entry.kind:<9} {_change(entry, AccountKind.AVAILABLE):>9}"
            f" {_change(entry, AccountKind.PENDING):>8}  {entry.description}"
        )
    echo(
        f"\nBalance: {balances.available_points} available, {balances.pending_points} pending,"
        f" {balances.reserved_points} reserved"
    )
    echo(
        f"Merchant: outstanding liability {liability} points; "
        + ", ".join(f"{kind} {points}" for kind, points in system.items())
    )
    verdict = "all checks pass" if report.ok else "BROKEN: " + "; ".join(report.problems)
    echo(f"ledger verify: {report.entries_sealed} entries sealed, {verdict}")


def _change(entry: PostedEntry, kind: AccountKind) -> str:
    amount = sum(p.amount_points for p in entry.postings if p.account.kind == kind)
    return f"{amount:+d}" if amount else ""
