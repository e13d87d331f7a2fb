"""Shopify-style senders: `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the raw body),
`X-Shopify-Topic` (`orders/paid`, `refunds/create`, `orders/cancelled`, `customers/create`,
`customers/update`) and `X-Shopify-Webhook-Id`, the id a retry repeats, which we dedupe on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pointguard.plugin.adapters.fields import (
    Canonical,
    canonical_event,
    listed_value,
    minor_units,
    need,
)


def shopify_to_canonical(
    topic: str, payload: Mapping[str, Any], customer_of_order: str | None
) -> Canonical | None:
    """The canonical event for a Shopify-style topic, or None for a topic we do not use.
    `customer_of_order`: for refunds, which carry no customer, the member of the order."""
    if topic == "orders/paid":
        currency = str(need(payload, "currency"))
        lines = [
            {
                "line_id": str(need(item, "id", f"$.line_items[{i}]")),
                "sku": str(item.get("sku") or item.get("variant_id") or ""),
                "category": str(item.get("product_type") or ""),
                "quantity": int(need(item, "quantity", f"$.line_items[{i}]")),
                "unit_price_minor": minor_units(
                    item.get("price"), currency, f"$.line_items[{i}].price"
                ),
                "discount_minor": minor_units(
                    item.get("total_discount"), currency, f"$.line_items[{i}].total_discount"
                ),
            }
            for i, item in enumerate(payload.get("line_items") or [])
        ]
        shipping = sum(
            minor_units(s.get("price"), currency, f"$.shipping_lines[{i}].price")
            for i, s in enumerate(payload.get("shipping_lines") or [])
        )
        customer = payload.get("customer") or {}
        return canonical_event(
            "order.paid",
            payload.get("processed_at") or payload.get("updated_at"),
            {
                "order_id": str(need(payload, "id")),
                "customer_id": str(need(customer, "id", "$.customer")),
                "currency": currency,
                "lines": lines,
                "shipping_minor": shipping,
                "tax_minor": minor_units(payload.get("total_tax"), currency, "$.total_tax"),
                "referral_code": listed_value(
                    payload.get("note_attributes"), "name", "referral_code"
                ),
                "ip": payload.get("browser_ip"),
            },
        )
    if topic == "refunds/create":
        order_id = str(need(payload, "order_id"))
        return canonical_event(
            "order.refunded",
            payload.get("created_at"),
            {
                "order_id": order_id,
                "customer_id": customer_of_order or "",
                "lines": [
                    {
                        "line_id": str(need(item, "line_item_id", f"$.refund_line_items[{i}]")),
                        "quantity": int(need(item, "quantity", f"$.refund_line_items[{i}]")),
                    }
                    for i, item in enumerate(payload.get("refund_line_items") or [])
                ],
            },
        )
    if topic == "orders/cancelled":
        customer = payload.get("customer") or {}
        return canonical_event(
            "order.cancelled",
            payload.get("cancelled_at"),
            {
                "order_id": str(need(payload, "id")),
                "customer_id": str(need(customer, "id", "$.customer")),
            },
        )
    if topic in ("customers/create", "customers/update"):
        kind = "customer.created" if topic == "customers/create" else "customer.updated"
        return canonical_event(
            kind,
            payload.get("updated_at") or payload.get("created_at"),
            {
                "customer_id": str(need(payload, "id")),
            },
        )
    return None
