"""Shopify-style senders: `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the raw body) and
`X-Shopify-Topic` (`orders/paid`, `refunds/create`, `orders/cancelled`, `customers/create`,
`customers/update`).

Only the body is signed: `X-Shopify-Topic` and `X-Shopify-Webhook-Id` are whatever the sender of
the request wrote. So the body must be what its topic claims (`shopify_to_canonical`), and the
dedupe id comes from the body, never from `X-Shopify-Webhook-Id`, which is not read.

The fraud guard's signals: a paid order's `browser_ip` (or `client_details.browser_ip`),
`client_details.user_agent`, `email` (or `customer.email`), `phone` (or `customer.phone`) and
`shipping_address`; a customer's `email`, `phone` and `default_address`. Shopify sends no
device id and no card fingerprint: `payment_details` holds a card's BIN and last digits, which
many cards share, and note attributes are whatever the buyer's browser set, so neither is
mapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pointguard.plugin.adapters.fields import (
    Adapted,
    Canonical,
    address,
    amount,
    canonical_event,
    check_customer,
    currency_code,
    dedupe_id,
    first,
    listed_value,
    moment,
    obj,
    objects,
    optional_email,
    optional_ip,
    optional_text,
    optional_user_agent,
    quantity,
    signals,
    text,
    topic_mismatch,
)

# An order earns when Shopify says it is paid in full: `partially_paid` still owes money, and
# `authorized` has taken none yet (Shopify sends `orders/paid` once the order is `paid`).
SHOPIFY_PAID_STATUSES = frozenset({"paid"})
# A Shopify address's fields for each of the canonical address's.
SHOPIFY_ADDRESS = {
    "line1": ("address1",),
    "line2": ("address2",),
    "city": ("city",),
    "postal_code": ("zip",),
    "region": ("province_code", "province"),
    "country": ("country_code",),
}


def shopify_to_canonical(
    topic: str,
    payload: Mapping[str, Any],
    *,
    body_digest: str,
    customer_of_order: str,
) -> Adapted:
    """The dedupe id and the canonical event for a Shopify-style topic (None for a topic we do
    not use). `customer_of_order`: for refunds, which carry no customer, the member of the
    order (`refunded_order` names it).

    The body must agree with the topic, else `TopicMismatch` naming the field: `orders/paid` a
    `financial_status` of paid and no `cancelled_at`, `orders/cancelled` a `cancelled_at`,
    `refunds/create` `refund_line_items`, a customer topic a customer (`check_customer`). So a
    captured paid order cannot be sent as a cancellation, nor a cancelled one as paid.

    The dedupe id names the fact the signed body reports where it happens once, whatever the
    bytes or the topic: `order.paid:{order}`, `order.cancelled:{order}`,
    `order.refunded:{refund}`, `customer.created:{customer}`. An update can happen any number
    of times, so `customer.updated:{customer}:{digest of the body}`, and a topic we do not use,
    whose body we do not read, `ignored:{digest}`: a resent body repeats the digest, a real
    change does not, and no made-up topic or delivery id makes a new row."""
    if topic == "orders/paid":
        status = optional_text(payload, "financial_status")
        if status not in SHOPIFY_PAID_STATUSES:
            raise topic_mismatch(topic, "$.financial_status", f"is {str(status)[:50]!r}, not paid")
        if payload.get("cancelled_at") is not None:
            raise topic_mismatch(topic, "$.cancelled_at", "is set: the order was cancelled")
        event = _paid(payload)
        return dedupe_id("shopify", "order.paid", event["data"]["order_id"]), event
    if topic == "refunds/create":
        _check_refund(topic, payload)
        lines = [
            {
                "line_id": text(item, "line_item_id", where),
                "quantity": quantity(item, "quantity", where),
            }
            for where, item in objects(payload.get("refund_line_items"), "$.refund_line_items")
        ]
        data: Canonical = {
            "order_id": text(payload, "order_id"),
            "customer_id": customer_of_order,
            "lines": lines,
        }
        webhook_id = dedupe_id("shopify", "order.refunded", text(payload, "id"))
        return webhook_id, canonical_event("order.refunded", moment(payload, ("created_at",)), data)
    if topic == "orders/cancelled":
        at = moment(payload, ("cancelled_at",))
        if at is None:
            raise topic_mismatch(topic, "$.cancelled_at", "is missing: the order is not cancelled")
        order_id = text(payload, "id")
        data = {"order_id": order_id, "customer_id": _customer(payload)}
        webhook_id = dedupe_id("shopify", "order.cancelled", order_id)
        return webhook_id, canonical_event("order.cancelled", at, data)
    if topic in ("customers/create", "customers/update"):
        check_customer(topic, payload)
        customer_id = text(payload, "id")
        at = moment(payload, ("updated_at", "created_at"))
        data = {"customer_id": customer_id} | signals(
            email=optional_email(payload, "email"),
            phone=optional_text(payload, "phone"),
            shipping_address=address(payload, "default_address", "$", SHOPIFY_ADDRESS),
        )
        if topic == "customers/create":
            webhook_id = dedupe_id("shopify", "customer.created", customer_id)
            return webhook_id, canonical_event("customer.created", at, data)
        webhook_id = dedupe_id("shopify", "customer.updated", customer_id, body_digest)
        return webhook_id, canonical_event("customer.updated", at, data)
    return dedupe_id("shopify", "ignored", body_digest), None


def refunded_order(topic: str, payload: Mapping[str, Any]) -> str | None:
    """The order a `refunds/create` refunds, whose member the caller looks up; else None."""
    if topic != "refunds/create":
        return None
    _check_refund(topic, payload)
    return text(payload, "order_id")


def _check_refund(topic: str, payload: Mapping[str, Any]) -> None:
    if not isinstance(payload.get("refund_line_items"), list):
        raise topic_mismatch(topic, "$.refund_line_items", "is not a list: not a refund")


def _paid(payload: Mapping[str, Any]) -> Canonical:
    currency = currency_code(payload, "currency")
    lines = [
        {
            "line_id": text(item, "id", where),
            "sku": optional_text(item, "sku", where)
            or optional_text(item, "variant_id", where)
            or "",
            "category": optional_text(item, "product_type", where) or "",
            "quantity": quantity(item, "quantity", where),
            "unit_price_minor": amount(item, "price", currency, where),
            "discount_minor": amount(item, "total_discount", currency, where),
        }
        for where, item in objects(payload.get("line_items"), "$.line_items")
    ]
    shipping = sum(
        amount(line, "price", currency, where)
        for where, line in objects(payload.get("shipping_lines"), "$.shipping_lines")
    )
    data = {
        "order_id": text(payload, "id"),
        "customer_id": _customer(payload),
        "currency": currency,
        "lines": lines,
        "shipping_minor": shipping,
        "tax_minor": amount(payload, "total_tax", currency),
        "referral_code": listed_value(payload, "note_attributes", "name", "referral_code"),
    } | signals(
        ip=first(payload, ("browser_ip", "client_details.browser_ip"), read=optional_ip),
        user_agent=first(payload, ("client_details.user_agent",), read=optional_user_agent),
        email=first(payload, ("email", "customer.email"), read=optional_email),
        phone=first(payload, ("phone", "customer.phone")),
        shipping_address=address(payload, "shipping_address", "$", SHOPIFY_ADDRESS),
    )
    return canonical_event("order.paid", moment(payload, ("processed_at", "updated_at")), data)


def _customer(payload: Mapping[str, Any]) -> str:
    return text(obj(payload.get("customer"), "$.customer"), "id", "$.customer")
