"""WooCommerce-style senders: `X-WC-Webhook-Signature` (base64 HMAC-SHA256 of the raw body) and
`X-WC-Webhook-Topic` (`order.created` / `order.updated`, whose `status` says what happened, and
`customer.created`). WooCommerce sends no id that is stable across deliveries, so we dedupe on
the order id and status: an order paid twice is one `order.paid`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pointguard.plugin.adapters.fields import Canonical, canonical_event, minor_units, need

WOO_PAID_STATUSES = frozenset({"processing", "completed"})


def woocommerce_to_canonical(topic: str, payload: Mapping[str, Any]) -> Canonical | None:
    """The canonical event for a WooCommerce-style topic and order status, or None."""
    if topic == "customer.created":
        return canonical_event(
            "customer.created",
            payload.get("date_created_gmt"),
            {
                "customer_id": str(need(payload, "id")),
            },
        )
    if topic not in ("order.created", "order.updated"):
        return None
    status = str(payload.get("status") or "")
    order_id = str(need(payload, "id"))
    customer_id = str(need(payload, "customer_id"))
    if status in WOO_PAID_STATUSES:
        currency = str(need(payload, "currency"))
        lines = []
        for i, item in enumerate(payload.get("line_items") or []):
            quantity = int(need(item, "quantity", f"$.line_items[{i}]"))
            subtotal = minor_units(item.get("subtotal"), currency, f"$.line_items[{i}].subtotal")
            total = minor_units(item.get("total"), currency, f"$.line_items[{i}].total")
            lines.append(
                {
                    "line_id": str(need(item, "id", f"$.line_items[{i}]")),
                    "sku": str(item.get("sku") or item.get("product_id") or ""),
                    "category": "",
                    "quantity": quantity,
                    "unit_price_minor": subtotal // quantity if quantity else 0,
                    "discount_minor": max(0, subtotal - total),
                }
            )
        return canonical_event(
            "order.paid",
            payload.get("date_paid_gmt"),
            {
                "order_id": order_id,
                "customer_id": customer_id,
                "currency": currency,
                "lines": lines,
                "shipping_minor": minor_units(
                    payload.get("shipping_total"), currency, "$.shipping_total"
                ),
                "tax_minor": minor_units(payload.get("total_tax"), currency, "$.total_tax"),
            },
        )
    if status == "cancelled":
        return canonical_event(
            "order.cancelled",
            payload.get("date_modified_gmt"),
            {"order_id": order_id, "customer_id": customer_id},
        )
    if status == "refunded":  # a full refund: every line, every unit
        return canonical_event(
            "order.refunded",
            payload.get("date_modified_gmt"),
            {
                "order_id": order_id,
                "customer_id": customer_id,
                "lines": [
                    {"line_id": str(item.get("id")), "quantity": int(item.get("quantity") or 1)}
                    for item in payload.get("line_items") or []
                ],
            },
        )
    return None
