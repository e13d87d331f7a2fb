"""Saleor-style senders: subscription payloads mapped to our canonical events with dedupe ids
derived from what they report, and `POST /webhooks/{merchant}/saleor` end to end: a detached
RS256 JWS verified against the storefront's JWKS served on 127.0.0.1, the inbox, the workers
and the ledger. Every refusal leaves the inbox and the ledger as they were."""

from __future__ import annotations

import json

import pytest

from pointguard import db
from pointguard.errors import EventMismatch, InvalidPayload
from pointguard.ledger import member_balances
from pointguard.plugin.adapters.saleor import saleor_to_canonical
from pointguard.plugin.merchants import set_jwks_url
from pointguard.plugin.worker import process_due, process_merchant
from tests.plugin.test_adapters import changed

ORDER = "T3JkZXI6MQ=="
USER = "VXNlcjoxMg=="


def money(amount: float) -> dict[str, object]:
    return {"amount": amount, "currency": "EUR"}


def order(**changes: object) -> dict[str, object]:
    """An order as the subscription query in docs/webhooks.md returns it."""
    return {
        "id": ORDER,
        "number": "1001",
        "created": "2026-11-20T10:00:00+00:00",
        "updatedAt": "2026-11-20T10:05:00+00:00",
        "userEmail": "ann@example.com",
        "user": {"id": USER, "email": "ann@example.com"},
        "paymentStatus": "FULLY_CHARGED",
        "channel": {"currencyCode": "EUR"},
        "total": {"gross": money(118.69), "net": money(114.89), "tax": money(3.80)},
        "shippingPrice": {"gross": money(4.95), "net": money(4.95)},
        "metadata": [{"key": "referral_code", "value": "abc123"}],
        "lines": [
            {
                "id": "line-1",
                "productSku": "BOOT-7",
                "variant": {
                    "sku": "BOOT-7",
                    "product": {"category": {"name": "shoes"}, "productType": {"name": "Wear"}},
                },
                "quantity": 2,
                "unitPrice": {"gross": money(49.35), "net": money(47.45)},
                "undiscountedUnitPrice": {"gross": money(51.95), "net": money(49.95)},
            },
            {
                "id": "line-2",
                "productSku": None,
                "variant": {"sku": "SOCK", "product": {"productType": {"name": "socks"}}},
                "quantity": 1,
                "unitPrice": {"gross": money(9.99)},
            },
        ],
        "fulfillments": [],
        **changes,
    }


def event(typename: str, **fields: object) -> dict[str, object]:
    return {"__typename": typename, "issuedAt": "2026-11-20T10:06:00+00:00", **fields}


def refunded_fulfillment(fulfillment_id: str, number: int, line_id: str, quantity: int):
    return {
        "id": fulfillment_id,
        "fulfillmentOrder": number,
        "status": "REFUNDED",
        "lines": [{"quantity": quantity, "orderLine": {"id": line_id}}],
    }


LINE_FIELDS = ("line_id", "sku", "category", "quantity", "unit_price_minor", "discount_minor")


def test_an_order_fully_paid_maps_to_order_paid():
    webhook_id, canonical = saleor_to_canonical(
        "order_fully_paid", event("OrderFullyPaid", order=order()), "d1"
    )
    assert webhook_id == f"saleor:order_fully_paid:{ORDER}"
    assert (canonical["type"], canonical["timestamp"]) == (
        "order.paid",
        "2026-11-20T10:06:00+00:00",
    )
    data = canonical["data"]
    assert (data["order_id"], data["customer_id"], data["currency"]) == (ORDER, USER, "EUR")
    assert (data["shipping_minor"], data["tax_minor"], data["referral_code"]) == (
        495,
        380,
        "abc123",
    )
    assert [tuple(x[k] for k in LINE_FIELDS) for x in data["lines"]] == [
        ("line-1", "BOOT-7", "shoes", 2, 4995, 500),  # net prices: the program adds tax itself
        ("line-2", "SOCK", "socks", 1, 999, 0),  # no net in the payload: gross
    ]


