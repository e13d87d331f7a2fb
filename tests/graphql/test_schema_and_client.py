"""The schema as published, and the checkout driven by a GraphQL client nobody here wrote
(`gql`, over HTTP against the app served by uvicorn)."""

from __future__ import annotations

from pathlib import Path

from gql import Client, gql
from gql.transport.httpx import HTTPXAsyncTransport

from pointguard.graphql.schema import build_schema
from pointguard.ledger import member_balances
from tests.graphql.conftest import CART, NOW, new_shop
from tests.graphql.test_checkout_api import CAPTURE, QUOTE, RESERVE, VOID
from tests.plugin.test_ingest import serving_app

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "schema.graphql"


def test_docs_schema_is_the_schema_the_code_serves():
    printed = build_schema(production=False).as_str() + "\n"
    assert SCHEMA_FILE.read_text() == printed, (
        "docs/schema.graphql is out of date: pointguard graphql schema > docs/schema.graphql"
    )


async def test_a_third_party_client_runs_the_checkout_over_http(database_url, run):
    merchant = await new_shop(run, "Client Shop")
    async with serving_app(database_url, clock=lambda: NOW) as base:
        transport = HTTPXAsyncTransport(
            url=f"{base}/graphql", headers={"authorization": f"Bearer {merchant.api_key}"}
        )
        async with Client(transport=transport, fetch_schema_from_transport=True) as session:
            quoted = await execute(session, QUOTE, member="ann", cart=CART)
            assert any(o["rewardId"] == "five-off" for o in quoted["quoteRedemption"])

            def reserve(key):
                return execute(
                    session, RESERVE, member="ann", reward="five-off", cart=CART, key=key
                )

            first = (await reserve("order-1"))["reserveRedemption"]
            assert (await reserve("order-1"))["reserveRedemption"] == first  # a retry
            captured = await execute(session, CAPTURE, id=first["id"])
            assert captured["captureRedemption"]["status"] == "captured"

            second = (await reserve("order-2"))["reserveRedemption"]
            voided = await execute(session, VOID, id=second["id"])
            assert voided["voidRedemption"]["status"] == "voided"
    balances = await run(member_balances, merchant.merchant_id, "ann")
    assert (balances.available_points, balances.reserved_points) == (500, 0)


async def execute(session, text, **variables):
    request = gql(text)
    request.variable_values = variables
    return await session.execute(request)
