"""Checks for the program's tests on the database: a member's available points, the outbox's
events of a type, and the ledger still intact at the end of a test; each for the test's
`merchant`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pointguard import db
from pointguard.ledger import member_balances
from pointguard.ledger.seal import seal
from pointguard.ledger.verify import verify_merchant


@pytest.fixture
def available(run, merchant) -> Callable[[str], Awaitable[int]]:
    """`await available(member)`: the member's available points."""

    async def points(member: str) -> int:
        return (await run(member_balances, merchant, member)).available_points

    return points


@pytest.fixture
def outbox(engine, merchant) -> Callable[[str], Awaitable[list[Any]]]:
    """`await outbox(event_type)`: the payloads of the merchant's outbox events of that type."""

    async def payloads(event_type: str) -> list[Any]:
        async with db.connection(engine) as pg:
            rows = await pg.fetch(
                "SELECT payload::text AS p FROM outbox WHERE merchant_id = $1"
                " AND event_type = $2 ORDER BY 1",
                merchant,
                event_type,
            )
        return [json.loads(r["p"]) for r in rows]

    return payloads


@pytest.fixture
def assert_ledger_intact(engine, run, merchant) -> Callable[[], Awaitable[None]]:
    """`await assert_ledger_intact()`: seal the merchant's new entries, then verify it all."""

    async def check() -> None:
        assert await run(seal, merchant) > 0
        async with db.connection(engine) as pg:
            report = await verify_merchant(pg, merchant)
        assert report.ok, report.problems

    return check
