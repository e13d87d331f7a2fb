"""Shopify- and WooCommerce-style senders: their signatures, their payloads mapped to our
canonical events, their dedupe ids, and the same inbox and workers."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json

import pytest

from pointguard import db
from pointguard.errors import InvalidPayload
from pointguard.ledger import member_balances
from pointguard.plugin.adapters.fields import minor_units
from pointguard.plugin.adapters.shopify import shopify_to_canonical
from pointguard.plugin.adapters.woocommerce import woocommerce_to_canonical
from pointguard.plugin.merchants import sender_secret, set_adapter_secret
from pointguard.plugin.worker import process_merchant

SHOPIFY_PAID = {
    "id": 820982911946154508,
    "name": "#1001",
    "currency": "EUR",
    "financial_status": "paid",
    "processed_at": "2026-11-20T10:00:00+00:00",
    "total_tax": "3.80",
    "customer": {"id": 115310627314723954},
    "line_items": [
        {
            "id": 1,
            "sku": "BOOT-7",
            "product_type": "shoes",
            "quantity": 2,
            "price": "49.95",
            "total_discount": "5.00",
        },
        {
            "id": 2,
            "sku": "SOCK",
            "product_type": "socks",
            "quantity": 1,
            "price": "9.99",
            "total_discount": "0.00",
        },
    ],
    "shipping_lines": [{"price": "4.95"}],
    "note_attributes": [{"name": "referral_code", "value": "abc123"}],
}

WOO_PAID = {
    "id": 727,
    "status": "processing",
    "currency": "EUR",
    "customer_id": 26,
    "date_paid_gmt": "2026-11-20T10:00:00",
    "shipping_total": "4.95",
    "total_tax": "3.80",
    "line_items": [
        {"id": 315, "sku": "BOOT-7", "quantity": 2, "subtotal": "99.90", "total": "94.90"}
    ],
}


def test_the_published_shopify_vector_is_our_hmac():
    digest = hmac.new(b"test_secret_key", b'{"foo": "bar"}', hashlib.sha256).digest()
    assert base64.b64encode(digest).decode() == "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("19.99", "EUR", 1999), ("5", "EUR", 500), ("1200", "JPY", 1200), (None, "EUR", 0)],
)
def test_amounts_become_minor_units(amount, currency, minor):
    assert minor_units(amount, currency, "$.x") == minor


@pytest.mark.parametrize("amount", ["1.999", "-1.00", "abc"])
def test_amounts_that_are_not_whole_minor_units_are_refused(amount):
    with pytest.raises(InvalidPayload, match=r"\$\.x"):
        minor_units(amount, "EUR", "$.x")


def shopify(topic, payload, customer="unknown-member"):
    return shopify_to_canonical(topic, payload, body_digest="digest", customer_of_order=customer)


def test_shopify_orders_map_to_canonical_events():
    webhook_id, event = shopify("orders/paid", SHOPIFY_PAID)
    assert webhook_id == "shopify:order.paid:820982911946154508"
    assert event["type"] == "order.paid"
    data = event["data"]
    assert (data["order_id"], data["customer_id"], data["shipping_minor"], data["tax_minor"]) == (
        "820982911946154508",
        "115310627314723954",
        495,
        380,
    )
    assert [
        (x["line_id"], x["category"], x["quantity"], x["unit_price_minor"], x["discount_minor"])
        for x in data["lines"]
    ] == [
        ("1", "shoes", 2, 4995, 500),
        ("2", "socks", 1, 999, 0),
    ]
    assert data["referral_code"] == "abc123"
    refund_id, refund = shopify(
        "refunds/create",
        {
            "id": 509562969,
            "order_id": 820982911946154508,
            "refund_line_items": [{"line_item_id": 2, "quantity": 1}],
        },
        "115310627314723954",
    )
    assert refund_id == "shopify:order.refunded:509562969"
    assert refund["data"]["lines"] == [{"line_id": "2", "quantity": 1}]
    assert shopify("customers/update", {"id": 7, "email": None})[0] == (
        "shopify:customer.updated:7:digest"
    )
    assert shopify("products/update", {}) == ("shopify:ignored:digest", None)


def test_woocommerce_statuses_map_to_canonical_events():
    webhook_id, paid = woocommerce_to_canonical("order.updated", WOO_PAID, body_digest="d")
    assert webhook_id == "woocommerce:order.paid:727"
    assert paid["type"] == "order.paid"
    assert paid["timestamp"] == "2026-11-20T10:00:00+00:00"  # `_gmt`: UTC without saying so
    assert paid["data"]["lines"][0]["unit_price_minor"] == 4995
    assert paid["data"]["lines"][0]["discount_minor"] == 500
    cancelled = {**WOO_PAID, "status": "cancelled"}
    assert woocommerce_to_canonical("order.updated", cancelled, body_digest="d")[1]["type"] == (
        "order.cancelled"
    )
    on_hold = {**WOO_PAID, "status": "on-hold"}
    assert woocommerce_to_canonical("order.updated", on_hold, body_digest="d") == (
        "woocommerce:ignored:d",
        None,
    )
    assert woocommerce_to_canonical("product.updated", WOO_PAID, body_digest="d") == (
        "woocommerce:ignored:d",
        None,
    )


def hmac_header(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signing_secret(merchant, sender: str) -> str:
    """What `sender` signs with for a merchant whose shop chose no secret: its derived key."""
    return sender_secret(merchant.webhook_secret, sender)


async def test_shopify_webhooks_are_verified_deduped_and_applied(shop, engine, run):
    client, merchant = shop
    body = json.dumps(SHOPIFY_PAID).encode()
    headers = {
        "x-shopify-topic": "orders/paid",
        "x-shopify-webhook-id": "b54557e4",
        "x-shopify-hmac-sha256": hmac_header(signing_secret(merchant, "shopify"), body),
    }
    url = f"/webhooks/{merchant.merchant_id}/shopify"
    first = await client.post(url, content=body, headers=headers)
    retry = await client.post(url, content=body, headers=headers)
    assert (first.status_code, first.json()["status"]) == (202, "pending")
    assert retry.json()["replayed"] is True
    assert (await process_merchant(engine, merchant.merchant_id)).applied == 1
    balances = await run(member_balances, merchant.merchant_id, "115310627314723954")
    assert balances.pending_points == 94 + 9  # (2 x 49.95 - 5.00) and 9.99, rounded down

    forged = {**headers, "x-shopify-hmac-sha256": hmac_header("not-the-secret", body)}
    refused = await client.post(url, content=body, headers=forged)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "bad_signature")


async def test_woocommerce_webhooks_dedupe_on_order_and_status(shop, engine, run):
    client, merchant = shop
    url = f"/webhooks/{merchant.merchant_id}/woocommerce"
    for status in ("processing", "completed"):  # both mean paid: the second is a new id...
        body = json.dumps({**WOO_PAID, "status": status}).encode()
        headers = {
            "x-wc-webhook-topic": "order.updated",
            "x-wc-webhook-signature": hmac_header(signing_secret(merchant, "woocommerce"), body),
        }
        response = await client.post(url, content=body, headers=headers)
        assert response.status_code == 202, response.text
    await process_merchant(engine, merchant.merchant_id)
    balances = await run(member_balances, merchant.merchant_id, "26")
    assert balances.pending_points == 94  # ... but the program applies order 727 once


@pytest.mark.parametrize(
    ("sender", "header"),
    [("shopify", "x-shopify-hmac-sha256"), ("woocommerce", "x-wc-webhook-signature")],
)
async def test_a_secret_chosen_in_the_shop_replaces_the_inbound_secret(
    shop, engine, run, secret_key, sender, header
):
    client, merchant = shop
    chosen = "shpss_chosen-by-the-owner" if sender == "shopify" else "wc secret, chosen"
    await run(set_adapter_secret, secret_key, merchant.merchant_id, sender, chosen)
    url = f"/webhooks/{merchant.merchant_id}/{sender}"
    body = json.dumps({"id": 1, "status": "on-hold", "customer_id": 26, "line_items": []})
    body = body.encode()
    topic = {"x-shopify-topic": "products/update", "x-wc-webhook-topic": "order.updated"}

    derived = hmac_header(signing_secret(merchant, sender), body)
    old = await client.post(url, content=body, headers={**topic, header: derived})
    assert (old.status_code, old.json()["error"]["code"]) == (401, "bad_signature")
    assert await inbox_rows(engine, merchant.merchant_id) == 0
    new = await client.post(url, content=body, headers={**topic, header: hmac_header(chosen, body)})
    assert (new.status_code, new.json()["status"]) == (202, "ignored"), new.text

    other = "woocommerce" if sender == "shopify" else "shopify"  # still its derived key
    other_header = {"shopify": "x-shopify-hmac-sha256", "woocommerce": "x-wc-webhook-signature"}
    response = await client.post(
        f"/webhooks/{merchant.merchant_id}/{other}",
        content=body,
        headers={**topic, other_header[other]: hmac_header(signing_secret(merchant, other), body)},
    )
    assert response.status_code == 202, response.text


async def inbox_rows(engine, merchant_id):
    async with db.connection(engine) as pg:
        return await pg.fetchval("SELECT count(*) FROM inbox WHERE merchant_id = $1", merchant_id)


def changed(payload, path, value):
    """A deep copy of `payload` with the field at `path` (keys and indexes) set to `value`, or
    dropped if `value` is DROP."""
    payload = copy.deepcopy(payload)
    *parents, last = path
    parent = payload
    for step in parents:
        parent = parent[step]
    if value is DROP:
        del parent[last]
    else:
        parent[last] = value
    return payload


DROP = object()
MALFORMED = [
    # the cases of issue 8 that were a 500
    ("shopify", ("line_items", 0, "quantity"), "x", "$.line_items[0].quantity"),
    ("shopify", ("line_items", 0, "quantity"), {}, "$.line_items[0].quantity"),
    ("shopify", ("line_items", 0), -1, "$.line_items[0]"),
    ("shopify", ("shipping_lines", 0), 1.5, "$.shipping_lines[0]"),
    # types swapped, fields dropped, extremes
    ("shopify", ("line_items",), {"id": 1}, "$.line_items"),
    ("shopify", ("line_items", 0, "id"), DROP, "$.line_items[0].id"),
    ("shopify", ("line_items", 0, "sku"), ["BOOT-7"], "$.line_items[0].sku"),
    ("shopify", ("line_items", 0, "quantity"), 10**9, "$.line_items[0].quantity"),
    ("shopify", ("line_items", 0, "price"), "1e28", "$.line_items[0].price"),
    ("shopify", ("line_items", 0, "price"), "NaN", "$.line_items[0].price"),
    ("shopify", ("line_items", 0, "price"), True, "$.line_items[0].price"),
    ("shopify", ("customer",), "ann", "$.customer"),
    ("shopify", ("customer", "id"), 1.5, "$.customer.id"),
    ("shopify", ("currency",), "EURO", "$.currency"),
    ("shopify", ("processed_at",), "yesterday", "$.processed_at"),
    ("shopify", ("processed_at",), "2999-01-01T00:00:00+00:00", "$.processed_at"),
    ("shopify", ("note_attributes", 0, "value"), "x" * 201, "$.note_attributes[0].value"),
    ("shopify", ("browser_ip",), {"v4": "203.0.113.7"}, "$.browser_ip"),
    ("shopify", ("id",), "a\x00b", "$.id"),
    ("shopify", ("financial_status",), ["paid"], "$.financial_status"),  # found by the fuzz test
    ("woocommerce", ("line_items", 0, "quantity"), "2", "$.line_items[0].quantity"),
    ("woocommerce", ("line_items", 0, "quantity"), 0, "$.line_items[0].quantity"),
    ("woocommerce", ("line_items", 0, "subtotal"), [], "$.line_items[0].subtotal"),
    ("woocommerce", ("line_items", 0), None, "$.line_items[0]"),
    ("woocommerce", ("status",), {"paid": True}, "$.status"),
    ("woocommerce", ("customer_id",), DROP, "$.customer_id"),
    ("woocommerce", ("id",), 2**64, "$.id"),
    ("woocommerce", ("shipping_total",), "-4.95", "$.shipping_total"),
    ("woocommerce", ("date_paid_gmt",), 20261120, "$.date_paid_gmt"),
]
PAID = {"shopify": ("orders/paid", SHOPIFY_PAID), "woocommerce": ("order.updated", WOO_PAID)}
HEADERS = {
    "shopify": ("x-shopify-topic", "x-shopify-hmac-sha256"),
    "woocommerce": ("x-wc-webhook-topic", "x-wc-webhook-signature"),
}


async def post_signed(client, merchant, sender, topic, payload):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    topic_header, signature_header = HEADERS[sender]
    secret = signing_secret(merchant, sender)
    headers = {topic_header: topic, signature_header: hmac_header(secret, body)}
    return await client.post(
        f"/webhooks/{merchant.merchant_id}/{sender}", content=body, headers=headers
    )


@pytest.mark.parametrize(("sender", "path", "value", "field"), MALFORMED)
async def test_a_malformed_field_is_a_422_naming_it_and_changes_nothing(
    shop, engine, run, sender, path, value, field
):
    client, merchant = shop
    topic, payload = PAID[sender]
    member = str(payload["customer"]["id"] if sender == "shopify" else payload["customer_id"])
    before = await run(member_balances, merchant.merchant_id, member)
    response = await post_signed(client, merchant, sender, topic, changed(payload, path, value))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_payload", field)
    assert await inbox_rows(engine, merchant.merchant_id) == 0
    await process_merchant(engine, merchant.merchant_id)
    assert await run(member_balances, merchant.merchant_id, member) == before


@pytest.mark.parametrize("sender", ["shopify", "woocommerce"])
async def test_long_topics_and_ids_are_refused_before_they_key_the_inbox(shop, engine, sender):
    client, merchant = shop
    response = await post_signed(client, merchant, sender, "x" * 201, {"id": 1})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == HEADERS[sender][0]
    assert await inbox_rows(engine, merchant.merchant_id) == 0
