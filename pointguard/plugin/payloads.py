"""Canonical webhook payloads, and what each becomes for the program.

Every storefront event arrives as a Standard Webhooks payload:
`{"type": "order.paid", "timestamp": "<RFC 3339>", "data": {...}}`. Decoding refuses what the
program could not use (a missing field, a negative price, a quantity below one) naming the
field, and tolerates fields it does not know (storefronts send more than we read; the stored
payload keeps them).

Bounds at the door (docs/webhooks.md#limits): every body is a JSON document PostgreSQL can
store (`json_document`), and every value the program reads has a maximum below what its
arithmetic and columns hold, so that an extreme value is a 422 naming its field, never a ledger
row, a dead letter, or a 500.

Any event's data may also carry what the storefront knows of who is behind it (device, IP, user
agent; for signups, profile changes and paid orders the person's email, phone and shipping
address; for a paid order the card's fingerprint): checked like the rest, and handed to the
program as the event's `Signals`, which only the fraud guard reads.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, date, datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from pointguard.errors import InvalidPayload
from pointguard.program.events import (
    ActionPerformed,
    Address,
    Event,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
    RefundedLine,
    Signals,
)

# Any amount, and an order's lines, shipping and tax together: 10^12 minor units (ten billion
# in a two-decimal currency). Points are amounts times a rate; this keeps them far inside the
# ledger's bigint columns.
MAX_AMOUNT_MINOR = 10**12
MAX_QUANTITY = 1_000_000  # units of one line
MAX_LINES = 500  # lines of an order or a refund
MAX_TEXT_CHARS = 200  # ids, SKUs, categories, codes, topics: each is a key or a label
MAX_EMAIL_CHARS = 254  # the longest address SMTP can deliver to (RFC 5321's path, less <>)
# Browsers send 100 to 300 characters; in-app browsers append their own tokens.
MAX_USER_AGENT_CHARS = 1000
MAX_JSON_DEPTH = 32  # storefronts' payloads nest under 10 levels
# Whole numbers anywhere in a body: what a bigint holds, and what every storefront's ids fit in.
MAX_JSON_INT = 2**63 - 1
# Times of events: the program adds return windows and expiry periods to them, which must stay
# inside what a datetime holds.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

Id = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
Text = Annotated[str, Meta(max_length=MAX_TEXT_CHARS)]
Minor = Annotated[int, Meta(ge=0, le=MAX_AMOUNT_MINOR)]
Units = Annotated[int, Meta(ge=1, le=MAX_QUANTITY)]
Email = Annotated[str, Meta(max_length=MAX_EMAIL_CHARS)]
UserAgent = Annotated[str, Meta(max_length=MAX_USER_AGENT_CHARS)]
Rating = Annotated[int, Meta(ge=1, le=5)]  # stars


class Envelope(Struct, frozen=True):
    type: Annotated[str, Meta(min_length=1, max_length=100)]
    timestamp: Annotated[datetime, Meta(tz=True)]
    data: dict[str, Any]


class AddressData(Struct, frozen=True):
    line1: Text | None = None
    line2: Text | None = None
    city: Text | None = None
    postal_code: Text | None = None
    region: Text | None = None
    country: Text | None = None


class EventData(Struct, frozen=True, kw_only=True):
    """What every event's data has: the member, and the signals it may carry of the device and
    network behind the event."""

    customer_id: Id
    device_id: Text | None = None
    ip: Text | None = None  # an IPv4 or IPv6 address (`check_ip`)
    user_agent: UserAgent | None = None


class PersonData(EventData, frozen=True, kw_only=True):
    """The data of a customer's events and a paid order, whose signals include the person."""

    email: Email | None = None  # `check_email`
    phone: Text | None = None
    shipping_address: AddressData | None = None


class Line(Struct, frozen=True):
    line_id: Id
    sku: Text
    category: Text
    quantity: Units
    unit_price_minor: Minor
    discount_minor: Minor = 0


class OrderPaidData(PersonData, frozen=True, kw_only=True):
    order_id: Id
    currency: Annotated[str, Meta(min_length=3, max_length=3)]
    lines: Annotated[list[Line], Meta(min_length=1, max_length=MAX_LINES)]
    shipping_minor: Minor = 0
    tax_minor: Minor = 0
    referral_code: Text | None = None
    payment_fingerprint: Text | None = None  # a signal: the card's, from the payment provider


