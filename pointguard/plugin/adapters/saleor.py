"""Saleor-style senders: `Saleor-Signature` (a detached RS256 JWS, see `plugin/jws.py`) and
`Saleor-Event` (`order_fully_paid`, `order_refunded`, `order_cancelled`, `customer_created`,
`customer_updated`), with a subscription payload: `{"order": {...}}` or `{"user": {...}}`,
camelCase fields, prices as `TaxedMoney` (`{"net": {"amount", "currency"}, "gross": ...}`).
The dedupe id is derived from the payload (`saleor_to_canonical` says how and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pointguard.errors import EventMismatch, InvalidPayload
from pointguard.plugin.adapters.fields import (
    Canonical,
    canonical_event,
    listed_value,
    minor_units,
    need,
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
        user = _object(need(payload, "user"), "$.user")
        user_id = str(need(user, "id", "$.user"))
        at = at or user.get("updatedAt") or user.get("dateJoined")
        if event == "customer_created":
            data: Canonical = {
                "customer_id": user_id,
                "referral_code": listed_value(user.get("metadata"), "key", "referral_code"),
            }
            return f"saleor:{event}:{user_id}", canonical_event("customer.created", at, data)
        data = {"customer_id": user_id}
        return f"saleor:{event}:{user_id}:{body_digest}", canonical_event(
            "customer.updated", at, data
        )
    if expected is None:
        return f"saleor:{event}:{body_digest}", None
    order = _object(need(payload, "order"), "$.order")
    order_id = str(need(order, "id", "$.order"))
    customer_id = _customer(order)
    at = at or order.get("updatedAt") or order.get("created")
    if event == "order_fully_paid":
        data = _paid(order, order_id, customer_id)
        return f"saleor:{event}:{order_id}", canonical_event("order.paid", at, data)
    if event == "order_cancelled":
        data = {"order_id": order_id, "customer_id": customer_id}
        return f"saleor:{event}:{order_id}", canonical_event("order.cancelled", at, data)
    refund = _refund(order)
    if refund is None:  # money back without lines: nothing says which points to take back
        return f"saleor:{event}:{body_digest}", None
    refund_id, lines = refund
    data = {"order_id": order_id, "customer_id": customer_id, "lines": lines}
    return f"saleor:{event}:{order_id}:{refund_id}", canonical_event("order.refunded", at, data)


def _paid(order: Mapping[str, Any], order_id: str, customer_id: str) -> Canonical:
    currency = _currency(order)
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
                "line_id": str(need(line, "id", where)),
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
        "referral_code": listed_value(order.get("metadata"), "key", "referral_code"),
    }


def _refund(order: Mapping[str, Any]) -> tuple[str, list[Canonical]] | None:
    """(refund id, lines) of the refund an `order_refunded` reports, or None if it names no
    lines: every line in full if the order is `FULLY_REFUNDED`, else the lines of its newest
    refund fulfillment (the refund that raised this event)."""
    if order.get("paymentStatus") == "FULLY_REFUNDED":
        lines = [
            {"line_id": str(need(line, "id", where)), "quantity": _quantity(line, where)}
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
            "line_id": str(need(_object(line.get("orderLine"), at), "id", f"{at}.orderLine")),
            "quantity": _quantity(line, at),
        }
        for at, line in _objects(newest.get("lines"), f"{where}.lines")
    ]
    return (str(need(newest, "id", where)), lines) if lines else None


def _customer(order: Mapping[str, Any]) -> str:
    """The member of an order: its user's id, or for a guest checkout its email."""
    user = _object(order.get("user"), "$.order.user")
    member = user.get("id") or order.get("userEmail")
    if not member:
        raise InvalidPayload("$.order.user.id is missing (and no userEmail)", field="$.order.user")
    return str(member)


def _currency(order: Mapping[str, Any]) -> str:
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


def _name(value: object) -> str:
    return str(value.get("name") or "") if isinstance(value, Mapping) else ""


def _number(value: object) -> int:
    return value if isinstance(value, int) else 0


def _quantity(line: Mapping[str, Any], where: str) -> int:
    quantity = need(line, "quantity", where)
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
