"""Canonical events, as the program rules see them (the webhook plugin maps each storefront's
payloads to these). Money is in integer minor units of the order's currency.

Events may carry `Signals`: what the storefront knows of the device, the network and the person
behind the event. The program's rules ignore them; the fraud guard links members through them
(as keyed digests: the raw values are never stored)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from msgspec import Meta, Struct

# Checked when events are decoded (`msgspec.convert` / `msgspec.json.decode`), as the webhook
# plugin does: a quantity below one or a negative amount never reaches the rules.
Units = Annotated[int, Meta(ge=1)]
Minor = Annotated[int, Meta(ge=0)]


class Address(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A postal address as the storefront has it; the guard normalises it before comparing."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    region: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2 where the sender knows it


class Signals(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Whatever the storefront sends of who is behind an event; every field is optional."""

    device_id: str | None = None  # the storefront's device or browser fingerprint
    ip: str | None = None  # the customer's IP address (v4 or v6), not the storefront's
    user_agent: str | None = None
    email: str | None = None
    phone: str | None = None
    shipping_address: Address | None = None
    payment_fingerprint: str | None = None  # the card's fingerprint from the payment provider


class Event(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    event_id: str  # unique per merchant: the webhook id; keys every ledger entry it causes
    member_id: str
    occurred_at: datetime
    signals: Signals | None = None


class OrderLine(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    line_id: str
    sku: str
    category: str
    quantity: Units
    unit_price_minor: Minor
    discount_minor: Minor = 0  # on the whole line


def order_lines(*lines: tuple[str, str, int, int]) -> list[OrderLine]:
    """Lines from `(sku, category, quantity, unit_price_minor)`, numbered from 0: the short way
    the demo and the tests write an order."""
    return [
        OrderLine(
            line_id=str(i), sku=sku, category=category, quantity=quantity, unit_price_minor=price
        )
        for i, (sku, category, quantity, price) in enumerate(lines)
    ]


class OrderPaid(Event, kw_only=True, frozen=True):
    order_id: str
    currency: str
    lines: list[OrderLine]
    shipping_minor: Minor = 0
    tax_minor: Minor = 0
    referral_code: str | None = None


class RefundedLine(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    line_id: str
    quantity: Units


class OrderRefunded(Event, kw_only=True, frozen=True):
    order_id: str
    lines: list[RefundedLine]


class OrderCancelled(Event, kw_only=True, frozen=True):
    order_id: str


class ActionPerformed(Event, kw_only=True, frozen=True):
    """signup, birthday, review.published, social.shared, profile.completed, or a custom name."""

    action: str
    birthday: date | None = None  # for `birthday`: the member's date of birth
    referral_code: str | None = None  # for `signup`: the code the new member came with
    own_referral_code: str | None = None  # for `signup`: a code the storefront already gave
    sku: str | None = None  # for `review.published`: the product reviewed
    rating: int | None = None  # for `review.published`: the stars given
