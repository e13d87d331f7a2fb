"""What a storefront may send of who is behind an event: device, network, contact details,
shipping address and payment card. Every field is optional: the guard uses whatever is there,
and stores only keyed digests of it (`identity.py`), never the raw values."""

from __future__ import annotations

from msgspec import Struct

__all__ = ["Address", "Signals"]


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
