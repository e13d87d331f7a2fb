"""Canonical events, as the program rules see them (the webhook plugin maps each storefront's
payloads to these). Money is in integer minor units of the order's currency.

Events may carry `Signals` (`fraud/signals.py`): what the storefront knows of the device, the
network and the person behind the event. The program's rules ignore them; the fraud guard links
members through them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from msgspec import Meta, Struct

from pointguard.fraud.signals import Address as Address  # re-exported: events carry it
from pointguard.fraud.signals import Signals as Signals  # re-exported: events carry it

# Checked when events are decoded (`msgspec.convert` / `msgspec.json.decode`), as the webhook
# plugin does: a quantity below one or a negative amount never reaches the rules.
Units = Annotated[int, Meta(ge=1)]
Minor = Annotated[int, Meta(ge=0)]


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
