"""Saleor-style senders: `Saleor-Signature` (a detached RS256 JWS, see `plugin/jws.py`) and
`Saleor-Event` (`order_fully_paid`, `order_refunded`, `order_cancelled`, `customer_created`,
`customer_updated`), with a subscription payload: `{"order": {...}}` or `{"user": {...}}`,
camelCase fields, prices as `TaxedMoney` (`{"net": {"amount", "currency"}, "gross": ...}`).
The dedupe id is derived from the payload (`saleor_to_canonical` says how and why).

The fraud guard's signals: a paid order's `userEmail` (or `user.email`), `shippingAddress` and
its `phone`, and the `customerIpAddress` of its newest payment that has one (Saleor records
the buyer's IP on payments, not on the order); a customer's `email` and
`defaultShippingAddress` and its `phone`. Saleor sends no device id, user agent or card
fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pointguard.errors import EventMismatch, InvalidPayload
from pointguard.plugin.adapters.fields import (
    Adapted,
    Canonical,
    address,
    amount,
    canonical_event,
    currency_code,
    dedupe_id,
    first,
    listed_value,
    moment,
    need,
    obj,
    objects,
    optional_email,
    optional_ip,
    optional_text,
    quantity,
    signals,
    text,
)

# Saleor's event names (the `Saleor-Event` header) and their subscription types (`__typename`).
SALEOR_EVENTS = {
    "order_fully_paid": "OrderFullyPaid",
    "order_refunded": "OrderRefunded",
    "order_cancelled": "OrderCancelled",
    "customer_created": "CustomerCreated",
    "customer_updated": "CustomerUpdated",
}
SALEOR_REFUND_FULFILLMENTS = frozenset({"REFUNDED", "REFUNDED_AND_RETURNED"})
# A Saleor `Address`'s fields for each of the canonical address's.
SALEOR_ADDRESS = {
    "line1": ("streetAddress1",),
    "line2": ("streetAddress2",),
    "city": ("city",),
    "postal_code": ("postalCode",),
    "region": ("countryArea",),
    "country": ("country.code",),
}


def saleor_to_canonical(event: str, payload: Mapping[str, Any], body_digest: str) -> Adapted:
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
    if event in ("customer_created", "customer_updated"):
        user = obj(need(payload, "user"), "$.user")
        user_id = text(user, "id", "$.user")
        at = _moment(payload, user, "$.user", ("updatedAt", "dateJoined"))
        data: Canonical = {"customer_id": user_id} | signals(
            email=optional_email(user, "email", "$.user"),
            phone=first(user, ("defaultShippingAddress.phone",), "$.user"),
            shipping_address=address(user, "defaultShippingAddress", "$.user", SALEOR_ADDRESS),
        )
        if event == "customer_created":
            data["referral_code"] = listed_value(user, "metadata", "key", "referral_code", "$.user")
            webhook_id = dedupe_id("saleor", event, user_id)
            return webhook_id, canonical_event("customer.created", at, data)
        webhook_id = dedupe_id("saleor", event, user_id, body_digest)
        return webhook_id, canonical_event("customer.updated", at, data)
    if expected is None:
        return dedupe_id("saleor", event, body_digest), None
    order = obj(need(payload, "order"), "$.order")
    order_id = text(order, "id", "$.order")
    customer_id = _customer(order)
    at = _moment(payload, order, "$.order", ("updatedAt", "created"))
    if event == "order_fully_paid":
        data = _paid(order, order_id, customer_id)
        return dedupe_id("saleor", event, order_id), canonical_event("order.paid", at, data)
    if event == "order_cancelled":
        data = {"order_id": order_id, "customer_id": customer_id}
        return dedupe_id("saleor", event, order_id), canonical_event("order.cancelled", at, data)
    refund = _refund(order)
    if refund is None:  # money back without lines: nothing says which points to take back
        return dedupe_id("saleor", event, body_digest), None
    refund_id, lines = refund
    data = {"order_id": order_id, "customer_id": customer_id, "lines": lines}
    webhook_id = dedupe_id("saleor", event, order_id, refund_id)
    return webhook_id, canonical_event("order.refunded", at, data)


def _moment(
    payload: Mapping[str, Any], subject: Mapping[str, Any], where: str, keys: tuple[str, ...]
) -> datetime | None:
    """When the event was issued, or failing that when its subject (order, user) changed."""
    return moment(payload, ("issuedAt",)) or moment(subject, keys, where)


def _paid(order: Mapping[str, Any], order_id: str, customer_id: str) -> Canonical:
    currency = _currency(order)
    lines = []
    for where, line in objects(order.get("lines"), "$.order.lines"):
        paid = _taxed_money(line, "unitPrice", currency, where)
        if paid is None:
            raise InvalidPayload(f"{where}.unitPrice is missing", field=f"{where}.unitPrice")
        listed = _taxed_money(line, "undiscountedUnitPrice", currency, where)
        unit = paid if listed is None else listed
        units = quantity(line, "quantity", where)
        variant = obj(line.get("variant"), f"{where}.variant")
        product = obj(variant.get("product"), f"{where}.variant.product")
        lines.append(
            {
                "line_id": text(line, "id", where),
                "sku": optional_text(line, "productSku", where)
                or optional_text(variant, "sku", f"{where}.variant")
                or optional_text(variant, "id", f"{where}.variant")
                or "",
                "category": _name(product, "category", f"{where}.variant.product")
                or _name(product, "productType", f"{where}.variant.product"),
                "quantity": units,
                "unit_price_minor": unit,
                "discount_minor": max(0, unit - paid) * units,
            }
        )
    total = obj(order.get("total"), "$.order.total")
    tax = obj(total.get("tax"), "$.order.total.tax")
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "currency": currency,
        "lines": lines,
        "shipping_minor": _taxed_money(order, "shippingPrice", currency, "$.order") or 0,
        "tax_minor": amount(tax, "amount", currency, "$.order.total.tax"),
        "referral_code": listed_value(order, "metadata", "key", "referral_code", "$.order"),
    } | signals(
        ip=_payment_ip(order),
        email=first(order, ("userEmail", "user.email"), "$.order", optional_email),
        phone=first(order, ("shippingAddress.phone",), "$.order"),
        shipping_address=address(order, "shippingAddress", "$.order", SALEOR_ADDRESS),
    )


def _payment_ip(order: Mapping[str, Any]) -> str | None:
    """The buyer's IP address as the order's newest payment that recorded one has it."""
    for where, payment in reversed(objects(order.get("payments"), "$.order.payments")):
        ip = optional_ip(payment, "customerIpAddress", where)
        if ip is not None:
            return ip
    return None


def _refund(order: Mapping[str, Any]) -> tuple[str, list[Canonical]] | None:
    """(refund id, lines) of the refund an `order_refunded` reports, or None if it names no
    lines: every line in full if the order is `FULLY_REFUNDED`, else the lines of its newest
    refund fulfillment (the refund that raised this event)."""
    if order.get("paymentStatus") == "FULLY_REFUNDED":
        lines = [
            {"line_id": text(line, "id", where), "quantity": quantity(line, "quantity", where)}
            for where, line in objects(order.get("lines"), "$.order.lines")
        ]
        return ("full", lines) if lines else None
    refunds = [
        (where, fulfillment)
        for where, fulfillment in objects(order.get("fulfillments"), "$.order.fulfillments")
        if optional_text(fulfillment, "status", where) in SALEOR_REFUND_FULFILLMENTS
    ]
    if not refunds:
        return None
    # Saleor numbers an order's fulfillments in order (`fulfillmentOrder`). max() keeps the
    # first of equals, so over the reversed list a tie (or no numbers) goes to the last listed.
    where, newest = max(reversed(refunds), key=lambda x: _number(x[1].get("fulfillmentOrder")))
    lines = [
        {
            "line_id": text(obj(line.get("orderLine"), f"{at}.orderLine"), "id", f"{at}.orderLine"),
            "quantity": quantity(line, "quantity", at),
        }
        for at, line in objects(newest.get("lines"), f"{where}.lines")
    ]
    return (text(newest, "id", where), lines) if lines else None


def _customer(order: Mapping[str, Any]) -> str:
    """The member of an order: its user's id, or for a guest checkout its email."""
    user = obj(order.get("user"), "$.order.user")
    member = optional_text(user, "id", "$.order.user") or optional_text(
        order, "userEmail", "$.order"
    )
    if member is None:
        raise InvalidPayload("$.order.user.id is missing (and no userEmail)", field="$.order.user")
    return member


