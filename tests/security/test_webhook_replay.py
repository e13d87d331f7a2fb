"""Shopify- and WooCommerce-style bodies cannot be replayed or re-typed (issue 9, item 1).

These senders sign the body alone: the delivery id (`X-Shopify-Webhook-Id`) and the topic
(`X-Shopify-Topic`, `X-WC-Webhook-Topic`) are headers anyone who captured a body can change.

- A resent body is a replay (the first answer again), whatever delivery id it carries: the
  dedupe id comes from what the signature covers.
- The body must agree with the topic it is sent under (`orders/paid` a paid order,
  `orders/cancelled` a cancelled one, a customer topic a customer...), else 422
  `topic_mismatch` naming the topic and the field.
- Each sender verifies with its own secret: derived per sender from the inbound secret when the
  shop owner chose none, so a body signed for one route never verifies on another.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointguard.plugin.merchants import (
    ADAPTER_SECRETS,
    MerchantCredentials,
    sender_secret,
    set_adapter_secret,
)
from pointguard.plugin.worker import process_merchant
from tests.plugin.test_adapters import SHOPIFY_PAID, WOO_PAID, hmac_header
from tests.plugin.test_merchants import pointguard
from tests.plugin.test_webhook_fuzz import snapshot

SIGNATURE_HEADER = {"shopify": "x-shopify-hmac-sha256", "woocommerce": "x-wc-webhook-signature"}
TOPIC_HEADER = {"shopify": "x-shopify-topic", "woocommerce": "x-wc-webhook-topic"}
# Secrets the shop owner chose, so that these tests sign the same way before and after the
# per-sender keys (a chosen secret verifies alone, then as now).
CHOSEN = {"shopify": "shpss_chosen", "woocommerce": "wc chosen secret"}

SHOPIFY_CUSTOMER = {
    "id": 207119551,
    "email": "bob@example.com",
    "created_at": "2026-11-01T08:00:00+00:00",
    "updated_at": "2026-11-01T08:00:00+00:00",
}
SHOPIFY_CANCELLED_UNPAID = {
    **SHOPIFY_PAID,
    "financial_status": "voided",
    "cancelled_at": "2026-11-20T11:00:00+00:00",
}
SHOPIFY_REFUND = {
    "id": 509562969,
    "order_id": SHOPIFY_PAID["id"],
    "created_at": "2026-11-21T10:00:00+00:00",
    "refund_line_items": [{"line_item_id": 2, "quantity": 1}],
}
WOO_CUSTOMER = {"id": 26, "email": "ann@example.com", "role": "customer"}


@pytest.fixture
async def chosen(shop, run, secret_key):
    """`(client, merchant)` with a secret chosen for each HMAC sender."""
    client, merchant = shop
    for sender, secret in CHOSEN.items():
        await run(set_adapter_secret, secret_key, merchant.merchant_id, sender, secret)
    return client, merchant


async def send(client, merchant, sender, topic, payload, secret=None, **headers):
    """POST `payload` to `sender`'s route under `topic`, signed with `secret` (default: the
    chosen one)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signature = hmac_header(secret or CHOSEN[sender], body)
    headers |= {TOPIC_HEADER[sender]: topic, SIGNATURE_HEADER[sender]: signature}
    url = f"/webhooks/{merchant.merchant_id}/{sender}"
    return await client.post(url, content=body, headers=headers)


