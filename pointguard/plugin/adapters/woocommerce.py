"""WooCommerce-style senders: `X-WC-Webhook-Signature` (base64 HMAC-SHA256 of the raw body) and
`X-WC-Webhook-Topic` (`order.created` / `order.updated`, whose `status` says what happened, and
`customer.created`). WooCommerce sends no id that is stable across deliveries, so we dedupe on
the order id and status: an order paid twice is one `order.paid`.
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
    moment,
    objects,
    optional_text,
    quantity,
    text,
)

WOO_PAID_STATUSES = frozenset({"processing", "completed"})
WOO_ORDER_TOPICS = frozenset({"order.created", "order.updated"})


def woocommerce_to_canonical(
    topic: str, payload: Mapping[str, Any], *, body_digest: str
) -> Adapted:
    """The dedupe id and the canonical event for a WooCommerce-style topic and order status
    (None: ignore it). Orders and customers are deduped on `{topic}:{id}:{status}`; a topic we
    do not use, whose body we do not read, on `{topic}:{digest of the body}`."""
    if topic != "customer.created" and topic not in WOO_ORDER_TOPICS:
        return dedupe_id("woocommerce", topic, body_digest), None
    record_id = text(payload, "id")
    status = optional_text(payload, "status") or ""
    webhook_id = dedupe_id("woocommerce", topic, record_id, status)
    if topic == "customer.created":
        at = moment(payload, ("date_created_gmt",))
        return webhook_id, canonical_event("customer.created", at, {"customer_id": record_id})
    order_id, customer_id = record_id, text(payload, "customer_id")
    if status in WOO_PAID_STATUSES:
        return webhook_id, _paid(payload, order_id, customer_id)
    at = moment(payload, ("date_modified_gmt",))
    if status == "cancelled":
        data: Canonical = {"order_id": order_id, "customer_id": customer_id}
        return webhook_id, canonical_event("order.cancelled", at, data)
    if status == "refunded":  # a full refund: every line, every unit
        lines = [
            {"line_id": text(item, "id", where), "quantity": quantity(item, "quantity", where)}
            for where, item in objects(payload.get("line_items"), "$.line_items")
        ]
        data = {"order_id": order_id, "customer_id": customer_id, "lines": lines}
        return webhook_id, canonical_event("order.refunded", at, data)
    return webhook_id, None


def _paid(payload: Mapping[str, Any], order_id: str, customer_id: str) -> Canonical:
    currency = currency_code(payload, "currency")
    lines = []
    for where, item in objects(payload.get("line_items"), "$.line_items"):
        units = quantity(item, "quantity", where)
        subtotal = amount(item, "subtotal", currency, where)
        total = amount(item, "total", currency, where)
        lines.append(
            {
                "line_id": text(item, "id", where),
                "sku": optional_text(item, "sku", where)
                or optional_text(item, "product_id", where)
                or "",
                "category": "",
                "quantity": units,
                "unit_price_minor": subtotal // units,
                "discount_minor": max(0, subtotal - total),
            }
        )
    data = {
        "order_id": order_id,
        "customer_id": customer_id,
        "currency": currency,
        "lines": lines,
        "shipping_minor": amount(payload, "shipping_total", currency),
        "tax_minor": amount(payload, "total_tax", currency),
    }
    return canonical_event("order.paid", moment(payload, ("date_paid_gmt",)), data)
