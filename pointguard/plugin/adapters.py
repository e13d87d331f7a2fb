"""Adapters for storefronts that sign and shape webhooks their own way: Shopify-style,
WooCommerce-style and Saleor-style. Each turns the sender's payload into our canonical event,
so the same inbox, workers and program apply it.

- Shopify-style: `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the raw body),
  `X-Shopify-Topic` (`orders/paid`, `refunds/create`, `orders/cancelled`, `customers/create`,
  `customers/update`) and `X-Shopify-Webhook-Id`, the id a retry repeats, which we dedupe on.
- WooCommerce-style: `X-WC-Webhook-Signature` (the same HMAC) and `X-WC-Webhook-Topic`
  (`order.created` / `order.updated`, whose `status` says what happened, and
  `customer.created`). WooCommerce sends no id that is stable across deliveries, so we dedupe
  on the order id and status: an order paid twice is one `order.paid`.
- Saleor-style: `Saleor-Signature` (a detached RS256 JWS, see `jws.py`) and `Saleor-Event`
  (`order_fully_paid`, `order_refunded`, `order_cancelled`, `customer_created`,
  `customer_updated`), with a subscription payload: `{"order": {...}}` or `{"user": {...}}`,
  camelCase fields, prices as `TaxedMoney` (`{"net": {"amount", "currency"}, "gross": ...}`).
  The dedupe id is derived from the payload (`saleor_to_canonical` says how and why).
Prices arrive as decimal amounts in major units; they become minor units with the order's
currency exponent (2 unless the currency is one of the zero-decimal ones below). No sender
signs a timestamp: replays are stopped by the dedupe id instead. Topics we do not use are
acknowledged and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pointguard.errors import EventMismatch, InvalidPayload

ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX"})
WOO_PAID_STATUSES = frozenset({"processing", "completed"})
# Saleor's event names (the `Saleor-Event` header) and their subscription types (`__typename`).
SALEOR_EVENTS = {
    "order_fully_paid": "OrderFullyPaid",
    "order_refunded": "OrderRefunded",
    "order_cancelled": "OrderCancelled",
    "customer_created": "CustomerCreated",
    "customer_updated": "CustomerUpdated",
}
SALEOR_REFUND_FULFILLMENTS = frozenset({"REFUNDED", "REFUNDED_AND_RETURNED"})

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


def saleor_to_canonical(
    event: str, payload: Mapping[str, Any], body_digest: str
) -> tuple[str, Canonical | None]:
    """The dedupe id and the canonical event for a Saleor-style event (None: ignore it).

    Saleor sends neither a delivery id nor a signed timestamp, so the id, unique per merchant in
    the inbox, is also what makes a replayed delivery change nothing. It names the fact that the
    event reports, not the bytes that carried it, wherever the fact happens once:
    `order_fully_paid:{order}`, `order_cancelled:{order}`, `customer_created:{user}`, and for a
    refund the refund fulfillment it reports (`order_refunded:{order}:{fulfillment}`, or
    `:full` for an order refunded in full). A hash of the body would not do for these: Saleor
    renders a fresh body (a new `issuedAt`) for every event, and refunds are applied as
    increments, so one refund reported in two bodies would be refunded twice. An update to a
    customer can happen any number of times, so `customer_updated:{user}:{digest of the body}`:
    a retry or a replay repeats the bytes, a real update does not. Unused events get
    `{event}:{digest}` and are recorded as ignored.

    `Saleor-Event` is not signed. When the body names its type (`__typename`, which the query
    in docs/webhooks.md asks for), a header naming another event raises `EventMismatch`, so a
    captured `order_fully_paid` body cannot be replayed as an `order_cancelled`.
    """
    typename = payload.get("__typename")
    expected = SALEOR_EVENTS.get(event)
    if expected is not None and typename is not None and typename != expected:
        raise EventMismatch(
            f"Saleor-Event is {event!r} but the signed body is a {str(typename)[:50]!r} event"
        )
    at = payload.get("issuedAt")
    if event in ("customer_created", "customer_updated"):
        user = _object(_need(payload, "user"), "$.user")
        user_id = str(_need(user, "id", "$.user"))
        at = at or user.get("updatedAt") or user.get("dateJoined")
        if event == "customer_created":
            data: Canonical = {
                "customer_id": user_id,
                "referral_code": _metadata(user, "referral_code"),
            }
            return f"saleor:{event}:{user_id}", _event("customer.created", at, data)
        data = {"customer_id": user_id}
        return f"saleor:{event}:{user_id}:{body_digest}", _event("customer.updated", at, data)
    if expected is None:
        return f"saleor:{event}:{body_digest}", None
    order = _object(_need(payload, "order"), "$.order")
    order_id = str(_need(order, "id", "$.order"))
    customer_id = _saleor_customer(order)
    at = at or order.get("updatedAt") or order.get("created")
    if event == "order_fully_paid":
        data = _saleor_paid(order, order_id, customer_id)
        return f"saleor:{event}:{order_id}", _event("order.paid", at, data)
    if event == "order_cancelled":
        data = {"order_id": order_id, "customer_id": customer_id}
        return f"saleor:{event}:{order_id}", _event("order.cancelled", at, data)
    refund = _saleor_refund(order)
    if refund is None:  # money back without lines: nothing says which points to take back
        return f"saleor:{event}:{body_digest}", None
    refund_id, lines = refund
    data = {"order_id": order_id, "customer_id": customer_id, "lines": lines}
    return f"saleor:{event}:{order_id}:{refund_id}", _event("order.refunded", at, data)


def _saleor_paid(order: Mapping[str, Any], order_id: str, customer_id: str) -> Canonical:
    currency = _saleor_currency(order)
    lines = []
    for where, line in _objects(order.get("lines"), "$.order.lines"):
        paid = _taxed_money(line.get("unitPrice"), currency, f"{where}.unitPrice")
        if paid is None:
            raise InvalidPayload(f"{where}.unitPrice is missing", field=f"{where}.unitPrice")
        listed = _taxed_money(
            line.get("undiscountedUnitPrice"), currency, f"{where}.undiscountedUnitPrice"
        )
        unit = paid if listed is None else listed
        quantity = _quantity(line, where)
        variant = _object(line.get("variant"), f"{where}.variant")
        product = _object(variant.get("product"), f"{where}.variant.product")
        lines.append(
            {
                "line_id": str(_need(line, "id", where)),
                "sku": str(line.get("productSku") or variant.get("sku") or variant.get("id") or ""),
                "category": _name(product.get("category")) or _name(product.get("productType")),
                "quantity": quantity,
                "unit_price_minor": unit,
                "discount_minor": max(0, unit - paid) * quantity,
            }
        )
    total = _object(order.get("total"), "$.order.total")
    tax = _object(total.get("tax"), "$.order.total.tax")
    shipping = _taxed_money(order.get("shippingPrice"), currency, "$.order.shippingPrice")
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "currency": currency,
        "lines": lines,
        "shipping_minor": shipping or 0,
        "tax_minor": minor_units(tax.get("amount"), currency, "$.order.total.tax.amount"),
        "referral_code": _metadata(order, "referral_code"),
    }


def _saleor_refund(order: Mapping[str, Any]) -> tuple[str, list[Canonical]] | None:
    """(refund id, lines) of the refund an `order_refunded` reports, or None if it names no
    lines: every line in full if the order is `FULLY_REFUNDED`, else the lines of its newest
    refund fulfillment (the refund that raised this event)."""
    if order.get("paymentStatus") == "FULLY_REFUNDED":
        lines = [
            {"line_id": str(_need(line, "id", where)), "quantity": _quantity(line, where)}
            for where, line in _objects(order.get("lines"), "$.order.lines")
        ]
        return ("full", lines) if lines else None
    refunds = [
        (where, fulfillment)
        for where, fulfillment in _objects(order.get("fulfillments"), "$.order.fulfillments")
        if fulfillment.get("status") in SALEOR_REFUND_FULFILLMENTS
    ]
    if not refunds:
        return None
    # Saleor numbers an order's fulfillments in order (`fulfillmentOrder`). max() keeps the
    # first of equals, so over the reversed list a tie (or no numbers) goes to the last listed.
    where, newest = max(reversed(refunds), key=lambda x: _number(x[1].get("fulfillmentOrder")))
    lines = [
        {
            "line_id": str(_need(_object(line.get("orderLine"), at), "id", f"{at}.orderLine")),
            "quantity": _quantity(line, at),
        }
        for at, line in _objects(newest.get("lines"), f"{where}.lines")
    ]
    return (str(_need(newest, "id", where)), lines) if lines else None


def _saleor_customer(order: Mapping[str, Any]) -> str:
    """The member of an order: its user's id, or for a guest checkout its email."""
    user = _object(order.get("user"), "$.order.user")
    member = user.get("id") or order.get("userEmail")
    if not member:
        raise InvalidPayload("$.order.user.id is missing (and no userEmail)", field="$.order.user")
    return str(member)