class RefundLine(Struct, frozen=True):
    line_id: Id
    quantity: Units


class OrderRefundedData(EventData, frozen=True, kw_only=True):
    order_id: Id
    lines: Annotated[list[RefundLine], Meta(min_length=1, max_length=MAX_LINES)]


class OrderCancelledData(EventData, frozen=True, kw_only=True):
    order_id: Id


class CustomerData(PersonData, frozen=True, kw_only=True):
    referral_code: Text | None = None
    own_referral_code: Text | None = None  # for customer.created: the storefront's own code
    birthday: date | None = None
    profile_completed: bool = False


class ActionData(EventData, frozen=True, kw_only=True):
    action: Id | None = None  # for action.performed: the merchant's own action name


class ReviewData(ActionData, frozen=True, kw_only=True):
    sku: Text | None = None
    rating: Rating | None = None


def json_document(body: bytes) -> Any:
    """The JSON document of a body, if PostgreSQL can store it as `jsonb` and Python can walk
    it: nested at most `MAX_JSON_DEPTH` levels, no NUL in a string (`text` cannot hold one),
    whole numbers within `MAX_JSON_INT`. Stored re-encoded (`store_json`), never as the raw
    bytes, whose number spellings (`1e-5000`) PostgreSQL may refuse."""
    document = _decoded(body)
    _check_storable(document, "$", 0)
    return document


def store_json(document: Any) -> str:
    """The text a checked document is stored as."""
    return msgspec.json.encode(document).decode()


def decode_envelope(stored: bytes) -> Envelope:
    """The envelope of a canonical payload from the inbox (the worker reads them with this).
    The database holds it, so it is storable: only its shape is checked again, not walked."""
    return envelope_of(_decoded(stored))