def test_a_guest_order_belongs_to_its_email_and_a_currency_is_required():
    guest = order(user=None)
    _, canonical = saleor_to_canonical("order_cancelled", {"order": guest}, "d")
    assert canonical["data"] == {"order_id": ORDER, "customer_id": "ann@example.com"}
    no_currency = order(channel=None, total={"tax": money(0)})
    with pytest.raises(InvalidPayload, match="no currency"):
        saleor_to_canonical("order_fully_paid", {"order": no_currency}, "d")
    with pytest.raises(InvalidPayload, match=r"lines\[0\]\.quantity"):
        broken = order()
        broken["lines"][0]["quantity"] = "2"
        saleor_to_canonical("order_fully_paid", {"order": broken}, "d")


def test_a_refund_is_the_newest_refund_fulfillment_or_the_whole_order():
    partial = order(
        paymentStatus="PARTIALLY_REFUNDED",
        fulfillments=[
            {"id": "F1", "fulfillmentOrder": 1, "status": "FULFILLED", "lines": []},
            refunded_fulfillment("F3", 3, "line-1", 1),
            refunded_fulfillment("F2", 2, "line-2", 1),
        ],
    )
    webhook_id, canonical = saleor_to_canonical("order_refunded", {"order": partial}, "d")
    assert webhook_id == f"saleor:order_refunded:{ORDER}:F3"
    assert canonical["data"]["lines"] == [{"line_id": "line-1", "quantity": 1}]

    full = order(paymentStatus="FULLY_REFUNDED", fulfillments=partial["fulfillments"])
    webhook_id, canonical = saleor_to_canonical("order_refunded", {"order": full}, "d")
    assert webhook_id == f"saleor:order_refunded:{ORDER}:full"
    assert canonical["data"]["lines"] == [
        {"line_id": "line-1", "quantity": 2},
        {"line_id": "line-2", "quantity": 1},
    ]

    money_only = order(paymentStatus="PARTIALLY_REFUNDED")
    webhook_id, canonical = saleor_to_canonical("order_refunded", {"order": money_only}, "d9")
    assert (webhook_id, canonical) == ("saleor:order_refunded:d9", None)


def test_customers_and_events_we_do_not_use():
    user = {"id": USER, "metadata": [{"key": "referral_code", "value": "Xy3"}]}
    webhook_id, created = saleor_to_canonical("customer_created", {"user": user}, "d1")
    assert webhook_id == f"saleor:customer_created:{USER}"
    assert created["data"] == {"customer_id": USER, "referral_code": "Xy3"}
    webhook_id, updated = saleor_to_canonical("customer_updated", {"user": user}, "d2")
    assert (webhook_id, updated["type"]) == (
        f"saleor:customer_updated:{USER}:d2",
        "customer.updated",
    )
    assert saleor_to_canonical("product_updated", {"product": {}}, "d3") == (
        "saleor:product_updated:d3",
        None,
    )


def test_a_body_of_one_event_cannot_be_passed_off_as_another():
    paid = event("OrderFullyPaid", order=order())
    with pytest.raises(EventMismatch, match="'order_cancelled' but the signed body"):
        saleor_to_canonical("order_cancelled", paid, "d")


@pytest.fixture
async def saleor_shop(shop, storefront, run, secret_key):
    """`(client, merchant, storefront)`: the shop, its JWKS URL set to the storefront's."""
    client, merchant = shop
    await run(set_jwks_url, secret_key, merchant.merchant_id, storefront.url)
    return client, merchant, storefront


async def post(client, merchant, storefront, name, payload, *, signature=None, kid="k1"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        "saleor-event": name,
        "saleor-domain": "shop.example",
        "saleor-signature": signature if signature is not None else storefront.sign(body, kid),
    }
    return await client.post(
        f"/webhooks/{merchant.merchant_id}/saleor", content=body, headers=headers
    )


async def inbox_count(engine, merchant_id):
    async with db.connection(engine) as pg:
        return await pg.fetchval("SELECT count(*) FROM inbox WHERE merchant_id = $1", merchant_id)