def _currency(order: Mapping[str, Any]) -> str:
    total = obj(order.get("total"), "$.order.total")
    for part in ("gross", "net"):
        money = obj(total.get(part), f"$.order.total.{part}")
        if money.get("currency"):
            return currency_code(money, "currency", f"$.order.total.{part}")
    channel = obj(order.get("channel"), "$.order.channel")
    if channel.get("currencyCode"):
        return currency_code(channel, "currencyCode", "$.order.channel")
    raise InvalidPayload(
        "$.order has no currency (total.gross.currency or channel.currencyCode)",
        field="$.order.total",
    )


def _taxed_money(parent: Mapping[str, Any], key: str, currency: str, where: str) -> int | None:
    """Minor units of the Saleor `TaxedMoney` at `key`: its net amount, or gross if the
    payload has no net (the program counts tax on its own, from `total.tax`). None if absent."""
    taxed = obj(parent.get(key), f"{where}.{key}")
    for part in ("net", "gross"):
        money = obj(taxed.get(part), f"{where}.{key}.{part}")
        if money.get("amount") is not None:
            return amount(money, "amount", currency, f"{where}.{key}.{part}")
    return None


def _name(parent: Mapping[str, Any], key: str, where: str) -> str:
    """The `name` of the object at `key` (a product's category or type), or ""."""
    return optional_text(obj(parent.get(key), f"{where}.{key}"), "name", f"{where}.{key}") or ""


def _number(value: object) -> int:
    return value if isinstance(value, int) else 0
