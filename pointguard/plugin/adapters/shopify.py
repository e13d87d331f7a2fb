"""Shopify-style senders: `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the raw body),
`X-Shopify-Topic` (`orders/paid`, `refunds/create`, `orders/cancelled`, `customers/create`,
`customers/update`) and `X-Shopify-Webhook-Id`, the id a retry repeats, which we dedupe on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pointguard.plugin.adapters.fields import (
    Adapted,
    Canonical,
    amount,
    canonical_event,
    currency_code,
    dedupe_id,
    listed_value,
    moment,
    obj,
    objects,
    optional_text,
    quantity,
    text,
)


def shopify_to_canonical(
    topic: str,
    payload: Mapping[str, Any],
    *,
    delivery_id: str,
    body_digest: str,
    customer_of_order: str,
) -> Adapted:
    """The dedupe id and the canonical event for a Shopify-style topic (None for a topic we do
    not use). The id is the `X-Shopify-Webhook-Id` a retry repeats (`delivery_id`), or the
    body's digest if the sender sent none. `customer_of_order`: for refunds, which carry no
    customer, the member of the order (`refunded_order` names it)."""
    webhook_id = dedupe_id("shopify", delivery_id or body_digest)
    if topic == "orders/paid":
        return webhook_id, _paid(payload)
    if topic == "refunds/create":
        lines = [
            {
                "line_id": text(item, "line_item_id", where),
                "quantity": quantity(item, "quantity", where),
            }
            for where, item in objects(payload.get("refund_line_items"), "$.refund_line_items")
        ]
        data = {
            "order_id": text(payload, "order_id"),
            "customer_id": customer_of_order,
            "lines": lines,
        }
        return webhook_id, canonical_event("order.refunded", moment(payload, ("created_at",)), data)
    if topic == "orders/cancelled":
        data = {"order_id": text(payload, "id"), "customer_id": _customer(payload)}
        at = moment(payload, ("cancelled_at",))
        return webhook_id, canonical_event("order.cancelled", at, data)
    if topic in ("customers/create", "customers/update"):
        kind = "customer.created" if topic == "customers/create" else "customer.updated"
        at = moment(payload, ("updated_at", "created_at"))
        return webhook_id, canonical_event(kind, at, {"customer_id": text(payload, "id")})
    return webhook_id, None


def refunded_order(topic: str, payload: Mapping[str, Any]) -> str | None:
    """The order a `refunds/create` refunds, whose member the caller looks up; else None."""
    return text(payload, "order_id") if topic == "refunds/create" else None


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
        "ip": optional_text(payload, "browser_ip"),
    }
    return canonical_event("order.paid", moment(payload, ("processed_at", "updated_at")), data)


def _customer(payload: Mapping[str, Any]) -> str:
    return text(obj(payload.get("customer"), "$.customer"), "id", "$.customer")
