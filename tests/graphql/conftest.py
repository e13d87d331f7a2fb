"""A shop for the GraphQL tests: a merchant with a rewards catalogue, its storefront key, and a
member who holds points (some released, some pending); the app on a fixed clock."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pointguard.graphql.customer_tokens import customer_token_secret, mint_customer_token
from pointguard.ledger import operations as ops
from pointguard.plugin.merchants import NewMerchant, create_merchant
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import save_program
from tests.plugin.conftest import SECRET_KEY

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
PROGRAM = """
name = "Checkout"
currency = "EUR"
earning = { points_per_major_unit = "2" }
tiers.levels = [{ name = "Silver", threshold = 0, perks = ["birthday gift"] },
                { name = "Gold", threshold = 50000, multiplier = "1.5" }]

[[rewards]]
type = "fixed_discount"
id = "five-off"
name = "5 EUR off"
cost_points = 500
amount_minor = 500

[[rewards]]
type = "percent_off"
id = "gold-pct"
name = "Gold 20% off"
cost_points = 100
percent = 20
max_discount_minor = 1500
tiers = ["Gold"]
"""
CART = {"subtotalMinor": 10_000, "shippingMinor": 495, "skus": ["SHOE-1"]}
OPERATOR_KEY = "operator-" + "k" * 32


@dataclass(frozen=True)
class Shop:
    merchant: NewMerchant
    client: httpx.AsyncClient

    @property
    def merchant_id(self) -> str:
        return self.merchant.merchant_id

    @property
    def storefront(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.merchant.api_key}"}

    def customer(self, member_id: str, **changes: Any) -> dict[str, str]:
        secret = customer_token_secret(self.merchant.webhook_secret)
        token = mint_customer_token(
            secret, self.merchant_id, member_id, now=changes.get("now", NOW)
        )
        return {"authorization": f"Bearer {token}"}

    async def query(self, text: str, headers: dict[str, str], **variables: Any) -> dict[str, Any]:
        """The JSON of a 200 answer (data and/or errors)."""
        response = await self.client.post(
            "/graphql", json={"query": text, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


async def new_shop(run: Callable[..., Any], name: str) -> NewMerchant:
    """A merchant with PROGRAM in force since 2020, and member ann holding 1,000 points
    available and 300 pending."""
    made: NewMerchant = await run(create_merchant, base64.b64decode(SECRET_KEY), name)
    await run(
        save_program,
        made.merchant_id,
        parse_program(PROGRAM),
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
    )
    for points, release_at in ((1000, None), (300, NOW + timedelta(days=30))):
        await run(
            ops.earn,
            made.merchant_id,
            "ann",
            points,
            key=f"welcome:{points}",
            description=f"{points} points welcome gift",
            source="test",
            release_at=release_at,
        )
    return made


@pytest.fixture
async def shop(open_app, run) -> AsyncIterator[Shop]:
    merchant = await new_shop(run, "GraphQL Shop")
    settings = {"POINTGUARD_SECRET_KEY": SECRET_KEY, "POINTGUARD_OPERATOR_KEY": OPERATOR_KEY}
    async with open_app(clock=lambda: NOW, **settings) as (_, client):
        yield Shop(merchant, client)


@pytest.fixture
def count_statements(monkeypatch) -> Callable[[], Any]:
    """`async with count_statements() as counted:` counts the SQL statements the app runs
    inside (`counted.total` after the block): every connection it checks out is watched."""
    import asyncio
    import contextlib

    from pointguard import db

    checkout = db.connection

    class Counter:
        total = 0

    counter = Counter()

    @contextlib.asynccontextmanager
    async def watched(engine):  # type: ignore[no-untyped-def]
        async with checkout(engine) as pg:

            def logged(_record: object) -> None:
                counter.total += 1

            pg.add_query_logger(logged)
            try:
                yield pg
            finally:
                pg.remove_query_logger(logged)

    @contextlib.asynccontextmanager
    async def counting():  # type: ignore[no-untyped-def]
        counter.total = 0
        monkeypatch.setattr(db, "connection", watched)
        try:
            yield counter
        finally:
            await asyncio.sleep(0.01)  # the loggers are called soon after each statement
            monkeypatch.setattr(db, "connection", checkout)

    return counting