async def test_an_order_fully_paid_is_verified_deduped_applied_and_refunded(
    saleor_shop, engine, run
):
    client, merchant, storefront = saleor_shop
    paid = event("OrderFullyPaid", order=order())
    first = await post(client, merchant, storefront, "order_fully_paid", paid)
    assert (first.status_code, first.json()["status"]) == (202, "pending"), first.text
    again = await post(client, merchant, storefront, "order_fully_paid", paid)  # a retry
    rerendered = await post(
        client,
        merchant,
        storefront,
        "order_fully_paid",
        {**paid, "issuedAt": "2026-11-21T08:00:00Z"},
    )
    assert again.json()["replayed"] and rerendered.json()["replayed"]
    assert (await process_merchant(engine, merchant.merchant_id)).applied == 1
    balances = await run(member_balances, merchant.merchant_id, USER)
    assert balances.pending_points == 94 + 9  # (2 x 49.95 - 5.00) and 9.99, rounded down

    refund = order(
        paymentStatus="PARTIALLY_REFUNDED",
        fulfillments=[refunded_fulfillment("F2", 2, "line-2", 1)],
    )
    for issued_at in ("2026-11-22T09:00:00Z", "2026-11-22T09:30:00Z"):  # one refund, two bodies
        response = await post(
            client,
            merchant,
            storefront,
            "order_refunded",
            event("OrderRefunded", order=refund, issuedAt=issued_at),
        )
        assert response.status_code == 202, response.text
    assert (await process_merchant(engine, merchant.merchant_id)).applied == 1
    assert (await run(member_balances, merchant.merchant_id, USER)).pending_points == 94


async def test_a_rotated_key_is_fetched_and_its_webhooks_accepted(saleor_shop):
    client, merchant, storefront = saleor_shop
    user = {"id": USER}
    created = event("CustomerCreated", user=user)
    assert (
        await post(client, merchant, storefront, "customer_created", created)
    ).status_code == 202
    storefront.add_key("k2")
    del storefront.keys["k1"]
    updated = event("CustomerUpdated", user=user)
    response = await post(client, merchant, storefront, "customer_updated", updated, kid="k2")
    assert response.status_code == 202, response.text
    assert storefront.fetches == 2


async def test_events_we_do_not_use_are_acknowledged_and_ignored(saleor_shop, engine):
    client, merchant, storefront = saleor_shop
    product = {"__typename": "ProductUpdated", "product": {"id": "UHJvZHVjdDox"}}
    response = await post(client, merchant, storefront, "product_updated", product)
    assert (response.status_code, response.json()["status"]) == (202, "ignored")
    assert (await process_merchant(engine, merchant.merchant_id)).applied == 0


REFUSALS = [
    pytest.param("unknown-kid", 401, "unknown_key_id", id="unknown-kid"),
    pytest.param("other-key", 401, "bad_signature", id="signed-by-another-key"),
    pytest.param("other-body", 401, "bad_signature", id="body-changed"),
    pytest.param("hs256", 401, "unsupported_algorithm", id="wrong-alg"),
    pytest.param("no-kid", 401, "missing_key_id", id="missing-kid"),
    pytest.param("no-signature", 401, "missing_signature", id="missing-signature"),
    pytest.param("attached", 401, "bad_signature", id="not-detached"),
    pytest.param("mismatch", 401, "event_mismatch", id="paid-body-as-cancel"),
    pytest.param("jwks-down", 503, "jwks_unavailable", id="jwks-down"),
    pytest.param("no-event", 422, "invalid_payload", id="missing-event-header"),
]