def _saleor_currency(order: Mapping[str, Any]) -> str:
    total = _object(order.get("total"), "$.order.total")
    for part in ("gross", "net"):
        currency = _object(total.get(part), f"$.order.total.{part}").get("currency")
        if currency:
            return str(currency)
    channel = _object(order.get("channel"), "$.order.channel")
    if channel.get("currencyCode"):
        return str(channel["currencyCode"])
    raise InvalidPayload(
        "$.order has no currency (total.gross.currency or channel.currencyCode)",
        field="$.order.total",
    )


def _taxed_money(value: object, currency: str, where: str) -> int | None:
    """Minor units of a Saleor `TaxedMoney`: its net amount, or gross if the payload has no net
    (the program counts tax on its own, from `total.tax`). None if absent."""
    taxed = _object(value, where)
    for part in ("net", "gross"):
        money = _object(taxed.get(part), f"{where}.{part}")
        if money.get("amount") is not None:
            return minor_units(money["amount"], currency, f"{where}.{part}.amount")
    return None


def _metadata(owner: Mapping[str, Any], key: str) -> str | None:
    for item in owner.get("metadata") or []:
        if isinstance(item, Mapping) and item.get("key") == key:
            return str(item.get("value"))
    return None


def _name(value: object) -> str:
    return str(value.get("name") or "") if isinstance(value, Mapping) else ""


def _number(value: object) -> int:
    return value if isinstance(value, int) else 0


def _quantity(line: Mapping[str, Any], where: str) -> int:
    quantity = _need(line, "quantity", where)
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        raise InvalidPayload(f"{where}.quantity is not a whole number", field=f"{where}.quantity")
    return quantity


def _object(value: object, where: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object, {} if it is absent; InvalidPayload if it is not."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidPayload(f"{where} is not an object", field=where)
    return value


def _objects(value: object, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The objects of a JSON list, each with its path; [] if the list is absent."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPayload(f"{where} is not a list", field=where)
    return [(f"{where}[{i}]", _object(item, f"{where}[{i}]")) for i, item in enumerate(value)]