def _decoded(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise _invalid(error, "malformed_json") from error
    except RecursionError as error:  # far deeper than MAX_JSON_DEPTH
        raise InvalidPayload(
            f"nested deeper than {MAX_JSON_DEPTH} levels", code="malformed_json"
        ) from error


def envelope_of(document: Any) -> Envelope:
    """The envelope of a checked document; InvalidPayload naming the field if it is not one."""
    try:
        envelope = msgspec.convert(document, Envelope)
    except msgspec.ValidationError as error:
        raise _invalid(error) from error
    check_time(envelope.timestamp, "$.timestamp")
    return envelope


def check_time(at: datetime, field: str) -> datetime:
    """`at`, if it lies between `EARLIEST` and `LATEST`; InvalidPayload naming `field` if not."""
    if not EARLIEST <= at < LATEST:
        raise InvalidPayload(
            f"{field} is not between {EARLIEST.year} and {LATEST.year}: {at.isoformat()}",
            field=field,
        )
    return at


def check_storable_text(value: str, field: str) -> str:
    """`value`, if PostgreSQL's `text` can hold it (no NUL character); else InvalidPayload
    naming `field`, since the database's refusal would come back on every retry."""
    if "\x00" in value:
        raise InvalidPayload(f"{field} holds a NUL character", field=field)
    return value


def check_ip(value: str, field: str) -> str:
    """`value`, if it is an IPv4 or IPv6 address; else InvalidPayload naming `field`."""
    try:
        ipaddress.ip_address(value)
    except ValueError as error:
        raise InvalidPayload(f"{field} is not an IP address", field=field) from error
    return value


def check_email(value: str, field: str) -> str:
    """`value`, if it looks like an email address: one `@` with something on either side (the
    guard normalises it; whether it delivers is the storefront's business)."""
    local, _, domain = value.partition("@")
    if not local or not domain or "@" in domain:
        raise InvalidPayload(f"{field} is not an email address", field=field)
    return value


def _check_storable(value: Any, where: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidPayload(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels", field=where)
    if isinstance(value, str):
        check_storable_text(value, where)
    elif isinstance(value, int):  # bool too, harmlessly
        if not -MAX_JSON_INT <= value <= MAX_JSON_INT:
            raise InvalidPayload(f"{where} is a whole number beyond {MAX_JSON_INT:,}", field=where)
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key[:MAX_TEXT_CHARS]}"
            if "\x00" in key:
                raise InvalidPayload(f"{path} has a NUL character in its name", field=path)
            _check_storable(item, path, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_storable(item, f"{where}[{i}]", depth + 1)


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


def _event(webhook_id: str, envelope: Envelope, data: EventData) -> dict[str, Any]:
    """The fields every program event has: its id, member, time and signals."""
    return {
        "event_id": webhook_id,
        "member_id": data.customer_id,
        "occurred_at": envelope.timestamp,
        "signals": _signals(data),
    }


def _signals(data: EventData) -> Signals | None:
    """The `Signals` among the fields of an event's data, or None if it has none. A blank
    value is no value: an empty device id would link every member who sent one."""
    found: dict[str, Any] = {}
    for name in Signals.__struct_fields__:
        value = getattr(data, name, None)  # each event type's data holds some of them
        if isinstance(value, AddressData):
            value = _address(value)
        elif isinstance(value, str) and not value.strip():
            value = None
        if value is not None:
            found[name] = value
    if "ip" in found:
        check_ip(found["ip"], "$.data.ip")
    if "email" in found:
        check_email(found["email"], "$.data.email")
    return Signals(**found) if found else None


def _address(data: AddressData) -> Address | None:
    lines = {
        name: value
        for name in AddressData.__struct_fields__
        if (value := getattr(data, name)) is not None and value.strip()
    }
    return Address(**lines) if lines else None


def _order_paid(webhook_id: str, envelope: Envelope) -> Event:
    data: OrderPaidData = _data(envelope, OrderPaidData)
    total_minor = data.shipping_minor + data.tax_minor
    total_minor += sum(x.quantity * x.unit_price_minor for x in data.lines)
    if total_minor > MAX_AMOUNT_MINOR:
        raise InvalidPayload(
            f"the order's lines, shipping and tax come to {total_minor:,} minor units, "
            f"over the {MAX_AMOUNT_MINOR:,} limit",
            field="$.data.lines",
        )
    return OrderPaid(
        **_event(webhook_id, envelope, data),
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
        **_event(webhook_id, envelope, data),
        order_id=data.order_id,
        lines=[RefundedLine(line_id=x.line_id, quantity=x.quantity) for x in data.lines],
    )


def _order_cancelled(webhook_id: str, envelope: Envelope) -> Event:
    data: OrderCancelledData = _data(envelope, OrderCancelledData)
    return OrderCancelled(
        **_event(webhook_id, envelope, data),
        order_id=data.order_id,
    )


def _customer(action: str | None) -> Any:
    def decode(webhook_id: str, envelope: Envelope) -> Event:
        data: CustomerData = _data(envelope, CustomerData)
        name = action or ("profile.completed" if data.profile_completed else "profile.updated")
        return ActionPerformed(
            **_event(webhook_id, envelope, data),
            action=name,
            birthday=data.birthday,
            referral_code=data.referral_code,
            own_referral_code=data.own_referral_code if action == "signup" else None,
        )

    return decode


def _action(fixed: str | None) -> Any:
    def decode(webhook_id: str, envelope: Envelope) -> Event:
        data: ActionData = _data(envelope, ActionData)
        name = fixed or data.action
        if not name:
            raise InvalidPayload("action.performed needs data.action", field="$.data.action")
        return ActionPerformed(
            **_event(webhook_id, envelope, data),
            action=name,
        )

    return decode


def _review(webhook_id: str, envelope: Envelope) -> Event:
    data: ReviewData = _data(envelope, ReviewData)
    return ActionPerformed(
        **_event(webhook_id, envelope, data),
        action="review.published",
        sku=data.sku,
        rating=data.rating,
    )


_DECODERS = {
    "order.paid": _order_paid,
    "order.refunded": _order_refunded,
    "order.cancelled": _order_cancelled,
    "customer.created": _customer("signup"),
    "customer.updated": _customer(None),
    "review.published": _review,
    "social.shared": _action("social.shared"),
    "action.performed": _action(None),
}
