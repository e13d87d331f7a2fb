"""Adapters for storefronts that sign and shape webhooks their own way: Shopify-style and
WooCommerce-style. Each turns the sender's payload into our canonical event, so the same
inbox, workers and program apply it.

- Shopify-style: `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the raw body),
  `X-Shopify-Topic` (`orders/paid`, `refunds/create`, `orders/cancelled`, `customers/create`,
  `customers/update`) and `X-Shopify-Webhook-Id`, the id a retry repeats, which we dedupe on.
- WooCommerce-style: `X-WC-Webhook-Signature` (the same HMAC) and `X-WC-Webhook-Topic`
  (`order.created` / `order.updated`, whose `status` says what happened, and
  `customer.created`). WooCommerce sends no id that is stable across deliveries, so we dedupe
  on the order id and status: an order paid twice is one `order.paid`.
Prices arrive as decimal strings in major units; they become minor units with the order's
currency exponent (2 unless the currency is one of the zero-decimal ones below). Neither sender
signs a timestamp: replays are stopped by the dedupe id instead. Topics we do not use are
acknowledged and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pointguard.errors import InvalidPayload

ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX"})
WOO_PAID_STATUSES = frozenset({"processing", "completed"})

Canonical = dict[str, Any]


def minor_units(amount: object, currency: str, field: str) -> int:
    """A decimal amount in major units (`"19.99"`) as integer minor units (1999)."""
    try:
        value = Decimal(str(amount if amount is not None else "0"))
    except InvalidOperation as error:
        raise InvalidPayload(f"{field} is not an amount: {amount!r}", field=field) from error
    exponent = 0 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 2
    minor = value.scaleb(exponent)
    if minor < 0 or minor != minor.to_integral_value():
        raise InvalidPayload(
            f"{field} is not a whole number of minor units: {amount!r}", field=field
        )
    return int(minor)


def _event(event_type: str, at: object, data: Canonical) -> Canonical:
    timestamp = str(at) if at else datetime.now(UTC).isoformat()
    return {"type": event_type, "timestamp": timestamp, "data": data}


def _need(payload: Mapping[str, Any], key: str, where: str = "$") -> Any:
    value = payload.get(key)
    if value is None or value == "":
        raise InvalidPayload(f"{where}.{key} is missing", field=f"{where}.{key}")
    return value


def shopify_to_canonical(
    topic: str, payload: Mapping[str, Any], customer_of_order: str | None
) -> Canonical | None:
    """The canonical event for a Shopify-style topic, or None for a topic we do not use.
    `customer_of_order`: for refunds, which carry no customer, the member of the order."""
    if topic == "orders/paid":
        currency = str(_need(payload, "currency"))
        lines = [
            {
                "line_id": str(_need(item, "id", f"$.line_items[{i}]")),
                "sku": str(item.get("sku") or item.get("variant_id") or ""),
                "category": str(item.get("product_type") or ""),
                "quantity": int(_need(item, "quantity", f"$.line_items[{i}]")),
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
        return _event(
            "order.paid",
            payload.get("processed_at") or payload.get("updated_at"),
            {
                "order_id": str(_need(payload, "id")),
                "customer_id": str(_need(customer, "id", "$.customer")),
                "currency": currency,
                "lines": lines,
                "shipping_minor": shipping,
                "tax_minor": minor_units(payload.get("total_tax"), currency, "$.total_tax"),
                "referral_code": _note_attribute(payload, "referral_code"),
                "ip": payload.get("browser_ip"),
            },
        )
    if topic == "refunds/create":
        order_id = str(_need(payload, "order_id"))
        return _event(
            "order.refunded",
            payload.get("created_at"),
            {
                "order_id": order_id,
                "customer_id": customer_of_order or "",
                "lines": [
                    {
                        "line_id": str(_need(item, "line_item_id", f"$.refund_line_items[{i}]")),
                        "quantity": int(_need(item, "quantity", f"$.refund_line_items[{i}]")),
                    }
                    for i, item in enumerate(payload.get("refund_line_items") or [])
                ],
            },
        )
    if topic == "orders/cancelled":
        customer = payload.get("customer") or {}
        return _event(
            "order.cancelled",
            payload.get("cancelled_at"),
            {
                "order_id": str(_need(payload, "id")),
                "customer_id": str(_need(customer, "id", "$.customer")),
            },
        )
    if topic in ("customers/create", "customers/update"):
        kind = "customer.created" if topic == "customers/create" else "customer.updated"
        return _event(
            kind,
            payload.get("updated_at") or payload.get("created_at"),
            {
                "customer_id": str(_need(payload, "id")),
            },
        )
    return None


def woocommerce_to_canonical(topic: str, payload: Mapping[str, Any]) -> Canonical | None:
    """The canonical event for a WooCommerce-style topic and order status, or None."""
    if topic == "customer.created":
        return _event(
            "customer.created",
            payload.get("date_created_gmt"),
            {
                "customer_id": str(_need(payload, "id")),
            },
        )
    if topic not in ("order.created", "order.updated"):
        return None
    status = str(payload.get("status") or "")
    order_id = str(_need(payload, "id"))
    customer_id = str(_need(payload, "customer_id"))
    if status in WOO_PAID_STATUSES:
        currency = str(_need(payload, "currency"))
        lines = []
        for i, item in enumerate(payload.get("line_items") or []):
            quantity = int(_need(item, "quantity", f"$.line_items[{i}]"))
            subtotal = minor_units(item.get("subtotal"), currency, f"$.line_items[{i}].subtotal")
            total = minor_units(item.get("total"), currency, f"$.line_items[{i}].total")
            lines.append(
                {
                    "line_id": str(_need(item, "id", f"$.line_items[{i}]")),
                    "sku": str(item.get("sku") or item.get("product_id") or ""),
                    "category": "",
                    "quantity": quantity,
                    "unit_price_minor": subtotal // quantity if quantity else 0,
                    "discount_minor": max(0, subtotal - total),
                }
            )
        return _event(
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
        return _event(
            "order.cancelled",
            payload.get("date_modified_gmt"),
            {"order_id": order_id, "customer_id": customer_id},
        )
    if status == "refunded":  # a full refund: every line, every unit
        return _event(
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


def _note_attribute(payload: Mapping[str, Any], name: str) -> str | None:
    for attribute in payload.get("note_attributes") or []:
        if isinstance(attribute, Mapping) and attribute.get("name") == name:
            return str(attribute.get("value"))
    return None
