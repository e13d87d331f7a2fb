"""Input the database cannot store is refused at the door (issue 9, item 7).

PostgreSQL's `text` cannot hold NUL, and its `jsonb` neither NUL (`\\u0000`) nor a lone
surrogate (`\\ud800`). Such input once reached the database, whose error was answered
"503 database unavailable" on every retry, so the storefront retried until it disabled the
subscription. Now each is a 404 or a 422 that names what was refused, and changes nothing;
503 is kept for real outages (`tests/plugin/test_ingest.py`, a database that cannot be
reached), and a database error that is not an outage is our bug: a 500, logged.
"""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest
from starlette.requests import Request

from pointguard import db
from pointguard.http_errors import database_unavailable
from pointguard.plugin.merchants import set_jwks_url
from tests.plugin.test_adapters import hmac_header, signing_secret
from tests.plugin.test_ingest import paid, signed
from tests.plugin.test_webhook_fuzz import snapshot

ROUTES = ["standard", "shopify", "woocommerce", "saleor"]
TOPIC = {"shopify": "customers/create", "woocommerce": "customer.created"}


@pytest.fixture
async def four_routes(shop, storefront, run, secret_key):
    """`(client, merchant, storefront)`: a merchant taking all four kinds of webhook."""
    client, merchant = shop
    await run(set_jwks_url, secret_key, merchant.merchant_id, storefront.url)
    return client, merchant, storefront


def request_for(route, merchant, storefront, body, **headers):
    """(path, headers) of `body` correctly signed for `route`, with `headers` added."""
    base = f"/webhooks/{merchant.merchant_id}"
    if route == "standard":
        webhook_id = headers.pop("webhook-id", f"msg_{uuid.uuid4().hex}")
        return base, signed(merchant.webhook_secret, body, webhook_id=webhook_id)[1] | headers
    if route == "saleor":
        signature = storefront.sign(body, "k1")
        return f"{base}/saleor", {"saleor-event": "customer_created", "saleor-signature": signature}
    signature_header = {"shopify": "x-shopify-hmac-sha256", "woocommerce": "x-wc-webhook-signature"}
    topic_header = {"shopify": "x-shopify-topic", "woocommerce": "x-wc-webhook-topic"}
    signature = hmac_header(signing_secret(merchant, route), body)
    sent = {topic_header[route]: TOPIC[route], signature_header[route]: signature} | headers
    return f"{base}/{route}", sent


def customer_body(route: str, customer_id: str) -> bytes:
    """A valid customer-created body for `route`, with `customer_id` spelled as JSON text (so
    that it can hold escapes no Python string encodes to)."""
    placeholder = "CUSTOMER-ID"
    documents = {
        "standard": {**paid("1"), "type": "customer.created", "data": {"customer_id": placeholder}},
        "saleor": {"__typename": "CustomerCreated", "user": {"id": placeholder, "metadata": []}},
    }
    document = documents.get(route, {"id": placeholder, "email": None})
    return json.dumps(document).replace(f'"{placeholder}"', customer_id).encode()


async def refused(client, engine, merchant, path, body, headers, status, code):
    """POST, and check the refusal and that neither the inbox nor the ledger changed."""
    before = await snapshot(engine, merchant.merchant_id)
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await snapshot(engine, merchant.merchant_id) == before
    return response.json()["error"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("merchant_id", ["%00", "a%00b", "%00%00", "shop%00"])
async def test_a_nul_in_the_merchant_id_is_an_unknown_merchant(
    four_routes, engine, route, merchant_id
):
    client, merchant, _ = four_routes
    suffix = "" if route == "standard" else f"/{route}"
    path = f"/webhooks/{merchant_id}{suffix}"
    await refused(client, engine, merchant, path, b"{}", {}, 404, "unknown_merchant")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("spelled", "code"),
    [
        ('"a\\u0000b"', "invalid_payload"),  # NUL: text cannot hold it
        ('"\\u0000"', "invalid_payload"),
        ('"\\ud800"', "malformed_json"),  # a lone surrogate: jsonb refuses it
        ('"x\\udc00"', "malformed_json"),
    ],
)
async def test_a_signed_body_the_database_cannot_store_is_a_422(
    four_routes, engine, route, spelled, code
):
    client, merchant, storefront = four_routes
    body = customer_body(route, spelled)
    path, headers = request_for(route, merchant, storefront, body)
    await refused(client, engine, merchant, path, body, headers, 422, code)


@pytest.mark.parametrize(
    ("route", "header"),
    [
        ("standard", "webhook-id"),
        ("shopify", "x-shopify-topic"),
        ("woocommerce", "x-wc-webhook-topic"),
    ],
)
@pytest.mark.parametrize("value", ["a\x00b", "\x00"])
async def test_a_nul_in_a_header_that_becomes_an_inbox_field_is_a_422(
    four_routes, engine, route, header, value
):
    client, merchant, storefront = four_routes
    body = customer_body(route, '"cust-nul"')
    # A topic we do not use: its name becomes the stored event type.
    sent = value if header == "webhook-id" else f"products/{value}"
    path, headers = request_for(route, merchant, storefront, body, **{header: sent})
    error = await refused(client, engine, merchant, path, body, headers, 422, "invalid_payload")
    assert error["field"] == header


async def test_a_database_error_that_is_not_an_outage_is_a_500_not_a_503(engine):
    async with db.connection(engine) as pg:
        with pytest.raises(asyncpg.PostgresError) as raised:
            await pg.fetchval("SELECT $1::text", "a\x00b")
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []})
    response = await database_unavailable(request, raised.value)
    assert response.status_code == 500
    assert json.loads(response.body)["error"]["code"] == "internal_error"
    assert "retry-after" not in response.headers