async def test_a_captured_body_resent_under_fresh_delivery_ids_is_a_replay(chosen, engine):
    client, merchant = chosen
    before = await snapshot(engine, merchant.merchant_id)
    answers = [
        await send(
            client,
            merchant,
            "shopify",
            "customers/create",
            SHOPIFY_CUSTOMER,
            **{"x-shopify-webhook-id": uuid.uuid4().hex},
        )
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [202, 202, 202], answers[-1].text
    assert [a.json()["replayed"] for a in answers] == [False, True, True]
    assert len({a.json()["webhook_id"] for a in answers}) == 1
    inbox, _ = await snapshot(engine, merchant.merchant_id)
    assert inbox == before[0] + 1


async def test_a_woocommerce_body_under_another_order_topic_is_a_replay(chosen, engine):
    client, merchant = chosen
    before = await snapshot(engine, merchant.merchant_id)
    created = await send(client, merchant, "woocommerce", "order.created", WOO_PAID)
    updated = await send(client, merchant, "woocommerce", "order.updated", WOO_PAID)
    assert (created.status_code, updated.status_code) == (202, 202), updated.text
    assert updated.json()["replayed"] is True
    assert (await snapshot(engine, merchant.merchant_id))[0] == before[0] + 1


MISMATCHES = [
    pytest.param(
        "shopify",
        "orders/cancelled",
        SHOPIFY_PAID,
        "$.cancelled_at",
        id="paid-order-as-cancellation",
    ),
    pytest.param(
        "shopify",
        "orders/paid",
        SHOPIFY_CANCELLED_UNPAID,
        "$.financial_status",
        id="cancelled-unpaid-order-as-paid",
    ),
    pytest.param(
        "shopify",
        "orders/paid",
        {**SHOPIFY_PAID, "financial_status": "partially_paid"},
        "$.financial_status",
        id="partially-paid-as-paid",
    ),
    pytest.param(
        "shopify",
        "orders/paid",
        {**SHOPIFY_PAID, "cancelled_at": "2026-11-20T11:00:00+00:00"},
        "$.cancelled_at",
        id="paid-then-cancelled-as-paid",
    ),
    pytest.param(
        "shopify", "customers/create", SHOPIFY_PAID, "$.line_items", id="order-as-customer"
    ),
    pytest.param(
        "shopify", "customers/update", SHOPIFY_REFUND, "$.order_id", id="refund-as-customer"
    ),
    pytest.param(
        "shopify",
        "refunds/create",
        SHOPIFY_CUSTOMER,
        "$.refund_line_items",
        id="customer-as-refund",
    ),
    pytest.param(
        "shopify", "refunds/create", SHOPIFY_PAID, "$.refund_line_items", id="order-as-refund"
    ),
    pytest.param(
        "woocommerce", "customer.created", WOO_PAID, "$.line_items", id="woo-order-as-customer"
    ),
    pytest.param(
        "woocommerce", "order.updated", WOO_CUSTOMER, "$.line_items", id="woo-customer-as-order"
    ),
]


@pytest.mark.parametrize(("sender", "topic", "payload", "field"), MISMATCHES)
async def test_a_body_that_is_not_what_its_topic_says_is_refused(
    chosen, engine, sender, topic, payload, field
):
    client, merchant = chosen
    before = await snapshot(engine, merchant.merchant_id)
    response = await send(client, merchant, sender, topic, payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("topic_mismatch", field)
    assert topic in error["message"]
    await process_merchant(engine, merchant.merchant_id)
    assert await snapshot(engine, merchant.merchant_id) == before


async def test_a_paid_order_resent_as_a_cancellation_changes_nothing(chosen, engine):
    client, merchant = chosen
    paid = await send(client, merchant, "shopify", "orders/paid", SHOPIFY_PAID)
    assert paid.status_code == 202, paid.text
    await process_merchant(engine, merchant.merchant_id)
    before = await snapshot(engine, merchant.merchant_id)
    cancelled = await send(client, merchant, "shopify", "orders/cancelled", SHOPIFY_PAID)
    assert cancelled.json()["error"]["code"] == "topic_mismatch"
    await process_merchant(engine, merchant.merchant_id)
    assert await snapshot(engine, merchant.merchant_id) == before


def test_each_sender_has_its_own_key_derived_from_the_inbound_secret():
    inbound = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    keys = {sender: sender_secret(inbound, sender) for sender in ADAPTER_SECRETS}
    assert len(set(keys.values()) | {inbound}) == 3
    assert keys == {sender: sender_secret(inbound, sender) for sender in ADAPTER_SECRETS}
    assert sender_secret("whsec_other", "shopify") != keys["shopify"]
    credentials = MerchantCredentials(
        merchant_id="m",
        name="M",
        endpoint_url=None,
        inbound_secrets=("whsec_new", inbound),
        inbound_public_keys=(),
        outbound_private_key=b"",
        outbound_secret="",
    )
    # During a rollover both inbound secrets' derived keys verify, newest first.
    assert credentials.hmac_secrets("shopify") == (
        sender_secret("whsec_new", "shopify"),
        keys["shopify"],
    )


@pytest.mark.parametrize("sender", list(SIGNATURE_HEADER))
async def test_routes_never_share_a_key(shop, engine, sender):
    client, merchant = shop
    other = "woocommerce" if sender == "shopify" else "shopify"
    payload = {"id": 1, "email": None}
    topic = {"shopify": "products/update", "woocommerce": "product.updated"}
    before = await snapshot(engine, merchant.merchant_id)
    inbound = await send(client, merchant, sender, topic[sender], payload, merchant.webhook_secret)
    own_key = sender_secret(merchant.webhook_secret, sender)
    crossed = await send(client, merchant, other, topic[other], payload, own_key)
    for refused in (inbound, crossed):
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "bad_signature")
    assert await snapshot(engine, merchant.merchant_id) == before
    own = await send(client, merchant, sender, topic[sender], payload, own_key)
    assert (own.status_code, own.json()["status"]) == (202, "ignored"), own.text


def test_merchant_create_prints_each_senders_key(database_url):
    created = pointguard(database_url, "create", "Keys Shop", "--json")
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    for sender in ADAPTER_SECRETS:
        field = f"{sender}_webhook_secret"
        assert made[field] == sender_secret(made["webhook_secret"], sender)
        assert sender in made["about"][field].lower()
    rotated = pointguard(database_url, "rotate-secret", made["merchant_id"], "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["woocommerce_webhook_secret"] == sender_secret(new["webhook_secret"], "woocommerce")
    assert set(new["about"]) == set(new) - {"about"}
    shown = pointguard(database_url, "create", "Keys Shop Text")
    assert shown.returncode == 0, shown.stderr
    assert "Shopify-style" in shown.stdout and "WooCommerce-style" in shown.stdout


# Bodies of one order or customer, each with the topics it truly is (for the property below).
def _order(order_id: str, **changes: Any) -> dict[str, Any]:
    return {**SHOPIFY_PAID, "id": order_id, "financial_status": "paid", **changes}


BODY_KINDS = {
    "paid": (lambda n: _order(n), {"orders/paid"}),
    "pending": (lambda n: _order(n, financial_status="pending"), set()),
    "partially_paid": (lambda n: _order(n, financial_status="partially_paid"), set()),
    "cancelled": (
        lambda n: _order(n, financial_status="voided", cancelled_at="2026-11-20T11:00:00Z"),
        {"orders/cancelled"},
    ),
    "refund": (lambda n: {**SHOPIFY_REFUND, "id": n, "order_id": n}, {"refunds/create"}),
    "customer": (
        lambda n: {**SHOPIFY_CUSTOMER, "id": n},
        {"customers/create", "customers/update"},
    ),
}
USED_TOPICS = ["orders/paid", "orders/cancelled", "refunds/create", "customers/create"]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(sorted(BODY_KINDS)),
    topics=st.lists(st.sampled_from(USED_TOPICS), min_size=1, max_size=3),
    resends=st.integers(min_value=1, max_value=3),
)
async def test_headers_the_signature_does_not_cover_never_change_the_outcome(
    chosen, engine, kind, topics, resends
):
    """A signed body, sent under any topics with fresh delivery ids: under a topic it is not,
    a 422 `topic_mismatch` that stores nothing; under one it is, the first send records at
    most one row and every resend is a replay of it."""
    client, merchant = chosen
    make, truly = BODY_KINDS[kind]
    body = json.dumps(make(str(uuid.uuid4().int % 10**12))).encode()
    for topic in topics:
        before = await snapshot(engine, merchant.merchant_id)
        answers = [
            await send(
                client,
                merchant,
                "shopify",
                topic,
                body,
                **{"x-shopify-webhook-id": uuid.uuid4().hex},
            )
            for _ in range(resends)
        ]
        after = await snapshot(engine, merchant.merchant_id)
        if topic not in truly:
            assert {a.status_code for a in answers} == {422}, answers[0].text
            assert {a.json()["error"]["code"] for a in answers} == {"topic_mismatch"}
            assert after == before
            continue
        assert {a.status_code for a in answers} == {202}, answers[0].text
        assert len({(a.json()["webhook_id"], a.json()["status"]) for a in answers}) == 1
        assert all(a.json()["replayed"] for a in answers[1:])
        assert after[0] - before[0] <= 1
