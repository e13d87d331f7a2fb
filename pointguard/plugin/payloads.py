"""Canonical webhook payloads, and what each becomes for the program.

Every storefront event arrives as a Standard Webhooks payload:
`{"type": "order.paid", "timestamp": "<RFC 3339>", "data": {...}}`. Decoding refuses what the
program could not use (a missing field, a negative price, a quantity below one) naming the
field, and tolerates fields it does not know (storefronts send more than we read; the fraud
guard reads the rest from the stored payload).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from pointguard.errors import InvalidPayload
from pointguard.program.events import (
    ActionPerformed,
    Event,
    Minor,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
    Units,
)

Id = Annotated[str, Meta(min_length=1, max_length=200)]


class Envelope(Struct, frozen=True):
    type: Annotated[str, Meta(min_length=1, max_length=100)]
    timestamp: datetime
    data: dict[str, Any]


class Line(Struct, frozen=True):
    line_id: Id
    sku: str
    category: str
    quantity: Units
    unit_price_minor: Minor
    discount_minor: Minor = 0


class OrderPaidData(Struct, frozen=True):
    order_id: Id
    customer_id: Id
    currency: Annotated[str, Meta(min_length=3, max_length=3)]
    lines: Annotated[list[Line], Meta(min_length=1, max_length=500)]
    shipping_minor: Minor = 0
    tax_minor: Minor = 0
    referral_code: str | None = None


class RefundLine(Struct, frozen=True):
    line_id: Id
    quantity: Units


class OrderRefundedData(Struct, frozen=True):
    order_id: Id
    customer_id: Id
    lines: Annotated[list[RefundLine], Meta(min_length=1, max_length=500)]


class OrderCancelledData(Struct, frozen=True):
    order_id: Id
    customer_id: Id


class CustomerData(Struct, frozen=True):
    customer_id: Id
    referral_code: str | None = None
    birthday: date | None = None
    profile_completed: bool = False


class ActionData(Struct, frozen=True):
    customer_id: Id
    action: Id | None = None  # for action.performed: the merchant's own action name


def decode_envelope(body: bytes) -> Envelope:
    try:
        return msgspec.json.decode(body, type=Envelope)
    except msgspec.ValidationError as error:  # JSON, but not an event envelope
        raise _invalid(error) from error
    except msgspec.DecodeError as error:  # not JSON at all
        raise _invalid(error, "malformed_json") from error


def to_program_event(webhook_id: str, envelope: Envelope) -> Event | None:
    """The program event for a canonical payload, or None for a type the program ignores."""
    decode = _DECODERS.get(envelope.type)
    return None if decode is None else decode(webhook_id, envelope)


def _data(envelope: Envelope, kind: type[Any]) -> Any:
    try:
        return msgspec.convert(envelope.data, kind)
    except msgspec.ValidationError as error:
        raise _invalid(error, prefix="$.data") from error


def _invalid(
    error: msgspec.DecodeError, code: str | None = None, prefix: str = "$"
) -> InvalidPayload:
    message, _, path = str(error).partition(" - at ")
    field = prefix + path.strip("`").removeprefix("$") if path else prefix
    return InvalidPayload(f"{message} at {field}" if path else message, field=field, code=code)


def _order_paid(webhook_id: str, envelope: Envelope) -> Event:
    data: OrderPaidData = _data(envelope, OrderPaidData)
    return OrderPaid(
        event_id=webhook_id,
        member_id=data.customer_id,
        occurred_at=envelope.timestamp,
        order_id=data.order_id,
        currency=data.currency,
        shipping_minor=data.shipping_minor,
        tax_minor=data.tax_minor,
        referral_code=data.referral_code,
        lines=[
            OrderLine(
                line_id=x.line_id,
                sku=x.sku,
                category=x.category,
                quantity=x.quantity,
                unit_price_minor=x.unit_price_minor,
                discount_minor=x.discount_minor,
            )
            for x in data.lines
        ],
    )


def _order_refunded(webhook_id: str, envelope: Envelope) -> Event:
    data: OrderRefundedData = _data(envelope, OrderRefundedData)
    return OrderRefunded(
        event_id=webhook_id,
        member_id=data.customer_id,
        occurred_at=envelope.timestamp,
        order_id=data.order_id,
        lines=[RefundedLine(line_id=x.line_id, quantity=x.quantity) for x in data.lines],
    )


def _order_cancelled(webhook_id: str, envelope: Envelope) -> Event:
    data: OrderCancelledData = _data(envelope, OrderCancelledData)
    return OrderCancelled(
        event_id=webhook_id,
        member_id=data.customer_id,
        occurred_at=envelope.timestamp,
        order_id=data.order_id,
    )


def _customer(action: str | None) -> Any:
    def decode(webhook_id: str, envelope: Envelope) -> Event:
        data: CustomerData = _data(envelope, CustomerData)
        name = action or ("profile.completed" if data.profile_completed else "profile.updated")
        return ActionPerformed(
            event_id=webhook_id,
            member_id=data.customer_id,
            occurred_at=envelope.timestamp,
            action=name,
            birthday=data.birthday,
            referral_code=data.referral_code,
        )

    return decode


def _action(fixed: str | None) -> Any:
    def decode(webhook_id: str, envelope: Envelope) -> Event:
        data: ActionData = _data(envelope, ActionData)
        name = fixed or data.action
        if not name:
            raise InvalidPayload("action.performed needs data.action", field="$.data.action")
        return ActionPerformed(
            event_id=webhook_id,
            member_id=data.customer_id,
            occurred_at=envelope.timestamp,
            action=name,
        )

    return decode


_DECODERS = {
    "order.paid": _order_paid,
    "order.refunded": _order_refunded,
    "order.cancelled": _order_cancelled,
    "customer.created": _customer("signup"),
    "customer.updated": _customer(None),
    "review.published": _action("review.published"),
    "social.shared": _action("social.shared"),
    "action.performed": _action(None),
}
