"""WooCommerce-style senders: `X-WC-Webhook-Signature` (base64 HMAC-SHA256 of the raw body) and
`X-WC-Webhook-Topic` (`order.created` / `order.updated`, whose `status` says what happened, and
`customer.created`). Only the body is signed, and WooCommerce sends no id that is stable across
deliveries, so the body must be what its topic claims and the dedupe id comes from the body
(`woocommerce_to_canonical`).

The fraud guard's signals: a paid order's `customer_ip_address`, `customer_user_agent`,
`billing.email`, `billing.phone` and `shipping` address; a customer's `email`, `billing.phone`
and `shipping` address. WooCommerce sends no device id and no card fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
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
    moment,
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

WOO_PAID_STATUSES = frozenset({"processing", "completed"})
WOO_ORDER_TOPICS = frozenset({"order.created", "order.updated"})
# A WooCommerce address's fields for each of the canonical address's.
WOO_ADDRESS = {
    "line1": ("address_1",),
    "line2": ("address_2",),
    "city": ("city",),
    "postal_code": ("postcode",),
    "region": ("state",),
    "country": ("country",),
}


def woocommerce_to_canonical(
    topic: str, payload: Mapping[str, Any], *, body_digest: str
) -> Adapted:
    """The dedupe id and the canonical event for a WooCommerce-style topic and order status
    (None: ignore it).

    An order topic needs an order (`line_items`), `customer.created` a customer
    (`check_customer`), else `TopicMismatch` naming the field. The dedupe id names the fact the
    signed body reports, never the topic (which is not signed): `order.paid:{order}` (an order
    `processing`, then `completed`, is paid once), `order.cancelled:{order}`,
    `order.refunded:{order}` (a full refund, once, though WooCommerce renders a new body for
    every change to the order), `customer.created:{customer}`. An order in a status we do not
    use, and a topic we do not use, get `ignored:{digest of the body}`: a resent body repeats
    it, and no made-up topic makes a new row."""
    ignored = dedupe_id("woocommerce", "ignored", body_digest), None
    if topic == "customer.created":
        check_customer(topic, payload)
        customer_id = text(payload, "id")
        at = moment(payload, ("date_created_gmt",))
        data: Canonical = {"customer_id": customer_id} | signals(
            email=optional_email(payload, "email"),
            phone=first(payload, ("billing.phone",)),
            shipping_address=address(payload, "shipping", "$", WOO_ADDRESS),
        )
        webhook_id = dedupe_id("woocommerce", "customer.created", customer_id)
        return webhook_id, canonical_event("customer.created", at, data)
    if topic not in WOO_ORDER_TOPICS:
        return ignored
    if not isinstance(payload.get("line_items"), list):
        raise topic_mismatch(topic, "$.line_items", "is not a list: not an order")
    order_id, customer_id = text(payload, "id"), text(payload, "customer_id")
    status = optional_text(payload, "status") or ""
    event: Canonical
    if status in WOO_PAID_STATUSES:
        event = _paid(payload, order_id, customer_id)
    elif status == "cancelled":
        data = {"order_id": order_id, "customer_id": customer_id}
        event = canonical_event("order.cancelled", _modified(payload), data)
    elif status == "refunded":  # a full refund: every line, every unit
        lines = [
            {"line_id": text(item, "id", where), "quantity": quantity(item, "quantity", where)}
            for where, item in objects(payload.get("line_items"), "$.line_items")
        ]
        data = {"order_id": order_id, "customer_id": customer_id, "lines": lines}
        event = canonical_event("order.refunded", _modified(payload), data)
    else:
        return ignored
    return dedupe_id("woocommerce", event["type"], order_id), event


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
    } | signals(
        ip=optional_ip(payload, "customer_ip_address"),
        user_agent=optional_user_agent(payload, "customer_user_agent"),
        email=first(payload, ("billing.email",), read=optional_email),
        phone=first(payload, ("billing.phone",)),
        shipping_address=address(payload, "shipping", "$", WOO_ADDRESS),
    )
    return canonical_event("order.paid", moment(payload, ("date_paid_gmt",)), data)


def _modified(payload: Mapping[str, Any]) -> datetime | None:
    return moment(payload, ("date_modified_gmt",))