@pytest.mark.parametrize(("case", "status", "code"), REFUSALS)
async def test_refused_webhooks_change_nothing(saleor_shop, engine, run, case, status, code):
    client, merchant, storefront = saleor_shop
    accepted = await post(
        client, merchant, storefront, "order_fully_paid", event("OrderFullyPaid", order=order())
    )
    assert accepted.status_code == 202
    await process_merchant(engine, merchant.merchant_id)
    before = await run(member_balances, merchant.merchant_id, USER)
    assert before.pending_points == 103

    name, payload = "order_cancelled", event("OrderCancelled", order=order())
    body = json.dumps(payload).encode()
    signature = None
    storefront.add_key("k2")
    if case == "unknown-kid":
        signature = storefront.sign(body, "k2")
        del storefront.keys["k2"]
    elif case == "other-key":
        signature = storefront.sign(body, "k1", signer="k2")
    elif case == "other-body":
        signature = storefront.sign(body.replace(b"Cancelled", b"Canceled"), "k1")
    elif case == "hs256":
        signature = storefront.sign(body, "k1", header={"alg": "HS256"})
    elif case == "no-kid":
        signature = storefront.sign(body, "k1", header={"kid": None})
    elif case == "no-signature":
        signature = ""
    elif case == "attached":
        protected, _, rest = storefront.sign(body, "k1").partition("..")
        signature = f"{protected}.e30.{rest}"
    elif case == "mismatch":
        body = json.dumps(event("OrderFullyPaid", order=order())).encode()
    elif case == "jwks-down":
        storefront.status = 500
        signature = storefront.sign(body, "k2")  # a key not held yet: the JWKS is fetched
    elif case == "no-event":
        name = ""
    response = await post(client, merchant, storefront, name, body, signature=signature)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await inbox_count(engine, merchant.merchant_id) == 1  # the paid order only
    await process_due(engine)
    assert await run(member_balances, merchant.merchant_id, USER) == before


async def test_a_merchant_without_a_jwks_url_is_told_so(shop, storefront, engine):
    client, merchant = shop
    response = await post(
        client, merchant, storefront, "order_cancelled", event("OrderCancelled", order=order())
    )
    assert (response.status_code, response.json()["error"]["code"]) == (503, "jwks_not_configured")
    assert "pointguard merchant set-jwks" in response.json()["error"]["message"]
    assert await inbox_count(engine, merchant.merchant_id) == 0
    assert storefront.fetches == 0


def paid_with(path, value):
    return changed(event("OrderFullyPaid", order=order()), ("order", *path), value)


def refunded_with(path, value):
    refunded = order(fulfillments=[refunded_fulfillment("F1", 1, "line-1", 1)])
    return changed(event("OrderRefunded", order=refunded), ("order", *path), value)


MALFORMED = [
    ("order_fully_paid", paid_with(("lines", 0, "quantity"), {}), "$.order.lines[0].quantity"),
    ("order_fully_paid", paid_with(("lines", 0), -1), "$.order.lines[0]"),
    ("order_fully_paid", paid_with(("lines", 0, "variant", "sku"), 7.5), None),  # productSku wins
    (
        "order_fully_paid",
        paid_with(("lines", 1, "variant", "sku"), 7.5),
        "$.order.lines[1].variant.sku",
    ),
    ("order_fully_paid", paid_with(("metadata",), 1.5), "$.order.metadata"),
    ("order_fully_paid", paid_with(("total", "tax", "amount"), "1e30"), "$.order.total.tax.amount"),
    ("order_fully_paid", paid_with(("channel", "currencyCode"), ["EUR"]), None),  # total has one
    ("order_fully_paid", paid_with(("updatedAt",), 5), None),  # issuedAt comes first
    (
        "order_refunded",
        refunded_with(("fulfillments", 0, "status"), ["REFUNDED"]),
        "$.order.fulfillments[0].status",
    ),
    (
        "order_refunded",
        refunded_with(("fulfillments", 0, "lines", 0, "orderLine"), "line-1"),
        "$.order.fulfillments[0].lines[0].orderLine",
    ),
]


@pytest.mark.parametrize(("name", "payload", "field"), MALFORMED)
async def test_a_malformed_field_is_a_422_naming_it_and_changes_nothing(
    saleor_shop, engine, run, name, payload, field
):
    """`field` None: the payload is still an event we can read (202)."""
    client, merchant, storefront = saleor_shop
    response = await post(client, merchant, storefront, name, payload)
    if field is None:
        assert response.status_code == 202, response.text
        return
    assert response.status_code == 422, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (
        "invalid_payload",
        field,
    )
    assert await inbox_count(engine, merchant.merchant_id) == 0
    await process_due(engine)
    assert (await run(member_balances, merchant.merchant_id, USER)).pending_points == 0
